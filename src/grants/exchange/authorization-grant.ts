import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '../../audit/events.ts';
import { getGrant } from '../../authorization/consent.ts';
import type { AuthenticatedClient } from '../../clients/authentication/types.ts';
import { epochSeconds } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { grantAudience, type Chaining, type ChainingClaim } from '../../federation/chaining.ts';
import type { Partner } from '../../federation/definition.ts';
import { personLeis } from '../../federation/regions.ts';
import { pairwiseKey, pairwiseSubject } from '../../identity/pairwise.ts';
import { mandateInForce, versionCovers } from '../../mandates/coverage.ts';
import type { Issuance } from '../../policy/issuance.ts';
import { refuseFrozenOrSanctioned } from '../../risk/kyc/enforce.ts';
import { OAuthError } from '../../oauth-error.ts';
import { newJti } from '../../tokens/access-token.ts';
import { tokenExchangeGrantType, tokenTypes } from '../../tokens/token-types.ts';
import { isTxn } from '../../transactions/txn.ts';
import type { GrantResult } from '../grant.ts';
import { chainNames } from './assertion-chain.ts';
import type { PresentedToken } from './presented-token.ts';

/**
 * Identity and authorization chaining across domains (draft-ietf-oauth-identity-chaining; docs/
 * federation.md "Identity chaining across domains"): a token exchange (RFC 8693) whose target is a
 * partner's authorization server gets a **JWT authorization grant** for it, which the client then
 * presents at the partner's token endpoint (RFC 7523 §2.1). Token exchange has verified the
 * subject (and actor) token, the client's right to it, the proof of its key, `may_act` and the
 * person's role minimum before this is reached. The rules, in order:
 * 1. the partner's profile has a `chaining` section and lists this client in it (else
 *    invalid_target: RFC 8693 §2.2.2, the server is unwilling to issue for that target), and the
 *    partner is not suspended by a drift;
 * 2. the subject token is one of ours (a partner's token is exchanged for one of ours first), not a
 *    break-glass one (its activation could not end what the partner issues), carries no
 *    authorization_details (the partner could not bound them: dropping them would widen) — else
 *    invalid_request; no `authorization_details` parameter (invalid_authorization_details);
 * 2a. as for every issuance: no client or person suspended pending review (src/risk/anomalies:
 *    unauthorized_client / invalid_grant), no frozen person or firm (src/risk/kyc: invalid_grant);
 * 3. never wider (DESIGN §4; the draft's "Claims Transcription", controlling scope): scopes ⊆ the
 *    subject token's ∩ the client's registration ∩ the profile's `chaining.scopes`; `scope` only
 *    narrows (invalid_scope);
 * 4. the mandate the subject token names is still in force and covers those scopes (invalid_request);
 *    without one, a person's token needs their consent to the partner's authorization server with
 *    those scopes (invalid_target / invalid_scope), as for any audience;
 * 5. the subject as the profile names it (`partnerSubject`), the actors as the profile allows;
 * 6. the grant: `aud` the partner's authorization server only (the draft's "Token Exchange
 *    Response": `aud` MUST identify it, one server RECOMMENDED), `iss` ours, a fresh `jti` (the
 *    partner uses it once, RFC 7523 §3 (7)), `exp` at most the profile's lifetime (≤ 300 s) and
 *    never after the subject or actor token's, `scope`, and only the optional claims the profile
 *    lists; signed with our current key (published in our JWKS),
 *    `typ` JWT (RFC 7519 §5.1; the partner's JWT-bearer rules, never at+jwt). Not bound: the
 *    partner binds the access token it issues;
 * 7. `token.exchanged`, with `details.issued_token_type` and `details.chaining` (partner, audience,
 *    the subject as sent, the claims carried), durable before the response leaves. The response
 *    is RFC 8693 §2.2.1's with `token_type` N_A: the grant is no access token.
 */
export async function authorizationGrantTarget(ctx: Pick<Context, 'partners'>, resources: string[], audiences: string[], requestedType: string | undefined): Promise<Partner | undefined> {
  // An access token was asked for: the resource-server path, as before chaining existed.
  if (requestedType === tokenTypes.accessToken) return undefined;
  const named = [...new Set([...resources, ...audiences])];
  const partner = named.length === 1 ? (await ctx.partners.list()).find((p) => p.chaining && (p.issuer === named[0] || p.chaining.audience === named[0])) : undefined;
  if (requestedType === tokenTypes.jwt && !partner) {
    throw new OAuthError('invalid_target', named.length === 1 ? 'the target is not a partner authorization server that JWT authorization grants are issued for' : 'name one target: the partner\'s authorization server');
  }
  return partner;
}

export interface AuthorizationGrantRequest {
  partner: Partner;
  subject: PresentedToken;
  actor: PresentedToken | undefined;
  /** This hop's actor as token exchange names it: the client, or the actor token's subject. */
  currentActor: Record<string, unknown>;
  client: AuthenticatedClient;
  requestId: string;
  subjectTokenType: string;
  scope: string | undefined;
  authorizationDetails: string | undefined;
}

/** Issues the JWT authorization grant (the rules above). */
export async function issueAuthorizationGrant(ctx: Context, request: AuthorizationGrantRequest): Promise<GrantResult> {
  const { partner, subject, actor, client } = request;
  const clientId = client.client.metadata.client_id;
  const chaining = partner.chaining!;
  // Step 1.
  if (!chaining.clients.includes(clientId)) throw new OAuthError('invalid_target', `this client may not obtain grants for partner ${partner.id}`, { detail: 'not_entitled' });
  if (await ctx.partners.suspension(partner.id)) throw new OAuthError('invalid_target', `partner ${partner.id} is suspended until an operator re-approves it`, { detail: 'partner_suspended' });
  // Step 2.
  if (subject.origin !== 'local') throw new OAuthError('invalid_request', 'a JWT authorization grant is issued from an access token of this server; exchange the partner token for one first');
  if (subject.breakGlassActivation !== undefined || actor?.breakGlassActivation !== undefined || client.breakGlass) {
    throw new OAuthError('invalid_request', 'a break-glass token does not cross to another domain');
  }
  if (subject.authorizationDetails.length > 0) throw new OAuthError('invalid_request', 'a token carrying authorization_details cannot be chained to another domain: the partner could not bound them');
  if (request.authorizationDetails !== undefined) throw new OAuthError('invalid_authorization_details', 'a JWT authorization grant carries no authorization_details');
  // Step 2a.
  const principal = principalOf(subject, clientId);
  await refuseSuspended(ctx, clientId, principal);
  // Step 3.
  const scopes = grantScopes(request.scope, subject.scopes, client.client.metadata.scope?.split(' ') ?? [], chaining.scopes);
  // Step 4.
  const now = epochSeconds(ctx.clock);
  const audience = grantAudience(partner);
  if (subject.mandate) await recheckMandate(ctx, subject.mandate, scopes);
  else if (subject.grantId !== undefined) await requireConsent(ctx, subject.grantId, [partner.issuer, audience], scopes);
  // Step 5.
  const allowed = new Set<ChainingClaim>(chaining.claims);
  const act = { ...request.currentActor, ...(subject.act ? { act: subject.act } : {}) };
  const txn = isTxn(subject.txn) ? subject.txn : randomUUID();
  const actors = chainNames(act);
  // Step 2a, KYC/AML as at every issuance: a frozen person, or a frozen firm of a client in the chain.
  await refuseFrozenOrSanctioned(ctx, {
    subject: principal,
    ...(subject.partnerOrigin?.person === undefined && subject.partnerOrigin?.lei !== undefined ? { subjectLeis: [subject.partnerOrigin.lei] } : {}),
    clientId,
    audience,
    scopes,
    authorizationDetails: [],
    delegation: { subject: subject.subject, actors },
    requestId: request.requestId,
    txn,
    grantType: tokenExchangeGrantType,
  });
  const { sub, linked } = await partnerSubject(ctx, partner, subject);
  // Step 6.
  const exp = Math.min(now + chaining.lifetime, subject.expiresAt, actor?.expiresAt ?? Infinity);
  if (exp <= now) throw new OAuthError('invalid_request', 'the subject_token is expired');
  const lei = allowed.has('origin_lei') ? await subjectLei(ctx, subject) : undefined;
  const claims: Record<string, unknown> = {
    iss: ctx.config.issuer,
    sub,
    aud: audience,
    iat: now,
    exp,
    jti: newJti(),
    scope: scopes.join(' '),
    ...(allowed.has('act') ? { act: await actForPartner(ctx, partner, act) } : {}),
    ...(allowed.has('txn') ? { txn } : {}),
    ...(allowed.has('mandate') && subject.mandate ? { mandate: subject.mandate } : {}),
    ...(allowed.has('acr') && subject.authentication ? { acr: subject.authentication.acr, amr: subject.authentication.amr, auth_time: subject.authentication.authTime } : {}),
    ...(lei !== undefined ? { origin_lei: lei } : {}),
  };
  const grant = await ctx.keys.signJwt({ typ: 'JWT' }, claims);
  // Step 7.
  const event: AuditEvent = {
    type: 'token.exchanged',
    requestId: request.requestId,
    txn,
    actor: clientId,
    subject: subject.subject,
    client: clientId,
    issuer: ctx.config.issuer,
    audience,
    scopes,
    ...(subject.mandate ? { mandate: subject.mandate } : {}),
    details: {
      grant_type: tokenExchangeGrantType,
      issued_token_type: tokenTypes.jwt,
      jti: claims.jti,
      exp,
      bound: 'none',
      parent_jti: subject.jti ?? null,
      parent_issuer: subject.issuer,
      parent_audience: subject.audience ?? null,
      subject_token_type: request.subjectTokenType,
      ...(actor ? { actor_jti: actor.jti ?? null, actor_issuer: actor.issuer } : {}),
      // Who they were here; the grant names persons as the profile maps them.
      act_chain: actors,
      ...(subject.originIssuer !== undefined ? { origin_iss: subject.originIssuer } : {}),
      // A person's identifier at the partner links them across systems: sealed as personal data (src/audit/personal-data.ts).
      chaining: { partner: partner.id, audience, subject_mapping: chaining.subject, ...(linked ? {} : { subject: sub }), claims: Object.keys(claims).filter((c) => !registeredClaims.has(c)) },
      ...(linked ? { upstream_subject: sub } : {}),
    },
  };
  return {
    // RFC 8693 §2.2.1 (the draft's token exchange response): the grant travels in `access_token`; it is no access token, so N_A.
    response: { access_token: grant, issued_token_type: tokenTypes.jwt, token_type: 'N_A', expires_in: exp - now, scope: scopes.join(' ') },
    events: [event],
  };
}

/** Whom the grant is about, as the decision point would see them (src/policy/issuance.ts `Issuance.subject`). */
function principalOf(subject: PresentedToken, clientId: string): Issuance['subject'] {
  if (subject.subjectType !== undefined) return { type: subject.subjectType, id: subject.subject };
  // A partner's subject: the local person it is linked to, else the client that vouches for it.
  return subject.partnerOrigin?.person !== undefined ? { type: 'User', id: subject.partnerOrigin.person } : { type: 'Client', id: clientId };
}

/**
 * Step 2a: a client or person suspended pending review gets no grant, as no token from any grant
 * (src/tokens/issue.ts): the client unauthorized_client, a person's grant invalid_grant (RFC 6749 §5.2).
 */
async function refuseSuspended(ctx: Context, clientId: string, principal: Issuance['subject']): Promise<void> {
  const suspended = await ctx.risk.reactions.firstSuspended([{ type: 'Client', id: clientId }, principal]);
  if (!suspended) return;
  if (suspended.type === 'Client' && suspended.id === clientId) throw new OAuthError('unauthorized_client', 'the client is suspended pending review', { detail: 'risk suspension' });
  throw new OAuthError('invalid_grant', 'access is suspended pending review', { detail: 'risk suspension' });
}

/** The claims every grant carries; the rest are the profile's to allow. */
const registeredClaims = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'jti', 'scope']);

/** Step 3: each scope carried by the subject token, registered for the client and allowed by the profile. */
function grantScopes(requested: string | undefined, carried: readonly string[], registered: readonly string[], allowed: readonly string[]): string[] {
  const within = (s: string) => carried.includes(s) && registered.includes(s) && allowed.includes(s);
  if (requested === undefined) {
    const scopes = carried.filter(within);
    if (scopes.length === 0) throw new OAuthError('invalid_scope', 'the subject token carries no scope the partner profile allows this client');
    return scopes;
  }
  const scopes = requested.split(' ');
  if (scopes.some((s) => s === '')) throw new OAuthError('invalid_scope', 'scope is malformed');
  for (const scope of scopes) {
    const shown = scope.slice(0, 60);
    if (!carried.includes(scope)) throw new OAuthError('invalid_scope', `scope ${shown} is wider than the subject token's`);
    if (!registered.includes(scope)) throw new OAuthError('invalid_scope', `scope ${shown} is not registered for this client`);
    if (!allowed.includes(scope)) throw new OAuthError('invalid_scope', `scope ${shown} is not allowed by the partner profile`);
  }
  return [...new Set(scopes)];
}

/** Step 4: the mandate is still in force and grants the scopes. */
async function recheckMandate(ctx: Context, ref: { id: string; v: number }, scopes: string[]): Promise<void> {
  const at = new Date(ctx.clock.now());
  const version = await mandateInForce(ctx, ref, at);
  if (!version) throw new OAuthError('invalid_request', `the subject_token's mandate ${ref.id} v${ref.v} is no longer in force`);
  const coverage = await versionCovers(ctx, version, { scopes, at });
  if (!coverage.ok) throw new OAuthError('invalid_request', `the subject_token's mandate does not cover this grant: ${coverage.reason}`);
}

/**
 * Step 4: a person's authority goes only where they sent it — their consent grant names the
 * partner's authorization server (by its issuer or the grant's audience) with these scopes. That
 * the subject token's own audience was consented to is no consent to another firm's domain.
 */
async function requireConsent(ctx: Context, grantId: string, names: string[], scopes: string[]): Promise<void> {
  const grant = await getGrant(ctx, grantId);
  if (!grant || grant.revokedAt !== null) throw new OAuthError('invalid_request', 'the subject_token\'s consent grant is no longer active');
  const consented = names.map((n) => grant.resources[n]).find((s) => s !== undefined);
  if (!consented) throw new OAuthError('invalid_target', 'the person did not consent to grants for this partner');
  const beyond = scopes.find((s) => !consented.includes(s));
  if (beyond !== undefined) throw new OAuthError('invalid_scope', `the person did not consent to ${beyond} for this partner`);
}

/**
 * Step 5: the grant's `sub` (the draft's "Claims Transcription": transcribing the subject identifier), per the
 * profile's `chaining.subject` (src/federation/chaining.ts):
 * - a client's own subject: its client_id;
 * - a person: their pseudonym for this partner (`pairwise`), their identifier at the partner
 *   (`linked`; none → invalid_target), or their local id (`public`);
 * - a subject that came from a partner (`origin_iss`): the partner's own identifier when the grant
 *   goes back to that partner; else the linked local person as a person; else a pseudonym of the
 *   issuer and subject (`pairwise`), the subject as it is (`public`), refused under `linked`.
 * `linked`: the identifier is the person's at the partner (personal data in our audit log).
 */
export async function partnerSubject(ctx: Context, partner: Partner, subject: PresentedToken): Promise<{ sub: string; linked: boolean }> {
  const mapping = partner.chaining!.subject;
  const as = (sub: string) => ({ sub, linked: false });
  if (subject.subjectType === 'Client') return as(subject.subject);
  if (subject.subjectType === 'User') return personFor(ctx, partner, mapping, subject.subject);
  if (subject.originIssuer === partner.issuer) return as(subject.subject);
  if (subject.partnerOrigin?.person !== undefined) return personFor(ctx, partner, mapping, subject.partnerOrigin.person);
  if (mapping === 'public') return as(subject.subject);
  if (mapping === 'linked') throw new OAuthError('invalid_target', `partner ${partner.id} knows no identifier for this subject`);
  return as(pseudonym(ctx, partner, `${subject.originIssuer} ${subject.subject}`));
}

async function personFor(ctx: Context, partner: Partner, mapping: Chaining['subject'], userId: string): Promise<{ sub: string; linked: boolean }> {
  if (mapping === 'public') return { sub: userId, linked: false };
  if (mapping === 'pairwise') return { sub: pseudonym(ctx, partner, userId), linked: false };
  // The partner-agreed identifier: the person signed in through the partner as an identity provider.
  const link = await ctx.storage.db.selectFrom('user_links').select('subject').where('issuer', '=', partner.issuer).where('user_id', '=', userId).orderBy('subject').executeTakeFirst();
  if (!link) throw new OAuthError('invalid_target', `the person has no identity at partner ${partner.id} (chaining.subject is linked)`);
  return { sub: link.subject, linked: true };
}

/** A person's pseudonym for one partner: the sector is the partner's issuer. */
function pseudonym(ctx: Context, partner: Partner, localSubject: string): string {
  return pairwiseSubject(pairwiseKey(ctx.identity.factorKeys.master), `partner:${partner.issuer}`, localSubject);
}

/**
 * The `act` chain as the partner sees it (RFC 8693 §4.1): every actor of ours carries our issuer,
 * so the partner cannot mistake our client ids for its own; a person acting (an actor of ours that
 * is no registered client) is named by their pseudonym for this partner unless the profile names
 * subjects publicly; a partner's actor (with its `iss`) is kept. At most 8 deep, as accepted.
 */
async function actForPartner(ctx: Context, partner: Partner, act: Record<string, unknown>, depth = 0): Promise<Record<string, unknown>> {
  const inner = act.act !== undefined && typeof act.act === 'object' && act.act !== null && depth < 7 ? await actForPartner(ctx, partner, act.act as Record<string, unknown>, depth + 1) : undefined;
  const sub = String(act.sub);
  let named: Record<string, unknown>;
  if (typeof act.iss === 'string') named = { sub, iss: act.iss };
  else if ((await ctx.clients.get(sub)) || partner.chaining!.subject === 'public') named = { sub, iss: ctx.config.issuer };
  else named = { sub: pseudonym(ctx, partner, sub), iss: ctx.config.issuer };
  return inner ? { ...named, act: inner } : named;
}

/** The subject's legal entity, when there is exactly one: a person's desks' firm, a client's owner, a partner subject's mapped firm. */
async function subjectLei(ctx: Context, subject: PresentedToken): Promise<string | undefined> {
  if (subject.subjectType === 'User') {
    const leis = await personLeis(ctx, subject.subject);
    return leis.length === 1 ? leis[0] : undefined;
  }
  if (subject.subjectType === 'Client') return (await ctx.clients.get(subject.subject))?.metadata.owner_lei;
  return subject.partnerOrigin?.lei;
}
