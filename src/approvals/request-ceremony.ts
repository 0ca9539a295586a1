import { randomBytes } from 'node:crypto';
import { generateAuthenticationOptions, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { assertionUpdate, verifyPersonAssertion, type AssertionFailure } from '../identity/passkeys/assertion.ts';
import { ceremonyTimeoutMs } from '../identity/passkeys/options.ts';
import { relyingParty } from '../identity/passkeys/relying-party.ts';
import { listPasskeys, passkeyAcr, passkeyAmr } from '../identity/passkeys/store.ts';
import { approvalChallenge, approvalNonceBytes } from '../jose/approval-digest.ts';
import type { Database } from '../storage/schema.ts';
import { requestApprovalEvidenceOf, verifyApprovalEvidence } from './evidence.ts';
import type { Approver } from './independence.ts';
import type { ApprovalKind } from './kinds.ts';
import { decideApprovalRequest, type ApprovalRequest, type DecisionOutcome } from './requests.ts';

/**
 * Approving a request with a passkey on the approvals page (docs/approvals.md "The approver's
 * side"): what-you-see-is-what-you-sign for requests a second person approves, the same mechanism
 * as the consent page's (src/approvals/ceremony.ts) with the request's content in place of the
 * order entries.
 *
 * 1. `startRequestApproval`: a new nonce in `approval_challenges` for this person and request
 *    (replacing an unanswered one), and the WebAuthn request options: challenge =
 *    approvalChallenge(request.digest, nonce), the person's own passkeys only, user verification
 *    required;
 * 2. `approveRequestWithPasskey`: the ceremony exists and has not expired, the request's digest is
 *    still the one the ceremony was started for, the assertion is by one of the person's passkeys
 *    and verifies as a sign-in's does (WebAuthn L3 §7.2) — then the evidence
 *    (`clearance-approval-request/1`) is built and verified once more as an auditor would, and
 *    the decision is taken by the one rule (decideApprovalRequest), whose transaction deletes the
 *    ceremony (conditionally on its nonce: one answer per ceremony) and moves the passkey's counter
 *    on (conditionally on the counter checked).
 * Any failure is `approval.refused` with its reason, and uses the ceremony up.
 */

/** How long a started ceremony can be answered, in ms. */
export const requestCeremonyTtlMs = 5 * 60_000;

export type RequestCeremonyFailure = 'no_ceremony' | 'expired' | 'changed' | AssertionFailure | 'evidence_invalid';

/**
 * Starts a ceremony for `userId` on `request`: the options for navigator.credentials.get, or
 * undefined when the person has no passkey. The caller has checked that they may decide it.
 */
export async function startRequestApproval(
  ctx: Pick<Context, 'storage' | 'clock' | 'config'>,
  request: ApprovalRequest,
  userId: string,
): Promise<PublicKeyCredentialRequestOptionsJSON | undefined> {
  const passkeys = await listPasskeys(ctx, userId);
  if (passkeys.length === 0) return undefined;
  const nonce = randomBytes(approvalNonceBytes).toString('base64url');
  const now = ctx.clock.now();
  const row = { request_id: request.id, user_id: userId, digest: request.digest, nonce, expires_at: now + requestCeremonyTtlMs };
  // Housekeeping on the way: ceremonies nobody answered in time are refused anyway; drop them.
  await ctx.storage.db.deleteFrom('approval_challenges').where('expires_at', '<=', now).execute();
  await ctx.storage.db
    .insertInto('approval_challenges')
    .values(row)
    .onConflict((oc) => oc.columns(['request_id', 'user_id']).doUpdateSet({ digest: row.digest, nonce: row.nonce, expires_at: row.expires_at }))
    .execute();
  return generateAuthenticationOptions({
    rpID: relyingParty(ctx.config.issuer).id,
    challenge: new Uint8Array(Buffer.from(approvalChallenge(request.digest, nonce), 'base64url')),
    timeout: ceremonyTimeoutMs,
    userVerification: 'required',
    allowCredentials: passkeys.map((p) => ({ id: p.credentialId, transports: p.transports as never })),
  });
}

export type PasskeyDecision = DecisionOutcome | { ok: false; refusal: RequestCeremonyFailure };

/**
 * The person's answer (the page's JSON text) to their ceremony on `request`: an approval by the
 * one decision rule with a passkey proof, or a refusal (recorded as `approval.refused`).
 */
export async function approveRequestWithPasskey(
  ctx: Context,
  kind: ApprovalKind,
  request: ApprovalRequest,
  approver: Approver,
  response: string,
  httpRequestId?: string,
): Promise<PasskeyDecision> {
  const refuse = async (refusal: RequestCeremonyFailure, credentialId?: string): Promise<PasskeyDecision> => {
    await ctx.audit.record({
      type: 'approval.refused',
      txn: request.id,
      actor: approver.userId,
      subject: request.subject,
      ...(request.clientId !== undefined ? { client: request.clientId } : {}),
      ...(httpRequestId !== undefined ? { requestId: httpRequestId } : {}),
      decision: { allow: false, reasons: [refusal] },
      details: { request_id: request.id, kind: request.kind, decision: 'approve', method: 'passkey', ...(credentialId ? { credential_id: credentialId } : {}) },
    });
    return { ok: false, refusal };
  };
  const ceremony = await ctx.storage.db
    .selectFrom('approval_challenges')
    .selectAll()
    .where('request_id', '=', request.id)
    .where('user_id', '=', approver.userId)
    .executeTakeFirst();
  if (!ceremony) return refuse('no_ceremony');
  // From here on the ceremony is used up, whatever the outcome: one answer per ceremony.
  const discard = () => discardCeremony(ctx, request.id, approver.userId, ceremony.nonce);
  if (Number(ceremony.expires_at) <= ctx.clock.now()) {
    await discard();
    return refuse('expired');
  }
  // Requests are never edited; a digest that differs means the ceremony was for other content.
  if (ceremony.digest !== request.digest) {
    await discard();
    return refuse('changed');
  }
  const verdict = await verifyPersonAssertion(ctx, {
    userId: approver.userId,
    expectedChallenge: approvalChallenge(ceremony.digest, ceremony.nonce),
    response,
    ...(httpRequestId !== undefined ? { requestId: httpRequestId } : {}),
  });
  if (!verdict.ok) {
    await discard();
    return refuse(verdict.reason, verdict.passkey?.credentialId);
  }
  const rp = relyingParty(ctx.config.issuer);
  const evidence = requestApprovalEvidenceOf(
    { requestId: request.id, kind: request.kind, content: request.content, digest: request.digest, nonce: ceremony.nonce, rpId: rp.id, origin: rp.origin },
    verdict.evidence,
  );
  // What an auditor will check offline must hold now: never record evidence that does not verify.
  if (verifyApprovalEvidence(evidence).length > 0) {
    await discard();
    return refuse('evidence_invalid', verdict.passkey.credentialId);
  }
  const outcome = await decideApprovalRequest(ctx, kind, {
    requestId: request.id,
    approver,
    proof: { method: 'passkey', acr: passkeyAcr(verdict.passkey, ctx.config.passkeyAttestation), amr: passkeyAmr(verdict.passkey), evidence: evidence as unknown as Record<string, unknown> },
    decision: 'approve',
    ...(httpRequestId !== undefined ? { httpRequestId } : {}),
    consume: async (trx: Transaction<Database>) => {
      const used = await trx
        .deleteFrom('approval_challenges')
        .where('request_id', '=', request.id)
        .where('user_id', '=', approver.userId)
        .where('nonce', '=', ceremony.nonce)
        .executeTakeFirst();
      if (Number(used.numDeletedRows) !== 1) return false;
      const counted = await assertionUpdate(trx, ctx.clock.now(), verdict).executeTakeFirst();
      return Number(counted.numUpdatedRows) === 1;
    },
  });
  if (!outcome.ok) await discard();
  return outcome;
}

/** Deletes a person's ceremony on a request (only the one with this nonce, when given). */
export async function discardCeremony(ctx: Pick<Context, 'storage'>, requestId: string, userId: string, nonce?: string): Promise<void> {
  let query = ctx.storage.db.deleteFrom('approval_challenges').where('request_id', '=', requestId).where('user_id', '=', userId);
  if (nonce !== undefined) query = query.where('nonce', '=', nonce);
  await query.execute();
}
