import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import type { Acr } from '../identity/acr.ts';
import type { Database } from '../storage/schema.ts';
import type { Approver } from './independence.ts';
import type { ApprovalDecision, ApprovalRequest, ApproverProof } from './requests.ts';

/**
 * What each kind of request a second person approves says about itself (docs/approvals.md): a
 * CIBA authentication request (`ciba`), a lost-authenticator recovery (`recovery`), a break-glass
 * activation (`break_glass`), the release of a legal hold (`hold_release`), the issuance of a
 * certificate whose profile needs approval (`certificate_issue`), an agent's model version
 * (`model_approval`), a change of a transfer address book (`transfer_destination`), the revocation
 * of a compromised signing key (`key_compromise`), the grant of a guarded role to a person
 * (`role_grant`). The decision itself — independence, the level of the proof, single
 * decisions, counting to the required number, expiry — is one rule for every kind
 * (src/approvals/requests.ts `decideApprovalRequest`); a kind adds who else may decide and what
 * happens when the request settles. Each kind lives in its own module and is listed in
 * src/approvals/kinds/index.ts.
 */
export interface ApprovalKind {
  name: ApprovalKindName;
  /** The least level of an approver's proof (a second person): e.g. phishing-resistant. */
  approverAcr: Acr;
  /** The least level of the subject's own proof, when the subject must approve too (CIBA). */
  subjectAcr: Acr;
  /**
   * How the subject must prove their own approval, when the subject approves (CIBA): `passkey` —
   * what-you-see-is-what-you-sign, a passkey whose challenge commits to the request's digest (the
   * approvals page). A token (the admin API) may be one the client asking got from an earlier
   * approval, so it never approves as the subject; it still denies. Undefined: any proof.
   */
  subjectProof?: 'passkey';
  /** Four-eyes options of the independence rule (src/approvals/independence.ts) for this request. */
  independence?(ctx: KindContext, request: ApprovalRequest): Promise<{ distinctDesks?: boolean; partyDesks?: readonly string[] }>;
  /**
   * Whether this second person may decide this request (a policy decision, a role, a custodian
   * list): undefined when they may, else the reason (recorded in `approval.refused`). Fail closed:
   * an error is a refusal. `listing`: only deciding what to show (the approvals page, the admin
   * API's list) — nothing is recorded; the decision itself asks again, and records, with
   * `decision` (a kind may let a proof approve that it does not let deny: key_compromise).
   */
  eligible(ctx: KindContext, request: ApprovalRequest, approver: Approver, proof: ApproverProof, options?: { listing?: boolean; decision?: 'approve' | 'deny' }): Promise<string | undefined>;
  /**
   * Whether a second person's approval, given earlier, still stands now — checked when the request
   * settles and when it is used (src/approvals/standing.ts), after the rule every kind shares (the
   * approver is still an active person). Undefined when it stands, else why not; an error is a
   * no (fail closed). Absent: the shared rule alone.
   */
  stillStands?(ctx: KindContext, request: ApprovalRequest, decision: ApprovalDecision): Promise<string | undefined>;
  /**
   * What an approver is shown, in plain language (the approvals page and the admin API). `people`:
   * what the request does not store but is read when it is shown (the subject's username: personal
   * data, kept out of the stored content and so out of the audit log).
   */
  describe(request: ApprovalRequest, people?: DescribedPeople): ApprovalDescription;
  /**
   * In the transaction of the decision that settles the request (approved or denied): the kind's
   * own state, and the events that go with it.
   */
  onSettled?(ctx: KindContext, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]>;
  /** After that transaction committed (e.g. a CIBA ping to the client). Must not throw. */
  afterSettled?(ctx: KindContext, request: ApprovalRequest, outcome: 'approved' | 'denied'): void;
}

export type ApprovalKindName = 'ciba' | 'recovery' | 'break_glass' | 'hold_release' | 'certificate_issue' | 'model_approval' | 'transfer_destination' | 'key_compromise' | 'role_grant';
export const approvalKindNames: readonly ApprovalKindName[] = ['ciba', 'recovery', 'break_glass', 'hold_release', 'certificate_issue', 'model_approval', 'transfer_destination', 'key_compromise', 'role_grant'];

export type KindContext = Context;

/** The people a description may name, read from the users table when the request is shown. */
export interface DescribedPeople {
  /** The subject's username, when they still exist. */
  subjectUsername?: string;
}

/** A request in plain language: a title and labelled lines, each a string the page escapes. */
export interface ApprovalDescription {
  title: string;
  lines: { label: string; value: string }[];
}
