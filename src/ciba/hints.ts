import { actChainSubjects } from '../approvals/independence.ts';
import type { Client } from '../clients/store.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { findUser, findUserByUsername, type User } from '../identity/users.ts';
import { OAuthError } from '../oauth-error.ts';
import { verifyAccessToken } from '../tokens/access-token.ts';
import { verifyIdTokenHint } from '../tokens/id-token.ts';
import { isTokenLive } from '../tokens/liveness.ts';

/**
 * Who a backchannel authentication request is for (CIBA Core §7.1): exactly one hint.
 * - `login_hint`: the person's username;
 * - `id_token_hint`: an ID token this server issued to this client (signature, issuer, `aud` = the
 *   client; expired is fine — it only says whom the client means, §7.1);
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
    return { kind, subject: active(await findUser(ctx, verified.claims.sub)), actors: [] };
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

function active(user: User | undefined): User {
  // §13 unknown_user_id: "not able to identify which end-user the Client wishes to be authenticated".
  if (!user || user.status !== 'active') throw new OAuthError('unknown_user_id', 'no active person matches the hint');
  return user;
}
