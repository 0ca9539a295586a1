import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from '../../context.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';
import type { FactorKeys } from './keys.ts';

/**
 * One-time recovery codes: what a person types instead of their authenticator's code when they
 * have lost it (AMENDMENTS "Strong authentication"). Ten at a time, shown once, stored as digests,
 * each accepted once (a conditional update: two nodes cannot both accept the same code).
 *
 * A code replaces the second factor only: a session it makes is at most `urn:clearance:acr:mfa`
 * (never phishing-resistant), with `amr` ['pwd', 'mfa', 'urn:clearance:amr:recovery-code'] — not
 * `otp`, so nobody mistakes it for an authenticator (src/identity/acr.ts). A person holding a
 * privileged role (src/identity/roles.ts) gets none and cannot use any.
 *
 * Why a fast keyed hash and not Argon2id: a code carries 80 random bits (16 characters of a
 * 32-letter alphabet), not a human-chosen secret, so there is no dictionary to walk; the digest is
 * HMAC-SHA256 under a key derived from the master key, which is not in the database, so a copy of
 * the table alone gives nothing to guess against offline (NIST SP 800-63B §5.1.2.2 asks look-up
 * secrets be stored resistant to offline attack); online guesses are throttled and counted like
 * wrong passwords. A slow hash would add a second of work per attempt for no gain, and ten of
 * them at enrolment.
 */

/** How many codes a person gets at a time. */
export const recoveryCodeCount = 10;

/** RFC 4648 base32 letters, lowercase: no 0/1/8/9, so O/0 and I/1 cannot be confused. */
const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
const codeLength = 16;
const codePattern = /^[a-z2-7]{16}$/;

/** A new code, as shown: `abcd-efgh-ijkl-mnop` (80 random bits). */
export function newRecoveryCode(): string {
  const bytes = randomBytes(codeLength);
  let code = '';
  // 256 is a multiple of 32: every letter is equally likely.
  for (const byte of bytes) code += alphabet[byte % 32];
  return code.match(/.{4}/g)!.join('-');
}

/** A code as typed: spaces and dashes dropped, case folded; undefined when it cannot be one. */
export function normalizeRecoveryCode(input: string): string | undefined {
  const code = input.toLowerCase().replace(/[\s-]+/g, '');
  return codePattern.test(code) ? code : undefined;
}

/** The stored digest of a person's code (bound to the person, so a digest is worthless for another). */
export function recoveryCodeDigest(keys: FactorKeys, userId: string, code: string): string {
  return createHmac('sha256', keys.recoveryCodes).update(`${userId}\n${code}`).digest('base64url');
}

/** A person's stored codes: digests and whether each was used. */
export interface StoredRecoveryCode {
  digest: string;
  usedAt: number | null;
}

/** The person's codes, with the flight's reads when given. */
export async function recoveryCodesOf(ctx: Pick<Context, 'storage'>, userId: string, flight?: Flight): Promise<StoredRecoveryCode[]> {
  const rows = await rowsOf(ctx.storage.db.selectFrom('recovery_codes').select(['digest', 'used_at']).where('user_id', '=', userId), flight);
  return rows.map((row) => ({ digest: row.digest, usedAt: row.used_at === null ? null : Number(row.used_at) }));
}

/**
 * Which of the person's stored codes a typed one is: compared digest to digest in constant time,
 * every stored one (so the time does not say which position matched). `unused`: it may be used now;
 * `used`: it was, already; undefined: none of theirs.
 */
export function matchRecoveryCode(keys: FactorKeys, userId: string, input: string, stored: readonly StoredRecoveryCode[]): { digest: string; state: 'unused' | 'used' } | undefined {
  const code = normalizeRecoveryCode(input);
  const digest = Buffer.from(recoveryCodeDigest(keys, userId, code ?? ''), 'utf8');
  let found: StoredRecoveryCode | undefined;
  for (const candidate of stored) {
    const other = Buffer.from(candidate.digest, 'utf8');
    if (other.length === digest.length && timingSafeEqual(other, digest)) found = candidate;
  }
  if (!code || !found) return undefined;
  return { digest: found.digest, state: found.usedAt === null ? 'unused' : 'used' };
}

/**
 * Adds to `flight` the statements that replace the person's codes with `recoveryCodeCount` new
 * ones (the old ones stop working in the same transaction) and returns the new codes, to be shown
 * once and never stored.
 */
export function replaceRecoveryCodes(ctx: Pick<Context, 'storage' | 'identity'>, flight: Flight, userId: string, now: number): string[] {
  const codes = Array.from({ length: recoveryCodeCount }, newRecoveryCode);
  const db = ctx.storage.db;
  void flight.run(db.deleteFrom('recovery_codes').where('user_id', '=', userId));
  void flight.run(
    db.insertInto('recovery_codes').values(
      codes.map((code) => ({ user_id: userId, digest: recoveryCodeDigest(ctx.identity.factorKeys, userId, normalizeRecoveryCode(code)!), created_at: now, used_at: null })),
    ),
  );
  return codes;
}

/**
 * The statement that uses up one code: only if it is still unused. Zero rows changed: another
 * request used it first.
 */
export function useRecoveryCode(ctx: Pick<Context, 'storage'>, userId: string, digest: string, now: number) {
  return ctx.storage.db.updateTable('recovery_codes').set({ used_at: now }).where('user_id', '=', userId).where('digest', '=', digest).where('used_at', 'is', null);
}
