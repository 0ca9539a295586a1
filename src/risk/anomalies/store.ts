import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { endPersonAccess, lifecycleEvent } from '../../identity/lifecycle.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Database } from '../../storage/schema.ts';
import type { ActivePrincipal } from './activity.ts';
import { bumpReactions } from './reactions.ts';
import type { AnomalyClass, AnomalyReaction } from './settings.ts';

/**
 * Anomalies and suspensions as stored (docs/risk.md "Baselines and anomalies"): raised by the
 * evaluation pass (./evaluate.ts), listed, resolved and reinstated by an administrator through the
 * admin API (src/endpoints/risk). Each change commits with its audit event; a change to what is in
 * force (an open step-up anomaly, a suspension) bumps the reactions' generation in the same
 * transaction, so every node sees it within a second (./reactions.ts).
 */
export interface Anomaly {
  id: string;
  principal: ActivePrincipal;
  class: AnomalyClass;
  /** The first window found anomalous, and the latest while this anomaly was open. */
  windowStart: number;
  windowMs: number;
  lastWindowStart: number;
  /** How many windows were anomalous while it was open. */
  windows: number;
  /** The value of the first window (the highest since, once several were anomalous). */
  observed: number;
  /** What the baseline expected per window. */
  baseline: number;
  reaction: AnomalyReaction;
  status: 'open' | 'resolved';
  createdAt: number;
  resolvedBy?: string;
  resolvedAt?: number;
  resolutionNote?: string;
}

export interface Suspension {
  id: string;
  principal: ActivePrincipal;
  anomalyId: string;
  suspendedAt: number;
  reinstatedAt?: number;
  reinstatedBy?: string;
  note?: string;
}

export function anomalyFromRow(row: Database['risk_anomalies']): Anomaly {
  return {
    id: row.id,
    principal: { type: row.principal_type as ActivePrincipal['type'], id: row.principal_id },
    class: row.class as AnomalyClass,
    windowStart: Number(row.window_start),
    windowMs: Number(row.window_ms),
    lastWindowStart: Number(row.last_window_start),
    windows: Number(row.windows),
    observed: Number(row.observed),
    baseline: Number(row.baseline),
    reaction: row.reaction as AnomalyReaction,
    status: row.status as Anomaly['status'],
    createdAt: Number(row.created_at),
    ...(row.resolved_by !== null ? { resolvedBy: row.resolved_by } : {}),
    ...(row.resolved_at !== null ? { resolvedAt: Number(row.resolved_at) } : {}),
    ...(row.resolution_note !== null ? { resolutionNote: row.resolution_note } : {}),
  };
}

function suspensionFromRow(row: Database['risk_suspensions']): Suspension {
  return {
    id: row.id,
    principal: { type: row.principal_type as ActivePrincipal['type'], id: row.principal_id },
    anomalyId: row.anomaly_id,
    suspendedAt: Number(row.suspended_at),
    ...(row.reinstated_at !== null ? { reinstatedAt: Number(row.reinstated_at) } : {}),
    ...(row.reinstated_by !== null ? { reinstatedBy: row.reinstated_by } : {}),
    ...(row.note !== null ? { note: row.note } : {}),
  };
}

/** The audit event's fields naming a principal: a person as `subject`, a client as `client`. */
export function principalFields(principal: ActivePrincipal): Pick<AuditEvent, 'subject' | 'client'> {
  return principal.type === 'User' ? { subject: principal.id } : { client: principal.id };
}

/** A page of a list, newest first; `after` is the last item's cursor of the previous page. */
export interface Page {
  limit: number;
  after?: { createdAt: number; id: string };
}

/** Anomalies, newest first, optionally of one status and one principal. */
export async function listAnomalies(db: Kysely<Database>, filter: { status?: Anomaly['status']; principal?: ActivePrincipal }, page: Page): Promise<Anomaly[]> {
  let query = db.selectFrom('risk_anomalies').selectAll();
  if (filter.status) query = query.where('status', '=', filter.status);
  if (filter.principal) query = query.where('principal_type', '=', filter.principal.type).where('principal_id', '=', filter.principal.id);
  const after = page.after;
  if (after) query = query.where((eb) => eb.or([eb('created_at', '<', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '<', after.id)])]));
  const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
  return rows.map(anomalyFromRow);
}

export async function findAnomaly(db: Kysely<Database>, id: string): Promise<Anomaly | undefined> {
  const row = await db.selectFrom('risk_anomalies').selectAll().where('id', '=', id).executeTakeFirst();
  return row && anomalyFromRow(row);
}

/** Who changes an anomaly or a suspension through the admin API. */
export interface AdminActor {
  /** The token's `sub`: a person's id, or the admin client's id. */
  actor: string;
  client: string;
  requestId?: string;
  note?: string;
}

/**
 * Resolves an open anomaly (`risk.anomaly_resolved`): the `open_anomaly` signal stops firing for it.
 * A suspension it caused stays until reinstated (`reinstate`): resolving is the review's finding,
 * reinstating its decision. Undefined when there is no such anomaly; `already_resolved` when it was.
 */
export async function resolveAnomaly(ctx: Context, id: string, by: AdminActor): Promise<Anomaly | 'already_resolved' | undefined> {
  const now = ctx.clock.now();
  const outcome = await ctx.audit.recordWith<Anomaly | 'already_resolved' | undefined>(async (trx) => {
    const row = await trx.selectFrom('risk_anomalies').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return { value: undefined, events: [] };
    const updated = await trx
      .updateTable('risk_anomalies')
      .set({ status: 'resolved', resolved_by: by.actor, resolved_at: now, resolution_note: by.note ?? null, updated_at: now })
      .where('id', '=', id)
      .where('status', '=', 'open')
      .returningAll()
      .executeTakeFirst();
    if (!updated) return { value: 'already_resolved' as const, events: [] };
    if (updated.reaction === 'step_up') await bumpReactions(trx);
    const anomaly = anomalyFromRow(updated);
    const event: AuditEvent = {
      type: 'risk.anomaly_resolved',
      actor: by.actor,
      ...principalFields(anomaly.principal),
      ...(by.requestId !== undefined ? { requestId: by.requestId } : {}),
      details: { anomaly_id: id, class: anomaly.class, reaction: anomaly.reaction, principal_type: anomaly.principal.type, via: 'admin-api', admin_client: by.client, ...(by.note !== undefined ? { note: by.note } : {}) },
    };
    return { value: anomaly, events: [event] };
  });
  if (outcome && outcome !== 'already_resolved') ctx.risk.reactions.invalidate();
  return outcome;
}

/**
 * Suspends a principal pending review, in the evaluation's transaction: the suspension row, the
 * `risk.suspended` event and alert, and the reactions' generation bumped. A suspension follows a
 * suspected compromise, so the principal's live tokens end with it, in the same transaction
 * (`endTokensOf`): reinstating lifts the suspension, never brings them back. The events to record.
 */
export async function suspendIn(trx: Transaction<Database>, ctx: Pick<Context, 'clock' | 'clients'>, principal: ActivePrincipal, anomaly: { id: string; class: AnomalyClass }): Promise<AuditEvent[]> {
  const id = randomUUID();
  const now = ctx.clock.now();
  await trx.insertInto('risk_suspensions').values({ id, principal_type: principal.type, principal_id: principal.id, anomaly_id: anomaly.id, suspended_at: now, reinstated_at: null, reinstated_by: null, note: null }).execute();
  const facts = { suspension_id: id, anomaly_id: anomaly.id, class: anomaly.class, principal_type: principal.type, principal_id: principal.id };
  await alertInsert(trx, ctx.clock, { type: 'risk.suspended', subject: principal.id, data: facts }).execute();
  await bumpReactions(trx);
  const ended = await endTokensOf(trx, ctx, principal, now, facts);
  const suspended: AuditEvent = { type: 'risk.suspended', actor: 'clearance', ...principalFields(principal), decision: { allow: false, reasons: [`anomaly:${anomaly.class}`] }, details: { ...facts, ...ended.details } };
  return [suspended, ...ended.events];
}

/**
 * Ends the live tokens of a principal suspended at `now` (RFC 9700 §4.14.2: an authorization ended
 * on a suspected compromise ends its refresh tokens, and its access tokens stop being accepted).
 * - A person: as "sign out everywhere" (src/identity/lifecycle.ts `endPersonAccess`): their cut-off
 *   (every access token issued until now is dead on every node at once: the person rule of token
 *   liveness reads their row with the token), refresh tokens, unredeemed codes, sessions; recorded
 *   as `user.signed_out_everywhere` with the reason `suspended`, so what reads that event (the
 *   Shared Signals session-revoked it gives, a SIEM's query) sees it as any other.
 * - A client: its cut-off (src/clients/store.ts `endTokens`: the clients registry every node reloads
 *   within a second) and its refresh tokens revoked; the counts on `risk.suspended`.
 * A principal Clearance does not store (a person deleted, a client removed) has nothing to end.
 */
async function endTokensOf(
  trx: Transaction<Database>,
  ctx: Pick<Context, 'clients'>,
  principal: ActivePrincipal,
  now: number,
  facts: { suspension_id: string; anomaly_id: string },
): Promise<{ details: Record<string, unknown>; events: AuditEvent[] }> {
  if (principal.type === 'Client') {
    const ended = await ctx.clients.endTokens(trx, principal.id, now);
    return { details: ended ? { refresh_tokens_revoked: ended.refreshTokensRevoked, access_tokens: 'dead (cut-off)' } : {}, events: [] };
  }
  const person = await trx.selectFrom('users').select('id').where('id', '=', principal.id).executeTakeFirst();
  if (!person) return { details: {}, events: [] };
  const { ended, events } = await endPersonAccess(trx, now, person.id, 'suspended', 'clearance');
  const signedOut = lifecycleEvent('suspended', person.id, 'clearance', ended, { via: 'risk-suspension' });
  signedOut.details = { ...signedOut.details, suspension_id: facts.suspension_id, anomaly_id: facts.anomaly_id };
  return { details: {}, events: [...events, signedOut] };
}

/** Suspensions, newest first; `active` true: not reinstated, false: reinstated. */
export async function listSuspensions(db: Kysely<Database>, filter: { active?: boolean; principal?: ActivePrincipal }, page: Page): Promise<Suspension[]> {
  let query = db.selectFrom('risk_suspensions').selectAll();
  if (filter.active !== undefined) query = query.where('reinstated_at', filter.active ? 'is' : 'is not', null);
  if (filter.principal) query = query.where('principal_type', '=', filter.principal.type).where('principal_id', '=', filter.principal.id);
  const after = page.after;
  if (after) query = query.where((eb) => eb.or([eb('suspended_at', '<', after.createdAt), eb.and([eb('suspended_at', '=', after.createdAt), eb('id', '<', after.id)])]));
  const rows = await query.orderBy('suspended_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
  return rows.map(suspensionFromRow);
}

/**
 * Reinstates a suspended principal (`risk.reinstated`): the token endpoint and sign-in accept it
 * again on every node within a second. Undefined for an unknown suspension; `already_reinstated`.
 */
export async function reinstate(ctx: Context, id: string, by: AdminActor): Promise<Suspension | 'already_reinstated' | undefined> {
  const now = ctx.clock.now();
  const outcome = await ctx.audit.recordWith<Suspension | 'already_reinstated' | undefined>(async (trx) => {
    const row = await trx.selectFrom('risk_suspensions').select('id').where('id', '=', id).executeTakeFirst();
    if (!row) return { value: undefined, events: [] };
    const updated = await trx
      .updateTable('risk_suspensions')
      .set({ reinstated_at: now, reinstated_by: by.actor, note: by.note ?? null })
      .where('id', '=', id)
      .where('reinstated_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    if (!updated) return { value: 'already_reinstated' as const, events: [] };
    await bumpReactions(trx);
    const suspension = suspensionFromRow(updated);
    const event: AuditEvent = {
      type: 'risk.reinstated',
      actor: by.actor,
      ...principalFields(suspension.principal),
      ...(by.requestId !== undefined ? { requestId: by.requestId } : {}),
      decision: { allow: true, reasons: ['admin'] },
      details: { suspension_id: id, anomaly_id: suspension.anomalyId, principal_type: suspension.principal.type, via: 'admin-api', admin_client: by.client, ...(by.note !== undefined ? { note: by.note } : {}) },
    };
    return { value: suspension, events: [event] };
  });
  if (outcome && outcome !== 'already_reinstated') ctx.risk.reactions.invalidate();
  return outcome;
}
