import { basisOf, originClaims, partnerSubjectBasis } from '../federation/subject.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { getGrant } from '../authorization/consent.ts';
import { mandateInForce, versionCovers } from '../mandates/coverage.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Partner } from '../federation/definition.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import type { PresentedKeys } from '../tokens/binding.ts';
import { issueAccessToken } from '../tokens/issue.ts';
import { tokenExchangeGrantType, tokenTypes } from '../tokens/token-types.ts';
import { narrowAuthorizationDetails, narrowScopes } from './exchange/narrowing.ts';
import { aboutOf, verifyPresentedToken, type PresentedToken } from './exchange/presented-token.ts';
import { defineGrant, settleGrant } from './grant.ts';
import { insufficientUserAuthentication, requirePersonRoleMinimum, roleMinimumUnmet } from './step-up.ts';
import { tokenKey } from '../risk/signals/concurrent-networks.ts';
import { isTxn, mintTxn } from '../transactions/txn.ts';
import { commitPartnerTxn, partnerTxn } from '../transactions/partner-txn.ts';
import { crossesRegion, regionSubject } from '../identity/pairwise.ts';
import { actInRegion, personLeis } from '../federation/regions.ts';
import { attributeNames, inSpan, spanNames } from '../telemetry/spans.ts';
import { authorizationGrantTarget, issueAuthorizationGrant } from './exchange/authorization-grant.ts';
import { agentReferences } from '../agents/authority.ts';


/**
 * RFC 8693: a client exchanges a token it received for a token to the next hop of a trade. The
 * rules, in order:
 * 1. subject_token and subject_token_type are required (§2.1); requested_token_type, when sent, is
 *    access_token, or jwt for a JWT authorization grant (step 5b);
 * 2. the subject token verifies as its declared type (RFC 8725 §3.12): one of ours, live (not
 *    revoked, its consent grant and mandate in force), or a partner's under its trust profile;
 *    otherwise invalid_request (§2.2.2: invalid or unacceptable subject and actor tokens);
 * 3. actor_token (with actor_token_type) verifies like the subject token and belongs to this
 *    client;
 * 4. the client may exchange the subject token: it was issued to it, its audience lists it in
 *    `exchange_clients`, or its `may_act` names it; a partner's token, when the profile lets this
 *    client present it;
 * 5. a sender-constrained subject (or actor) token needs proof of its key in this request: the
 *    DPoP proof of its `cnf.jkt`, or the client certificate of its `cnf.x5t#S256`; `may_act` of the
 *    subject token, when present, names the actor (§4.4);
 * 5a. a person's token of ours meets the person's role minimum **now**: one whose `acr` is below
 *    it (the minimum raised, or a role given, since they signed in) — or that carries no `acr` while
 *    their roles ask one — gets no token but `insufficient_user_authentication` with the minimum's
 *    `acr_values` (RFC 9470), as a refresh does (src/grants/step-up.ts), and `step_up.requested`;
 * 5b. identity chaining (draft-ietf-oauth-identity-chaining): a target that is a partner's
 *    authorization server whose profile declares `chaining` (requested_token_type jwt, or none)
 *    gets a JWT authorization grant for it instead of steps 6-11 (src/grants/exchange/
 *    authorization-grant.ts); requested_token_type jwt for anything else is invalid_target;
 * 6. one target: `resource` and `audience` name one resource server (RFC 8707; DESIGN §4), which
 *    the profile of the partner the chain started from allows (that partner still registered and
 *    not suspended by a drift, else invalid_request) — else invalid_target;
 * 6a. a partner's subject token's `txn` is taken only if the partner shares that txn (started here
 *    through it, or sent to it in a grant of ours) or it is new here — then started here through
 *    the partner with this token; any other is invalid_request, not filed under that txn
 *    (src/transactions/partner-txn.ts);
 * 7. never wider (DESIGN §4): scopes ⊆ the subject token's ∩ the target's ∩ the client's
 *    registration (∩ the partner profile's); authorization_details a selection of the subject
 *    token's;
 * 8. the mandate the subject token names is rechecked now: still in force, covering the scopes;
 *    without a mandate, a person's token (one with a consent grant) is exchanged only into an
 *    audience and scopes their consent grant names (else invalid_target / invalid_scope);
 * 9. the subject (and actor) token is still unexpired now, and the new token ends no later than
 *    either (invalid_request);
 * 10. the one issuance path (src/tokens/issue.ts): binding to this request's DPoP key or
 *    certificate (bearer refused where sender constraint is required or under FAPI 2.0), the
 *    decision point (src/policy/issuance.ts), the claims and signature;
 * 11a. a person's token for a resource server of another region (its `region` not this instance's
 *    CLEARANCE_REGION) carries the person's pseudonym in that region (src/identity/pairwise.ts) as
 *    `sub`, their firm as `origin_lei` when they have one, and no `origin_person`: their local id and
 *    data stay home; `token.exchanged` here records whom the pseudonym stands for (docs/privacy.md).
 *    Any token to another region names a person in its `act` chain (a person's actor_token, at
 *    this hop or an earlier one of ours) by their pseudonym in that region too: only client ids
 *    cross (src/federation/regions.ts actInRegion); this region's `act_chain` keeps who they were.
 *    Every other grant is refused a person's token for another region (src/policy/issuance.ts);
 * 11. the token: delegation (§4.1) — `act` names this hop's actor with the previous chain nested
 *    inside (newest actor outermost); `txn` kept unchanged, or created at the first hop; the
 *    mandate reference, the consent grant, a partner origin (`origin_iss`) and the agents the chain
 *    stands on (`agents`) carried; bound to this request's DPoP key or certificate. No refresh
 *    token is issued. `token.exchanged` names the parent token's jti, so the chain can be rebuilt
 *    from the audit log — a partner's token's jti as `partner_jti` (its `parent_jti` null): a
 *    partner's jti is never a parent of ours — and the agents the token stands on (`agents`).
 */
export const tokenExchange = defineGrant({
  grantType: tokenExchangeGrantType,
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope', 'authorization_details'],
  repeatable: ['resource', 'audience'],

  async handle({ params, client: authenticated, dpop, requestId, address }, ctx) {
    const client = authenticated.client.metadata;
    const keys: PresentedKeys = { dpop, certificateThumbprint: authenticated.certificateThumbprint };

    const subjectToken = params.get('subject_token');
    const subjectTokenType = params.get('subject_token_type');
    if (!subjectToken || !subjectTokenType) throw new OAuthError('invalid_request', 'subject_token and subject_token_type are required');
    const requestedType = params.get('requested_token_type');
    // A JWT is issued only as a JWT authorization grant for a partner's authorization server (step 5b).
    if (requestedType !== undefined && requestedType !== tokenTypes.accessToken && requestedType !== tokenTypes.jwt) {
      throw new OAuthError('invalid_request', `requested_token_type ${requestedType.slice(0, 80)} is not issued; only access tokens and JWT authorization grants are`);
    }
    // Step 4 runs inside step 2, before liveness (see presented()); a partner's token, after its profile.
    const subject = await presented(ctx, 'subject_token', subjectToken, subjectTokenType, client.client_id, requestId, (token) => requireExchangeRight(ctx, token, client.client_id));
    // From here on the refusal's event is filed under the subject token's trade (its txn) — a
    // partner's txn only once it is known to be shared with the partner (step 6a).
    let about = subject.origin === 'partner' ? { subject: subject.subject } : aboutOf(subject);
    try {
      const actor = await actorOf(ctx, params.get('actor_token'), params.get('actor_token_type'), client.client_id, requestId);
      if (subject.origin === 'partner') await requireExchangeRight(ctx, subject, client.client_id);
      proveKeys('subject_token', subject, keys);
      if (actor) proveKeys('actor_token', actor, keys);
      const currentActor = actor ? actorClaim(ctx, actor) : { sub: client.client_id };
      // RFC 8693 §4.4: may_act names who may act for the subject; anyone else is refused.
      if (subject.mayAct && !mayActAllows(subject.mayAct, currentActor, ctx.config.issuer)) {
        throw new OAuthError('invalid_request', 'the subject token does not allow this actor (may_act)');
      }
      await requireRoleMinimum(ctx, subject, client.client_id, requestId);
      // Step 5b, identity chaining: a partner's authorization server as the target gets a JWT
      // authorization grant for it (src/grants/exchange/authorization-grant.ts), not an access token.
      const grantFor = await authorizationGrantTarget(ctx, params.all('resource'), params.all('audience'), requestedType);
      if (grantFor) {
        return await issueAuthorizationGrant(ctx, {
          partner: grantFor,
          subject,
          actor,
          currentActor,
          client: authenticated,
          requestId,
          subjectTokenType,
          scope: params.get('scope'),
          authorizationDetails: params.get('authorization_details'),
          ...(address !== undefined ? { address } : {}),
        });
      }
      // Step 6a: a partner's txn is taken only if the partner shares it or it is new here.
      const partnerTrade = subject.origin === 'partner' && subject.txn !== undefined ? await partnerTxn(ctx, subject.partner!.partner.id, subject.txn) : undefined;
      if (partnerTrade === 'not_shared') throw txnNotShared(subject.partner!.partner.id);
      about = aboutOf(subject);

      // A partner's profile bounds every hop of a chain that started with its subject.
      const profile = await partnerProfileOf(ctx, subject);
      const server = await target(ctx, params.all('resource'), params.all('audience'), profile);
      const allowed = new Set(client.scope?.split(' ') ?? []);
      const carried = subject.scopes.filter((s) => allowed.has(s) && (!profile || profile.allowed_scopes.includes(s)));
      const scopes = narrowScopes(params.get('scope'), carried, server.scopes);
      const authorizationDetails = narrowAuthorizationDetails(params.get('authorization_details'), subject.authorizationDetails);

      const now = ctx.clock.now();
      const mandate = subject.mandate ? await recheckMandate(ctx, subject.mandate, scopes, now) : undefined;
      if (subject.grantId !== undefined && !mandate) await requireConsent(ctx, subject.grantId, server.identifier, scopes);
      const txn = isTxn(subject.txn) ? subject.txn : mintTxn(now);

      // The subject (and actor) token must still be valid now: what is exchanged never outlives it.
      const act = { ...currentActor, ...(subject.act ? { act: subject.act } : {}) };
      const notAfter = Math.min(subject.expiresAt, actor?.expiresAt ?? Infinity);
      const breakGlass = subject.breakGlassActivation ?? actor?.breakGlassActivation;
      const agents = agentReferences([subject, actor]);
      if (notAfter <= epochSeconds(ctx.clock)) throw new OAuthError('invalid_request', 'the subject_token is expired');
      const actors = actorChain(act);
      // A partner's subject (src/federation/subject.ts): at the first hop, the local person its
      // identity is linked to, else the client that vouches for it with the firm its partner names;
      // at later hops, what our token carries of that — so every hop decides as the first did.
      const partnerBasis = subject.partner
        ? await partnerSubjectBasis(ctx, { partner: subject.partner.partner, subject: subject.subject, attributes: subject.partner.attributes, claims: subject.partner.claims }, client.client_id)
        : undefined;
      const origin = partnerBasis ?? (subject.originIssuer !== undefined ? { ...basisOf(subject.partnerOrigin ?? {}, client.client_id), claims: originClaims(subject.partnerOrigin ?? {}) } : undefined);
      const principal = subject.subjectType ? { type: subject.subjectType, id: subject.subject } : origin!.principal;
      const assuranceSource = subject.assuranceSource ?? partnerBasis?.claims.assurance_source;
      // Step 11a: to a resource server of another region, a person's token carries their pseudonym
      // in that region, never their local id, and their firm for that region's data residency.
      const crossing = await regionCrossing(ctx, subject, server);
      // Only client ids in `act` cross: a person acting (an actor_token of theirs, now or at an
      // earlier hop of ours) is named by their pseudonym there too. A partner's chain is its own.
      const crosses = crossesRegion(ctx.config.region, server.region);
      const tokenAct = crosses ? { ...(await actInRegion(ctx, server.region!, currentActor)), ...(subject.act ? { act: subject.origin === 'local' ? await actInRegion(ctx, server.region!, subject.act) : subject.act } : {}) } : act;
      // Decided as a linked person: their role minimum, met by the authentication the chain carries.
      if (principal.type === 'User' && subject.subjectType !== 'User') {
        await requirePersonRoleMinimum(ctx, { personId: principal.id, achieved: subject.authentication?.acr ?? partnerBasis?.claims.acr, clientId: client.client_id, requestId, grantType: tokenExchangeGrantType });
      }
      const issued = await issueAccessToken(ctx, {
        grantType: tokenExchangeGrantType,
        requestId,
        client: authenticated,
        keys,
        target: { audience: server.identifier, ttl: server.access_token_ttl, requireSenderConstraint: server.require_sender_constraint, format: server.access_token_format },
        sub: crossing?.sub ?? subject.subject,
        principal,
        // A partner's subject's firm, for data residency (a linked person's: their desks' firms).
        ...(origin?.subjectLeis ? { subjectLeis: origin.subjectLeis } : {}),
        scopes,
        authorizationDetails,
        ...(mandate ? { mandate } : {}),
        txn,
        notAfter,
        claims: {
          act: tokenAct,
          // A person's consent grant travels down the chain: revoking it ends every hop's token.
          ...(subject.grantId !== undefined ? { grant_id: subject.grantId } : {}),
          // And its refresh family: revoking the refresh token ends every hop (RFC 7009 §2.1).
          ...(subject.refreshFamily !== undefined ? { refresh_family: subject.refreshFamily } : {}),
          // So does how they authenticated (RFC 9068 §2.2.1): step-up policies decide on it at
          // every hop, and a refusal asks the person for more (insufficient_user_authentication).
          ...(subject.authentication ? { acr: subject.authentication.acr, amr: subject.authentication.amr, auth_time: subject.authentication.authTime } : {}),
          // A partner's subject's authentication, where its profile says what the partner is trusted for.
          ...(!subject.authentication && partnerBasis?.claims.acr !== undefined ? { acr: partnerBasis.claims.acr, amr: partnerBasis.claims.amr!, auth_time: partnerBasis.claims.auth_time! } : {}),
          ...(assuranceSource !== undefined ? { assurance_source: assuranceSource } : {}),
          ...(subject.origin === 'partner' ? { origin_iss: subject.issuer } : subject.originIssuer ? { origin_iss: subject.originIssuer } : {}),
          // A linked person's local id (origin_person) never leaves the region.
          ...(origin ? { ...(origin.claims.origin_person !== undefined && !crosses ? { origin_person: origin.claims.origin_person } : {}), ...(origin.claims.origin_lei !== undefined ? { origin_lei: origin.claims.origin_lei } : {}) } : {}),
          ...(crossing?.lei !== undefined ? { origin_lei: crossing.lei } : {}),
          // A break-glass activation (of the subject's token, else the actor's) travels down too: the
          // liveness rule ends every hop's token with it (src/approvals/break-glass).
          ...(breakGlass !== undefined ? { break_glass: true as const, break_glass_activation: breakGlass } : {}),
          // The agents the subject and actor tokens stand on (an agent as subject, or as an actor at
          // this hop or an earlier one): each hop's token dies with any of them — its kill switch, its
          // model version's retirement, its change (src/agents/authority.ts areAgentsLive).
          ...(agents.length > 0 ? { agents } : {}),
        },
        event: {
          type: 'token.exchanged',
          details: {
            ...exchangedDetails(subject, actor, subjectTokenType, actors),
            // The evidence of which agents the token depends on (its `agents` claim), when it does.
            ...(agents.length > 0 ? { agents } : {}),
            ...(breakGlass !== undefined ? { break_glass: true, break_glass_activation: breakGlass } : {}),
            // The home region's record of whom the pseudonym stands for (this log stays here).
            ...(crossing ? { region_crossing: { from: ctx.config.region!, to: server.region!, local_subject: subject.subject } } : {}),
          },
        },
        ...(address !== undefined ? { address } : {}),
        // The delegation signals (src/risk/signals): the chain, and the subject token as presented —
        // by its holder (the client it was issued to) or by another client (its audience, may_act).
        risk: {
          delegation: { subject: subject.subject, actors },
          ...(subject.origin === 'local' && subject.jti !== undefined ? { presented: { token: tokenKey(subject.jti), byHolder: subject.clientId === client.client_id } } : {}),
        },
      });
      const result = { response: { ...issued.response, issued_token_type: tokenTypes.accessToken }, events: [...issued.decisions, issued.event], observe: issued.observe };
      // A failed commit takes back the token's transfer reservations; a partner's txn start that
      // failed may be a parallel exchange of the same txn winning, which counts on them (contended).
      return await settleGrant(
        ctx,
        issued,
        async () => {
          if (!partnerTrade?.start) return result;
          return commitPartnerTxn(ctx, { txn: partnerTrade.txn, clientId: client.client_id, partnerId: subject.partner!.partner.id }, result, () => txnNotShared(subject.partner!.partner.id));
        },
        { contended: partnerTrade?.start === true },
      );
    } catch (error) {
      throw fileUnder(error, about);
    }
  },
});

async function presented(
  ctx: Context,
  name: string,
  token: string,
  type: string,
  clientId: string,
  requestId: string,
  entitled?: (token: PresentedToken) => Promise<void>,
): Promise<PresentedToken> {
  // `entitled` runs on a token of ours after its signature and before its liveness: an unentitled
  // client is refused alike for a live and a revoked token (no liveness oracle).
  const verified = await verifyPresentedToken(ctx, token, type, clientId, entitled);
  // RFC 8693 §2.2.2: a subject or actor token that is invalid, or unacceptable by policy (a
  // suspended partner's included: src/federation/drift, until an operator re-approves it), MUST
  // be answered invalid_request. The endpoint records it (`exchange.refused`, reason code).
  if (!verified.ok) {
    const detail = verified.suspendedPartner ? 'partner_suspended' : `${name}_unacceptable`;
    throw fileUnder(new OAuthError('invalid_request', `${name} is not acceptable: ${verified.reason}`, { detail }), verified.about);
  }
  return verified.token;
}

async function actorOf(ctx: Context, token: string | undefined, type: string | undefined, clientId: string, requestId: string): Promise<PresentedToken | undefined> {
  if (token === undefined) {
    // RFC 8693 §2.1: actor_token_type is REQUIRED when actor_token is present, else MUST NOT be.
    if (type !== undefined) throw new OAuthError('invalid_request', 'actor_token_type without actor_token');
    return undefined;
  }
  if (type === undefined) throw new OAuthError('invalid_request', 'actor_token_type is required with actor_token');
  // The actor is whoever presents: a token of ours issued to another client is not this client's to
  // use (checked before its liveness, as for the subject), nor a partner's that its profile does not
  // let this client present.
  const actor = await presented(ctx, 'actor_token', token, type, clientId, requestId, async (local) => {
    if (local.clientId !== clientId) throw new OAuthError('invalid_request', 'actor_token was issued to another client');
  });
  if (actor.origin === 'partner' && !actor.partner!.partner.clients?.includes(clientId)) throw new OAuthError('invalid_request', 'actor_token is a partner token this client may not present');
  return actor;
}

/**
 * Step 11a: what a token crossing to another region says of the person instead of their local id.
 * Undefined when it does not cross, or its subject is not a person of ours (a client's id, a
 * partner's subject: neither is this region's personal data).
 */
async function regionCrossing(ctx: Context, subject: PresentedToken, server: ResourceServer): Promise<{ sub: string; lei?: string } | undefined> {
  if (subject.origin !== 'local' || subject.subjectType !== 'User') return undefined;
  if (!crossesRegion(ctx.config.region, server.region)) return undefined;
  const leis = await personLeis(ctx, subject.subject);
  return { sub: regionSubject(ctx, server.region, subject.subject), ...(leis.length === 1 ? { lei: leis[0]! } : {}) };
}

/** Step 4: who may exchange a token of ours. */
async function requireExchangeRight(ctx: Context, subject: PresentedToken, clientId: string): Promise<void> {
  if (subject.origin === 'partner') {
    // A partner's bearer token is exchanged only by a client its profile names, or the one may_act names.
    if (subject.partner!.partner.clients?.includes(clientId) || subject.mayAct?.sub === clientId) return;
    throw new OAuthError('invalid_request', 'this client may not exchange the partner token (not in its profile clients, not named by may_act)', { detail: 'not_entitled' });
  }
  if (subject.clientId === clientId) return;
  if (subject.mayAct?.sub === clientId) return;
  const audience = subject.audience ? await ctx.resourceServers.get(subject.audience) : undefined;
  if (audience?.exchange_clients?.includes(clientId)) return;
  throw new OAuthError('invalid_request', 'this client may not exchange the subject_token (not its audience, not its holder, not named by may_act)', { detail: 'not_entitled' });
}

/**
 * Step 5a: the role minimum of the person a token of ours speaks for, checked against the acr it
 * carries (none: below any minimum). A partner's subject, or a client's own token, has no roles here.
 */
async function requireRoleMinimum(ctx: Context, subject: PresentedToken, clientId: string, requestId: string): Promise<void> {
  if (subject.origin !== 'local' || subject.subjectType !== 'User') return;
  const achieved = subject.authentication?.acr;
  const minimum = await roleMinimumUnmet(ctx, subject.subject, achieved);
  if (minimum === undefined) return;
  throw await insufficientUserAuthentication(
    ctx,
    { triggers: ['role_minimum'], acr: minimum },
    {
      subject: subject.subject,
      clientId,
      requestId,
      grantType: tokenExchangeGrantType,
      ...(achieved !== undefined ? { acrBefore: achieved } : {}),
      ...(subject.grantId !== undefined ? { grantId: subject.grantId } : {}),
    },
  );
}

/** Step 5: a sender-constrained token is exchanged only with proof of its key. */
function proveKeys(name: string, token: PresentedToken, keys: PresentedKeys): void {
  const jkt = token.cnf?.jkt;
  if (jkt !== undefined && keys.dpop?.jkt !== jkt) {
    throw new OAuthError('invalid_request', `${name} is DPoP-bound; send a DPoP proof of its key`);
  }
  const x5t = token.cnf?.['x5t#S256'];
  if (x5t !== undefined && keys.certificateThumbprint !== x5t) {
    throw new OAuthError('invalid_request', `${name} is certificate-bound; present its certificate`);
  }
}

/** The `act` member naming the actor of this hop (RFC 8693 §4.1): its subject, and its issuer when it is a partner's. */
function actorClaim(ctx: Context, actor: PresentedToken): Record<string, unknown> {
  return { sub: actor.subject, ...(actor.issuer !== ctx.config.issuer ? { iss: actor.issuer } : {}) };
}

function mayActAllows(mayAct: Record<string, unknown>, actor: Record<string, unknown>, ourIssuer: string): boolean {
  if (mayAct.sub !== actor.sub) return false;
  if (mayAct.iss === undefined) return actor.iss === undefined;
  return mayAct.iss === (actor.iss ?? ourIssuer);
}

/** The trust profile of the partner a chain started from: the presented partner token's, or the one `origin_iss` names. */
async function partnerProfileOf(ctx: Context, subject: PresentedToken): Promise<Partner | undefined> {
  if (subject.partner) return subject.partner.partner;
  if (subject.originIssuer === undefined) return undefined;
  const profile = await ctx.partners.byIssuer(subject.originIssuer);
  if (!profile) throw new OAuthError('invalid_request', 'subject_token comes from a partner that is no longer registered');
  // A partner suspended by a drift (src/federation/drift) is not trusted until re-approved: not for
  // its own tokens, nor for the chains that started with them (the drift may be a stolen key).
  if (await ctx.partners.suspension(profile.id)) {
    throw new OAuthError('invalid_request', `subject_token is not acceptable: its chain started at partner ${profile.id}, which is suspended until an operator re-approves it`, { detail: 'partner_suspended' });
  }
  return profile;
}

/** Step 6: exactly one resource server, named by `resource` and/or `audience`. */
async function target(ctx: Context, resources: string[], audiences: string[], profile: Partner | undefined): Promise<ResourceServer> {
  const named = [...new Set([...resources, ...audiences])];
  if (named.length !== 1) throw new OAuthError('invalid_target', named.length === 0 ? 'resource or audience is required' : 'name one target; each token has exactly one audience');
  const server = await ctx.resourceServers.get(named[0]!);
  if (!server) throw new OAuthError('invalid_target', 'the target is not a known resource server');
  if (profile && !profile.allowed_audiences.includes(server.identifier)) {
    throw new OAuthError('invalid_target', `partner ${profile.id} may not obtain tokens for this target`);
  }
  return server;
}

/**
 * Step 8a: a person's token goes only where the person sent it. Their consent grant names, per
 * audience, the scopes they allowed; a token exchanged from theirs may name only such an audience
 * and scopes — that another resource server offers a scope of the same name is no consent
 * (RFC 8693 §2.2.2 invalid_target; RFC 6749 §5.2 invalid_scope). A mandate the person acts under
 * is their firm's authority instead (step 8 checks it covers the scopes, for any audience).
 */
async function requireConsent(ctx: Context, grantId: string, audience: string, scopes: string[]): Promise<void> {
  const grant = await getGrant(ctx, grantId);
  if (!grant || grant.revokedAt !== null) throw new OAuthError('invalid_request', 'the subject_token\'s consent grant is no longer active');
  const consented = grant.resources[audience];
  if (!consented) throw new OAuthError('invalid_target', 'the person did not consent to tokens for this target');
  const beyond = scopes.find((s) => !consented.includes(s));
  if (beyond !== undefined) throw new OAuthError('invalid_scope', `the person did not consent to ${beyond} for this target`);
}

/** Step 8: the mandate is still in force at this hop and covers what it is asked for (`clearance.mandate_check`). */
function recheckMandate(ctx: Context, ref: { id: string; v: number }, scopes: string[], now: number) {
  return inSpan(
    spanNames.mandateCheck,
    async (span) => {
      // The reference comes from a verified token of ours: its id is Clearance's, not the caller's.
      span?.setAttributes({ [attributeNames.mandateId]: ref.id });
      const version = await mandateInForce(ctx, ref, new Date(now));
      if (!version) throw new OAuthError('invalid_request', `the subject_token's mandate ${ref.id} v${ref.v} is no longer in force`);
      const coverage = await versionCovers(ctx, version, { scopes, at: new Date(now) });
      if (!coverage.ok) throw new OAuthError('invalid_request', `the subject_token's mandate no longer covers this exchange: ${coverage.reason}`);
      return version;
    },
    { decides: true },
  );
}

/** Names of the actors of a chain, newest first, for the audit event. */
function actorChain(act: Record<string, unknown> | undefined): string[] {
  const names: string[] = [];
  for (let node = act; node && names.length < 32; node = node.act as Record<string, unknown> | undefined) {
    names.push(typeof node.iss === 'string' ? `${String(node.sub)} (${node.iss})` : String(node.sub));
  }
  return names;
}

/** What `token.exchanged` records beyond every issuance: the provenance chain of this hop. */
function exchangedDetails(subject: PresentedToken, actor: PresentedToken | undefined, subjectTokenType: string, actors: string[]): Record<string, unknown> {
  return {
    // The token of ours this one was exchanged from, so the chain can be rebuilt from the audit
    // log. A partner's token is no hop of ours: its jti (the partner's to choose) is `partner_jti`,
    // never a parent — else a partner could graft our hops into its chain (counterparty evidence).
    ...(subject.origin === 'partner' ? { parent_jti: null, partner_jti: subject.jti ?? null } : { parent_jti: subject.jti ?? null }),
    parent_issuer: subject.issuer,
    parent_audience: subject.audience ?? null,
    subject_token_type: subjectTokenType,
    ...(actor ? { actor_jti: actor.jti ?? null, actor_issuer: actor.issuer } : {}),
    act_chain: actors,
  };
}

/** RFC 8693 §2.2.2: a partner's subject token naming a trade of ours the partner is no party to is unacceptable (invalid_request). */
function txnNotShared(partnerId: string): OAuthError {
  return new OAuthError('invalid_request', `subject_token is not acceptable: its txn names a transaction here that is not shared with partner ${partnerId}`, { detail: 'txn_not_shared' });
}

/** Files an OAuth refusal under a verified token's trade (OAuthError.about), unless it already is. */
function fileUnder(error: unknown, about: OAuthError['about']): unknown {
  if (error instanceof OAuthError && error.about === undefined && about !== undefined) error.about = about;
  return error;
}
