import { createHash, createPublicKey, timingSafeEqual, type JsonWebKey } from 'node:crypto';
import { verifyAuthenticationResponse, type AuthenticationResponseJSON } from '@simplewebauthn/server';
import { decodeCredentialPublicKey } from '@simplewebauthn/server/helpers';
import type { Context } from '../../context.ts';
import type { Kysely, Transaction } from 'kysely';
import type { Flight } from '../../storage/flight.ts';
import type { Database } from '../../storage/schema.ts';
import { relyingParty } from './relying-party.ts';
import { authenticatorDataHead, decodeClientData, parseAuthenticationResponse } from './responses.ts';
import { passkeyByCredentialId, type Passkey } from './store.ts';
import { safeEqual } from '../../jose/index.ts';

/**
 * Verifying a WebAuthn assertion (WebAuthn L3 §7.2 "Verifying an Authentication Assertion") for
 * any ceremony: a sign-in, or an approval whose challenge the caller derived from what is being
 * approved. The caller owns the challenge (it consumed it, or derived it); this module checks
 * everything else and says why an assertion fails, in `AssertionFailure`'s words.
 */

/** Why an assertion was refused (the audit trail's reason; the person is told one generic thing). */
export type AssertionFailure =
  | 'malformed'
  | 'unknown_credential'
  | 'wrong_person'
  | 'wrong_type'
  | 'wrong_challenge'
  | 'wrong_origin'
  | 'cross_origin'
  | 'wrong_rp_id'
  | 'user_not_present'
  | 'user_not_verified'
  | 'backup_state_invalid'
  | 'signature_invalid'
  | 'counter_regressed';

/**
 * What proves a verified assertion, offline: the signature is over `authenticatorData ||
 * SHA-256(clientDataJSON)` (WebAuthn L3 §6.3.3) by the key of `spki`, and the client data names
 * the challenge and the origin. Every member is base64url of the bytes as received.
 */
export interface AssertionEvidence {
  credentialId: string;
  /** The credential public key as registered: a COSE_Key (RFC 9052 §7). */
  publicKey: string;
  /** The same key as a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), for tools that read no COSE. */
  spki: string;
  authenticatorData: string;
  clientDataJSON: string;
  signature: string;
  userHandle?: string;
}

export type AssertionVerdict =
  | {
      ok: true;
      passkey: Passkey;
      evidence: AssertionEvidence;
      /** The authenticator's signature counter in this assertion. */
      signCount: number;
      /** The BS flag in this assertion (a synced passkey may become backed up later). */
      backedUp: boolean;
    }
  | { ok: false; reason: AssertionFailure; passkey?: Passkey };

type AssertionContext = Pick<Context, 'config' | 'audit' | 'clock'>;

/**
 * Checks an assertion made with `passkey` (read by the response's credential id) against
 * `expectedChallenge`, in WebAuthn L3 §7.2's order. `userId`: the person it must belong to (a
 * sign-in after a username, an approval by this person). A counter that did not grow is recorded
 * as `passkey.counter_regressed` (a sign that the authenticator was cloned) whatever the caller
 * does next. Nothing else is written: a caller that accepts the assertion adds `recordAssertion`
 * to the transaction that acts on it.
 */
export async function checkAssertion(
  ctx: AssertionContext,
  input: { response: AuthenticationResponseJSON; expectedChallenge: string; passkey: Passkey | undefined; userId?: string; requestId?: string },
): Promise<AssertionVerdict> {
  const { response, passkey } = input;
  const rp = relyingParty(ctx.config.issuer);
  // §7.2 step 5–6: a credential Clearance registered, of the person expected, whose user handle
  // (when the authenticator returns one) is that person's.
  if (!passkey || passkey.credentialId !== response.id) return { ok: false, reason: 'unknown_credential' };
  const fail = (reason: AssertionFailure): AssertionVerdict => ({ ok: false, reason, passkey });
  if (input.userId !== undefined && passkey.userId !== input.userId) return fail('wrong_person');
  const userHandle = response.response.userHandle;
  if (userHandle !== undefined && !sameBytes(Buffer.from(userHandle, 'base64url'), Buffer.from(passkey.userId, 'utf8'))) return fail('wrong_person');

  const clientData = decodeClientData(response.response.clientDataJSON);
  if (!clientData) return fail('malformed');
  // §7.2 step 11–13: the ceremony, the challenge and the origin, exactly.
  if (clientData.type !== 'webauthn.get') return fail('wrong_type');
  if (!safeEqual(clientData.challenge, input.expectedChallenge)) return fail('wrong_challenge');
  if (clientData.origin !== rp.origin) return fail('wrong_origin');
  // §7.2 step 14 (topOrigin): Clearance's pages are never framed (frame-ancestors 'none'), so a
  // cross-origin ceremony is never one of ours.
  if (clientData.crossOrigin === true || clientData.topOrigin !== undefined) return fail('cross_origin');

  const authenticatorData = Buffer.from(response.response.authenticatorData, 'base64url');
  const head = authenticatorDataHead(authenticatorData);
  if (!head) return fail('malformed');
  // §7.2 step 15: the RP ID hash is SHA-256 of Clearance's RP ID.
  if (!sameBytes(head.rpIdHash, createHash('sha256').update(rp.id, 'utf8').digest())) return fail('wrong_rp_id');
  // §7.2 step 16–17: user present, and verified (Clearance asks userVerification "required").
  if (!head.userPresent) return fail('user_not_present');
  if (!head.userVerified) return fail('user_not_verified');
  // §7.2 step 18–19 (L3): BS without BE is invalid, and a credential's BE never changes.
  if ((head.backedUp && !head.backupEligible) || head.backupEligible !== passkey.backupEligible) return fail('backup_state_invalid');

  // §7.2 step 20–21: the signature over authenticatorData || SHA-256(clientDataJSON), by the
  // registered key. The library repeats the checks above; its own counter check is left to the
  // step below (counter 0), which audits a regression.
  let verified = false;
  try {
    const result = await verifyAuthenticationResponse({
      response,
      expectedChallenge: input.expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      credential: { id: passkey.credentialId, publicKey: passkey.publicKey, counter: 0, transports: passkey.transports },
      requireUserVerification: true,
    });
    verified = result.verified;
  } catch {
    verified = false;
  }
  if (!verified) return fail('signature_invalid');

  // §7.2 step 22: when either counter is non-zero, the new one must be greater; otherwise the
  // authenticator may have been cloned. Refused, and recorded for whoever watches the audit log.
  if ((head.signCount > 0 || passkey.signCount > 0) && head.signCount <= passkey.signCount) {
    await ctx.audit.record({
      type: 'passkey.counter_regressed',
      ...(input.requestId ? { requestId: input.requestId } : {}),
      subject: passkey.userId,
      decision: { allow: false, reasons: ['counter_regressed'] },
      details: { credential: passkey.credentialId, stored_count: passkey.signCount, presented_count: head.signCount },
    });
    return fail('counter_regressed');
  }
  return {
    ok: true,
    passkey,
    signCount: head.signCount,
    backedUp: head.backedUp,
    evidence: {
      credentialId: passkey.credentialId,
      publicKey: Buffer.from(passkey.publicKey).toString('base64url'),
      spki: cosePublicKeyToSpki(passkey.publicKey).toString('base64url'),
      authenticatorData: response.response.authenticatorData,
      clientDataJSON: response.response.clientDataJSON,
      signature: response.response.signature,
      ...(userHandle !== undefined ? { userHandle } : {}),
    },
  };
}

/**
 * Adds to `flight` what a used passkey records: the new counter, the backup state and when it was
 * used. Conditional on the counter still being the one checked: of two assertions racing with
 * the same credential only one commits (the other's transaction is refused with
 * `passkey_counter_changed`), so a counter never moves backwards in the table either.
 */
export function recordAssertion(ctx: Pick<Context, 'storage' | 'clock'>, flight: Flight, verdict: Extract<AssertionVerdict, { ok: true }>): void {
  void flight.run(assertionUpdate(ctx.storage.db, ctx.clock.now(), verdict), { rows: 1, otherwise: 'passkey_counter_changed' });
}

/**
 * The statement of recordAssertion, for a caller in an ordinary transaction (an approval decision,
 * src/approvals/request-ceremony.ts): it changed one row, or the counter moved meanwhile and the
 * assertion must not be used.
 */
export function assertionUpdate(db: Kysely<Database> | Transaction<Database>, now: number, verdict: Extract<AssertionVerdict, { ok: true }>) {
  return db
    .updateTable('passkeys')
    .set({ sign_count: verdict.signCount, backed_up: verdict.backedUp ? 1 : 0, last_used_at: now })
    .where('id', '=', verdict.passkey.id)
    .where('sign_count', '=', verdict.passkey.signCount);
}

/**
 * Verifies an assertion by the person `userId` against a challenge the caller derived (e.g. from
 * a digest of what the person approves and a server nonce): the response is the page's JSON
 * text. On success, add `recordAssertion(ctx, flight, verdict)` to the transaction that acts on
 * it, and keep `verdict.evidence`. The caller makes the challenge single-use.
 */
export async function verifyPersonAssertion(
  ctx: Pick<Context, 'config' | 'audit' | 'clock' | 'storage'>,
  input: { userId: string; expectedChallenge: string; response: string; requestId?: string },
): Promise<AssertionVerdict> {
  const response = parseAuthenticationResponse(input.response);
  if (!response) return { ok: false, reason: 'malformed' };
  const passkey = await passkeyByCredentialId(ctx, response.id);
  return checkAssertion(ctx, {
    response,
    expectedChallenge: input.expectedChallenge,
    passkey,
    userId: input.userId,
    ...(input.requestId ? { requestId: input.requestId } : {}),
  });
}

/** A COSE_Key (EC2 P-256/384/521, OKP Ed25519, RSA) as DER SubjectPublicKeyInfo. */
export function cosePublicKeyToSpki(cose: Uint8Array<ArrayBuffer>): Buffer {
  const key = decodeCredentialPublicKey(cose) as unknown as Map<number, number | Uint8Array>;
  const b64 = (label: number) => Buffer.from(key.get(label) as Uint8Array).toString('base64url');
  const kty = key.get(1);
  let jwk: JsonWebKey;
  if (kty === 2) {
    const crv = ({ 1: 'P-256', 2: 'P-384', 3: 'P-521' } as Record<number, string>)[key.get(-1) as number];
    if (!crv) throw new Error('unsupported EC curve');
    jwk = { kty: 'EC', crv, x: b64(-2), y: b64(-3) };
  } else if (kty === 1 && key.get(-1) === 6) {
    jwk = { kty: 'OKP', crv: 'Ed25519', x: b64(-2) };
  } else if (kty === 3) {
    jwk = { kty: 'RSA', n: b64(-1), e: b64(-2) };
  } else {
    throw new Error('unsupported COSE key type');
  }
  return createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'der' });
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
