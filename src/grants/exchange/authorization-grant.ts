import { agentReferences } from '../../agents/authority.ts';
import type { AuditEvent } from '../../audit/events.ts';
import { findActiveGrant, getGrant, type ConsentGrant } from '../../authorization/consent.ts';
import type { AuthenticatedClient } from '../../clients/authentication/types.ts';
import { epochSeconds } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { grantAudience, type Chaining, type ChainingClaim } from '../../federation/chaining.ts';
import type { Partner } from '../../federation/definition.ts';
import { personLeis } from '../../federation/regions.ts';
import { basisOf } from '../../federation/subject.ts';
import { crossesRegion, pairwiseKey, pairwiseSubject } from '../../identity/pairwise.ts';
import { mandateInForce, versionCovers } from '../../mandates/coverage.ts';
import type { MandateVersion } from '../../mandates/store.ts';
import type { Issuance } from '../../policy/issuance.ts';
import { OAuthError } from '../../oauth-error.ts';
import { newJti } from '../../tokens/access-token.ts';
import { tokenExchangeGrantType, tokenTypes } from '../../tokens/token-types.ts';
import { commitSentTxn } from '../../transactions/partner-txn.ts';
import { isTxn, mintTxn } from '../../transactions/txn.ts';
import type { GrantResult } from '../grant.ts';
import { requirePersonRoleMinimum } from '../step-up.ts';
import { chainNames } from './assertion-chain.ts';
import { decideGrant, decidedGrantEvents, originProfile, partnerAuthorizationServer } from './grant-decision.ts';
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
 * 2. the subject token is one of ours (a partner's token is exchanged for one of ours first), and
 *    so is an actor token (we vouch for our own actors only, named with our issuer), not a
 *    break-glass one (its activation could not end what the partner issues), carries no
 *    authorization_details (the partner could not bound them: dropping them would widen) — else
 *    invalid_request; no `authorization_details` parameter (invalid_authorization_details). Every
 *    agent the subject and actor tokens stand on (`agent`, `agents`) was live when token exchange
 *    verified them (src/tokens/liveness.ts asks src/agents/authority.ts areAgentsLive): a token
 *    standing on a disabled, changed or retired agent gets no grant (invalid_request);
 * 2a. as for every issuance: no client or person suspended pending review (src/risk/anomalies:
 *    unauthorized_client / invalid_grant);
 * 2b. the partner's authorization server is registered here as a resource server (under its issuer
 *    or grant audience: how the decision point sees it, ./grant-decision.ts) — else invalid_target;
 *    a chain that started at a partner (`origin_iss`) stays bounded by that partner's profile, as
 *    at every hop of token exchange: still registered (invalid_request), the target among its
 *    `allowed_audiences` (invalid_target);
 * 3. never wider (DESIGN §4; the draft's "Claims Transcription", controlling scope): scopes ⊆ the
 *    subject token's ∩ the client's registration ∩ the profile's `chaining.scopes` ∩ the partner
 *    server's registered scopes (∩ the origin partner's `allowed_scopes`); `scope` only narrows
 *    (invalid_scope);
 * 4. the mandate the subject token names is still in force and covers those scopes (invalid_request);
 *    without one, whenever the subject is a person — their own token, or a partner subject linked
 *    to them — their consent to the partner's authorization server with those scopes: the consent
 *    grant their token was issued under, else their consent to the client that holds the subject
 *    token (invalid_target / invalid_scope), as for any audience; a linked person's role minimum
 *    (insufficient_user_authentication, as token exchange asks it);
 * 4a. regions: under `public` subjects, a person's grant for a partner server registered in
 *    another region is invalid_target (their local id would leave it; `pairwise` and `linked` name
 *    them otherwise, as token exchange names them by a pseudonym there);
 * 5. the subject as the profile names it (`partnerSubject`), the actors as the profile allows —
 *    only actors of our domain: a chain's actor of another domain (and those before it) is not
 *    forwarded, since the partner takes actors of our issuer only; more than 8 actors of ours (what
 *    a partner accepts) is invalid_request, never cut;
 * 5a. the decision point, as for every token (./grant-decision.ts): KYC/AML (a frozen person or
 *    firm: invalid_grant), the agent's model authority (unauthorized_client), the risk assessment,
 *    data residency and the active policy set with the partner's server as the resource
 *    (invalid_scope, invalid_target, insufficient_user_authentication, invalid_grant);
 * 6. the grant: `aud` the partner's authorization server only (the draft's "Token Exchange
 *    Response": `aud` MUST identify it, one server RECOMMENDED), `iss` ours, a fresh `jti` (the
 *    partner uses it once, RFC 7523 §3 (7)), `exp` at most the profile's lifetime (≤ 300 s) —
 *    at most `agentGrantLifetime` for a grant that stands on an agent — and never after the subject
 *    or actor token's, `scope`, and only the optional claims the profile lists; signed with our
 *    current key (published in our JWKS),
 *    `typ` JWT (RFC 7519 §5.1; the partner's JWT-bearer rules, never at+jwt). Not bound: the
 *    partner binds the access token it issues;
 * 7. `token.exchanged`, with `details.issued_token_type` and `details.chaining` (partner, audience,
 *    the subject as sent, the claims carried), `details.agents` (the agents the subject and actor
 *    tokens stand on, when any) and the decisions folded in, durable before the
 *    response leaves — with, when the grant carries the txn, the record that the txn is shared
 *    with the partner (src/transactions/partner-txn.ts: the partner may name it back). The
 *    response is RFC 8693 §2.2.1's with `token_type` N_A: the grant is no access token.
 */
export async function authorizationGrantTarget(ctx: Pick<Context, 'partners'>, resources: string[], audiences: string[], requestedType: string | undefined): Promise<Partner | undefined> {
  // An access token was asked for: the resource-server path, as before chaining existed.
  if (requestedType === tokenTypes.accessToken) return undefined;
  const named = [...new Set([...resources, ...audiences])];
  // Indexed by the partner store (issuer and grant audience of partners with `chaining`); apply
  // keeps each such name to one partner (src/federation/apply-section.ts).
  const partner = named.length === 1 ? await ctx.partners.grantTarget(named[0]!) : undefined;
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
  /** The source address of the token request, for the risk signals. */
  address?: string;
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
  // This hop's actor must be of our domain too: the grant names it with our issuer, and we vouch
  // for our own actors only (a partner's actor token would have us sign a third domain's word).
  if (actor && actor.origin !== 'local') throw new OAuthError('invalid_request', 'a JWT authorization grant is issued for an actor of this server; a partner\'s actor_token does not cross to another domain');
  if (subject.breakGlassActivation !== undefined || actor?.breakGlassActivation !== undefined || client.breakGlass) {
    throw new OAuthError('invalid_request', 'a break-glass token does not cross to another domain');
  }
  if (subject.authorizationDetails.length > 0) throw new OAuthError('invalid_request', 'a token carrying authorization_details cannot be chained to another domain: the partner could not bound them');
  if (request.authorizationDetails !== undefined) throw new OAuthError('invalid_authorization_details', 'a JWT authorization grant carries no authorization_details');
  // Step 2a.
  const { principal, subjectLeis } = subjectBasis(subject, clientId);
  await refuseSuspended(ctx, clientId, principal);
  // Step 2b.
  const server = await partnerAuthorizationServer(ctx, partner);
  const origin = await originProfile(ctx, subject, server);
  // Step 3.
  const scopes = grantScopes(request.scope, subject.scopes, client.client.metadata.scope?.split(' ') ?? [], [
    { scopes: chaining.scopes, by: 'the partner profile' },
    { scopes: server.scopes, by: 'the partner authorization server as registered here' },
    ...(origin ? [{ scopes: origin.allowed_scopes, by: `the profile of partner ${origin.id}, where the chain started` }] : []),
  ]);
  // Step 4.
  const now = epochSeconds(ctx.clock);
  const audience = grantAudience(partner);
  const names = [partner.issuer, audience];
  const mandate = subject.mandate ? await recheckMandate(ctx, subject.mandate, scopes) : undefined;
  if (!mandate && subject.grantId !== undefined) {
    const grant = await getGrant(ctx, subject.grantId);
    if (!grant || grant.revokedAt !== null) throw new OAuthError('invalid_request', 'the subject_token\'s consent grant is no longer active');
    requireConsent(grant, names, scopes);
  } else if (!mandate && principal.type === 'User') {
    requireConsent(await findActiveGrant(ctx, principal.id, subject.clientId ?? clientId), names, scopes);
  }
  // A partner's subject decided as the person it is linked to: their role minimum, met by the
  // authentication the chain carries (as token exchange does; their own token's was checked before).
  if (principal.type === 'User' && subject.subjectType !== 'User') {
    await requirePersonRoleMinimum(ctx, { personId: principal.id, achieved: subject.authentication?.acr, clientId, requestId: request.requestId, grantType: tokenExchangeGrantType });
  }
  // Step 4a.
  if (principal.type === 'User' && chaining.subject === 'public' && crossesRegion(ctx.config.region, server.region)) {
    throw new OAuthError('invalid_target', `the partner authorization server is in region ${server.region}, not this instance's (${ctx.config.region}): a person is not named there by their local id (chaining.subject public)`);
  }
  // Step 5.
  const allowed = new Set<ChainingClaim>(chaining.claims);
  const act = { ...request.currentActor, ...(subject.act ? { act: subject.act } : {}) };
  const txn = isTxn(subject.txn) ? subject.txn : mintTxn(ctx.clock.now());
  const actors = chainNames(act);
  // The partner takes at most 8 actors (as we do: presented-token.ts partnerActorChain). A deeper
  // chain of ours is refused, never cut: cutting drops the oldest actors, who started the chain.
  if (allowed.has('act') && ourActorCount(ctx, act) > maxPartnerActors) {
    throw new OAuthError('invalid_request', `the act chain names more than ${maxPartnerActors} actors of this server, more than a partner accepts; a grant names every actor or none`);
  }
  const notAfter = Math.min(now + chaining.lifetime, subject.expiresAt, actor?.expiresAt ?? Infinity);
  if (notAfter <= now) throw new OAuthError('invalid_request', 'the subject_token is expired');
  // Step 5a.
  const decision = await decideGrant(ctx, {
    client,
    requestId: request.requestId,
    server,
    principal,
    ...(subjectLeis ? { subjectLeis } : {}),
    subject,
    scopes,
    ...(mandate ? { mandate } : {}),
    txn,
    actors,
    ...(request.address !== undefined ? { address: request.address } : {}),
  });
  const { sub, linked } = await partnerSubject(ctx, partner, subject);
  // Step 6.
  const agents = agentReferences([subject, actor]);
  const exp = decision.agent !== undefined || agents.length > 0 ? Math.min(notAfter, now + agentGrantLifetime) : notAfter;
  const lei = allowed.has('origin_lei') ? await subjectLei(ctx, subject) : undefined;
  const claims: Record<string, unknown> = {
    iss: ctx.config.issuer,
    sub,
    aud: audience,
    iat: now,
    exp,
    jti: newJti(),
    scope: scopes.join(' '),
    ...(allowed.has('act') ? { act: await actForPartner(ctx, partner, act, chaining.subject === 'public' && !crossesRegion(ctx.config.region, server.region)) } : {}),
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
      // The agents the grant stood on when it was made (the client's own agent is `agent`, as for every issuance).
      ...(agents.length > 0 ? { agents } : {}),
      ...(subject.originIssuer !== undefined ? { origin_iss: subject.originIssuer } : {}),
      // A person's identifier at the partner links them across systems: sealed as personal data (src/audit/personal-data.ts).
      chaining: { partner: partner.id, audience, subject_mapping: chaining.subject, ...(linked ? {} : { subject: sub }), claims: Object.keys(claims).filter((c) => !registeredClaims.has(c)) },
      ...(linked ? { upstream_subject: sub } : {}),
    },
  };
  const recorded = decidedGrantEvents(ctx, event, decision, { principal, clientId, audience: server.identifier, jti: claims.jti as string });
  const result = {
    // RFC 8693 §2.2.1 (the draft's token exchange response): the grant travels in `access_token`; it is no access token, so N_A.
    response: { access_token: grant, issued_token_type: tokenTypes.jwt, token_type: 'N_A' as const, expires_in: exp - now, scope: scopes.join(' ') },
    ...recorded,
  };
  // The partner may name this txn back (a trade that returns keeps its id); no other partner may.
  return allowed.has('txn') ? commitSentTxn(ctx, txn, partner.id, result) : result;
}

/**
 * Whom the grant is about, as the decision point sees them (src/policy/issuance.ts `Issuance.subject`),
 * and their firms for data residency: a subject of ours; a partner's subject (src/federation/subject.ts),
 * the local person it is linked to, else the client that vouches for it with the firm its partner named.
 */
function subjectBasis(subject: PresentedToken, clientId: string): { principal: Issuance['subject']; subjectLeis?: string[] } {
  if (subject.subjectType !== undefined) return { principal: { type: subject.subjectType, id: subject.subject } };
  return basisOf(subject.partnerOrigin ?? {}, clientId);
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

/**
 * The longest a grant standing on an agent lives (seconds): one made from an agent's token, or from
 * a token exchanged from one (`agents`), or asked for by an agent. Our liveness rule ends an agent's
 * tokens at its kill switch, its model version's retirement or its change, but not a grant the
 * partner's authorization server redeems on its own (nor the token it issues for it, which is the
 * partner's): only its lifetime bounds how long after the kill switch it can still be redeemed.
 */
export const agentGrantLifetime = 60;

/** The claims every grant carries; the rest are the profile's to allow. */
const registeredClaims = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'jti', 'scope']);

/** Step 3: each scope carried by the subject token, registered for the client and within every bound (named in the refusal). */
function grantScopes(requested: string | undefined, carried: readonly string[], registered: readonly string[], bounds: { scopes: readonly string[]; by: string }[]): string[] {
  const within = (s: string) => carried.includes(s) && registered.includes(s) && bounds.every((b) => b.scopes.includes(s));
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
    const bound = bounds.find((b) => !b.scopes.includes(scope));
    if (bound) throw new OAuthError('invalid_scope', `scope ${shown} is not allowed by ${bound.by}`);
  }
  return [...new Set(scopes)];
}

/** Step 4: the mandate is still in force and grants the scopes; its version, for the decision point. */
async function recheckMandate(ctx: Context, ref: { id: string; v: number }, scopes: string[]): Promise<MandateVersion> {
  const at = new Date(ctx.clock.now());
  const version = await mandateInForce(ctx, ref, at);
  if (!version) throw new OAuthError('invalid_request', `the subject_token's mandate ${ref.id} v${ref.v} is no longer in force`);
  const coverage = await versionCovers(ctx, version, { scopes, at });
  if (!coverage.ok) throw new OAuthError('invalid_request', `the subject_token's mandate does not cover this grant: ${coverage.reason}`);
  return version;
}

/**
 * Step 4: a person's authority goes only where they sent it — their consent grant names the
 * partner's authorization server (by its issuer or the grant's audience) with these scopes. That
 * the subject token's own audience was consented to is no consent to another firm's domain; a
 * partner's subject linked to a person carries no consent of theirs at all.
 */
function requireConsent(grant: ConsentGrant | undefined, names: string[], scopes: string[]): void {
  if (!grant || grant.revokedAt !== null) throw new OAuthError('invalid_target', 'the person did not consent to grants for this partner');
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
 * is no registered client) is named by their pseudonym for this partner unless `publicNames`. The
 * chain is ourActors: it stops at the first actor of another domain. Our `act_chain` keeps the
 * whole chain. At most 8 deep, as accepted (a deeper chain of ours was refused before: step 5).
 */
async function actForPartner(ctx: Context, partner: Partner, act: Record<string, unknown>, publicNames: boolean): Promise<Record<string, unknown>> {
  // Built from the innermost actor outwards, each one's `act` the chain below it; ourActors yields
  // `act` itself first, so there is at least one.
  let chain: Record<string, unknown> | undefined;
  for (const actor of firstOf(ourActors(ctx, act), maxPartnerActors).reverse()) {
    const sub = String(actor.sub);
    const named = (await ctx.clients.get(sub)) || publicNames ? { sub, iss: ctx.config.issuer } : { sub: pseudonym(ctx, partner, sub), iss: ctx.config.issuer };
    chain = chain ? { ...named, act: chain } : named;
  }
  return chain!;
}

/** The most actors a partner accepts in an `act` chain (presented-token.ts partnerActorChain: 8 deep). */
const maxPartnerActors = 8;

/** How many actors of ours a chain names (ourActors), counted up to one more than a partner accepts. */
function ourActorCount(ctx: Context, act: Record<string, unknown>): number {
  return firstOf(ourActors(ctx, act), maxPartnerActors + 1).length;
}

/**
 * The actors of ours an `act` chain names, outermost first: `act` itself — this hop's actor, of our
 * domain (step 2 refuses a partner's actor_token) — then each nested actor down to the first of
 * another domain (one with a partner's `iss`), where the chain stops: we vouch only for our own
 * actors, and the partner refuses any actor of another issuer than ours (its rule as ours:
 * assertion-chain.ts). Lazy: a caller takes what it needs.
 */
function* ourActors(ctx: Context, act: Record<string, unknown>): Generator<Record<string, unknown>> {
  yield act;
  for (let node = act.act; isActorNode(node) && isOurs(ctx, node); node = node.act) yield node;
}

function isActorNode(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The first `n` items of `items`, no more taken from it. */
function firstOf<T>(items: Iterable<T>, n: number): T[] {
  const taken: T[] = [];
  if (n <= 0) return taken;
  for (const item of items) if (taken.push(item) >= n) break;
  return taken;
}

/** An actor of our domain: no `iss`, or ours. */
function isOurs(ctx: Context, actor: Record<string, unknown>): boolean {
  return actor.iss === undefined || actor.iss === ctx.config.issuer;
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
