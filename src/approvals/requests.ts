import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { acrSatisfies } from '../identity/acr.ts';
import { canonicalDigest } from '../jose/approval-digest.ts';
import { alertInsert } from '../signals/alerts.ts';
import type { Database } from '../storage/schema.ts';
import type { Flight } from '../storage/flight.ts';
import { independenceProblem, type Approver, type IndependenceProblem } from './independence.ts';
import type { ApprovalKind, ApprovalKindName } from './kinds.ts';
import { lapsedApprovals, type LapsedApproval } from './standing.ts';

/**
 * Requests a second person approves (docs/approvals.md), whatever their kind: one table, one
 * decision rule. A request names what is to be approved (`content`, shown to every approver; its
 * digest is what a passkey signs), who asked, for whom, through whom, how many approvals it needs
 * and until when. Its life: pending → approved | denied | expired | cancelled; an approved request
 * is consumed once (the CIBA token, the enrolment link, the activation) → consumed.
 */

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'consumed';
export type SubjectApproval = 'none' | 'pending' | 'given';

export interface ApprovalRequest {
  /** A UUID: the `txn` of every event and token of the request. */
  id: string;
  kind: ApprovalKindName;
  /** As stored; `pending` past `expiresAt` is expired (see effectiveStatus). */
  status: ApprovalStatus;
  requester: string;
  requesterType: 'user' | 'client';
  subject: string;
  clientId?: string;
  actors: string[];
  content: Record<string, unknown>;
  /** requestDigest(content). */
  digest: string;
  requiredApprovals: number;
  approvals: number;
  subjectApproval: SubjectApproval;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number;
  decidedAt?: number;
  consumedAt?: number;
}

export interface ApprovalDecision {
  requestId: string;
  approver: string;
  role: 'subject' | 'approver';
  decision: 'approve' | 'deny';
  reason?: string;
  method: ApproverProof['method'];
  acr: string;
  amr: string[];
  /** SHA-256 (base64url) of the RFC 8785 JSON of the proof's evidence: what the audit event holds. */
  evidenceDigest: string;
  at: number;
}

/**
 * How a decider proved, at the moment of deciding, that they are who they say:
 * - `passkey`: a fresh WebAuthn assertion whose challenge commits to the request's digest (the
 *   approvals page; `evidence` is the verified request-approval evidence, kept in the audit event
 *   and checked offline by verify-bundle);
 * - `token`: a person's access token for the admin API, phishing-resistant and fresh (the approvals
 *   app; its facts are the evidence);
 * - `session`: the person's signed-in session on the approvals page, for a DENIAL only (a denial
 *   can only stop something; approving always needs one of the two above). Its level is checked
 *   like any proof's, so a session weaker than the kind's level cannot deny either.
 * The caller verifies the proof; this module only records it and checks its level.
 */
export type ApproverProof =
  | { method: 'passkey'; acr: string; amr: string[]; evidence: Record<string, unknown> }
  | {
      method: 'token';
      acr: string;
      amr: string[];
      authTime: number;
      jti: string;
      clientId: string;
      /** The `kid` of the key that signed it (null: a reference token) and its consent grant: for a kind that asks what vouches for the token (key_compromise). Not evidence. */
      kid?: string | null;
      grantId?: string;
    }
  | { method: 'session'; acr: string; amr: string[]; authTime: number };

/** SHA-256 (base64url) of the RFC 8785 canonical JSON of a request's content: what approvers sign. */
export function requestDigest(content: Record<string, unknown>): string {
  return canonicalDigest(content);
}

/** The digest a decision row and an `approvals` token claim name for a proof's evidence. */
export function evidenceDigest(proof: ApproverProof): string {
  return canonicalDigest(proofEvidence(proof));
}

/** What an audit event keeps of a proof: the passkey evidence, or the token's facts (never the token). */
export function proofEvidence(proof: ApproverProof): Record<string, unknown> {
  if (proof.method === 'passkey') return proof.evidence;
  if (proof.method === 'session') return { method: 'session', acr: proof.acr, amr: proof.amr, auth_time: proof.authTime };
  return { method: 'token', acr: proof.acr, amr: proof.amr, auth_time: proof.authTime, jti: proof.jti, client_id: proof.clientId };
}

/** The longest a request may wait for its approvals: a day. */
export const maxApprovalTtlMs = 24 * 3600_000;

export interface NewApprovalRequest {
  kind: ApprovalKindName;
  requester: string;
  requesterType: 'user' | 'client';
  subject: string;
  clientId?: string;
  actors?: string[];
  content: Record<string, unknown>;
  /** Second persons' approvals needed (0 when only the subject approves). */
  requiredApprovals: number;
  /** Whether the subject must approve too (CIBA). */
  subjectMustApprove: boolean;
  ttlMs: number;
  /** Default: a new UUID. */
  id?: string;
}

/**
 * Opens a request and records `approval.requested` (txn = its id), in one transaction with
 * whatever `also` writes (the kind's own row) and the events it returns. The stored content is
 * `input.content` with the request's id as `request_id`.
 */
export async function openApprovalRequest(
  ctx: Pick<Context, 'audit' | 'clock'>,
  input: NewApprovalRequest,
  also?: (trx: Transaction<Database>, request: ApprovalRequest) => Promise<AuditEvent[]>,
  meta: { requestId?: string } = {},
): Promise<ApprovalRequest> {
  if (!Number.isInteger(input.requiredApprovals) || input.requiredApprovals < 0 || input.requiredApprovals > 10) throw new RangeError('requiredApprovals is 0 to 10');
  if (input.requiredApprovals === 0 && !input.subjectMustApprove) throw new RangeError('a request nobody must approve is no request');
  if (!(input.ttlMs > 0 && input.ttlMs <= maxApprovalTtlMs)) throw new RangeError('ttlMs is 1 ms to a day');
  const now = ctx.clock.now();
  const id = input.id ?? randomUUID();
  // The content names the request: every request's digest (what a passkey signs) is its own, so
  // the evidence of one never stands for another with the same words, even offline.
  const content = { ...input.content, request_id: id };
  const request: ApprovalRequest = {
    id,
    kind: input.kind,
    status: 'pending',
    requester: input.requester,
    requesterType: input.requesterType,
    subject: input.subject,
    ...(input.clientId !== undefined ? { clientId: input.clientId } : {}),
    actors: input.actors ?? [],
    content,
    digest: requestDigest(content),
    requiredApprovals: input.requiredApprovals,
    approvals: 0,
    subjectApproval: input.subjectMustApprove ? 'pending' : 'none',
    createdAt: now,
    expiresAt: now + input.ttlMs,
  };
  return ctx.audit.recordWith(async (trx) => {
    await trx.insertInto('approval_requests').values(rowOf(request)).execute();
    const extra = also ? await also(trx, request) : [];
    const event: AuditEvent = {
      type: 'approval.requested',
      txn: request.id,
      actor: request.requester,
      subject: request.subject,
      ...(request.clientId !== undefined ? { client: request.clientId } : {}),
      ...(meta.requestId !== undefined ? { requestId: meta.requestId } : {}),
      details: {
        request_id: request.id,
        kind: request.kind,
        digest: request.digest,
        content: request.content,
        required_approvals: request.requiredApprovals,
        subject_must_approve: input.subjectMustApprove,
        actors: request.actors,
        expires_at: request.expiresAt,
      },
    };
    return { value: request, events: [event, ...extra] };
  });
}

/** The request with this id, or undefined. */
export async function findApprovalRequest(db: Kysely<Database> | Transaction<Database>, id: string): Promise<ApprovalRequest | undefined> {
  const row = await db.selectFrom('approval_requests').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? requestFromRow(row) : undefined;
}

/** A request's status now: a pending request past its expiry is expired, whatever the row says. */
export function effectiveStatus(request: Pick<ApprovalRequest, 'status' | 'expiresAt'>, now: number): ApprovalStatus {
  return request.status === 'pending' && request.expiresAt <= now ? 'expired' : request.status;
}

/**
 * Where pending requests are read: the context (its database, its clock's now), or an executor —
 * the caller's transaction — at the instant the caller works at (src/keys/compromise.ts reads
 * under its lock, at the `now` of the whole revocation).
 */
export type PendingSource = Pick<Context, 'storage' | 'clock'> | { db: Kysely<Database> | Transaction<Database>; now: number };

/**
 * Pending, unexpired requests, oldest first (optionally of some kinds, or about one subject, or
 * waiting for their subject's own approval or not), as
 * one page: `after` continues after the request it names (keyset paging: created_at, then id).
 * `secondPerson`: only those this person might decide as a second person — asking for one, not
 * about them, not asked by them, not decided by them yet (what SQL can tell of the decision rule; the kind's
 * eligibility and the actors are for the caller).
 */
export async function listPendingApprovalRequests(
  from: PendingSource,
  filter: { kinds?: readonly ApprovalKindName[]; subject?: string; subjectApproval?: SubjectApproval; secondPerson?: string; after?: Pick<ApprovalRequest, 'createdAt' | 'id'>; limit?: number } = {},
): Promise<ApprovalRequest[]> {
  const { db, now } = 'storage' in from ? { db: from.storage.db, now: from.clock.now() } : from;
  let query = db.selectFrom('approval_requests').selectAll().where('status', '=', 'pending').where('expires_at', '>', now);
  if (filter.kinds) query = query.where('kind', 'in', filter.kinds.length > 0 ? [...filter.kinds] : ['']);
  if (filter.subject !== undefined) query = query.where('subject', '=', filter.subject);
  if (filter.subjectApproval !== undefined) query = query.where('subject_approval', '=', filter.subjectApproval);
  const person = filter.secondPerson;
  if (person !== undefined) {
    query = query
      .where('required_approvals', '>', 0)
      .where('subject', '<>', person)
      .where('requester', '<>', person)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom('approval_decisions').select('approval_decisions.request_id').whereRef('approval_decisions.request_id', '=', 'approval_requests.id').where('approval_decisions.approver', '=', person))),
      );
  }
  const after = filter.after;
  if (after !== undefined) query = query.where((eb) => eb.or([eb('created_at', '>', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '>', after.id)])]));
  const rows = await query.orderBy('created_at').orderBy('id').limit(filter.limit ?? 100).execute();
  return rows.map(requestFromRow);
}

/** Every decision on a request, in order. */
export async function decisionsOf(db: Kysely<Database> | Transaction<Database>, requestId: string): Promise<ApprovalDecision[]> {
  const rows = await db.selectFrom('approval_decisions').selectAll().where('request_id', '=', requestId).orderBy('at').orderBy('approver').execute();
  return rows.map((row) => ({
    requestId: row.request_id,
    approver: row.approver,
    role: row.role as ApprovalDecision['role'],
    decision: row.decision as ApprovalDecision['decision'],
    ...(row.reason !== null ? { reason: row.reason } : {}),
    method: row.method as ApproverProof['method'],
    acr: row.acr,
    amr: JSON.parse(row.amr) as string[],
    evidenceDigest: row.evidence_digest,
    at: Number(row.at),
  }));
}

export type DecisionRefusal =
  | 'not_found'
  | 'wrong_kind'
  | 'not_pending'
  | 'expired'
  | 'already_decided'
  | 'insufficient_authentication'
  | 'subject_passkey_required'
  | 'reason_required'
  | 'proof_used'
  | 'approver_not_asked'
  | IndependenceProblem
  | `not_eligible: ${string}`;

export type DecisionOutcome = { ok: true; request: ApprovalRequest; settled?: 'approved' | 'denied' } | { ok: false; refusal: DecisionRefusal };

/** Longest reason a denial may give. */
export const maxReasonLength = 500;

/**
 * One person's decision on a request, the one rule for every kind:
 * 1. the request exists, is of this kind, and is pending and unexpired;
 * 2. the subject decides for themselves only when the request waits for them (CIBA); anyone else
 *    is a second person, who decides only a request that asks for second persons
 *    (`requiredApprovals` > 0; else `approver_not_asked`) and must be independent
 *    (src/approvals/independence.ts: never the requester, the subject, or an actor in the chain —
 *    in code, whatever policy says);
 * 3. the proof reaches the kind's level (the subject's or the approver's), and a `session` proof
 *    only denies; the subject's own approval is by passkey when the kind says so (`subjectProof`,
 *    CIBA: a token could be one the asking client got from the subject's earlier approval);
 * 4. a denial gives a reason;
 * 5. the kind's eligibility (policy, role, custodian list) — fail closed;
 * 6. in one transaction: the proof's single-use part (`consume`: a passkey ceremony answered once,
 *    the passkey's counter moved on — false refuses the decision as `proof_used`), the decision
 *    row (a second decision by the same person is refused by the primary key), then one conditional update of the request — a denial settles it denied; an
 *    approval counts, and the one that completes the count (with the subject's own approval, when
 *    needed) settles it approved; both only while it is still pending and unexpired, so a request
 *    decided or expired meanwhile takes nothing. Only approvals that still stand complete it
 *    (src/approvals/standing.ts: an earlier approver since disabled, or no longer eligible, does
 *    not count — the request stays pending for another approver; `approval.given` names them as
 *    `not_counted`). The kind's `onSettled` writes in the same
 *    transaction. Events: `approval.given` / `approval.denied` with the proof's evidence, and
 *    `approval.completed` when it settles, all with txn = the request id; a denial raises the
 *    `approval.denied` alert (src/signals/alerts.ts) in the same transaction.
 * A refusal is recorded as `approval.refused` with its reason and changes nothing else.
 */
export async function decideApprovalRequest(
  ctx: Context,
  kind: ApprovalKind,
  input: {
    requestId: string;
    approver: Approver;
    proof: ApproverProof;
    decision: 'approve' | 'deny';
    reason?: string;
    httpRequestId?: string;
    /** Runs first in the decision's transaction; false when the proof was already used (see 6). */
    consume?: (trx: Transaction<Database>) => Promise<boolean>;
  },
): Promise<DecisionOutcome> {
  const refuse = async (refusal: DecisionRefusal, request?: ApprovalRequest): Promise<DecisionOutcome> => {
    await ctx.audit.record({
      type: 'approval.refused',
      ...(request ? { txn: request.id, subject: request.subject } : {}),
      actor: input.approver.userId,
      ...(request?.clientId !== undefined ? { client: request.clientId } : {}),
      ...(input.httpRequestId !== undefined ? { requestId: input.httpRequestId } : {}),
      decision: { allow: false, reasons: [refusal] },
      details: { request_id: input.requestId, kind: kind.name, decision: input.decision, method: input.proof.method },
    });
    return { ok: false, refusal };
  };
  const request = await findApprovalRequest(ctx.storage.db, input.requestId);
  if (!request) return refuse('not_found');
  if (request.kind !== kind.name) return refuse('wrong_kind', request);
  const now = ctx.clock.now();
  const status = effectiveStatus(request, now);
  if (status === 'expired') return refuse('expired', request);
  if (status !== 'pending') return refuse('not_pending', request);
  const role: ApprovalDecision['role'] = input.approver.userId === request.subject && request.subjectApproval === 'pending' ? 'subject' : 'approver';
  // A request that asks no second person (a CIBA request policy let through on the person's own
  // approval) is nobody else's to decide: an approval there would only be carried by the token
  // (its `approvals` claim) and cost the client its refresh token, and a denial would stop what
  // nobody was asked to judge.
  if (role === 'approver' && request.requiredApprovals === 0) return refuse('approver_not_asked', request);
  if (role === 'approver') {
    const options = kind.independence ? await kind.independence(ctx, request) : {};
    const problem = independenceProblem(input.approver, request, options);
    if (problem) return refuse(problem, request);
  }
  if (!acrSatisfies(input.proof.acr, role === 'subject' ? kind.subjectAcr : kind.approverAcr)) return refuse('insufficient_authentication', request);
  if (input.proof.method === 'session' && input.decision !== 'deny') return refuse('insufficient_authentication', request);
  if (role === 'subject' && input.decision === 'approve' && kind.subjectProof === 'passkey' && input.proof.method !== 'passkey') return refuse('subject_passkey_required', request);
  const reason = input.reason?.trim();
  if (input.decision === 'deny' && !reason) return refuse('reason_required', request);
  if (reason !== undefined && reason.length > maxReasonLength) return refuse('reason_required', request);
  if (role === 'approver') {
    let ineligible: string | undefined;
    try {
      ineligible = await kind.eligible(ctx, request, input.approver, input.proof, { decision: input.decision });
    } catch (error) {
      ctx.log.error({ err: error, requestId: input.httpRequestId }, 'approval eligibility failed: refused');
      ineligible = 'eligibility could not be decided';
    }
    if (ineligible !== undefined) return refuse(`not_eligible: ${ineligible}`, request);
  }

  // An approval completes the request only with approvals that still stand (see 6): read before the
  // transaction, as the eligibility is. An approver deciding concurrently was just found eligible, and
  // is counted by the conditional update itself.
  const lapsed: LapsedApproval[] =
    input.decision === 'approve' && request.requiredApprovals > 0
      ? await lapsedApprovals(ctx, kind, request, (await decisionsOf(ctx.storage.db, request.id)).filter((d) => d.approver !== input.approver.userId))
      : [];

  const evidence = proofEvidence(input.proof);
  const decision: ApprovalDecision = {
    requestId: request.id,
    approver: input.approver.userId,
    role,
    decision: input.decision,
    ...(reason ? { reason } : {}),
    method: input.proof.method,
    acr: input.proof.acr,
    amr: input.proof.amr,
    evidenceDigest: evidenceDigest(input.proof),
    at: now,
  };
  const lost = Symbol('lost');
  try {
    const settled = await ctx.audit.recordWith(async (trx) => {
      if (input.consume && !(await input.consume(trx))) throw Object.assign(new Error('proof used'), { [lost]: 'proof_used' as const });
      const inserted = await trx
        .insertInto('approval_decisions')
        .values({
          request_id: decision.requestId,
          approver: decision.approver,
          role: decision.role,
          decision: decision.decision,
          reason: decision.reason ?? null,
          method: decision.method,
          acr: decision.acr,
          amr: JSON.stringify(decision.amr),
          evidence_digest: decision.evidenceDigest,
          at: decision.at,
        })
        .onConflict((oc) => oc.columns(['request_id', 'approver']).doNothing())
        .returning('approver')
        .execute();
      if (inserted.length !== 1) throw Object.assign(new Error('already decided'), { [lost]: 'already_decided' as const });
      const after = await settle(trx, request, decision, now, lapsed.length);
      if (!after) throw Object.assign(new Error('not pending'), { [lost]: 'not_pending' as const });
      const base = {
        txn: request.id,
        actor: input.approver.userId,
        subject: request.subject,
        ...(request.clientId !== undefined ? { client: request.clientId } : {}),
        ...(input.httpRequestId !== undefined ? { requestId: input.httpRequestId } : {}),
      };
      const events: AuditEvent[] = [
        {
          ...base,
          type: input.decision === 'approve' ? 'approval.given' : 'approval.denied',
          decision: { allow: input.decision === 'approve', reasons: reason ? [reason] : [`${role} approved`] },
          details: {
            request_id: request.id,
            kind: request.kind,
            role,
            method: decision.method,
            acr: decision.acr,
            amr: decision.amr,
            digest: request.digest,
            evidence_digest: decision.evidenceDigest,
            evidence,
            ...(lapsed.length > 0 ? { not_counted: lapsed } : {}),
          },
        },
      ];
      // A denial needs a human's attention (issue 15 item 6): alerted in the decision's transaction.
      if (input.decision === 'deny') {
        await alertInsert(trx, ctx.clock, { type: 'approval.denied', subject: request.subject, data: { request_id: request.id, txn: request.id, kind: request.kind, approver: decision.approver, reason: decision.reason } }).execute();
      }
      if (after.status === 'approved' || after.status === 'denied') {
        const outcome = after.status;
        events.push({
          ...base,
          type: 'approval.completed',
          decision: { allow: outcome === 'approved', reasons: [outcome] },
          details: {
            request_id: request.id,
            kind: request.kind,
            outcome,
            approvals: after.approvals - lapsed.length,
            required_approvals: after.requiredApprovals,
            ...(lapsed.length > 0 ? { not_counted: lapsed } : {}),
          },
        });
        if (kind.onSettled) events.push(...(await kind.onSettled(ctx, trx, after, outcome)));
      }
      return { value: after, events };
    });
    const outcome = settled.status === 'approved' || settled.status === 'denied' ? settled.status : undefined;
    if (outcome && kind.afterSettled) {
      try {
        kind.afterSettled(ctx, settled, outcome);
      } catch (error) {
        ctx.log.error({ err: error, requestId: input.httpRequestId }, 'after an approval settled');
      }
    }
    return { ok: true, request: settled, ...(outcome ? { settled: outcome } : {}) };
  } catch (error) {
    const refusal = (error as { [lost]?: DecisionRefusal })[lost];
    if (refusal) return refuse(refusal, request);
    throw error;
  }
}

/**
 * The conditional update of a decision (see decideApprovalRequest 6); undefined when the request was
 * no longer pending. `approvals` counts the approvals given; `lapsed` of them no longer stand and
 * do not count towards `required_approvals`.
 */
async function settle(trx: Transaction<Database>, request: ApprovalRequest, decision: ApprovalDecision, now: number, lapsed: number): Promise<ApprovalRequest | undefined> {
  let update;
  if (decision.decision === 'deny') {
    update = trx.updateTable('approval_requests').set({ status: 'denied', decided_at: now });
  } else if (decision.role === 'subject') {
    update = trx.updateTable('approval_requests').set({
      subject_approval: 'given',
      status: sql<string>`case when approvals - ${lapsed} >= required_approvals then 'approved' else status end`,
      decided_at: sql<number>`case when approvals - ${lapsed} >= required_approvals then ${now} else decided_at end`,
    });
  } else {
    update = trx.updateTable('approval_requests').set({
      approvals: sql<number>`approvals + 1`,
      status: sql<string>`case when approvals + 1 - ${lapsed} >= required_approvals and subject_approval <> 'pending' then 'approved' else status end`,
      decided_at: sql<number>`case when approvals + 1 - ${lapsed} >= required_approvals and subject_approval <> 'pending' then ${now} else decided_at end`,
    });
  }
  let query = update.where('id', '=', request.id).where('status', '=', 'pending').where('expires_at', '>', now);
  if (decision.role === 'subject') query = query.where('subject_approval', '=', 'pending');
  const result = await query.executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return undefined;
  return findApprovalRequest(trx, request.id);
}

/**
 * Uses an approved request once (the CIBA token, the enrolment link, the activation): one
 * conditional update approved → consumed; false when it was not approved or already used.
 */
export async function consumeApprovalRequest(db: Kysely<Database> | Transaction<Database>, id: string, now: number): Promise<boolean> {
  const result = await db.updateTable('approval_requests').set({ status: 'consumed', consumed_at: now }).where('id', '=', id).where('status', '=', 'approved').executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * `consumeApprovalRequest` in a flight's transaction (src/storage/flight.ts), with what else the
 * use writes (a CIBA redemption's tokens): refused as `otherwise` unless it was approved, so the
 * whole transaction writes nothing when the request was used meanwhile.
 */
export function consumeApprovalRequestIn(flight: Flight, db: Kysely<Database>, id: string, now: number, otherwise: string): void {
  void flight.run(db.updateTable('approval_requests').set({ status: 'consumed', consumed_at: now }).where('id', '=', id).where('status', '=', 'approved'), { rows: 1, otherwise });
}

/** Withdraws a pending request (its requester gave up, a newer one replaces it): pending → cancelled. */
export async function cancelApprovalRequest(db: Kysely<Database> | Transaction<Database>, id: string, now: number): Promise<boolean> {
  const result = await db.updateTable('approval_requests').set({ status: 'cancelled', decided_at: now }).where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Withdraws an approved request that can no longer be used because approvals it settled with no
 * longer stand (src/approvals/standing.ts; the CIBA grant at redemption): one conditional update
 * approved → cancelled, with `approval.completed` (outcome `cancelled`, the approvals that still
 * count, and `not_counted`: who and why) in the same transaction. It is not reopened: a settled
 * request takes no more decisions, and its use is refused for good (CIBA: access_denied); the
 * client asks again. False when it was no longer approved (used or withdrawn meanwhile).
 */
export async function withdrawApprovedRequest(
  ctx: Pick<Context, 'audit' | 'clock'>,
  request: ApprovalRequest,
  lapsed: readonly LapsedApproval[],
  meta: { requestId?: string } = {},
): Promise<boolean> {
  const now = ctx.clock.now();
  return ctx.audit.recordWith(async (trx) => {
    const result = await trx.updateTable('approval_requests').set({ status: 'cancelled', decided_at: now }).where('id', '=', request.id).where('status', '=', 'approved').executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return { value: false, events: [] };
    const event: AuditEvent = {
      type: 'approval.completed',
      txn: request.id,
      subject: request.subject,
      ...(request.clientId !== undefined ? { client: request.clientId } : {}),
      ...(meta.requestId !== undefined ? { requestId: meta.requestId } : {}),
      decision: { allow: false, reasons: ['cancelled: an approval no longer stands'] },
      details: {
        request_id: request.id,
        kind: request.kind,
        outcome: 'cancelled',
        approvals: request.approvals - lapsed.length,
        required_approvals: request.requiredApprovals,
        not_counted: [...lapsed],
      },
    };
    return { value: true, events: [event] };
  });
}

/**
 * Marks pending requests past their expiry as expired, recording `approval.expired` for each (in
 * the same transaction); returns them. Reads never need this (effectiveStatus), it keeps the table
 * and the audit trail honest; the signal service runs it every pass (src/signals/service.ts), safe on
 * any number of nodes (each row is marked by one conditional update).
 */
export async function expireApprovalRequests(ctx: Pick<Context, 'audit' | 'clock' | 'storage'>, limit = 500): Promise<ApprovalRequest[]> {
  const now = ctx.clock.now();
  // Read first, outside a transaction: the periodic pass usually finds nothing to do.
  const rows = await ctx.storage.db.selectFrom('approval_requests').selectAll().where('status', '=', 'pending').where('expires_at', '<=', now).orderBy('expires_at').limit(limit).execute();
  if (rows.length === 0) return [];
  return ctx.audit.recordWith(async (trx) => {
    const expired: ApprovalRequest[] = [];
    for (const row of rows) {
      const result = await trx.updateTable('approval_requests').set({ status: 'expired', decided_at: now }).where('id', '=', row.id).where('status', '=', 'pending').executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) expired.push({ ...requestFromRow(row), status: 'expired', decidedAt: now });
    }
    const events: AuditEvent[] = expired.map((request) => ({
      type: 'approval.expired',
      txn: request.id,
      subject: request.subject,
      ...(request.clientId !== undefined ? { client: request.clientId } : {}),
      details: { request_id: request.id, kind: request.kind, approvals: request.approvals, required_approvals: request.requiredApprovals, subject_approval: request.subjectApproval },
    }));
    return { value: expired, events };
  });
}

function rowOf(request: ApprovalRequest): Database['approval_requests'] {
  return {
    id: request.id,
    kind: request.kind,
    status: request.status,
    requester: request.requester,
    requester_type: request.requesterType,
    subject: request.subject,
    client_id: request.clientId ?? null,
    actors: JSON.stringify(request.actors),
    content: JSON.stringify(request.content),
    digest: request.digest,
    required_approvals: request.requiredApprovals,
    approvals: request.approvals,
    subject_approval: request.subjectApproval,
    created_at: request.createdAt,
    expires_at: request.expiresAt,
    decided_at: request.decidedAt ?? null,
    consumed_at: request.consumedAt ?? null,
  };
}

function requestFromRow(row: Database['approval_requests']): ApprovalRequest {
  return {
    id: row.id,
    kind: row.kind as ApprovalKindName,
    status: row.status as ApprovalStatus,
    requester: row.requester,
    requesterType: row.requester_type as 'user' | 'client',
    subject: row.subject,
    ...(row.client_id !== null ? { clientId: row.client_id } : {}),
    actors: JSON.parse(row.actors) as string[],
    content: JSON.parse(row.content) as Record<string, unknown>,
    digest: row.digest,
    requiredApprovals: Number(row.required_approvals),
    approvals: Number(row.approvals),
    subjectApproval: row.subject_approval as SubjectApproval,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    ...(row.decided_at !== null ? { decidedAt: Number(row.decided_at) } : {}),
    ...(row.consumed_at !== null ? { consumedAt: Number(row.consumed_at) } : {}),
  };
}
