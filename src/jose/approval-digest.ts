import { createHash } from 'node:crypto';
import { canonicalize } from './canonical-json.ts';

/**
 * What-you-see-is-what-you-sign (docs/authentication.md#approving-an-order): a person approves
 * exactly some authorization_details entries (RFC 9396), and the approval is bound to their
 * content by a digest that the server, the access token, the resource server's guard and an
 * offline verifier all compute the same way. Shared by the server and the guard library, so it
 * imports nothing but node: built-ins and this folder.
 */

/** The authorization_details types whose entries a person approves one by one, in the request's order. */
export const approvalTypes: readonly string[] = ['order', 'settlement_instruction'];

/** The entries of a request that need the person's approval: those of `approvalTypes`, in order. */
export function entriesToApprove<T extends { type?: unknown }>(details: readonly T[]): T[] {
  return details.filter((entry) => typeof entry.type === 'string' && approvalTypes.includes(entry.type));
}

/**
 * The approval digest: SHA-256 of the RFC 8785 canonical JSON of the approved entries (a JSON
 * array, in the request's order), base64url without padding. Any change to any member of any
 * entry — an amount, an account, the order of two entries — gives another digest.
 * @throws TypeError for values RFC 8785 cannot serialize exactly (NaN, non-plain objects, …).
 */
export function approvalDigest(entries: readonly unknown[]): string {
  return canonicalDigest(entries);
}

/**
 * SHA-256 (base64url, no padding) of the RFC 8785 canonical JSON of a value: the one digest of
 * everything approved and of its evidence (approval entries, a request's content, a decider's
 * evidence), computed the same way by the server, the guard and an offline verifier.
 * @throws TypeError for values RFC 8785 cannot serialize exactly.
 */
export function canonicalDigest(value: unknown): string {
  return createHash('sha256').update(canonicalize(value), 'utf8').digest('base64url');
}

/** Bytes of a server nonce in an approval challenge: 128 bits, so no two ceremonies share a challenge. */
export const approvalNonceBytes = 16;

/**
 * The WebAuthn challenge of an approval: the 32 digest bytes followed by the server's nonce,
 * base64url. A verifier that holds the entries recomputes the digest and finds it at the start of
 * the challenge the authenticator signed (inside clientDataJSON); the nonce makes each ceremony's
 * challenge single-use.
 */
export function approvalChallenge(digest: string, nonce: string): string {
  const digestBytes = Buffer.from(digest, 'base64url');
  const nonceBytes = Buffer.from(nonce, 'base64url');
  if (digestBytes.length !== 32) throw new TypeError('an approval digest is 32 bytes');
  if (nonceBytes.length !== approvalNonceBytes) throw new TypeError(`an approval nonce is ${approvalNonceBytes} bytes`);
  return Buffer.concat([digestBytes, nonceBytes]).toString('base64url');
}

/** The digest and nonce of an approval challenge, or undefined when it is not one. */
export function parseApprovalChallenge(challenge: string): { digest: string; nonce: string } | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(challenge)) return undefined;
  const bytes = Buffer.from(challenge, 'base64url');
  if (bytes.length !== 32 + approvalNonceBytes) return undefined;
  return { digest: bytes.subarray(0, 32).toString('base64url'), nonce: bytes.subarray(32).toString('base64url') };
}
