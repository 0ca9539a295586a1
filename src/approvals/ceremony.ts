import { randomBytes, randomUUID } from 'node:crypto';
import { generateAuthenticationOptions, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { AuditEvent } from '../audit/events.ts';
import type { StoredInteraction } from '../authorization/interactions.ts';
import type { Context } from '../context.ts';
import { recordAssertion, verifyPersonAssertion, type AssertionFailure } from '../identity/passkeys/assertion.ts';
import { ceremonyTimeoutMs } from '../identity/passkeys/options.ts';
import { relyingParty } from '../identity/passkeys/relying-party.ts';
import { listPasskeys } from '../identity/passkeys/store.ts';
import { approvalChallenge, approvalDigest, approvalNonceBytes, entriesToApprove } from '../jose/approval-digest.ts';
import type { Flight } from '../storage/flight.ts';
import { approvalEvidenceOf, verifyApprovalEvidence, type ApprovalEvidence } from './evidence.ts';
import type { ApprovalChallenge, ApprovalRecord } from './records.ts';

/**
 * What-you-see-is-what-you-sign on the consent page (docs/authentication.md "Approving an
 * order"): the person approves exactly the request's order and settlement_instruction entries
 * with a passkey, whose challenge commits to them (src/jose/approval-digest.ts).
 *
 * 1. `startApproval`: a new nonce, kept on the interaction (replacing an unanswered one), and the
 *    WebAuthn request options: challenge = digest ‖ nonce, the person's passkeys, user
 *    verification required;
 * 2. `checkApproval`: the assertion answers that challenge (not expired), by one of the person's
 *    passkeys, verified as a sign-in's is (WebAuthn L3 §7.2: origin, RP ID, UP, UV, signature,
 *    counter) — then the evidence is built and verified once more as an auditor would;
 * 3. `recordApprovalIn`: in the consent decision's transaction, the approval is kept on the
 *    interaction (conditional on the same challenge still being there: one answer per ceremony),
 *    the passkey's counter moves on, and `approval.given` carries the evidence.
 * A failure is `approval.refused` with its reason; nothing else changes.
 */

/** How long a started approval can be answered, in ms. */
export const approvalTtlMs = 5 * 60_000;

type CeremonyContext = Pick<Context, 'storage' | 'clock' | 'config' | 'audit'>;

/** The entries a request asks the person to approve, and their digest. */
export function approvalSubject(stored: Pick<StoredInteraction, 'request'>): { entries: Record<string, unknown>[]; digest: string } {
  const entries = entriesToApprove(stored.request.authorizationDetails as Record<string, unknown>[]);
  return { entries, digest: approvalDigest(entries) };
}

/**
 * Starts an approval ceremony for `userId` on a pending interaction: the request options for
 * navigator.credentials.get. Undefined when the interaction is no longer pending or already approved.
 */
export async function startApproval(ctx: CeremonyContext, stored: StoredInteraction, userId: string): Promise<PublicKeyCredentialRequestOptionsJSON | undefined> {
  const { digest } = approvalSubject(stored);
  const now = ctx.clock.now();
  const challenge: ApprovalChallenge = { digest, nonce: randomBytes(approvalNonceBytes).toString('base64url'), expiresAt: now + approvalTtlMs };
  const [updated, passkeys] = await Promise.all([
    ctx.storage.db
      .updateTable('interactions')
      .set({ approval_challenge: JSON.stringify(challenge) })
      .where('id', '=', stored.id)
      .where('completed_at', 'is', null)
      .where('approval', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst(),
    listPasskeys(ctx, userId),
  ]);
  if (Number(updated.numUpdatedRows) !== 1) return undefined;
  stored.approvalChallenge = challenge;
  return generateAuthenticationOptions({
    rpID: relyingParty(ctx.config.issuer).id,
    challenge: new Uint8Array(Buffer.from(approvalChallenge(challenge.digest, challenge.nonce), 'base64url')),
    timeout: ceremonyTimeoutMs,
    userVerification: 'required',
    allowCredentials: passkeys.map((p) => ({ id: p.credentialId, transports: p.transports as never })),
  });
}

export type ApprovalFailure = 'no_ceremony' | 'expired' | 'changed' | AssertionFailure | 'evidence_invalid';

export type ApprovalCheck =
  | { ok: true; record: ApprovalRecord; evidence: ApprovalEvidence; verdict: Extract<Awaited<ReturnType<typeof verifyPersonAssertion>>, { ok: true }>; challenge: ApprovalChallenge }
  | { ok: false; reason: ApprovalFailure; credentialId?: string };

/** Checks the person's answer (the page's JSON text) to the interaction's approval ceremony. */
export async function checkApproval(ctx: CeremonyContext, stored: StoredInteraction, userId: string, response: string, requestId?: string): Promise<ApprovalCheck> {
  const challenge = stored.approvalChallenge;
  if (!challenge) return { ok: false, reason: 'no_ceremony' };
  if (challenge.expiresAt <= ctx.clock.now()) return { ok: false, reason: 'expired' };
  const subject = approvalSubject(stored);
  // The request is immutable; a digest that differs means the ceremony was for other entries.
  if (subject.digest !== challenge.digest) return { ok: false, reason: 'changed' };
  const verdict = await verifyPersonAssertion(ctx as Context, {
    userId,
    expectedChallenge: approvalChallenge(challenge.digest, challenge.nonce),
    response,
    ...(requestId ? { requestId } : {}),
  });
  if (!verdict.ok) return { ok: false, reason: verdict.reason, ...(verdict.passkey ? { credentialId: verdict.passkey.credentialId } : {}) };
  const rp = relyingParty(ctx.config.issuer);
  const evidence = approvalEvidenceOf({ entries: subject.entries, digest: subject.digest, nonce: challenge.nonce, rpId: rp.id, origin: rp.origin }, verdict.evidence);
  // What an auditor will check offline must hold now: never record evidence that does not verify.
  if (verifyApprovalEvidence(evidence).length > 0) return { ok: false, reason: 'evidence_invalid', credentialId: verdict.passkey.credentialId };
  const record: ApprovalRecord = { id: randomUUID(), digest: subject.digest, credentialId: verdict.passkey.credentialId, at: ctx.clock.now() };
  return { ok: true, record, evidence, verdict, challenge };
}

/**
 * Adds a checked approval to the consent decision's `flight`: the interaction keeps it (only if the
 * ceremony it answered is still the interaction's, else the transaction is refused with
 * `approval_answered`), the passkey's counter moves on, and returns the `approval.given` event.
 */
export function recordApprovalIn(
  ctx: Pick<Context, 'storage' | 'clock'>,
  flight: Flight,
  stored: StoredInteraction,
  checked: Extract<ApprovalCheck, { ok: true }>,
  who: { userId: string; clientId: string; requestId?: string },
): AuditEvent {
  void flight.run(
    ctx.storage.db
      .updateTable('interactions')
      .set({ approval: JSON.stringify(checked.record), approval_challenge: null })
      .where('id', '=', stored.id)
      .where('approval', 'is', null)
      .where('approval_challenge', '=', JSON.stringify(checked.challenge)),
    { rows: 1, otherwise: 'approval_answered' },
  );
  recordAssertion(ctx, flight, checked.verdict);
  return {
    type: 'approval.given',
    // The transaction of the approved order: the one the authorization request started, else the
    // approval's own id; the tokens issued under the approval carry it as txn.
    txn: stored.request.txn ?? checked.record.id,
    actor: who.userId,
    subject: who.userId,
    client: who.clientId,
    ...(who.requestId ? { requestId: who.requestId } : {}),
    decision: { allow: true, reasons: ['approved with a passkey'] },
    details: { interaction_id: stored.id, approval_id: checked.record.id, credential_id: checked.record.credentialId, evidence: checked.evidence },
  };
}

/** `approval.refused`: an approval that failed, with why (never the assertion itself). */
export function approvalRefusedEvent(stored: StoredInteraction, who: { userId: string; clientId: string; requestId?: string }, failure: Extract<ApprovalCheck, { ok: false }>): AuditEvent {
  return {
    type: 'approval.refused',
    actor: who.userId,
    subject: who.userId,
    client: who.clientId,
    ...(who.requestId ? { requestId: who.requestId } : {}),
    decision: { allow: false, reasons: [failure.reason] },
    details: { interaction_id: stored.id, ...(failure.credentialId ? { credential_id: failure.credentialId } : {}) },
  };
}
