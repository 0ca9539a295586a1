import type { AuditEvent } from '../../audit/events.ts';
import { unrecordableText } from '../../audit/free-text.ts';
import type { Authentication } from '../../authorization/contract.ts';
import { handleDigest, randomHandle } from '../../authorization/digest.ts';
import type { Context } from '../../context.ts';
import { openApprovalRequest, type ApprovalRequest } from '../../approvals/requests.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { acr, acrSatisfies } from '../acr.ts';
import { mayHoldTokens } from '../lifecycle.ts';
import { credentialsHeld } from '../../lifecycle/credential-hold.ts';
import type { User } from '../users.ts';
import { passwordFingerprint } from './approval.ts';
import { recoveryNoticeIn } from './notices.ts';
import { recoverySettings } from './settings.ts';
import { helpDeskRole, recoveryApproverRole } from '../roles.ts';

/**
 * Opening a recovery of a lost authenticator (docs/recovery.md "Who opens"). A recovery is an
 * approval request of kind `recovery` (src/approvals/kinds/recovery.ts): it does nothing until a
 * second, independent person approves it. Two ways to open one:
 *
 * - **the help desk**, on the person's behalf, through the admin API (a person's token holding
 *   `help-desk`, src/endpoints/admin/recovery.ts). It names how the person's identity was checked
 *   (`verification_method`, one of `helpDeskVerificationMethods`) and the evidence of that check
 *   (`evidence_ref`: a ticket, a case number — a reference, never a document or a secret);
 * - **the person themselves**, on /account, from a session that proved two factors
 *   (`urn:clearance:acr:mfa` or above: password and authenticator, or password and a recovery
 *   code) — a password alone never opens one. The method is `remaining_factors` and the evidence
 *   is that sign-in (its time and methods), filled in by Clearance.
 *
 * Both name what was lost (`passkeys`, `authenticator`; default both). The person must have a
 * password: it is the half of the enrolment link only they know (enrolment.ts) — except a leaver
 * whose credentials are on hold (src/lifecycle/credential-hold.ts): the leaver operation revoked
 * their password, no administrator may give them one, and this recovery is their only way back.
 * Their link is opened without a password (no fingerprint), and the request says so
 * (`credentials_held`): the approver knows the link alone will enrol their passkey. At most one
 * recovery per person waits at a time.
 *
 * The enrolment link's token is made here, stored only as its SHA-256, with the fingerprint of the
 * person's password as it is now (a password set before the link is used voids it), and handed
 * once to whoever opened the request (the help desk in the API's answer, the person on the page): it stays inert
 * until the request is approved, and then works for apply's `recovery.enrolment_ttl`. The approver
 * never sees it, and the help desk that holds it cannot use it without the person's password.
 */

/** How the help desk checked the person's identity: a closed list. */
export const helpDeskVerificationMethods = ['in_person_id_check', 'video_id_check', 'manager_attestation', 'callback_registered_phone'] as const;
/** The method of a request the person opened themselves: the factors they still hold. */
export const selfVerificationMethod = 'remaining_factors';
export type VerificationMethod = (typeof helpDeskVerificationMethods)[number] | typeof selfVerificationMethod;

/** What a recovery declares lost, and disables at approval. */
export const lostFactors = ['passkeys', 'authenticator'] as const;
export type LostFactor = (typeof lostFactors)[number];

// The recovery roles, named where a person's roles are checked (src/identity/roles.ts).
export { helpDeskRole, recoveryApproverRole };

/** Longest evidence reference. */
export const maxEvidenceRefLength = 200;

/** What an approver is shown and signs (the approval request's content). */
export interface RecoveryContent {
  type: 'recovery';
  person: { id: string; username: string };
  opened_by: 'help_desk' | 'self';
  requester: { id: string; username: string };
  verification_method: VerificationMethod;
  evidence_ref: string;
  lost: LostFactor[];
  /**
   * The person is a leaver whose credentials are on hold (src/lifecycle/credential-hold.ts): they
   * hold no password, so the enrolment link alone enrols their passkey — whoever the help desk hands
   * it to. Absent otherwise.
   */
  credentials_held?: true;
}

export type OpenRefusal =
  /** The requester does not hold `help-desk` (or is not active). */
  | 'not_help_desk'
  /** The help desk opening a recovery of their own account. */
  | 'own_account'
  /** The help desk set the person's password: holding the link too, they would hold both halves. */
  | 'set_password'
  /** The person is disabled or locked by an administrator. */
  | 'person_not_active'
  /** The person has no password (and is no leaver whose credentials are on hold): the link would be the only secret. */
  | 'no_password'
  /** A recovery of this person is already waiting for approval. */
  | 'already_pending'
  /** The person's own session did not prove two factors. */
  | 'session_too_weak'
  /** A verification method off the list, an evidence reference missing or unacceptable, no lost factor. */
  | 'invalid_request';

export type OpenOutcome = { ok: true; request: ApprovalRequest; /** The enrolment link's token: shown once. */ token: string } | { ok: false; reason: OpenRefusal; detail?: string };

/** The enrolment link of a token. */
export function enrolmentLink(issuer: string, token: string): string {
  return `${issuer}/recovery/${token}`;
}

/** Why an evidence reference cannot be recorded, or undefined. */
export function evidenceRefProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.trim().length === 0) return 'is required: the reference of the identity check (a ticket or case number)';
  if (value.length > maxEvidenceRefLength) return `must be at most ${maxEvidenceRefLength} characters`;
  return unrecordableText(value, { oneLine: true });
}

type OpenContext = Pick<Context, 'storage' | 'clock' | 'audit' | 'config'>;

interface Opening {
  requester: User;
  subject: User;
  openedBy: 'help_desk' | 'self';
  verificationMethod: string;
  evidenceRef: string;
  lost?: readonly string[];
  requestId?: string;
}

/**
 * The help desk opens a recovery of `subject` (refused: `not_help_desk`, `own_account`,
 * `set_password` — the help-desk person set the person's password, `users.password_set_by`: the
 * link handed to them would then need nothing they do not know — and the common rules of `open`).
 */
export async function openRecoveryByHelpDesk(
  ctx: OpenContext,
  input: { helpDesk: User; subject: User; verificationMethod: string; evidenceRef: string; lost?: readonly string[]; requestId?: string },
): Promise<OpenOutcome> {
  const opening: Opening = { requester: input.helpDesk, subject: input.subject, openedBy: 'help_desk', verificationMethod: input.verificationMethod, evidenceRef: input.evidenceRef, ...pick(input) };
  if (input.helpDesk.status !== 'active' || !input.helpDesk.roles.includes(helpDeskRole)) return refuse(ctx, opening, 'not_help_desk');
  if (input.helpDesk.id === input.subject.id) return refuse(ctx, opening, 'own_account');
  if (input.subject.passwordSet?.by === input.helpDesk.id) return refuse(ctx, opening, 'set_password');
  if (!(helpDeskVerificationMethods as readonly string[]).includes(input.verificationMethod)) {
    return refuse(ctx, opening, 'invalid_request', `verification_method must be one of ${helpDeskVerificationMethods.join(', ')}`);
  }
  return open(ctx, opening);
}

/**
 * The person opens a recovery of their own account from `session` (refused `session_too_weak`
 * below `urn:clearance:acr:mfa`); the evidence is that session's sign-in.
 */
export async function openOwnRecovery(ctx: OpenContext, input: { user: User; session: Pick<Authentication, 'userId' | 'acr' | 'amr' | 'authTime'>; lost?: readonly string[]; requestId?: string }): Promise<OpenOutcome> {
  const evidenceRef = `sign-in at ${new Date(input.session.authTime * 1000).toISOString()} with ${input.session.amr.join('+')}`;
  const opening: Opening = { requester: input.user, subject: input.user, openedBy: 'self', verificationMethod: selfVerificationMethod, evidenceRef, ...pick(input) };
  if (input.session.userId !== input.user.id || !acrSatisfies(input.session.acr, acr.multiFactor)) return refuse(ctx, opening, 'session_too_weak');
  return open(ctx, opening);
}

function pick(input: { lost?: readonly string[]; requestId?: string }): { lost?: readonly string[]; requestId?: string } {
  return { ...(input.lost !== undefined ? { lost: input.lost } : {}), ...(input.requestId !== undefined ? { requestId: input.requestId } : {}) };
}

/**
 * The rules both ways share, then the request: the evidence reference recordable, the lost
 * factors from the list, the person active (or locked only by failed passwords) with a password,
 * no other recovery of theirs waiting; then, in one transaction, the approval request
 * (`approval.requested`), its link row, the `recovery.requested` alert and the person's notice on
 * /account (./notices.ts).
 */
async function open(ctx: OpenContext, opening: Opening): Promise<OpenOutcome> {
  const evidence = evidenceRefProblem(opening.evidenceRef);
  if (evidence) return refuse(ctx, opening, 'invalid_request', `evidence_ref ${evidence}`);
  const lost = opening.lost === undefined ? [...lostFactors] : [...new Set(opening.lost)];
  if (lost.length === 0 || lost.some((f) => !(lostFactors as readonly string[]).includes(f))) {
    return refuse(ctx, opening, 'invalid_request', `lost must name one or more of ${lostFactors.join(', ')}`);
  }
  const subject = opening.subject;
  if (!mayHoldTokens(subject.status, subject.lockReason)) return refuse(ctx, opening, 'person_not_active');
  // A leaver on hold has no password, and their recovery is the way back for that very reason.
  const held = await credentialsHeld(ctx.storage.db, subject.id);
  if (!subject.hasPassword && !held) return refuse(ctx, opening, 'no_password');
  const settings = await recoverySettings(ctx.storage.db);
  const content: RecoveryContent = {
    type: 'recovery',
    person: { id: subject.id, username: subject.username },
    opened_by: opening.openedBy,
    requester: { id: opening.requester.id, username: opening.requester.username },
    verification_method: opening.verificationMethod as VerificationMethod,
    evidence_ref: opening.evidenceRef.trim(),
    lost: lostFactors.filter((f) => lost.includes(f)),
    // The approver is told the link alone will enrol: only when the person indeed holds no password.
    ...(held && !subject.hasPassword ? { credentials_held: true as const } : {}),
  };
  const token = randomHandle();
  const pending = Symbol('pending');
  const noPassword = Symbol('no password');
  try {
    const request = await openApprovalRequest(
      ctx,
      {
        kind: 'recovery',
        requester: opening.requester.id,
        requesterType: 'user',
        subject: subject.id,
        content: content as unknown as Record<string, unknown>,
        requiredApprovals: 1,
        subjectMustApprove: false,
        ttlMs: settings.approvalTtlMs,
      },
      async (trx, request) => {
        const now = ctx.clock.now();
        // One recovery of a person waits at a time: a second would be a second link in someone's hands.
        const waiting = await trx
          .selectFrom('approval_requests')
          .select('id')
          .where('kind', '=', 'recovery')
          .where('subject', '=', subject.id)
          .where('status', '=', 'pending')
          .where('expires_at', '>', now)
          .where('id', '<>', request.id)
          .executeTakeFirst();
        if (waiting) throw Object.assign(new Error('a recovery is already pending'), { [pending]: true });
        // The password the link will need is the one the person has NOW, at the opening: one set
        // while the request waits (an administrator's reset) voids the link (enrolment.ts rule 3).
        // A leaver on hold (read again here) has none: their link is fingerprinted with none, and
        // works only while they still have none (enrolment.ts).
        const person = await trx.selectFrom('users').select('password_hash').where('id', '=', subject.id).executeTakeFirst();
        if (!person) throw Object.assign(new Error('the person is gone'), { [noPassword]: true });
        if (!person.password_hash && (!held || !(await credentialsHeld(trx, subject.id)))) throw Object.assign(new Error('the person has no password'), { [noPassword]: true });
        await trx
          .insertInto('recovery_links')
          .values({
            request_id: request.id,
            user_id: subject.id,
            opened_by: opening.openedBy,
            lost: JSON.stringify(content.lost),
            link_digest: handleDigest(token),
            password_fingerprint: person.password_hash ? passwordFingerprint(person.password_hash) : null,
            approved_at: null,
            expires_at: null,
            failures: 0,
            used_at: null,
            created_at: now,
          })
          .execute();
        await alertInsert(trx, ctx.clock, {
          type: 'recovery.requested',
          subject: subject.id,
          data: { request_id: request.id, opened_by: opening.openedBy, requester: opening.requester.id, verification_method: content.verification_method, lost: content.lost, expires_at: request.expiresAt },
        }).execute();
        // The person hears of it too, on /account: an opening behind their back is what they must see.
        await recoveryNoticeIn(trx, subject.id, 'recovery_opened', { opened_by: opening.openedBy, lost: content.lost }, now);
        return [];
      },
      opening.requestId !== undefined ? { requestId: opening.requestId } : {},
    );
    return { ok: true, request, token };
  } catch (error) {
    if ((error as { [pending]?: boolean })[pending]) return refuse(ctx, opening, 'already_pending');
    if ((error as { [noPassword]?: boolean })[noPassword]) return refuse(ctx, opening, 'no_password');
    throw error;
  }
}

/** Records `recovery.refused` (who asked, about whom, why) and answers the refusal. */
async function refuse(ctx: OpenContext, opening: Opening, reason: OpenRefusal, detail?: string): Promise<OpenOutcome> {
  const event: AuditEvent = {
    type: 'recovery.refused',
    ...(opening.requestId !== undefined ? { requestId: opening.requestId } : {}),
    actor: opening.requester.id,
    subject: opening.subject.id,
    decision: { allow: false, reasons: [reason] },
    details: { opened_by: opening.openedBy, ...(detail ? { detail } : {}) },
  };
  await ctx.audit.record(event);
  return { ok: false, reason, ...(detail ? { detail } : {}) };
}
