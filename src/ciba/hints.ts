import { actChainSubjects } from '../approvals/independence.ts';
import type { Client } from '../clients/store.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { pairwiseKey, pairwiseSubject, sectorOf } from '../identity/pairwise.ts';
import { BoundedMap } from '../jose/bounded-map.ts';
import { findUser, findUserByUsername, type User } from '../identity/users.ts';
import { OAuthError } from '../oauth-error.ts';
import { verifyAccessToken } from '../tokens/access-token.ts';
import { verifyIdTokenHint } from '../tokens/id-token.ts';
import { isTokenLive } from '../tokens/liveness.ts';

/**
 * Who a backchannel authentication request is for (CIBA Core §7.1): exactly one hint.
 * - `login_hint`: the person's username;
 * - `id_token_hint`: an ID token this server issued to this client (signature, issuer, `aud` = the
 *   client; expired is fine — it only says whom the client means, §7.1); its `sub` is what the
 *   client is told of the person: their local id, or for a pairwise client their pseudonym in the
 *   client's sector (`personOfIdToken`);
 * - `login_hint_token`: one of our own access tokens issued to this client and still live
 *   (src/tokens/liveness.ts): its `sub` is the person, and its `act` chain (RFC 8693 §4.1) is
 *   carried into the request — its subjects are the request's actors, whom the independence rule
 *   keeps from approving, and the issued token carries the chain.
 * The person must exist and be active; an unknown, locked or disabled person is the same answer,
 * `unknown_user_id` (§13), so the endpoint tells no more than the hint already did.
 */

export type HintKind = 'login_hint' | 'id_token_hint' | 'login_hint_token';

export interface ResolvedHint {
  kind: HintKind;
  subject: User;
  act?: Record<string, unknown>;
  actors: string[];
}

/** Longest hint accepted (an access token with a long act chain fits easily). */
const maxHintLength = 8192;

export async function resolveHint(ctx: Context, client: Client, hints: Partial<Record<HintKind, string>>): Promise<ResolvedHint> {
  const given = (Object.keys(hints) as HintKind[]).filter((k) => hints[k] !== undefined);
  // §7.1: "it is REQUIRED that the Client provides one (and only one) of the hints".
  if (given.length !== 1) throw new OAuthError('invalid_request', 'send exactly one of login_hint, id_token_hint and login_hint_token');
  const kind = given[0]!;
  const value = hints[kind]!;
  if (value.length > maxHintLength) throw new OAuthError('invalid_request', `${kind} is too long`);
  if (kind === 'login_hint') return { kind, subject: active(await findUserByUsername(ctx, value)), actors: [] };
  if (kind === 'id_token_hint') {
    const verified = await verifyIdTokenHint(ctx.keys, ctx.config.issuer, value);
    if (!verified.ok) throw new OAuthError('invalid_request', 'id_token_hint is not an ID token of this server', { detail: verified.reason });
    if (verified.claims.aud !== client.metadata.client_id) throw new OAuthError('invalid_request', 'id_token_hint was not issued to this client');
    return { kind, subject: active(await personOfIdToken(ctx, client, verified.claims.sub)), actors: [] };
  }
  const verified = await verifyAccessToken(ctx.keys, ctx.config.issuer, value, epochSeconds(ctx.clock));
  // §13: expired_login_hint_token — "the login_hint_token provided in the authentication request is not valid because it has expired".
  if (!verified.ok && verified.reason === 'expired') throw new OAuthError('expired_login_hint_token', 'login_hint_token has expired');
  if (!verified.ok) throw new OAuthError('invalid_request', 'login_hint_token is not an access token of this server', { detail: verified.reason });
  const claims = verified.claims;
  if (claims.client_id !== client.metadata.client_id) throw new OAuthError('invalid_request', 'login_hint_token was not issued to this client');
  // A person's token names its consent grant; a client's own token names no person.
  if (claims.grant_id === undefined) throw new OAuthError('unknown_user_id', 'login_hint_token does not name a person');
  // Revoked, or its grant, mandate or person no longer in force: as good as expired.
  if (!(await isTokenLive(ctx, claims))) throw new OAuthError('expired_login_hint_token', 'login_hint_token is no longer valid');
  const act = claims.act;
  return { kind, subject: active(await findUser(ctx, claims.sub)), ...(act ? { act } : {}), actors: actChainSubjects(act) };
}

/** A pairwise subject: base64url of an HMAC-SHA-256 (src/identity/pairwise.ts). */
const pairwiseShape = /^[A-Za-z0-9_-]{43}$/;

/**
 * The person an ID token issued to `client` names (OIDC Core §8.1): its `sub` is the local id for a
 * public client; for a pairwise one, the person's pseudonym in the client's sector — not reversible
 * (src/identity/pairwise.ts), so the pseudonym of each active person in that sector is computed until
 * one matches (one read of their ids, an HMAC each; only for this hint of a pairwise client, once
 * per pseudonym: `resolvedPseudonyms`). Only
 * the client's own sector is tried: a pseudonym of another sector names nobody here. A local id
 * never resolves for a pairwise client (one switched from public, say): its request would get an ID
 * token with the pseudonym, tying the two together.
 */
async function personOfIdToken(ctx: Context, client: Client, sub: string): Promise<User | undefined> {
  if (client.metadata.subject_type !== 'pairwise') return findUser(ctx, sub);
  const sector = sectorOf(client.metadata);
  if (sector === undefined || !pairwiseShape.test(sub)) return undefined;
  const key = pairwiseKey(ctx.identity.factorKeys.master);
  // A client names the same people again and again: a pseudonym resolved before costs one HMAC
  // (checked anew: the map is a hint, never the answer), not one per active person.
  const remembered = resolvedPseudonyms.get(`${sector} ${sub}`);
  if (remembered !== undefined && pairwiseSubject(key, sector, remembered) === sub) return findUser(ctx, remembered);
  const people = await ctx.storage.db.selectFrom('users').select('id').where('status', '=', 'active').execute();
  const person = people.find(({ id }) => pairwiseSubject(key, sector, id) === sub);
  if (person) resolvedPseudonyms.set(`${sector} ${sub}`, person.id);
  return person && findUser(ctx, person.id);
}

/** Pseudonyms resolved, by sector and pseudonym: the person's id (bounded; one HMAC verifies a hit). */
const resolvedPseudonyms = new BoundedMap<string, string>(10_000);

function active(user: User | undefined): User {
  // §13 unknown_user_id: "not able to identify which end-user the Client wishes to be authenticated".
  if (!user || user.status !== 'active') throw new OAuthError('unknown_user_id', 'no active person matches the hint');
  return user;
}
