import { randomBytes } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { cancelApprovalRequest, maxApprovalTtlMs, openApprovalRequest, type ApprovalRequest } from '../approvals/requests.ts';
import type { Context } from '../context.ts';
import { readStoredRisk } from '../identity/stored-risk.ts';
import type { Database } from '../storage/schema.ts';
import { findDestination, findDestinationByKey, liveStatuses, versionsOf, type DestinationEntry, type DestinationVersion } from './address-book.ts';
import { beneficiaryNameKey, destinationForRecord, type Destination } from './destination-input.ts';
import { destinationKey } from './detail.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { resolveMasterKey } from '../keys/master-key.ts';
import { matchAny, type ScreeningHit } from '../risk/screening/matcher.ts';
import { alertInsert } from '../signals/alerts.ts';

/**
 * Change control of the address book (issue 24 item 2; docs/transfers.md "Destination control"):
 *
 * 1. who asks: a person with their own token, authenticated phishing-resistantly in the last five
 *    minutes (the endpoint checks it: src/endpoints/admin/transfer-destinations.ts), who belongs to
 *    the legal entity (a desk of it); or apply (a client or the CLI, nobody signed in: two approvals);
 * 2. a second person approves through the four-eyes machinery (approval kind `transfer_destination`,
 *    src/approvals/kinds/transfer-destination.ts): a holder of `approver` of the same legal entity,
 *    phishing-resistant, never the person who asked (the one independence rule);
 * 3. a change asked from a new device (the sign-in behind the token fired the risk engine's
 *    `new_device`, or cannot be found) is held for review: it needs a `compliance` person of the
 *    entity besides the approver before its cool-down starts;
 * 4. once approved, the version cools down (the entity's cool-down, default
 *    CLEARANCE_TRANSFER_COOLDOWN_HOURS) before a transfer may use it;
 * 5. a removal takes effect at once, with no approval: it only takes risk away; a change still
 *    waiting for the removed destination is cancelled;
 * 6. an IBAN beneficiary's name the screening list names is refused before anything is asked
 *    (`transfer_destination.refused`, reason `counterparty-screening`, a `screening.matched`
 *    alert; apply's: `transfer_destination.rejected` instead of its approval request).
 * Every step is an audit event (`transfer_destination.*`, txn = the change's approval request).
 */

/** How recent the requester's sign-in must be: 5 minutes, as for an approval (RFC 9470 `max_age`). */
export const changeMaxAuthAgeSeconds = 300;

/** The role of the second person who approves a change. */
export const destinationApproverRole = 'approver';
/** The role that reviews a change held for review (asked from a new device). */
export const destinationReviewRole = 'compliance';

/** A change the book refuses (400): unknown account, bad destination. */
export class DestinationError extends Error {
  override name = 'DestinationError';
}
/** A change that collides with the book's state (409): one waiting already, nothing to change, removed already. */
export class DestinationConflict extends DestinationError {
  override name = 'DestinationConflict';
}
/** No such destination (404). */
export class DestinationNotFound extends DestinationError {
  override name = 'DestinationNotFound';
}

/** Who asks for a change. */
export type ChangeRequester = { type: 'user'; id: string } | { type: 'client'; id: string };

/** The content of a change's approval request: what every approver is shown and a passkey signs (no beneficiary name). */
export interface DestinationChangeContent {
  destination_id: string;
  version: number;
  lei: string;
  account: string;
  destination_key: string;
  destination: Record<string, unknown>;
  label?: string;
  change: 'add' | 'change';
  requested_by: string;
  requester_type: 'user' | 'client';
  via: 'admin-api' | 'apply';
  /** Why it was held for review (`new_device`, `sign_in_unknown`): a compliance person approves too. */
  review_reason?: string;
}

export interface ChangeInput {
  lei: string;
  account: string;
  destination: Destination;
  label?: string;
  requester: ChangeRequester;
  /** Why the change is held for review (./change-control.ts signInReview), if it is. */
  reviewReason?: string;
  via: 'admin-api' | 'apply';
  requestId?: string;
}

/**
 * Asks for a destination to be added to a book, or a new version of one (a new label, BIC or
 * beneficiary name for the same key): one approval request and the version row, in one transaction
 * with `approval.requested`, `transfer_destination.requested` (and `.held`). Refuses an account
 * that is not the entity's, an IBAN beneficiary the screening list names (DestinationError, after
 * `transfer_destination.refused` and a `screening.matched` alert), a change identical to the
 * destination's live version or while another change of it waits (DestinationConflict).
 */
export async function requestDestinationChange(ctx: Context, input: ChangeInput): Promise<{ entry: DestinationEntry; version: DestinationVersion; request: ApprovalRequest }> {
  await requireAccountOf(ctx, input.lei, input.account);
  const key = destinationKey(input.destination);
  const hit = beneficiaryHit(ctx, input.destination);
  if (hit) {
    const facts = screeningFacts(ctx, hit, { lei: input.lei, account: input.account, destination_key: key });
    await ctx.audit.recordWith(async (trx) => {
      await alertInsert(trx, ctx.clock, { type: 'screening.matched', subject: input.requester.id, data: { ...facts, at: 'address_book', requested_by: input.requester.id, refused: true } }).execute();
      const event: AuditEvent = {
        type: 'transfer_destination.refused',
        actor: input.requester.id,
        ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
        decision: { allow: false, reasons: ['counterparty-screening'] },
        details: { ...facts, kind: input.destination.kind, requested_by: input.requester.id, requester_type: input.requester.type, via: input.via },
      };
      return { value: undefined, events: [event] };
    });
    // No tipping-off (AML): the reason is in the audit event and the alert, not in the answer.
    throw new DestinationError("the destination's beneficiary cannot be accepted at present");
  }
  const found = await findDestinationByKey(ctx.storage.db, { lei: input.lei, account: input.account, key });
  const versions = found ? await versionsOf(ctx.storage.db, found.id) : [];
  const now = ctx.clock.now();
  refuseUnneeded(versions, input.destination, input.label, now);
  const entry: DestinationEntry = found ?? { id: newDestinationId(), lei: input.lei, account: input.account, key, kind: input.destination.kind, createdAt: now };
  const version: DestinationVersion = {
    destinationId: entry.id,
    version: (versions.at(-1)?.version ?? 0) + 1,
    destination: input.destination,
    ...(input.label !== undefined ? { label: input.label } : {}),
    status: input.reviewReason !== undefined ? 'held_for_review' : 'pending',
    requestedBy: input.requester.id,
    requesterType: input.requester.type,
    requestedAt: now,
    via: input.via,
    ...(input.reviewReason !== undefined ? { reviewReason: input.reviewReason } : {}),
  };
  const content = changeContent(ctx, entry, version, versions.some((v) => v.status === 'approved') ? 'change' : 'add');
  const request = await openChangeRequest(ctx, content, version, input.requestId, async (trx, opened) => {
    await insertEntry(trx, entry);
    const inserted = await trx
      .insertInto('transfer_destination_versions')
      .values({ ...versionRow(version), approval_request: opened.id, request_expires_at: opened.expiresAt })
      .onConflict((oc) => oc.columns(['destination_id', 'version']).doNothing())
      .returning('version')
      .execute();
    if (inserted.length !== 1) throw new DestinationConflict(`destination ${entry.id} changed meanwhile; look again`);
    await refuseWaitingIn(trx, entry.id, version.version, now);
  });
  return { entry, version: { ...version, approvalRequest: request.id, requestExpiresAt: request.expiresAt }, request };
}

/**
 * Opens the approval request of a version written without one (apply's, which writes in its own
 * transaction): the version claims the request in the same transaction (one claim wins when two
 * nodes try). Returns the request, or undefined when the version no longer waits for one.
 */
export async function openRequestFor(ctx: Context, version: DestinationVersion, entry: DestinationEntry): Promise<ApprovalRequest | undefined> {
  const hit = beneficiaryHit(ctx, version.destination);
  if (hit) {
    await rejectScreened(ctx, version, entry, hit);
    return undefined;
  }
  const content = changeContent(ctx, entry, version, version.version > 1 ? 'change' : 'add');
  try {
    return await openChangeRequest(ctx, content, version, undefined, async (trx, opened) => {
      const claimed = await trx
        .updateTable('transfer_destination_versions')
        .set({ approval_request: opened.id, request_expires_at: opened.expiresAt })
        .where('destination_id', '=', version.destinationId)
        .where('version', '=', version.version)
        .where('approval_request', 'is', null)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) throw new DestinationConflict('claimed meanwhile');
    });
  } catch (error) {
    if (error instanceof DestinationConflict) return undefined;
    throw error;
  }
}

/**
 * Removes a destination from its book at once: every live version (waiting or approved) becomes
 * `removed`, a waiting change's approval request is cancelled, one `transfer_destination.removed`.
 * A transfer to it is refused from the commit on, on every node (the lookup reads the database).
 */
export async function removeDestination(ctx: Context, input: { id: string; actor: string; reason?: string; requestId?: string }): Promise<{ entry: DestinationEntry; removed: DestinationVersion[] }> {
  const entry = await findDestination(ctx.storage.db, input.id);
  if (!entry) throw new DestinationNotFound(`no destination ${input.id}`);
  const now = ctx.clock.now();
  return ctx.audit.recordWith(async (trx) => {
    const live = (await versionsOf(trx, entry.id)).filter((v) => liveStatuses.includes(v.status));
    if (live.length === 0) throw new DestinationConflict(`destination ${entry.id} is not in the book (removed, rejected or expired)`);
    await trx
      .updateTable('transfer_destination_versions')
      .set({ status: 'removed', decided_at: now, removed_by: input.actor })
      .where('destination_id', '=', entry.id)
      .where('status', 'in', [...liveStatuses])
      .execute();
    const cancelled: string[] = [];
    for (const v of live) {
      if (v.status !== 'approved' && v.approvalRequest !== undefined && (await cancelApprovalRequest(trx, v.approvalRequest, now))) cancelled.push(v.approvalRequest);
    }
    const latest = live.at(-1)!;
    const event: AuditEvent = {
      type: 'transfer_destination.removed',
      ...(latest.approvalRequest !== undefined ? { txn: latest.approvalRequest } : {}),
      actor: input.actor,
      ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
      details: {
        destination_id: entry.id,
        versions: live.map((v) => v.version),
        lei: entry.lei,
        account: entry.account,
        destination_key: entry.key,
        kind: entry.kind,
        removed_by: input.actor,
        ...(cancelled.length > 0 ? { cancelled_requests: cancelled } : {}),
        ...(input.reason !== undefined ? { reason: input.reason } : {}),
      },
    };
    return { value: { entry, removed: live.map((v) => ({ ...v, status: 'removed' as const, decidedAt: now, removedBy: input.actor })) }, events: [event] };
  });
}

/**
 * Whether a person's change is held for review because of the sign-in behind their token: the
 * session started at `authTime` (seconds) by this person fired the risk engine's `new_device`
 * (src/risk/signals/new-device.ts) — `new_device`; or no such sign-in is on record — `sign_in_unknown`
 * (fail closed: a token whose sign-in cannot be assessed counts as one from a new device).
 * Undefined when it is not held.
 */
export async function signInReview(ctx: Pick<Context, 'storage'>, userId: string, authTime: number): Promise<string | undefined> {
  // The sign-in's own record (src/identity/sessions.ts keeps its risk assessment with the session).
  const sessions = await ctx.storage.db.selectFrom('sessions').select('risk').where('user_id', '=', userId).where('auth_time', '=', authTime).execute();
  if (sessions.length === 0) return 'sign_in_unknown';
  const fired = sessions.some((s) => readStoredRisk(s.risk)?.signals.some((hit) => hit.signal === 'new_device'));
  return fired ? 'new_device' : undefined;
}

/**
 * The sanctions/PEP screening of a change (docs/risk.md "Sanctions and PEP screening"): an IBAN
 * destination's beneficiary name, as a legal entity and as a person (an account may be held by
 * either), against the list this node holds (src/risk/screening). The first hit, or undefined.
 */
function beneficiaryHit(ctx: Pick<Context, 'risk'>, destination: Destination): ScreeningHit | undefined {
  const index = ctx.risk.screening.index;
  if (!index || destination.kind !== 'iban' || destination.name === undefined) return undefined;
  return matchAny(index, [{ type: 'entity', name: destination.name }, { type: 'person', name: destination.name }])[0];
}

/** What the refusal's event and alert say of a hit: where, the entry and what matched — never the name. */
function screeningFacts(ctx: Pick<Context, 'risk'>, hit: ScreeningHit, where: { lei: string; account: string; destination_key: string }): Record<string, unknown> {
  return {
    ...where,
    counterparty: 'destination',
    entry_id: hit.entry.id,
    list: hit.entry.list,
    ...(hit.entry.programme !== undefined ? { programme: hit.entry.programme } : {}),
    matched_on: hit.matchedOn,
    list_digest: ctx.risk.screening.index!.digest,
  };
}

/**
 * A change apply wrote whose beneficiary the list names is rejected instead of asked (once: only a
 * version still waiting for its request), with `transfer_destination.rejected` (reason
 * `counterparty-screening`) and a `screening.matched` alert.
 */
async function rejectScreened(ctx: Context, version: DestinationVersion, entry: DestinationEntry, hit: ScreeningHit): Promise<void> {
  const facts = screeningFacts(ctx, hit, { lei: entry.lei, account: entry.account, destination_key: entry.key });
  const now = ctx.clock.now();
  await ctx.audit.recordWith(async (trx) => {
    const rejected = await trx
      .updateTable('transfer_destination_versions')
      .set({ status: 'rejected', decided_at: now })
      .where('destination_id', '=', version.destinationId)
      .where('version', '=', version.version)
      .where('approval_request', 'is', null)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(rejected.numUpdatedRows) !== 1) return { value: undefined, events: [] };
    await alertInsert(trx, ctx.clock, { type: 'screening.matched', subject: version.requestedBy, data: { ...facts, at: 'address_book', requested_by: version.requestedBy, refused: true } }).execute();
    const event: AuditEvent = {
      type: 'transfer_destination.rejected',
      actor: version.requestedBy,
      subject: version.destinationId,
      decision: { allow: false, reasons: ['counterparty-screening'] },
      details: { destination_id: version.destinationId, version: version.version, ...facts, reason: 'counterparty-screening', requested_by: version.requestedBy, via: version.via },
    };
    return { value: undefined, events: [event] };
  });
}

/** The legal entity exists and the account is one of its accounts (src/entities). */
export async function requireAccountOf(ctx: Pick<Context, 'entities'>, lei: string, account: string): Promise<void> {
  const snapshot = await ctx.entities.snapshot();
  if (!snapshot.legalEntities.has(lei)) throw new DestinationError(`${lei} is not a legal entity of the entity model`);
  if (snapshot.accounts.get(account)?.lei !== lei) throw new DestinationError(`${account} is not an account of legal entity ${lei}`);
}

/** A change is needed: not what the destination's latest live version already is, and none waits (checked again in the transaction). */
function refuseUnneeded(versions: readonly DestinationVersion[], destination: Destination, label: string | undefined, now: number): void {
  const waiting = versions.find((v) => (v.status === 'pending' || v.status === 'held_for_review') && (v.requestExpiresAt === undefined || v.requestExpiresAt > now));
  if (waiting) throw new DestinationConflict(`a change of this destination already waits for approval (version ${waiting.version}${waiting.approvalRequest ? `, request ${waiting.approvalRequest}` : ''})`);
  const approved = versions.filter((v) => v.status === 'approved').at(-1);
  if (approved && sameVersion(approved, destination, label)) throw new DestinationConflict(`the destination is in the book already as it is asked (version ${approved.version})`);
}

/** Whether a version says exactly this (destination fields and label). */
export function sameVersion(version: Pick<DestinationVersion, 'destination' | 'label'>, destination: Destination, label: string | undefined): boolean {
  return canonicalize(version.destination) === canonicalize(destination) && (version.label ?? null) === (label ?? null);
}

/** Inside the change's transaction: no other change of the entry waits (two asked at once: one wins). */
async function refuseWaitingIn(trx: Transaction<Database>, destinationId: string, version: number, now: number): Promise<void> {
  const others = await trx
    .selectFrom('transfer_destination_versions')
    .select(['version', 'request_expires_at'])
    .where('destination_id', '=', destinationId)
    .where('version', '!=', version)
    .where('status', 'in', ['pending', 'held_for_review'])
    .execute();
  if (others.some((o) => o.request_expires_at === null || Number(o.request_expires_at) > now)) throw new DestinationConflict('another change of this destination waits for approval');
}

/** The entry, once: a second asker of the same key at once finds it and uses its id, or fails. */
async function insertEntry(trx: Transaction<Database>, entry: DestinationEntry): Promise<void> {
  await trx
    .insertInto('transfer_destinations')
    .values({ id: entry.id, lei: entry.lei, account: entry.account, destination_key: entry.key, kind: entry.kind, created_at: entry.createdAt })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const stored = await trx.selectFrom('transfer_destinations').select('id').where('lei', '=', entry.lei).where('account', '=', entry.account).where('destination_key', '=', entry.key).executeTakeFirst();
  if (stored?.id !== entry.id) throw new DestinationConflict('the destination was added meanwhile; look again');
}

/**
 * The approval request of a change, with the kind's rules (src/approvals/kinds/transfer-destination.ts):
 * one approver after a person asked; two when the change is held for review (an approver and a
 * compliance person) or was asked by apply (two approvers: nobody stepped up behind it).
 */
async function openChangeRequest(
  ctx: Context,
  content: DestinationChangeContent,
  version: DestinationVersion,
  requestId: string | undefined,
  write: (trx: Transaction<Database>, opened: ApprovalRequest) => Promise<void>,
): Promise<ApprovalRequest> {
  return openApprovalRequest(
    ctx,
    {
      kind: 'transfer_destination',
      requester: version.requestedBy,
      requesterType: version.requesterType,
      // Not a person: the destination. Nobody approves a change of their own asking (independence).
      subject: version.destinationId,
      content: content as unknown as Record<string, unknown>,
      requiredApprovals: version.requesterType === 'client' || version.reviewReason !== undefined ? 2 : 1,
      subjectMustApprove: false,
      ttlMs: maxApprovalTtlMs,
    },
    async (trx, opened) => {
      await write(trx, opened);
      const base = {
        txn: opened.id,
        actor: version.requestedBy,
        ...(requestId !== undefined ? { requestId } : {}),
      };
      const details = {
        destination_id: content.destination_id,
        version: content.version,
        lei: content.lei,
        account: content.account,
        destination_key: content.destination_key,
        kind: version.destination.kind,
        destination: content.destination,
        ...(content.label !== undefined ? { label: content.label } : {}),
        change: content.change,
        requested_by: content.requested_by,
        requester_type: content.requester_type,
        via: content.via,
        approval_request: opened.id,
        required_approvals: opened.requiredApprovals,
      };
      const events: AuditEvent[] = [{ ...base, type: 'transfer_destination.requested', details }];
      if (version.reviewReason !== undefined) {
        events.push({ ...base, type: 'transfer_destination.held', decision: { allow: false, reasons: [version.reviewReason] }, details: { ...details, reason: version.reviewReason, review_role: destinationReviewRole } });
      }
      return events;
    },
    requestId !== undefined ? { requestId } : {},
  );
}

function changeContent(ctx: Pick<Context, 'config'>, entry: DestinationEntry, version: DestinationVersion, change: 'add' | 'change'): DestinationChangeContent {
  return {
    destination_id: entry.id,
    version: version.version,
    lei: entry.lei,
    account: entry.account,
    destination_key: entry.key,
    // The beneficiary's name as a keyed HMAC (destination-input.ts): never the name, never a guessable hash.
    destination: destinationForRecord(version.destination, beneficiaryNameKey(resolveMasterKey(ctx.config).key)),
    ...(version.label !== undefined ? { label: version.label } : {}),
    change,
    requested_by: version.requestedBy,
    requester_type: version.requesterType,
    via: version.via,
    ...(version.reviewReason !== undefined ? { review_reason: version.reviewReason } : {}),
  };
}

/** A version as stored (no request yet). */
export function versionRow(version: DestinationVersion): Database['transfer_destination_versions'] {
  return {
    destination_id: version.destinationId,
    version: version.version,
    destination: JSON.stringify(version.destination),
    label: version.label ?? null,
    status: version.status,
    requested_by: version.requestedBy,
    requester_type: version.requesterType,
    requested_at: version.requestedAt,
    via: version.via,
    approval_request: version.approvalRequest ?? null,
    request_expires_at: version.requestExpiresAt ?? null,
    review_reason: version.reviewReason ?? null,
    approved_by: null,
    approved_at: null,
    usable_from: null,
    cooldown_ms: null,
    decided_at: null,
    removed_by: null,
  };
}

/** `dst_` and 128 random bits. */
export function newDestinationId(): string {
  return `dst_${randomBytes(16).toString('base64url')}`;
}

export { insertEntry as insertDestinationEntry };
