import { decodeJwt } from '../../jose/index.ts';
import type { AuthorizationDetail } from '../../authorization/authorization-details.ts';
import type { Context } from '../../context.ts';
import { partnerAudiences, partnerTokenKind, verifyPartnerToken, type VerifiedPartnerToken } from '../../federation/verify.ts';
import { containsJwt } from '../../audit/guard.ts';
import { readAccessToken, referenceTokenPrefix } from '../../tokens/reference-tokens.ts';
import type { AccessTokenClaims, AgentReference, Confirmation } from '../../tokens/claims.ts';
import { agentReferences } from '../../agents/authority.ts';
import { isTokenLive } from '../../tokens/liveness.ts';
import { tokenTypes } from '../../tokens/token-types.ts';
import type { PartnerOrigin } from '../../federation/subject.ts';
import { isTxn } from '../../transactions/txn.ts';

/**
 * A subject or actor token of a token exchange (RFC 8693 §2.1), verified: one of our own access
 * tokens (live: not revoked, its grant and mandate in force), or a partner's JWT accepted under
 * its trust profile (src/federation).
 */
export interface PresentedToken {
  origin: 'local' | 'partner';
  /** Who issued it: our issuer, or the partner's (kept visible in what is issued from it). */
  issuer: string;
  subject: string;
  /** A local subject's kind: a person (`User`) or a client (`Client`). Partner subjects: undefined. */
  subjectType?: 'User' | 'Client';
  /** A token of ours issued for a partner's subject: the partner's issuer, carried down the chain. */
  originIssuer?: string;
  /** The client it was issued to (local tokens). */
  clientId?: string;
  /** The consent grant a person's token was issued under (local tokens). */
  grantId?: string;
  /** The refresh family a person's token was issued with (local tokens: `refresh_family`). */
  refreshFamily?: string;
  jti?: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  /** Scopes it carries (local: `scope`; partner: `scope` when present, else the profile's allowed scopes). */
  scopes: string[];
  audience?: string;
  authorizationDetails: AuthorizationDetail[];
  act?: Record<string, unknown>;
  mayAct?: Record<string, unknown>;
  txn?: string;
  mandate?: { id: string; v: number };
  cnf?: Confirmation;
  /** A partner token's profile and mapped attributes. */
  partner?: VerifiedPartnerToken;
  /**
   * A person's authentication as our token carries it (RFC 9068 §2.2.1 acr, amr, auth_time):
   * carried down the exchange, so each hop's policies and guard see how the person signed in.
   */
  authentication?: { acr: string; amr: string[]; authTime: number };
  /** A break-glass token's activation (local tokens): carried down the exchange, so every hop dies with it. */
  breakGlassActivation?: string;
  /** Who vouched for the person's authentication, when not Clearance (`assurance_source`, src/federation/upstream): carried down the exchange. */
  assuranceSource?: string;
  /** A token of ours issued for a partner's subject: the local person and firm it was mapped to (src/federation/subject.ts). */
  partnerOrigin?: PartnerOrigin;
  /** The agents a token of ours stands on (its `agent`, its `agents`): carried down the exchange, so every hop dies with them. */
  agents?: AgentReference[];
}

/** `suspendedPartner`: the token's partner is suspended by a drift (src/federation/drift): refused (invalid_request at token exchange), recorded. */
/** `about`: a token of ours refused after its signature and the client's right held (revoked, say): its txn and subject, for the refusal's event. */
export type Presented =
  | { ok: true; token: PresentedToken }
  | { ok: false; reason: string; suspendedPartner?: { id: string; issuer: string }; about?: { txn?: string; subject: string } };

/**
 * Verifies a token sent as `subject_token` or `actor_token` with its declared type. The declared
 * type must match the token (RFC 8725 §3.12): an access token of ours is `access_token` (never
 * `id_token`), a partner's JWT is `jwt`, `access_token` or, where its profile allows it,
 * `id_token`. A token of ours of another kind (an ID token, a request object) is refused as
 * `access_token`: verification demands `typ` at+jwt. A reference token of ours (an opaque handle,
 * src/tokens/reference-tokens.ts) is an `access_token` too: its stored claims are read and then
 * treated exactly as a JWT's (the client's right to it, liveness, what it carries down the chain).
 */
export async function verifyPresentedToken(
  ctx: Context,
  token: string,
  tokenType: string,
  clientId: string,
  entitled?: (token: PresentedToken) => Promise<void>,
): Promise<Presented> {
  const reference = token.startsWith(referenceTokenPrefix);
  const issuer = reference ? ctx.config.issuer : unverifiedIssuer(token);
  if (issuer === undefined) return { ok: false, reason: 'not a JWT with an issuer' };
  if (issuer === ctx.config.issuer) {
    if (tokenType !== tokenTypes.accessToken) return { ok: false, reason: `a token of this server is an access token, not ${tokenType}` };
    const verified = await readAccessToken(ctx, token);
    if (!verified.ok) return { ok: false, reason: `invalid or expired (${verified.reason})` };
    const claims = verified.claims;
    const local = fromLocal(claims);
    // The right to use the token is checked before its liveness (issue 17 review): a client that
    // may not exchange it gets the same refusal whether it is live or revoked, so it learns nothing.
    if (entitled) await entitled(local);
    if (!(await isTokenLive(ctx, claims))) return { ok: false, reason: 'revoked, or its grant, mandate or person is no longer in force', about: aboutOf(local) };
    return { ok: true, token: local };
  }
  const kind = partnerTokenKind(tokenType);
  if (!kind) return { ok: false, reason: `token type ${tokenType} is not accepted` };
  // A generic JWT may be an RFC 7523 assertion: used once, whichever grant it is presented to.
  const verified = await verifyPartnerToken(ctx, token, { kind, audiences: partnerAudiences(ctx.config.issuer), clientId, singleUse: kind === 'jwt' });
  if (!verified.ok) {
    return { ok: false, reason: verified.reason, ...(verified.suspended && verified.partner ? { suspendedPartner: { id: verified.partner.id, issuer: verified.partner.issuer } } : {}) };
  }
  return fromPartner(verified.token);
}

/**
 * A partner's value that becomes part of our token and audit events: printable, at most 255
 * characters, and nothing shaped like a token (the audit log refuses those).
 */
export function isSafeClaimText(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= 255 && !/[\p{Cc}]/u.test(value) && !containsJwt(value);
}

/**
 * A partner's `act` (RFC 8693 §4.1) rebuilt as `{sub, iss, act?}` only, at most 8 deep, every
 * member safe, every actor named with the partner's issuer: an actor without `iss` is the
 * partner's own, and one with another issuer is refused — a partner vouches for its own actors
 * only, so it cannot put a third domain's (or ours) into a chain we then sign (docs/federation.md
 * "Identity chaining across domains"). `act` undefined when absent; `error` when malformed or foreign.
 */
export function partnerActorChain(value: unknown, issuer: string, depth = 0): { act?: Record<string, unknown> } | { error: string } {
  if (value === undefined) return {};
  if (!isObject(value) || depth >= 8 || !isSafeClaimText(value.sub) || (value.iss !== undefined && !isSafeClaimText(value.iss))) {
    return { error: 'its act claim is not a chain of {sub, iss} identifiers' };
  }
  if (value.iss !== undefined && value.iss !== issuer) return { error: 'its act claim names an actor of another issuer than the partner' };
  const inner = partnerActorChain(value.act, issuer, depth + 1);
  if ('error' in inner) return inner;
  return { act: { sub: value.sub, iss: issuer, ...(inner.act ? { act: inner.act } : {}) } };
}

function fromLocal(claims: AccessTokenClaims & { origin_iss?: unknown }): PresentedToken {
  const originIssuer = typeof claims.origin_iss === 'string' ? claims.origin_iss : undefined;
  return {
    origin: 'local',
    issuer: claims.iss,
    subject: claims.sub,
    // A person's tokens carry their consent grant; without one, the subject is a client (RFC 9068
    // §2.2), also down an exchange chain; a partner's subject (origin_iss) is in neither registry.
    ...(originIssuer === undefined ? { subjectType: claims.grant_id !== undefined ? ('User' as const) : ('Client' as const) } : { originIssuer }),
    clientId: claims.client_id,
    ...(claims.grant_id !== undefined ? { grantId: claims.grant_id } : {}),
    ...(typeof claims.refresh_family === 'string' ? { refreshFamily: claims.refresh_family } : {}),
    jti: claims.jti,
    expiresAt: claims.exp,
    scopes: claims.scope ? claims.scope.split(' ') : [],
    audience: claims.aud,
    authorizationDetails: (claims.authorization_details as AuthorizationDetail[] | undefined) ?? [],
    ...(claims.act ? { act: claims.act } : {}),
    ...(isObject((claims as unknown as Record<string, unknown>).may_act) ? { mayAct: (claims as unknown as Record<string, unknown>).may_act as Record<string, unknown> } : {}),
    ...(claims.txn ? { txn: claims.txn } : {}),
    ...(claims.mandate ? { mandate: claims.mandate } : {}),
    ...(typeof claims.acr === 'string' && typeof claims.auth_time === 'number' && Array.isArray(claims.amr)
      ? { authentication: { acr: claims.acr, amr: claims.amr.filter((m): m is string => typeof m === 'string'), authTime: claims.auth_time } }
      : {}),
    ...(claims.cnf ? { cnf: claims.cnf } : {}),
    ...(typeof claims.break_glass_activation === 'string' ? { breakGlassActivation: claims.break_glass_activation } : {}),
    ...(typeof claims.assurance_source === 'string' ? { assuranceSource: claims.assurance_source } : {}),
    ...(claims.agent !== undefined || claims.agents !== undefined ? { agents: agentReferences([claims]) } : {}),
    ...(originIssuer !== undefined && (claims.origin_person !== undefined || claims.origin_lei !== undefined)
      ? { partnerOrigin: { ...(claims.origin_person !== undefined ? { person: claims.origin_person } : {}), ...(claims.origin_lei !== undefined ? { lei: claims.origin_lei } : {}) } }
      : {}),
  };
}

function fromPartner(verified: VerifiedPartnerToken): Presented {
  const claims = verified.claims;
  if (!isSafeClaimText(verified.subject)) return { ok: false, reason: 'its sub is not a printable identifier of at most 255 characters' };
  if (verified.jti !== undefined && !isSafeClaimText(verified.jti)) return { ok: false, reason: 'its jti is not a printable identifier of at most 255 characters' };
  const chain = partnerActorChain(claims.act, verified.partner.issuer);
  if ('error' in chain) return { ok: false, reason: chain.error };
  const act = chain.act;
  // A claim that narrows what the token allows must be well-formed: read as absent, a malformed
  // `scope` would become the profile's every scope, a malformed `may_act` would let any client act.
  if (claims.scope !== undefined && typeof claims.scope !== 'string') return { ok: false, reason: 'its scope claim is not a string' };
  if (claims.may_act !== undefined && !(isObject(claims.may_act) && isSafeClaimText(claims.may_act.sub))) return { ok: false, reason: 'its may_act claim is not an object naming a sub' };
  // Only the two confirmation methods Clearance can check; anything else would pass as a bearer token.
  const cnf = claims.cnf;
  if (cnf !== undefined && !(isObject(cnf) && Object.keys(cnf).length > 0 && Object.entries(cnf).every(([k, v]) => (k === 'jkt' || k === 'x5t#S256') && typeof v === 'string'))) {
    return { ok: false, reason: 'its cnf is not a jkt or x5t#S256 confirmation' };
  }
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : verified.partner.allowed_scopes;
  const token: PresentedToken = {
    origin: 'partner',
    issuer: verified.partner.issuer,
    subject: verified.subject,
    ...(verified.jti ? { jti: verified.jti } : {}),
    expiresAt: verified.expiresAt,
    scopes,
    // A partner's authorization_details are not ours to vouch for (no profile bounds them): never carried.
    authorizationDetails: [],
    ...(act ? { act } : {}),
    ...(isObject(claims.may_act) ? { mayAct: claims.may_act } : {}),
    // Only a well-formed txn, and only as the partner's claim: token exchange takes it if the
    // partner shares it (src/transactions/partner-txn.ts), else refuses the token.
    ...(isTxn(claims.txn) ? { txn: claims.txn } : {}),
    ...(cnf !== undefined ? { cnf: cnf as Confirmation } : {}),
    partner: verified,
  };
  return { ok: true, token };
}

/** The `iss` of a compact JWT, unverified: only to choose who verifies it. */
function unverifiedIssuer(token: string): string | undefined {
  if (token.length > 16 * 1024 || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) return undefined;
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What a refusal's event may name of a verified token: its trade's txn and its subject. */
export function aboutOf(token: PresentedToken): { txn?: string; subject: string } {
  return { subject: token.subject, ...(token.txn !== undefined ? { txn: token.txn } : {}) };
}
