import { randomUUID } from 'node:crypto';
import { generateSecret, generateURI, verify } from 'otplib';
import type { Context } from '../../context.ts';
import { open, seal, SealedBoxError } from '../../keys/sealed-box.ts';
import { masterKeyId, opensKeyId, sealingKeyId } from '../../keys/keyring.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';
import type { Database } from '../../storage/schema.ts';
import type { FactorKeys } from './keys.ts';

/**
 * TOTP authenticators (RFC 6238) with otplib: the parameters every authenticator app understands
 * (HMAC-SHA-1, 6 digits, 30-second steps: otplib's defaults and Google Authenticator's), a
 * 160-bit secret (RFC 4226 §4 R6 recommends it), sealed at rest with the master key like private
 * keys are (src/keys/sealed-box.ts), bound to its row and person.
 *
 * A code is accepted for the current time step or one step either side (RFC 6238 §5.2: at most
 * one step of transmission delay is recommended; one step ahead forgives a phone's clock running
 * fast), and each time step once: the step of an accepted code is recorded by a conditional update
 * (`last_used_step` < step), so the same code — or an older one — is refused afterwards on every
 * node (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt of the OTP after the
 * successful validation has been issued for the first OTP").
 */

/** The time step, in seconds (RFC 6238 §4.1 X, the default 30). */
export const totpPeriodSeconds = 30;
/** Seconds either side of now whose step's code is accepted (one step). */
const toleranceSeconds = totpPeriodSeconds;
/** RFC 4226 §4 R6: 160-bit shared secrets. */
const secretBytes = 20;

/** A person's authenticator as the account page shows it (never its secret). */
export interface TotpFactor {
  /** The credential id audit events name. */
  id: string;
  userId: string;
  createdAt: number;
  /** Null while the person has not confirmed it with a first code (not usable to sign in). */
  confirmedAt: number | null;
  lastUsedAt: number | null;
}

export type TotpRow = Database['totp_factors'];

/** What checking a code against a secret found. */
export type TotpCheck =
  | { valid: true; /** The RFC 6238 time step the code belongs to. */ step: number }
  | { valid: false; reason: 'wrong_code' | 'replayed' };

/** A code as people type it: 6 digits, spaces allowed (apps show "123 456"). */
export function normalizeTotpCode(input: string): string | undefined {
  const code = input.replace(/\s+/g, '');
  return /^\d{6}$/.test(code) ? code : undefined;
}

/**
 * Checks a code against a base32 secret at `nowMs`: valid for one step either side of now, and
 * only for a step after `lastUsedStep` (a code of a step already used, or an earlier one, is
 * `replayed`). otplib compares in constant time.
 */
export async function checkTotpCode(secret: string, input: string, nowMs: number, lastUsedStep: number | null): Promise<TotpCheck> {
  const token = normalizeTotpCode(input);
  if (!token) return { valid: false, reason: 'wrong_code' };
  const result = await verify({ secret, token, epoch: Math.floor(nowMs / 1000), period: totpPeriodSeconds, epochTolerance: toleranceSeconds });
  // (otplib's functional verify answers for HOTP too; a TOTP answer carries its time step.)
  if (!result.valid || !('timeStep' in result)) return { valid: false, reason: 'wrong_code' };
  // RFC 6238 §5.2: each step's code once, and never one older than the last accepted.
  if (lastUsedStep !== null && result.timeStep <= lastUsedStep) return { valid: false, reason: 'replayed' };
  return { valid: true, step: result.timeStep };
}

/** The otpauth:// URI an authenticator app reads from the QR code (Key Uri Format). */
export function totpUri(issuer: string, username: string, secret: string): string {
  return generateURI({ issuer: `Clearance (${new URL(issuer).host})`, label: username, secret, period: totpPeriodSeconds });
}

/** The associated data that binds a sealed secret to its row and person. */
function binding(id: string, userId: string): string {
  return `totp_factors:${id}:${userId}`;
}

/**
 * The associated data of a pending (unconfirmed) secret: its row, person, and the session that
 * began the enrolment (its id: the SHA-256 of the session cookie, src/identity/sessions.ts). Only
 * that session opens it — to show it or to confirm it — so another session of the person (a
 * password-only one, say) can neither read the secret of an enrolment the person started nor
 * confirm it. Confirming seals it again bound to its row and person only.
 */
function pendingBinding(id: string, userId: string, sessionId: string): string {
  return `totp_factors:${id}:${userId}:pending:${sessionId}`;
}

export class TotpSecretError extends Error {
  override name = 'TotpSecretError';
}

/** Opens a confirmed row's secret; fails closed (throws) under another master key or on another row. */
export function openTotpSecret(keys: FactorKeys, row: Pick<TotpRow, 'id' | 'user_id' | 'secret' | 'master_key_id'>): string {
  requireMasterKey(keys, row);
  return open(keys.master, row.secret, binding(row.id, row.user_id)).toString('utf8');
}

/**
 * Opens a pending row's secret for the session that began the enrolment; undefined for any other
 * session (or a row whose sealed value is not a pending one of this session's: fail closed).
 * Throws under another master key, as openTotpSecret does.
 */
export function openPendingTotpSecret(keys: FactorKeys, row: Pick<TotpRow, 'id' | 'user_id' | 'secret' | 'master_key_id'>, sessionId: string): string | undefined {
  requireMasterKey(keys, row);
  try {
    return open(keys.master, row.secret, pendingBinding(row.id, row.user_id, sessionId)).toString('utf8');
  } catch (error) {
    if (error instanceof SealedBoxError) return undefined;
    throw error;
  }
}

/** The secret sealed again for a confirmed row: bound to its row and person, no longer to a session. */
export function sealConfirmedTotpSecret(keys: FactorKeys, row: Pick<TotpRow, 'id' | 'user_id'>, secret: string): string {
  return seal(keys.master, Buffer.from(secret, 'utf8'), binding(row.id, row.user_id));
}

function requireMasterKey(keys: FactorKeys, row: Pick<TotpRow, 'id' | 'master_key_id'>): void {
  if (!opensKeyId(keys.master, row.master_key_id)) {
    throw new TotpSecretError(`TOTP factor ${row.id} was sealed with master key ${row.master_key_id}, not the configured ${masterKeyId(keys.master)}`);
  }
}

function factorFromRow(row: TotpRow): TotpFactor {
  return {
    id: row.id,
    userId: row.user_id,
    createdAt: Number(row.created_at),
    confirmedAt: row.confirmed_at === null ? null : Number(row.confirmed_at),
    lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
  };
}

/** The person's authenticator row (pending or confirmed), with the flight's reads when given. */
export async function totpRowOf(ctx: Pick<Context, 'storage'>, userId: string, flight?: Flight): Promise<TotpRow | undefined> {
  const [row] = await rowsOf(ctx.storage.db.selectFrom('totp_factors').selectAll().where('user_id', '=', userId), flight);
  return row;
}

/** The person's authenticator, pending or confirmed (never its secret). */
export async function totpFactorOf(ctx: Pick<Context, 'storage'>, userId: string, flight?: Flight): Promise<TotpFactor | undefined> {
  const row = await totpRowOf(ctx, userId, flight);
  return row && factorFromRow(row);
}

/** What the enrolment page shows: the secret in text and the URI of its QR code. */
export interface TotpEnrolment {
  factor: TotpFactor;
  secret: string;
  uri: string;
}

/**
 * Starts enrolling an authenticator from the session `sessionId`: a new secret, sealed bound to
 * that session too (pendingBinding), stored unconfirmed (replacing any unconfirmed one, whichever
 * session began it). `already_enrolled` when the person has a confirmed one: it must be removed first.
 */
export async function beginTotpEnrolment(
  ctx: Pick<Context, 'storage' | 'clock' | 'identity'>,
  userId: string,
  sessionId: string,
): Promise<{ ok: true; id: string } | { ok: false; reason: 'already_enrolled' }> {
  const id = randomUUID();
  const secret = generateSecret({ length: secretBytes });
  const keys = ctx.identity.factorKeys;
  const now = ctx.clock.now();
  return ctx.storage.db.transaction().execute(async (trx) => {
    await trx.deleteFrom('totp_factors').where('user_id', '=', userId).where('confirmed_at', 'is', null).execute();
    const inserted = await trx
      .insertInto('totp_factors')
      .values({
        id,
        user_id: userId,
        secret: seal(keys.master, Buffer.from(secret, 'utf8'), pendingBinding(id, userId, sessionId)),
        master_key_id: sealingKeyId(keys.master),
        created_at: now,
        confirmed_at: null,
        last_used_step: null,
        last_used_at: null,
      })
      // A confirmed one holds the person's one row: nothing is inserted.
      .onConflict((oc) => oc.column('user_id').doNothing())
      .executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1 ? { ok: true as const, id } : { ok: false as const, reason: 'already_enrolled' as const };
  });
}

/**
 * The unconfirmed authenticator of the person, with its secret opened, for the enrolment page of
 * the session that began it; undefined for any other session.
 */
export async function pendingTotpEnrolment(
  ctx: Pick<Context, 'storage' | 'identity' | 'config'>,
  userId: string,
  username: string,
  sessionId: string,
): Promise<TotpEnrolment | undefined> {
  const row = await totpRowOf(ctx, userId);
  if (!row || row.confirmed_at !== null) return undefined;
  const secret = openPendingTotpSecret(ctx.identity.factorKeys, row, sessionId);
  if (secret === undefined) return undefined;
  return { factor: factorFromRow(row), secret, uri: totpUri(ctx.config.issuer, username, secret) };
}

/**
 * Whether the person's pending enrolment, if any, was begun by this session (the account page
 * offers to continue it only there). False, not an error, for one sealed under another master key.
 */
export async function pendingEnrolmentIsFor(ctx: Pick<Context, 'storage' | 'identity'>, userId: string, sessionId: string): Promise<boolean> {
  const row = await totpRowOf(ctx, userId);
  if (!row || row.confirmed_at !== null || !opensKeyId(ctx.identity.factorKeys.master, row.master_key_id)) return false;
  return openPendingTotpSecret(ctx.identity.factorKeys, row, sessionId) !== undefined;
}

/**
 * The statement that records an accepted code's step: only if no code of this step or a later one
 * was accepted before (and, for sign-in, only on a confirmed authenticator). Zero rows changed:
 * another request accepted this step first — a replay. Confirming a pending one (`{ resealed }`)
 * also stores its secret sealed again for a confirmed row (sealConfirmedTotpSecret).
 */
export function recordTotpStep(ctx: Pick<Context, 'storage'>, factorId: string, step: number, now: number, use: 'sign_in' | { resealed: string }) {
  const confirming = use === 'sign_in' ? undefined : use;
  return ctx.storage.db
    .updateTable('totp_factors')
    .set({ last_used_step: step, last_used_at: now, ...(confirming ? { confirmed_at: now, secret: confirming.resealed } : {}) })
    .where('id', '=', factorId)
    .where('confirmed_at', confirming ? 'is' : 'is not', null)
    .where((eb) => eb.or([eb('last_used_step', 'is', null), eb('last_used_step', '<', step)]));
}
