import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import { invalidClient } from '../../clients/authentication/errors.ts';
import type { AuthenticatedClient } from '../../clients/authentication/types.ts';
import type { Context } from '../../context.ts';
import { findUser } from '../../identity/users.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Database } from '../../storage/schema.ts';
import { consumeApprovalRequest, listPendingApprovalRequests, openApprovalRequest, type ApprovalRequest } from '../requests.ts';
import { breakGlassAccountNames, findBreakGlassAccount } from './accounts.ts';
import { unrecordableText } from '../../audit/free-text.ts';

/**
 * Break-glass activations (docs/recovery.md "Break-glass"): requested by a person with a reason,
 * approved by two distinct custodians through the one decision rule (a `break_glass` approval
 * request, src/approvals/kinds/break-glass.ts), in force for the account's activation length from
 * the second approval, never renewed (a new activation needs a new request and new approvals), one
 * in force per account. While in force the account's client authenticates and gets tokens only
 * for the listed scopes and audience, each flagged `break_glass: true` with the activation's id and
 * capped at its end. When it ends (expiry or stand-down) every token issued under it is dead at
 * once through the one liveness rule (src/tokens/liveness.ts asks `isActivationInForce`), an alert
 * is raised and a review is opened for compliance (./reviews.ts).
 */
export interface Activation {
  /** The approval request's id: the txn of everything under it. */
  id: string;
  account: string;
  requester: string;
  reason: string;
  scopes: string[];
  audience: string;
  startsAt: number;
  endsAt: number;
  endedAt?: number;
  endReason?: 'expired' | 'ended';
}

/** What a break-glass approval request shows its approvers (and its digest commits to). */
export interface ActivationContent {
  type: 'break_glass';
  account: string;
  reason: string;
  scopes: string[];
  audience: string;
  activation_seconds: number;
}

/** How long custodians have to approve a request: 30 minutes. */
export const approvalWindowMs = 30 * 60_000;
/** Longest reason a requester may give. */
export const maxReasonLength = 500;

export type ActivationRequestOutcome =
  | { ok: true; request: ApprovalRequest }
  | { ok: false; refusal: 'unknown_account' | 'reason_required' | 'requester_not_active' | 'already_in_force' | 'already_requested' }
  /** The reason holds a control character or a value the audit log refuses (src/audit/free-text.ts). */
  | { ok: false; refusal: 'reason_unrecordable'; detail: string };

/**
 * A person asks to activate an emergency account: the account exists, the reason is given (and
 * recordable: no control character, nothing shaped like a token or key), the
 * requester is an active person, and neither an activation is in force nor a request pending for
 * the account. Opens a `break_glass` approval request needing two approvals (the requester can
 * never be one: src/approvals/independence.ts), recorded with `break_glass.requested`.
 */
export async function requestActivation(
  ctx: Context,
  input: { account: string; requester: string; reason: string; httpRequestId?: string },
): Promise<ActivationRequestOutcome> {
  const account = await findBreakGlassAccount(ctx.storage.db, input.account);
  if (!account) return { ok: false, refusal: 'unknown_account' };
  const reason = input.reason.trim();
  if (reason.length === 0 || reason.length > maxReasonLength) return { ok: false, refusal: 'reason_required' };
  const unrecordable = unrecordableText(reason);
  if (unrecordable) return { ok: false, refusal: 'reason_unrecordable', detail: `reason ${unrecordable}` };
  const requester = await findUser(ctx, input.requester);
  if (!requester || requester.status !== 'active') return { ok: false, refusal: 'requester_not_active' };
  await expireActivations(ctx);
  if (await activationInForce(ctx.storage.db, account.name, ctx.clock.now())) return { ok: false, refusal: 'already_in_force' };
  const [pending] = await listPendingApprovalRequests(ctx, { kinds: ['break_glass'], subject: account.name, limit: 1 });
  if (pending) return { ok: false, refusal: 'already_requested' };
  const content: ActivationContent = { type: 'break_glass', account: account.name, reason, scopes: account.scopes, audience: account.audience, activation_seconds: account.activationSeconds };
  const request = await openApprovalRequest(
    ctx,
    {
      kind: 'break_glass',
      requester: requester.id,
      requesterType: 'user',
      // The emergency account is whom the approval is about: it is a client, never a person who could approve.
      subject: account.name,
      content: content as unknown as Record<string, unknown>,
      requiredApprovals: 2,
      subjectMustApprove: false,
      ttlMs: approvalWindowMs,
    },
    async (_trx, opened) => [
      {
        type: 'break_glass.requested',
        txn: opened.id,
        actor: requester.id,
        subject: account.name,
        ...(input.httpRequestId !== undefined ? { requestId: input.httpRequestId } : {}),
        details: { break_glass: true, activation: opened.id, account: account.name, reason, scopes: account.scopes, audience: account.audience, activation_seconds: account.activationSeconds },
      },
    ],
    input.httpRequestId !== undefined ? { requestId: input.httpRequestId } : {},
  );
  return { ok: true, request };
}

/**
 * In the transaction of the second approval (the kind's onSettled): the request is consumed and
 * the activation starts now, for the length the approvers saw; `break_glass.activated` is
 * recorded and alerted. An activation of the account whose time ran out but which the expiry
 * worker has not ended yet is ended first; one truly in force makes the insert fail on the unique
 * index (requestActivation refuses a second request, so only a race gets there) and the whole
 * decision rolls back.
 */
export async function startActivation(ctx: Context, trx: Transaction<Database>, request: ApprovalRequest): Promise<AuditEvent[]> {
  const now = ctx.clock.now();
  const content = request.content as unknown as ActivationContent;
  const events: AuditEvent[] = [];
  const due = await trx.selectFrom('break_glass_activations').selectAll().where('in_force_account', '=', content.account).where('ends_at', '<=', now).execute();
  for (const row of due) events.push(...(await endIn(ctx, trx, activationFromRow(row), now, 'expired')));
  if (!(await consumeApprovalRequest(trx, request.id, now))) throw new Error(`break-glass request ${request.id} was not approved when activating`);
  const activation: Activation = {
    id: request.id,
    account: content.account,
    requester: request.requester,
    reason: content.reason,
    scopes: content.scopes,
    audience: content.audience,
    startsAt: now,
    endsAt: now + content.activation_seconds * 1000,
  };
  await trx
    .insertInto('break_glass_activations')
    .values({
      id: activation.id,
      account: activation.account,
      requester: activation.requester,
      reason: activation.reason,
      scopes: JSON.stringify(activation.scopes),
      audience: activation.audience,
      starts_at: activation.startsAt,
      ends_at: activation.endsAt,
      in_force_account: activation.account,
      ended_at: null,
      end_reason: null,
    })
    .execute();
  const facts = { activation: activation.id, account: activation.account, requester: activation.requester, reason: activation.reason, scopes: activation.scopes, audience: activation.audience, starts_at: activation.startsAt, ends_at: activation.endsAt };
  await alertInsert(trx, ctx.clock, { type: 'break_glass.activated', subject: activation.account, data: { ...facts, txn: activation.id } }).execute();
  events.push({ type: 'break_glass.activated', txn: activation.id, subject: activation.account, actor: activation.requester, details: { break_glass: true, ...facts } });
  return events;
}

/** The activation of an account in force at `now` (not ended, not past its end), if any. */
export async function activationInForce(db: Kysely<Database> | Transaction<Database>, account: string, now: number): Promise<Activation | undefined> {
  const row = await db.selectFrom('break_glass_activations').selectAll().where('in_force_account', '=', account).where('ends_at', '>', now).executeTakeFirst();
  return row && activationFromRow(row);
}

/**
 * Whether the activation a token names is in force: the liveness rule's question for a token with
 * `break_glass_activation` (src/tokens/liveness.ts). One read by primary key; an unknown id is not.
 */
export async function isActivationInForce(db: Kysely<Database>, id: string, now: number): Promise<boolean> {
  if (id.length > 64) return false;
  const row = await db.selectFrom('break_glass_activations').select(['ended_at', 'ends_at']).where('id', '=', id).executeTakeFirst();
  return row !== undefined && row.ended_at === null && Number(row.ends_at) > now;
}

/** An activation by id. */
export async function findActivation(db: Kysely<Database>, id: string): Promise<Activation | undefined> {
  if (id.length > 64) return undefined;
  const row = await db.selectFrom('break_glass_activations').selectAll().where('id', '=', id).executeTakeFirst();
  return row && activationFromRow(row);
}

/** Activations, newest first (optionally of one account). */
export async function listActivations(db: Kysely<Database>, filter: { account?: string; limit?: number } = {}): Promise<Activation[]> {
  let query = db.selectFrom('break_glass_activations').selectAll();
  if (filter.account !== undefined) query = query.where('account', '=', filter.account);
  return (await query.orderBy('starts_at', 'desc').limit(filter.limit ?? 100).execute()).map(activationFromRow);
}

/** What client authentication learned of an emergency account's activation (src/clients/authentication/types.ts). */
export interface BreakGlassGrant {
  activation: string;
  scopes: string[];
  audience: string;
  /** Epoch ms. */
  endsAt: number;
}

/**
 * The gate of an emergency account: its client authentication works only while an activation is
 * in force (anything else is `invalid_client`, fail closed). An ordinary client passes untouched
 * (a cached set of names, no query); an emergency one comes back with its activation.
 */
export async function gateEmergencyClient(ctx: Pick<Context, 'storage' | 'clock'>, authenticated: AuthenticatedClient): Promise<AuthenticatedClient> {
  const clientId = authenticated.client.metadata.client_id;
  if (!(await breakGlassAccountNames(ctx)).has(clientId)) return authenticated;
  const activation = await activationInForce(ctx.storage.db, clientId, ctx.clock.now());
  if (!activation) throw invalidClient(`emergency account ${clientId} has no break-glass activation in force`);
  return { ...authenticated, breakGlass: { activation: activation.id, scopes: activation.scopes, audience: activation.audience, endsAt: activation.endsAt } };
}

/**
 * Ends every activation whose time ran out (`expired`): safe on any number of workers and nodes —
 * each is ended by one conditional update, and only its winner records `break_glass.expired`,
 * raises the alert and opens the review, in one transaction. Returns what it ended.
 */
export async function expireActivations(ctx: Pick<Context, 'audit' | 'clock' | 'storage'>, limit = 100): Promise<Activation[]> {
  const now = ctx.clock.now();
  const due = await ctx.storage.db.selectFrom('break_glass_activations').selectAll().where('ended_at', 'is', null).where('ends_at', '<=', now).orderBy('ends_at').limit(limit).execute();
  if (due.length === 0) return [];
  return ctx.audit.recordWith(async (trx) => {
    const ended: Activation[] = [];
    const events: AuditEvent[] = [];
    for (const row of due) {
      const activation = activationFromRow(row);
      const written = await endIn(ctx, trx, activation, now, 'expired');
      if (written.length > 0) {
        ended.push({ ...activation, endedAt: now, endReason: 'expired' });
        events.push(...written);
      }
    }
    return { value: ended, events };
  });
}

/**
 * Stands an activation down before its time (the incident is over): its requester or a custodian
 * may, recorded as `break_glass.ended`. False when it was not in force.
 */
export async function standDown(ctx: Pick<Context, 'audit' | 'clock' | 'storage'>, id: string, actor: string, requestId?: string): Promise<boolean> {
  const activation = await findActivation(ctx.storage.db, id);
  if (!activation || activation.endedAt !== undefined) return false;
  const now = ctx.clock.now();
  return ctx.audit.recordWith(async (trx) => {
    const events = await endIn(ctx, trx, activation, now, activation.endsAt <= now ? 'expired' : 'ended', actor, requestId);
    return { value: events.length > 0, events };
  });
}

/** Ends one activation in `trx` if it has not ended yet: the conditional update, the alert, the review, the events (none when another ended it). */
async function endIn(ctx: Pick<Context, 'clock'>, trx: Transaction<Database>, activation: Activation, now: number, reason: 'expired' | 'ended', actor?: string, requestId?: string): Promise<AuditEvent[]> {
  const result = await trx.updateTable('break_glass_activations').set({ ended_at: now, end_reason: reason, in_force_account: null }).where('id', '=', activation.id).where('ended_at', 'is', null).executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) return [];
  await trx.insertInto('break_glass_reviews').values({ activation_id: activation.id, account: activation.account, opened_at: now, closed_at: null, closed_by: null, note: null }).execute();
  const facts = { activation: activation.id, account: activation.account, requester: activation.requester, starts_at: activation.startsAt, ends_at: activation.endsAt, ended_at: now, end_reason: reason };
  // The alert type is the one the issue names for the end of break-glass access, however it ended.
  await alertInsert(trx, ctx.clock, { type: 'break_glass.expired', subject: activation.account, data: { ...facts, txn: activation.id, review: 'open' } }).execute();
  return [
    {
      type: reason === 'expired' ? 'break_glass.expired' : 'break_glass.ended',
      txn: activation.id,
      subject: activation.account,
      ...(actor !== undefined ? { actor } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
      details: { break_glass: true, ...facts, tokens: 'inactive: the liveness rule refuses every token naming this activation' },
    },
    { type: 'break_glass.review_opened', txn: activation.id, subject: activation.account, details: { break_glass: true, activation: activation.id, account: activation.account } },
  ];
}

function activationFromRow(row: Database['break_glass_activations']): Activation {
  return {
    id: row.id,
    account: row.account,
    requester: row.requester,
    reason: row.reason,
    scopes: JSON.parse(row.scopes) as string[],
    audience: row.audience,
    startsAt: Number(row.starts_at),
    endsAt: Number(row.ends_at),
    ...(row.ended_at !== null ? { endedAt: Number(row.ended_at) } : {}),
    ...(row.end_reason !== null ? { endReason: row.end_reason as 'expired' | 'ended' } : {}),
  };
}
