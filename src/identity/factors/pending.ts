import { createHash, randomBytes } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Context } from '../../context.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';
import type { FailureStatements } from '../failed-login.ts';
import type { Database } from '../../storage/schema.ts';
import { cookieValues, serializeCookie } from '../cookies.ts';
import { cookieName, cookieScope } from '../sessions.ts';
import type { StoredRecoveryCode } from './recovery-codes.ts';
import type { TotpRow } from './totp.ts';
import type { RiskAssessment } from '../../risk/assessment.ts';
import { readStoredRisk, storedRisk } from '../stored-risk.ts';
import { withinSpan } from '../../clock.ts';

/**
 * The state between a correct password and a second factor during a sign-in ("pending sign-in").
 * It is not a session: no session cookie exists until both factors pass, nothing else accepts it,
 * and it proves only that this person's password was entered in this browser for this
 * authorization request a moment ago. It is
 * - bound to this browser: a cookie of 256 random bits (only its SHA-256 is stored), HttpOnly,
 *   SameSite=Strict — and to this interaction, which is itself bound to the browser that started
 *   it (src/authorization/interactions.ts);
 * - made only by a verified password (src/identity/login.ts verifyLogin, in the transaction that
 *   audits it), and names the person whose password it was: the second factor is checked against
 *   that person's authenticator, never one the form names; it keeps the sign-in's risk assessment,
 *   made at the password, for the completed sign-in to record and keep with its session;
 * - short-lived (5 minutes, never beyond its interaction), single-use (the sign-in it completes
 *   ends it by a conditional update, in the same transaction as the new session), and ended after
 *   `maxPendingFailures` wrong second factors (the password must then be entered again; each wrong
 *   factor also counts as a failed login: throttle and lockout);
 * - ended with the person's other sign-ins when the account is locked, disabled, deleted, its
 *   password reset or signed out everywhere (src/identity/lifecycle.ts).
 */

/** The pending cookie's base name; a browser holds it as `cookieName(pendingCookieName, cookieScope(issuer))` (prefixed on https). */
export const pendingCookieName = 'clearance_pending';
/** How long a person has to enter the second factor after the password. */
export const pendingTtlMs = 5 * 60_000;
/** Wrong second factors after which the state ends and the password is asked again. */
export const maxPendingFailures = 5;

const cookieValuePattern = /^[A-Za-z0-9_-]{43}$/;
/** Ended and expired states are deleted this long after they expired. */
const retainMs = 3600_000;
const pruneEveryMs = 10 * 60_000;

function pendingIdFor(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

/** The well-formed pending cookie values of a Cookie header (at most 4), as stored ids. */
function presentedIds(ctx: Pick<Context, 'config'>, cookieHeader: string | undefined): string[] {
  const values = cookieValues(cookieHeader, cookieName(pendingCookieName, cookieScope(ctx.config.issuer))).filter((v) => cookieValuePattern.test(v));
  return [...new Set(values)].slice(0, 4).map(pendingIdFor);
}

function pendingCookie(ctx: Pick<Context, 'config'>, value: string, maxAgeSeconds: number): string {
  // Strict: it is only ever needed on Clearance's own pages, reached from Clearance's own form.
  const scope = cookieScope(ctx.config.issuer);
  return serializeCookie(cookieName(pendingCookieName, scope), value, { ...scope, sameSite: 'Strict', maxAge: maxAgeSeconds });
}

/** The Set-Cookie value that deletes the pending cookie (after the sign-in completed or ended). */
export function clearPendingCookie(ctx: Pick<Context, 'config'>): string {
  return pendingCookie(ctx, '', 0);
}

/**
 * Adds to `flight` (the password step's transaction) the statements that open a pending sign-in
 * for `userId` on `interaction`, ending the ones this browser presented; returns the Set-Cookie
 * that gives the browser its cookie.
 */
export function startPendingSignIn(
  ctx: Pick<Context, 'storage' | 'clock' | 'config'>,
  flight: Flight,
  start: { userId: string; interaction: { id: string; expiresAt: number }; cookieHeader: string | undefined; risk?: RiskAssessment | undefined },
): { setCookie: string } {
  const now = ctx.clock.now();
  const value = randomBytes(32).toString('base64url');
  const expiresAt = Math.min(now + pendingTtlMs, start.interaction.expiresAt * 1000);
  const db = ctx.storage.db;
  const previous = presentedIds(ctx, start.cookieHeader);
  if (previous.length > 0) void flight.run(db.updateTable('pending_sign_ins').set({ ended_at: now }).where('id', 'in', previous).where('ended_at', 'is', null));
  void flight.run(
    db.insertInto('pending_sign_ins').values({
      id: pendingIdFor(value),
      user_id: start.userId,
      interaction_id: start.interaction.id,
      created_at: now,
      expires_at: expiresAt,
      failures: 0,
      ended_at: null,
      risk: storedRisk(start.risk),
    }),
  );
  maybePrune(ctx, now, flight);
  return { setCookie: pendingCookie(ctx, value, Math.ceil((expiresAt - now) / 1000)) };
}

/** An open pending sign-in, with what the second step needs of its person, read together. */
export interface PendingSignIn {
  id: string;
  interactionId: string;
  failures: number;
  expiresAt: number;
  /** The person whose password was verified: their whole row (status, roles, counters). */
  user: Database['users'];
  /** Their confirmed authenticator, if any. */
  totp: TotpRow | undefined;
  /** Their recovery codes (digests). */
  recoveryCodes: StoredRecoveryCode[];
  /** The sign-in's risk assessment, made when the password was verified. */
  risk?: RiskAssessment;
}

/**
 * The open pending sign-in of this browser for this interaction: not ended, not expired, and the
 * only one (several valid ones presented: ambiguous, none). With `flight`, read with the
 * request's other reads (the promise settles once the flight was sent): the state, its person,
 * their authenticator and recovery codes in one round trip.
 */
export async function readPendingSignIn(
  ctx: Pick<Context, 'storage' | 'clock' | 'config'>,
  cookieHeader: string | undefined,
  interactionId: string,
  flight?: Flight,
): Promise<PendingSignIn | undefined> {
  const ids = presentedIds(ctx, cookieHeader);
  if (ids.length === 0) return undefined;
  const now = ctx.clock.now();
  const db = ctx.storage.db;
  const open = (qb: Kysely<Database>) =>
    qb
      .selectFrom('pending_sign_ins')
      .where('pending_sign_ins.id', 'in', ids)
      .where('pending_sign_ins.ended_at', 'is', null)
      .where('pending_sign_ins.expires_at', '>', now)
      .where('pending_sign_ins.interaction_id', '=', interactionId);
  const states = rowsOf(
    open(db)
      .innerJoin('users', 'users.id', 'pending_sign_ins.user_id')
      .selectAll('users')
      .select(['pending_sign_ins.id as pending_id', 'pending_sign_ins.failures as pending_failures', 'pending_sign_ins.expires_at as pending_expires_at', 'pending_sign_ins.risk as pending_risk']),
    flight,
  );
  const totp = rowsOf(open(db).innerJoin('totp_factors', 'totp_factors.user_id', 'pending_sign_ins.user_id').selectAll('totp_factors').where('totp_factors.confirmed_at', 'is not', null), flight);
  const codes = rowsOf(
    open(db).innerJoin('recovery_codes', 'recovery_codes.user_id', 'pending_sign_ins.user_id').select(['recovery_codes.user_id', 'recovery_codes.digest', 'recovery_codes.used_at']),
    flight,
  );
  const [stateRows, totpRows, codeRows] = await Promise.all([states, totp, codes]);
  if (stateRows.length !== 1) return undefined;
  const { pending_id, pending_failures, pending_expires_at, pending_risk, ...user } = stateRows[0]!;
  const risk = readStoredRisk(pending_risk);
  return {
    ...(risk ? { risk } : {}),
    id: pending_id,
    interactionId,
    failures: Number(pending_failures),
    expiresAt: Number(pending_expires_at),
    user,
    totp: totpRows.find((row) => row.user_id === user.id),
    recoveryCodes: codeRows.filter((row) => row.user_id === user.id).map((row) => ({ digest: row.digest, usedAt: row.used_at === null ? null : Number(row.used_at) })),
  };
}

/**
 * The statement that uses the state up when its sign-in completes: only while it is open. Zero
 * rows changed: it was used, ended or expired meanwhile (the sign-in must not complete).
 */
export function endPendingSignIn(ctx: Pick<Context, 'storage'>, id: string, now: number) {
  return ctx.storage.db.updateTable('pending_sign_ins').set({ ended_at: now }).where('id', '=', id).where('ended_at', 'is', null).where('expires_at', '>', now);
}

/**
 * Counts a wrong second factor against the state, in the failure's transaction
 * (src/identity/failed-login.ts); the `maxPendingFailures`-th ends it. Resolves, once the
 * statement ran, true while the state stays open.
 */
export function countPendingFailure(ctx: Pick<Context, 'storage' | 'clock'>, statements: FailureStatements, id: string): Promise<boolean> {
  const now = ctx.clock.now();
  const counted = statements.run(
    ctx.storage.db
      .updateTable('pending_sign_ins')
      // The right-hand `failures` is the count before this update, in SQLite and PostgreSQL alike;
      // `else ended_at` (null here) gives PostgreSQL the parameter's type.
      .set((eb) => ({ failures: eb('failures', '+', 1), ended_at: sql<number | null>`case when ${eb.ref('failures')} + 1 >= ${maxPendingFailures} then ${now} else ${eb.ref('ended_at')} end` }))
      .where('id', '=', id)
      .where('ended_at', 'is', null)
      .returning(['failures']),
  );
  return counted.then(({ rows }) => rows.length > 0 && Number(rows[0]!.failures) < maxPendingFailures);
}

/** Ends every open pending sign-in of a person (their account was locked, reset, deleted…). */
export async function endPendingSignInsOf(trx: Transaction<Database> | Kysely<Database>, userId: string, now: number): Promise<number> {
  const ended = await endPendingSignInsStatement(trx, userId, now).executeTakeFirst();
  return Number(ended.numUpdatedRows);
}

/** The statement of endPendingSignInsOf, for a flight. */
export function endPendingSignInsStatement(db: Transaction<Database> | Kysely<Database>, userId: string, now: number) {
  return db.updateTable('pending_sign_ins').set({ ended_at: now }).where('user_id', '=', userId).where('ended_at', 'is', null);
}

const lastPrune = new WeakMap<object, number>();

/** Adds to `flight` the deletion of states that expired over an hour ago; at most every 10 minutes per process. */
function maybePrune(ctx: Pick<Context, 'storage'>, now: number, flight: Flight): void {
  const last = lastPrune.get(ctx.storage) ?? -Infinity;
  if (withinSpan(now, last, pruneEveryMs)) return;
  lastPrune.set(ctx.storage, now);
  void flight.run(ctx.storage.db.deleteFrom('pending_sign_ins').where('expires_at', '<', now - retainMs));
}
