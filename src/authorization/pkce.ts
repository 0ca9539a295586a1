import { createHash, timingSafeEqual } from 'node:crypto';

/** The only code_challenge_method accepted (RFC 9700 §2.1.1; FAPI 2.0 SP §5.3.2.2-5: S256 only). */
export const codeChallengeMethods = ['S256'] as const;

/** RFC 7636 §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~". */
const verifierPattern = /^[A-Za-z0-9\-._~]{43,128}$/;

/** RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA256(verifier)): exactly 43 base64url characters. */
const s256ChallengePattern = /^[A-Za-z0-9_-]{43}$/;

/** True when `verifier` matches the RFC 7636 §4.1 ABNF. */
export function isValidCodeVerifier(verifier: string): boolean {
  return verifierPattern.test(verifier);
}

/** True when `challenge` has the shape of an S256 code_challenge. */
export function isValidS256Challenge(challenge: string): boolean {
  return s256ChallengePattern.test(challenge);
}

/** RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))). */
export function s256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** RFC 7636 §4.6: the verifier's S256 transform equals the stored challenge (constant time). */
export function verifyS256(verifier: string, challenge: string): boolean {
  if (!isValidCodeVerifier(verifier)) return false;
  const computed = Buffer.from(s256(verifier), 'ascii');
  const expected = Buffer.from(challenge, 'ascii');
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}
