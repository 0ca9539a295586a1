import { createHmac, timingSafeEqual } from 'node:crypto';
import { authenticationKey } from '../../keys/master-key.ts';
import { createRemoteJWKSet, customFetch, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { endPersonAccess, lifecycleEvent } from '../../identity/lifecycle.ts';
import { asOidc, listProviders, providerSecret, type StoredProvider } from './providers.ts';
import type { IdentityProvider, OidcProvider } from './definition.ts';
import { configurationOf, guardedFetch, UpstreamError } from './oidc.ts';
import { upstreamSessionId } from './session-id.ts';

/**
 * Logout across the federation (docs/identity-brokering.md "Logout"):
 * - back-channel: the upstream's logout token (OpenID Connect Back-Channel Logout 1.0) ends the
 *   sessions it names and everything the person holds — the same revocation as an administrator's
 *   "sign out everywhere" (`user.signed_out_everywhere`, via `upstream-logout`);
 * - RP-initiated: signing out of Clearance from a session an upstream started sends the browser
 *   on to the upstream's end_session_endpoint, and back through `/broker/oidc/logged-out` to where
 *   the relying party asked to land.
 */

const backChannelEvent = 'http://schemas.openid.net/event/backchannel-logout';
/** Asymmetric algorithms only (RFC 8725 §3.1): a logout token is verified with the upstream's published keys. */
const algorithms = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];
/** Logout tokens older than this are refused (the spec leaves the window to the RP: minutes, not hours). */
const maxAgeSeconds = 300;
const keySets = new Map<string, { uri: string; set: ReturnType<typeof createRemoteJWKSet> }>();

export type LogoutOutcome = { ok: true; provider: string; sessionsEnded: number; people: number } | { ok: false; reason: string; provider?: string };

/**
 * Verifies a logout token (§2.6) and ends what it names: the upstream is the one whose issuer the
 * token's `iss` is; signature with its published keys; `aud` Clearance's client there; `iat` fresh;
 * `jti` once (the shared replay cache); the back-channel `events` member; `sub` or `sid`; no
 * `nonce`; `typ` `logout+jwt` when present (§2.4).
 */
export async function backChannelLogout(ctx: Context, token: string, requestId: string): Promise<LogoutOutcome> {
  let unverified: JWTPayload;
  try {
    unverified = decodeJwt(token);
  } catch {
    return { ok: false, reason: 'not a JWT' };
  }
  const stored = asOidc((await listProviders(ctx.storage.db)).find((p) => p.provider.kind === 'oidc' && p.provider.issuer === unverified.iss));
  if (!stored) return { ok: false, reason: 'no identity provider has this issuer' };
  const provider = stored.provider;
  let claims: JWTPayload;
  try {
    const keys = await keySetOf(ctx, stored);
    ({ payload: claims } = await jwtVerify(token, keys, {
      issuer: provider.issuer,
      audience: provider.client_id,
      algorithms,
      clockTolerance: 30,
      maxTokenAge: maxAgeSeconds,
      requiredClaims: ['iat', 'jti'],
    }));
    const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { typ?: string };
    if (header.typ !== undefined && header.typ.toLowerCase() !== 'logout+jwt' && header.typ.toLowerCase() !== 'application/logout+jwt') throw new Error(`typ ${header.typ} is not logout+jwt`);
  } catch (error) {
    return { ok: false, reason: `the logout token could not be verified: ${(error as Error).message}`.slice(0, 300), provider: provider.id };
  }
  const events = claims.events as Record<string, unknown> | undefined;
  if (typeof events !== 'object' || events === null || typeof events[backChannelEvent] !== 'object') return { ok: false, reason: 'events does not name a back-channel logout', provider: provider.id };
  if (claims.nonce !== undefined) return { ok: false, reason: 'a logout token carries no nonce (§2.4)', provider: provider.id };
  const sid = upstreamSessionId(claims.sid);
  const sub = typeof claims.sub === 'string' ? claims.sub : undefined;
  if (sid === undefined && sub === undefined) return { ok: false, reason: 'neither sub nor sid', provider: provider.id };
  if (!provider.enabled) return { ok: true, provider: provider.id, sessionsEnded: 0, people: 0 };
  if (!(await ctx.partners.replay.use(`bcl:${provider.id}:${String(claims.jti)}`.slice(0, 512), (Number(claims.iat) + maxAgeSeconds + 60) * 1000))) {
    return { ok: false, reason: 'the logout token was already used (jti)', provider: provider.id };
  }
  return endUpstreamPeople(ctx, provider, { ...(sid !== undefined ? { sid } : {}), ...(sub !== undefined ? { subject: sub } : {}) }, requestId);
}

/**
 * Ends everything the people an upstream's logout names hold — the same revocation as an
 * administrator's "sign out everywhere", audited as `user.signed_out_everywhere` via
 * `upstream-logout` with the provider as actor. For OIDC back-channel logout and SAML single
 * logout alike. Whom it names:
 * - a subject and no session id: the person that upstream identity is linked to (`user_links`),
 *   whether or not a Clearance session of theirs is still live — Back-Channel Logout 1.0 §2.4 (no
 *   `sid`: every session of the End-User), SAML 2.0 Core §3.7 (no SessionIndex: every session
 *   of the principal). Their refresh tokens outlive an ended session (idle, their own sign-out), and
 *   Back-Channel Logout §2.7 says those of a session being logged out SHOULD be revoked;
 * - a session id (with the subject or not): the people with a live session that upstream started
 *   under that id (and, with a subject, linked to it). One that ended here first has nothing left
 *   to end by its id: a refresh token does not record its session, so reaching its person would
 *   end all they hold — and an upstream echoes back the person's own sign-out here (RP-initiated,
 *   taken on to the upstream) with that session's id, which would turn signing out of one
 *   application into signing out of every one.
 * What a named person holds ends whole (refresh tokens with `offline_access` too, where §2.7 says
 * they normally SHOULD NOT be revoked): an upstream logout is the firm's word that the person's
 * sign-in there has ended, and Clearance does not keep access derived from it alive.
 */
export async function endUpstreamPeople(
  ctx: Pick<Context, 'storage' | 'clock' | 'audit'>,
  provider: Pick<IdentityProvider, 'id' | 'issuer'>,
  named: { sid?: string; subject?: string },
  requestId: string,
): Promise<{ ok: true; provider: string; sessionsEnded: number; people: number }> {
  const now = ctx.clock.now();
  return ctx.audit.recordWith(async (trx) => {
    const linked = (subject: string) => trx.selectFrom('user_links').select('user_id').where('issuer', '=', provider.issuer).where('subject', '=', subject);
    let userIds: string[];
    if (named.sid === undefined) {
      // Through the link, not a live session: an ended session leaves refresh tokens to revoke.
      userIds = named.subject === undefined ? [] : (await linked(named.subject).execute()).map((row) => row.user_id);
    } else {
      let ofSession = trx.selectFrom('sessions').select('sessions.user_id').distinct().where('sessions.assurance_provider', '=', provider.id).where('sessions.upstream_sid', '=', named.sid).where('sessions.ended_at', 'is', null);
      if (named.subject !== undefined) ofSession = ofSession.where('sessions.user_id', 'in', linked(named.subject));
      userIds = (await ofSession.execute()).map((row) => row.user_id);
    }
    const events: AuditEvent[] = [];
    let sessionsEnded = 0;
    for (const userId of userIds) {
      const { ended, events: more } = await endPersonAccess(trx, now, userId, 'signed_out_everywhere', `provider:${provider.id}`);
      sessionsEnded += ended.sessionsEnded;
      const event = lifecycleEvent('signed_out_everywhere', userId, `provider:${provider.id}`, ended, { requestId, via: 'upstream-logout' });
      event.details = { ...event.details, provider: provider.id, ...(named.sid !== undefined ? { upstream_sid: named.sid } : {}) };
      events.push(...more, event);
    }
    return { value: { ok: true as const, provider: provider.id, sessionsEnded, people: userIds.length }, events };
  });
}

async function keySetOf(ctx: Context, stored: StoredProvider<OidcProvider>): Promise<ReturnType<typeof createRemoteJWKSet>> {
  const config = await configurationOf(stored.provider, providerSecret(ctx.identity.factorKeys.master, stored), ctx.clock.now());
  const uri = config.serverMetadata().jwks_uri;
  if (!uri) throw new UpstreamError('discovery_failed', 'the upstream publishes no jwks_uri');
  const cached = keySets.get(stored.provider.id);
  if (cached?.uri === uri) return cached.set;
  const set = createRemoteJWKSet(new URL(uri), { [customFetch]: guardedFetch(stored.provider) as never, timeoutDuration: 5000 });
  keySets.set(stored.provider.id, { uri, set });
  return set;
}

/** Where the upstream sends the browser back after its own sign-out (register it there as a post-logout redirect URI). */
export function upstreamLoggedOutUri(issuer: string): string {
  return `${issuer}/broker/oidc/logged-out`;
}

const continuationTtlMs = 10 * 60_000;
/** A MAC key: it rotates with the master key (src/keys/master-key.ts authenticationKey). */
function continuationKey(masterKey: Buffer): Buffer {
  return authenticationKey(masterKey, 'clearance upstream-logout v1');
}

/**
 * The upstream's end_session_endpoint for a session it started (RP-Initiated Logout 1.0 §2), with
 * a `state` that carries where to land afterwards (the relying party's post-logout URI, already
 * checked against its registration) under an HMAC of the master key's, valid ten minutes; undefined
 * when the upstream has no end_session_endpoint or cannot be reached (the local sign-out stands).
 */
export async function upstreamEndSessionUrl(ctx: Context, stored: StoredProvider<OidcProvider>, landing: string | undefined): Promise<string | undefined> {
  try {
    const config = await configurationOf(stored.provider, providerSecret(ctx.identity.factorKeys.master, stored), ctx.clock.now());
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, { client_id: stored.provider.client_id, post_logout_redirect_uri: upstreamLoggedOutUri(ctx.config.issuer), state: continuationState(ctx, landing) }).href;
  } catch (error) {
    if (error instanceof UpstreamError) return undefined;
    throw error;
  }
}

/** A continuation: where to land after the upstream's own sign-out, under an HMAC of the master key's, ten minutes (an OIDC `state`, a SAML RelayState). */
export function continuationState(ctx: Pick<Context, 'identity' | 'clock'>, landing: string | undefined): string {
  const body = Buffer.from(JSON.stringify({ to: landing ?? null, exp: ctx.clock.now() + continuationTtlMs })).toString('base64url');
  const mac = createHmac('sha256', continuationKey(ctx.identity.factorKeys.master)).update(body).digest('base64url');
  return `${body}.${mac}`;
}

/** Where a continuation `state` says to land: the relying party's URI, null for Clearance's own page; undefined when it does not verify or has expired. */
export function continuationTarget(ctx: Pick<Context, 'identity' | 'clock'>, state: string | undefined): string | null | undefined {
  if (!state) return undefined;
  const [body, mac] = state.split('.');
  if (!body || !mac || state.length > 4096) return undefined;
  const expected = createHmac('sha256', continuationKey(ctx.identity.factorKeys.master)).update(body).digest();
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  const value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { to: string | null; exp: number };
  return value.exp > ctx.clock.now() ? value.to : undefined;
}
