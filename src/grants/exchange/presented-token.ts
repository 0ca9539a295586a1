import { decodeJwt } from 'jose';
import type { AuthorizationDetail } from '../../authorization/authorization-details.ts';
import { epochSeconds } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { partnerTokenKind, verifyPartnerToken, type VerifiedPartnerToken } from '../../federation/verify.ts';
import { verifyAccessToken } from '../../tokens/access-token.ts';
import type { AccessTokenClaims, Confirmation } from '../../tokens/claims.ts';
import { isTokenLive } from '../../tokens/liveness.ts';
import { tokenTypes } from '../../tokens/token-types.ts';

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
}

export type Presented = { ok: true; token: PresentedToken } | { ok: false; reason: string };

/**
 * Verifies a token sent as `subject_token` or `actor_token` with its declared type. The declared
 * type must match the token (RFC 8725 §3.12): an access token of ours is `access_token` (never
 * `id_token`), a partner's JWT is `jwt`, `access_token` or, where its profile allows it,
 * `id_token`. A token of ours of another kind (an ID token, a request object) is refused as
 * `access_token`: verification demands `typ` at+jwt.
 */
export async function verifyPresentedToken(ctx: Context, token: string, tokenType: string, clientId: string): Promise<Presented> {
  const issuer = unverifiedIssuer(token);
  if (issuer === undefined) return { ok: false, reason: 'not a JWT with an issuer' };
  if (issuer === ctx.config.issuer) {
    if (tokenType !== tokenTypes.accessToken) return { ok: false, reason: `a token of this server is an access token, not ${tokenType}` };
    const verified = await verifyAccessToken(ctx.keys, ctx.config.issuer, token, epochSeconds(ctx.clock));
    if (!verified.ok) return { ok: false, reason: `invalid or expired (${verified.reason})` };
    const claims = verified.claims;
    if (!(await isTokenLive(ctx, claims))) return { ok: false, reason: 'revoked, or its grant or mandate is no longer in force' };
    return { ok: true, token: fromLocal(claims) };
  }
  const kind = partnerTokenKind(tokenType);
  if (!kind) return { ok: false, reason: `token type ${tokenType} is not accepted` };
  const verified = await verifyPartnerToken(ctx, token, { kind, audiences: [ctx.config.issuer, `${ctx.config.issuer}/token`], clientId });
  if (!verified.ok) return { ok: false, reason: verified.reason };
  return { ok: true, token: fromPartner(verified.token) };
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
    jti: claims.jti,
    expiresAt: claims.exp,
    scopes: claims.scope ? claims.scope.split(' ') : [],
    audience: claims.aud,
    authorizationDetails: (claims.authorization_details as AuthorizationDetail[] | undefined) ?? [],
    ...(claims.act ? { act: claims.act } : {}),
    ...(isObject((claims as unknown as Record<string, unknown>).may_act) ? { mayAct: (claims as unknown as Record<string, unknown>).may_act as Record<string, unknown> } : {}),
    ...(claims.txn ? { txn: claims.txn } : {}),
    ...(claims.mandate ? { mandate: claims.mandate } : {}),
    ...(claims.cnf ? { cnf: claims.cnf } : {}),
  };
}

function fromPartner(verified: VerifiedPartnerToken): PresentedToken {
  const claims = verified.claims;
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : verified.partner.allowed_scopes;
  return {
    origin: 'partner',
    issuer: verified.partner.issuer,
    subject: verified.subject,
    ...(verified.jti ? { jti: verified.jti } : {}),
    expiresAt: verified.expiresAt,
    scopes,
    // A partner's authorization_details are not ours to vouch for (no profile bounds them): never carried.
    authorizationDetails: [],
    ...(isObject(claims.act) ? { act: claims.act } : {}),
    ...(isObject(claims.may_act) ? { mayAct: claims.may_act } : {}),
    ...(typeof claims.txn === 'string' ? { txn: claims.txn } : {}),
    ...(isObject(claims.cnf) ? { cnf: claims.cnf as Confirmation } : {}),
    partner: verified,
  };
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
