import { argon2, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Password hashing with Argon2id (RFC 9106) from Node 24's `crypto.argon2`, stored as PHC strings:
 *
 *   $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
 *
 * (the reference implementation's format: parameters in the order m, t, p; salt and hash in
 * standard base64 without padding). Hashes made with other parameters verify with their own;
 * `needsRehash` says when a stored hash is weaker than today's parameters, so a successful login
 * can replace it.
 */

export interface Argon2Parameters {
  /** Memory in KiB (the `m` of the PHC string). */
  memory: number;
  /** Passes over memory (`t`). */
  passes: number;
  /** Lanes (`p`). */
  parallelism: number;
}

/**
 * OWASP Password Storage Cheat Sheet's Argon2id configuration: 19 MiB, 2 passes, 1 lane, with a
 * 16-byte salt and a 32-byte hash. About 70 ms per hash on one core of the reference machine.
 */
export const defaultArgon2Parameters: Readonly<Argon2Parameters> = { memory: 19_456, passes: 2, parallelism: 1 };

const saltLength = 16;
const hashLength = 32;

/**
 * Limits on parameters read from a stored or imported hash. Verification spends what the hash
 * asks for, so a hash asking for 4 GiB or a thousand passes is refused rather than obeyed.
 */
export const argon2Limits = {
  memory: { min: 8, max: 1_048_576 }, // KiB: at most 1 GiB
  passes: { min: 1, max: 16 },
  parallelism: { min: 1, max: 16 },
  saltBytes: { min: 8, max: 64 }, // RFC 9106 §3.1: at least 8 bytes (16 recommended)
  hashBytes: { min: 16, max: 64 },
} as const;

/** Longest password accepted anywhere (a bound on the work one request can ask for). */
export const maxPasswordLength = 1024;

/** A parsed PHC string. */
export interface PasswordHash extends Argon2Parameters {
  algorithm: 'argon2id';
  version: 19;
  salt: Buffer;
  hash: Buffer;
}

export class PasswordHashFormatError extends Error {
  override name = 'PasswordHashFormatError';
}

// $argon2id$v=19$m=<int>,t=<int>,p=<int>$<b64 salt>$<b64 hash>; decimal without leading zeros.
const phcPattern = /^\$argon2id\$v=19\$m=(0|[1-9][0-9]{0,9}),t=(0|[1-9][0-9]{0,9}),p=(0|[1-9][0-9]{0,9})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * Parses an Argon2id PHC string, checking every field against `argon2Limits`. Only argon2id
 * version 0x13 (19) is accepted: argon2i and argon2d are not the recommended variant (RFC 9106 §4),
 * and version 16 is the flawed original. Throws PasswordHashFormatError saying what is wrong.
 */
export function parsePasswordHash(phc: string): PasswordHash {
  if (phc.length > 512) throw new PasswordHashFormatError('is too long to be an Argon2id hash');
  const match = phcPattern.exec(phc);
  if (!match) {
    throw new PasswordHashFormatError('must be an Argon2id PHC string: $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>');
  }
  const [, m, t, p, salt64, hash64] = match as unknown as [string, string, string, string, string, string];
  const params = { memory: Number(m), passes: Number(t), parallelism: Number(p) };
  const within = (name: string, value: number, range: { min: number; max: number }) => {
    if (value < range.min || value > range.max) throw new PasswordHashFormatError(`${name} must be from ${range.min} to ${range.max}`);
  };
  within('m (memory, KiB)', params.memory, argon2Limits.memory);
  within('t (passes)', params.passes, argon2Limits.passes);
  within('p (parallelism)', params.parallelism, argon2Limits.parallelism);
  // RFC 9106 §3.1: memory is at least 8 KiB per lane.
  if (params.memory < 8 * params.parallelism) throw new PasswordHashFormatError('m must be at least 8 × p');
  const salt = decodeB64(salt64, 'salt');
  const hash = decodeB64(hash64, 'hash');
  within('the salt length (bytes)', salt.length, argon2Limits.saltBytes);
  within('the hash length (bytes)', hash.length, argon2Limits.hashBytes);
  return { algorithm: 'argon2id', version: 19, ...params, salt, hash };
}

/** The PHC string of a parsed hash. */
export function formatPasswordHash(hash: Omit<PasswordHash, 'algorithm' | 'version'>): string {
  return `$argon2id$v=19$m=${hash.memory},t=${hash.passes},p=${hash.parallelism}$${encodeB64(hash.salt)}$${encodeB64(hash.hash)}`;
}

/** Hashes a password with a fresh 16-byte salt; resolves the PHC string. */
export async function hashPassword(password: string, parameters: Argon2Parameters = defaultArgon2Parameters): Promise<string> {
  const salt = randomBytes(saltLength);
  const hash = await derive(password, salt, parameters, hashLength);
  return formatPasswordHash({ ...parameters, salt, hash });
}

/**
 * Whether `password` matches the stored PHC string, computed with the hash's own parameters and
 * compared in constant time. A string that does not parse never matches.
 */
export async function verifyPassword(password: string, phc: string): Promise<boolean> {
  let stored: PasswordHash;
  try {
    stored = parsePasswordHash(phc);
  } catch {
    return false;
  }
  if (password.length > maxPasswordLength) return false;
  const computed = await derive(password, stored.salt, stored, stored.hash.length);
  return timingSafeEqual(computed, stored.hash);
}

/** True when a stored hash is not made with today's parameters (or does not parse). */
export function needsRehash(phc: string, parameters: Argon2Parameters = defaultArgon2Parameters): boolean {
  try {
    const stored = parsePasswordHash(phc);
    return (
      stored.memory !== parameters.memory ||
      stored.passes !== parameters.passes ||
      stored.parallelism !== parameters.parallelism ||
      stored.salt.length < saltLength ||
      stored.hash.length < hashLength
    );
  } catch {
    return true;
  }
}

let dummy: Promise<string> | undefined;

/**
 * Spends the same work as verifying a real password with today's parameters, and returns false:
 * for unknown usernames and accounts without a password, so timing does not say which it was.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummy ??= hashPassword(randomBytes(16).toString('base64url'));
  await verifyPassword(password.slice(0, maxPasswordLength), await dummy);
  return false;
}

/**
 * At most this many Argon2 computations run at once (each takes `memory` KiB and one libuv thread
 * for ~70 ms); others wait their turn, so a burst of logins cannot take every thread from the
 * rest of the server or allocate unbounded memory. Past `maxWaiting` queued requests the hasher
 * refuses (PasswordHasherBusyError) instead of queueing without bound.
 */
const maxConcurrent = 2;
const maxWaiting = 256;
let running = 0;
const waiting: (() => void)[] = [];

export class PasswordHasherBusyError extends Error {
  override name = 'PasswordHasherBusyError';
}

async function acquire(): Promise<void> {
  if (running < maxConcurrent) {
    running++;
    return;
  }
  if (waiting.length >= maxWaiting) throw new PasswordHasherBusyError('too many password checks are waiting');
  // The releasing caller hands its slot over, so `running` stays the same.
  await new Promise<void>((resolve) => waiting.push(resolve));
}

function release(): void {
  const next = waiting.shift();
  if (next) next();
  else running--;
}

/** Argon2id computations this process has started: lets tests check work without timing it. */
export const argon2Stats = { computations: 0 };

async function derive(password: string, salt: Buffer, parameters: Argon2Parameters, tagLength: number): Promise<Buffer> {
  await acquire();
  argon2Stats.computations++;
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      argon2(
        'argon2id',
        {
          message: Buffer.from(password, 'utf8'),
          nonce: salt,
          parallelism: parameters.parallelism,
          tagLength,
          memory: parameters.memory,
          passes: parameters.passes,
        },
        (error, key) => (error ? reject(error) : resolve(key)),
      ),
    );
  } finally {
    release();
  }
}

function decodeB64(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  // Canonical encoding only (no padding, no trailing bits), so one hash has one spelling.
  if (encodeB64(bytes) !== text) throw new PasswordHashFormatError(`the ${what} is not canonical base64 without padding`);
  return bytes;
}

function encodeB64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '');
}
