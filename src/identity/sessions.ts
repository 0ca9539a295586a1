import { createHash, randomBytes } from 'node:crypto';
import type { Authentication, UpstreamAssurance } from '../authorization/contract.ts';
import type { Kysely, Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { rowsOf, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { cookieValues, serializeCookie } from './cookies.ts';
import type { RiskAssessment } from '../risk/assessment.ts';
import { loginSignals, readStoredRisk, storedRisk } from './stored-risk.ts';
import { withinSpan } from '../clock.ts';

/**
 * Browser sessions. The cookie holds 256 random bits; the database holds only their SHA-256, so
 * a copy of the sessions table cannot be replayed as cookies. A session ends at the first of: its
 * idle timeout without a request, its absolute lifetime, logout, a new login in the same browser
 * (the id rotates at every login, so an id planted before login is worthless after it), a password
 * change or a lock of the account.
 */

/**
 * The session cookie's base name (contract: src/authorization/contract.ts); the name a browser
 * holds is `cookieName(sessionCookieName, cookieScope(issuer))`: prefixed on https.
 */
export const sessionCookieName = 'clearance_session';

export interface SessionPolicy {
  /** A session unused this long ends. */
  idleTimeoutSeconds: number;
  /** A session ends this long after login, however active. */
  absoluteLifetimeSeconds: number;
}

export const defaultSessionPolicy: Readonly<SessionPolicy> = { idleTimeoutSeconds: 30 * 60, absoluteLifetimeSeconds: 12 * 3600 };

/** last_seen_at is written at most this often per session: one write a minute, not one a request. */
const touchIntervalMs = 60_000;
/** Ended and expired sessions are deleted this long after they ended (kept a day for support). */
const retainEndedMs = 24 * 3600_000;
const pruneEveryMs = 10 * 60_000;

type SessionContext = Pick<Context, 'storage' | 'clock' | 'config' | 'identity' | 'audit'>;

const cookieValuePattern = /^[A-Za-z0-9_-]{43}$/;

/** The stored id of a cookie value: SHA-256, base64url. */
export function sessionIdFor(cookieValue: string): string {
  return createHash('sha256').update(cookieValue, 'utf8').digest('base64url');
}

/** The session cookie values of a Cookie header that are well-formed (at most 4 are considered). */
function presentedIds(ctx: Pick<Context, 'config'>, cookieHeader: string | undefined): string[] {
  const values = cookieValues(cookieHeader, cookieName(sessionCookieName, cookieScope(ctx.config.issuer))).filter((v) => cookieValuePattern.test(v));
  return [...new Set(values)].slice(0, 4).map(sessionIdFor);
}

/**
 * The valid session of a request's Cookie header: not ended, not past its absolute expiry, used
 * within its idle timeout, and of an active (not locked) user. Reading it counts as activity.
 * Several session cookies can arrive (one planted with a narrower Path or from a sibling domain
 * sits beside ours); when more than one of them is a valid session, which person is present is
 * ambiguous, and the answer is none. With `flight`, the session is read with the flight's other
 * statements (then send the flight: the promise settles once it has landed).
 */
export async function readSession(ctx: SessionContext, cookieHeader: string | undefined, flight?: Flight): Promise<Authentication | undefined> {
  return (await readSessionOfPerson(ctx, cookieHeader, flight))?.authentication;
}

/** How a page names the person of a session. */
export interface SessionPerson {
  username: string;
  name: string | null;
}

/**
 * `readSession`, with the person's name and username for a page to show, from the same read
 * (the session is already joined with its user, whose status it checks).
 */
export async function readSessionOfPerson(
  ctx: SessionContext,
  cookieHeader: string | undefined,
  flight?: Flight,
): Promise<{ authentication: Authentication; person: SessionPerson } | undefined> {
  const ids = presentedIds(ctx, cookieHeader);
  if (ids.length === 0) return undefined;
  const now = ctx.clock.now();
  const rows = await rowsOf(
    ctx.storage.db
      .selectFrom('sessions')
      .innerJoin('users', 'users.id', 'sessions.user_id')
      .select(['sessions.id', 'sessions.user_id', 'sessions.last_seen_at', 'sessions.idle_timeout_ms', 'sessions.auth_time', 'sessions.acr', 'sessions.amr', 'sessions.risk', 'sessions.device_id', 'sessions.assurance_provider', 'sessions.assurance_source'])
      .select(['users.username', 'users.name'])
      .where('sessions.id', 'in', ids)
      .where('sessions.ended_at', 'is', null)
      .where('sessions.expires_at', '>', now)
      .where('users.status', '=', 'active'),
    flight,
  );
  const live = rows.filter((row) => Number(row.last_seen_at) + Number(row.idle_timeout_ms) > now);
  if (live.length !== 1) return undefined;
  const session = live[0]!;
  if (now - Number(session.last_seen_at) >= touchIntervalMs) {
    await ctx.storage.db.updateTable('sessions').set({ last_seen_at: now }).where('id', '=', session.id).where('ended_at', 'is', null).execute();
  }
  const loginRisk = loginSignals(readStoredRisk(session.risk));
  return {
    authentication: {
      userId: session.user_id,
      sessionId: session.id,
      authTime: Number(session.auth_time),
      acr: session.acr,
      amr: JSON.parse(session.amr) as string[],
      ...(loginRisk ? { loginRisk } : {}),
      ...(session.device_id ? { deviceId: session.device_id } : {}),
      ...(session.assurance_provider && session.assurance_source ? { assurance: { provider: session.assurance_provider, source: session.assurance_source } } : {}),
    },
    person: { username: session.username, name: session.name },
  };
}

export interface StartedSession {
  authentication: Authentication;
  /** The Set-Cookie header value that gives the browser the new session. */
  setCookie: string;
}

/**
 * Starts a session after a successful login. Every session whose cookie the browser presented is
 * ended first (reason `rotated`): the id rotates at each login, so a session id fixed before the
 * login (session fixation) never becomes an authenticated one. `within`: the flight of the login's
 * transaction (with the user's update, the interaction's record of the login and the audit
 * event), to which its statements are added; else one transaction of its own. `risk`: the sign-in's
 * risk assessment, kept with the session (`sessions.risk`) so what is issued from it carries its
 * signals (`Authentication.loginRisk`).
 */
export async function startSession(
  ctx: SessionContext,
  login: { userId: string; acr: string; amr: string[]; cookieHeader: string | undefined; risk?: RiskAssessment | undefined; deviceId?: string | undefined; assurance?: UpstreamAssurance | undefined; upstreamSid?: string | undefined; authTime?: number | undefined },
  within?: Flight,
): Promise<StartedSession> {
  const now = ctx.clock.now();
  const policy = ctx.identity.policy.session;
  const value = randomBytes(32).toString('base64url');
  const id = sessionIdFor(value);
  const previous = presentedIds(ctx, login.cookieHeader);
  // An upstream's sign-in happened when it says (never later than now); a local one, now.
  const authTime = Math.min(login.authTime ?? Number.POSITIVE_INFINITY, Math.floor(now / 1000));
  const db = ctx.storage.db;
  const flight = within ?? ctx.storage.flight();
  if (previous.length > 0) {
    void flight.run(db.updateTable('sessions').set({ ended_at: now, end_reason: 'rotated' }).where('id', 'in', previous).where('ended_at', 'is', null));
  }
  void flight.run(
    db
      .insertInto('sessions')
      .values({
        id,
        user_id: login.userId,
        created_at: now,
        last_seen_at: now,
        expires_at: now + policy.absoluteLifetimeSeconds * 1000,
        idle_timeout_ms: policy.idleTimeoutSeconds * 1000,
        auth_time: authTime,
        acr: login.acr,
        amr: JSON.stringify(login.amr),
        ended_at: null,
        end_reason: null,
        risk: storedRisk(login.risk),
        device_id: login.deviceId ?? null,
        assurance_provider: login.assurance?.provider ?? null,
        assurance_source: login.assurance?.source ?? null,
        upstream_sid: login.upstreamSid ?? null,
      }),
  );
  maybePrune(ctx, now, flight);
  if (!within) await flight.commit();
  const loginRisk = loginSignals(login.risk);
  return {
    authentication: { userId: login.userId, sessionId: id, authTime, acr: login.acr, amr: login.amr, ...(loginRisk ? { loginRisk } : {}), ...(login.deviceId ? { deviceId: login.deviceId } : {}), ...(login.assurance ? { assurance: login.assurance } : {}) },
    setCookie: sessionCookie(ctx, value),
  };
}

/**
 * Ends a session (RP-initiated logout, OIDC RP-Initiated Logout 1.0 §2): it is no longer valid on
 * any node from this moment. Recorded as `user.logged_out`; ending an unknown or already ended
 * session does nothing. Clear the browser's cookie with `clearSessionCookie`.
 */
export async function endSession(ctx: SessionContext, sessionId: string): Promise<void> {
  const now = ctx.clock.now();
  const session = await ctx.storage.db.selectFrom('sessions').select(['user_id']).where('id', '=', sessionId).where('ended_at', 'is', null).executeTakeFirst();
  if (!session) return;
  const ended = await ctx.storage.db
    .updateTable('sessions')
    .set({ ended_at: now, end_reason: 'logout' })
    .where('id', '=', sessionId)
    .where('ended_at', 'is', null)
    .executeTakeFirst();
  if (Number(ended.numUpdatedRows) === 0) return;
  await ctx.audit.record({ type: 'user.logged_out', actor: session.user_id, subject: session.user_id, details: { session: sessionId } });
}

/**
 * The statement that ends every live session of a person, saying why (`locked`, `password_changed`,
 * …): for a transaction (src/identity/lifecycle.ts) or a flight (src/identity/failed-login.ts).
 */
export function endSessionsOfStatement(db: Transaction<Database> | Kysely<Database>, userId: string, now: number, reason: string) {
  return db.updateTable('sessions').set({ ended_at: now, end_reason: reason }).where('user_id', '=', userId).where('ended_at', 'is', null);
}

/** A session that goes on under a new id (continueSessionIn). */
export interface ContinuedSession {
  sessionId: string;
  /** The Set-Cookie header value that gives the browser the new id. */
  setCookie: string;
}

/**
 * Continues session `sessionId` under a new id, inside the caller's transaction, after a step of
 * it ended every session of the person (src/identity/factors/sign-out-others.ts: removing a
 * factor signs the person out everywhere but here). The new session is the same sign-in — person,
 * `auth_time`, acr, amr, risk, device, upstream — with the same absolute expiry, so it is no
 * fresher and lives no longer than the one it replaces; the old id stays ended (`rotated`), so a
 * copy of its cookie is worthless too. Undefined when there is no such session or it has expired.
 */
export async function continueSessionIn(ctx: Pick<Context, 'config'>, trx: Transaction<Database>, sessionId: string, now: number): Promise<ContinuedSession | undefined> {
  const row = await trx.selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirst();
  if (!row || Number(row.expires_at) <= now) return undefined;
  const value = randomBytes(32).toString('base64url');
  const id = sessionIdFor(value);
  await trx.updateTable('sessions').set({ ended_at: now, end_reason: 'rotated' }).where('id', '=', sessionId).execute();
  await trx
    .insertInto('sessions')
    .values({ ...row, id, created_at: now, last_seen_at: now, ended_at: null, end_reason: null })
    .execute();
  return { sessionId: id, setCookie: sessionCookie(ctx, value) };
}

/** The Set-Cookie value carrying a session cookie value. */
function sessionCookie(ctx: Pick<Context, 'config'>, value: string): string {
  const scope = cookieScope(ctx.config.issuer);
  return serializeCookie(cookieName(sessionCookieName, scope), value, { ...scope, sameSite: 'Lax' });
}

/** A Set-Cookie value that deletes the session cookie (for logout). */
export function clearSessionCookie(ctx: Pick<Context, 'config'>): string {
  const scope = cookieScope(ctx.config.issuer);
  return serializeCookie(cookieName(sessionCookieName, scope), '', { ...scope, sameSite: 'Lax', maxAge: 0 });
}

/**
 * Path and Secure for Clearance's cookies: the issuer's path (so an issuer at
 * https://host/idp does not send its cookies to the rest of the host), and Secure unless the
 * issuer is plain http, which only development mode allows (browsers drop Secure cookies there).
 * The session, browser-binding and pending cookies are named by `cookieName` below, whose prefix
 * follows this scope.
 * SameSite=Lax, not Strict: the browser arrives from the client's site by a top-level GET
 * (the authorization redirect) and must bring the session with it.
 */
export function cookieScope(issuer: string): { path: string; secure: boolean } {
  const url = new URL(issuer);
  return { path: url.pathname.replace(/\/+$/, '') || '/', secure: url.protocol !== 'http:' };
}

/**
 * The name a cookie written with `scope` (its Path and Secure) is written, cleared and read under:
 * its base name with the RFC 6265bis §4.1.3 prefix the scope allows, so neither a sibling subdomain nor a
 * plain-http page of the host can plant or shadow it (cookie tossing):
 * - https issuer at the root (Path=/): `__Host-<base>` (the browser then insists on Secure,
 *   Path=/ and no Domain; serializeCookie never writes Domain);
 * - https issuer with a path (Path=/idp): `__Secure-<base>` (`__Host-` requires Path=/); a sibling
 *   subdomain could still set it, but only over https, and no http page can;
 * - http issuer (development only): the bare base name (browsers refuse prefixed cookies without
 *   Secure).
 * Reads use the same name, so a bare cookie on an https issuer (one planted, or left from before
 * the prefixes) is ignored.
 */
export function cookieName(base: string, scope: { path: string; secure: boolean }): string {
  if (!scope.secure) return base;
  return scope.path === '/' ? `__Host-${base}` : `__Secure-${base}`;
}

const lastPrune = new WeakMap<object, number>();

/**
 * Adds to `flight` the deletion of sessions that ended or expired more than a day ago; at most
 * once per 10 minutes per process.
 */
function maybePrune(ctx: SessionContext, now: number, flight: Flight): void {
  const last = lastPrune.get(ctx.storage) ?? -Infinity;
  if (withinSpan(now, last, pruneEveryMs)) return;
  lastPrune.set(ctx.storage, now);
  void flight.run(
    ctx.storage.db.deleteFrom('sessions').where((eb) => eb.or([eb('ended_at', '<', now - retainEndedMs), eb('expires_at', '<', now - retainEndedMs)])),
  );
}
