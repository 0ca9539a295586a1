import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent, AuditEventType } from '../audit/events.ts';
import { isPostgres } from '../audit/dialect.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { isoTime } from './instant.ts';
import { changedFields, partyDocument, termsDigest, termsDocument, type Acceptance, type GranteeKind, type GrantorKind, type MandateEntry, type MandateTerms } from './terms.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import { FixedQuery } from '../storage/fixed-query.ts';

/**
 * The mandate store (DESIGN §3 "Mandate"): durable, versioned delegation records and their
 * lifecycle. Every step is one transaction with the audit event that records it
 * (`AuditLog.recordWith`): the change and its event commit together or not at all.
 *
 *   create ──▶ proposed ──accept──▶ active ──revoke──▶ revoked
 *                 │                   │
 *                 └──── amend ────────┴──▶ superseded (the amendment is version n+1: proposed,
 *                                          or active when accepted with the amendment)
 *   proposed / active ──effective_to passes──▶ expired (recorded when first observed)
 *
 * Only the current version of a mandate can be active; a token that names an older version
 * (`mandate: {id, v}`) is no longer covered by it.
 */

export type MandateStatus = 'proposed' | 'active' | 'superseded' | 'revoked' | 'expired';
export const mandateStatuses: readonly MandateStatus[] = ['proposed', 'active', 'superseded', 'revoked', 'expired'];
/** Statuses a version can still leave: by acceptance, amendment, revocation or expiry. */
const liveStatuses: MandateStatus[] = ['proposed', 'active'];

/** One version of a mandate, as stored. */
export interface MandateVersion {
  id: string;
  version: number;
  status: MandateStatus;
  terms: MandateTerms;
  /** Epoch ms; who recorded this version (admin client, `cli:<user>`). */
  createdAt: number;
  createdBy: string;
  acceptance: Acceptance | null;
  supersededAt: number | null;
  revocation: { at: number; by: string; reason: string } | null;
  expiredAt: number | null;
  /**
   * Epoch ms: the person who granted it left (src/lifecycle/leaver.ts), and the version is in
   * force only until then; null when there is no such deadline.
   */
  reassignBy: number | null;
}

/** A mandate: its current version and every version, oldest first (the current one last). */
export interface Mandate {
  current: MandateVersion;
  history: MandateVersion[];
}

/** Who asked for a change, for the audit event. */
export interface Actor {
  actor: string;
  requestId?: string;
}

/** A lifecycle step refused: `not_found`, `conflict` (the state does not allow it) or `invalid` (the request). */
export class MandateError extends Error {
  override name = 'MandateError';
  readonly code: 'not_found' | 'conflict' | 'invalid';
  constructor(code: 'not_found' | 'conflict' | 'invalid', message: string) {
    super(message);
    this.code = code;
  }
}

type Deps = Pick<Context, 'storage' | 'clock' | 'audit'>;
/** A mandate version by id and number, as tokens carry it. */
type MandateRef = { id: string; v: number };
type Row = Database['mandate_versions'];

/** Creates a mandate as version 1: proposed, or active when the grantee's acceptance comes with it. */
export function createMandate(ctx: Deps, entry: MandateEntry, by: Actor): Promise<MandateVersion> {
  return lifecycle(ctx, (trx, now, events) => createIn(trx, now, entry, by, events));
}

/** Records the grantee's acceptance of `version`, which must be the current, proposed one: it becomes active. */
export function acceptMandate(ctx: Deps, id: string, version: number, acceptance: Acceptance, by: Actor): Promise<MandateVersion> {
  return lifecycle(ctx, (trx, now, events) => acceptIn(trx, now, id, version, acceptance, by, events));
}

/**
 * Amends the mandate whose current version is `version`: writes version + 1 with `terms` (proposed,
 * or active with `acceptance`) and supersedes `version` at once, so tokens naming it stop being
 * covered. Grantor and grantee cannot change; a revoked mandate cannot be amended; an expired one
 * can (a renewal).
 */
export function amendMandate(ctx: Deps, id: string, version: number, terms: MandateTerms, acceptance: Acceptance | undefined, by: Actor): Promise<MandateVersion> {
  return lifecycle(ctx, (trx, now, events) => amendIn(trx, now, id, version, terms, acceptance, by, events));
}

/** Revokes the mandate's current version (proposed or active); its tokens are inactive from now on. */
export function revokeMandate(ctx: Deps, id: string, revocation: { by?: string; reason: string }, actor: Actor): Promise<MandateVersion> {
  return lifecycle(ctx, (trx, now, events) => revokeIn(trx, now, id, revocation, actor, events));
}

/**
 * Marks every proposed or active version whose effective_to has passed as expired, each with its
 * `mandate.expired` event. Checks never rely on it (they compare effective_to with the clock); it
 * makes the stored status and the audit log say so. Returns how many expired.
 */
export async function expireDueMandates(ctx: Deps, limit = 500): Promise<number> {
  return ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    const rows = await trx
      .selectFrom('mandate_versions')
      .selectAll()
      .where('status', 'in', liveStatuses)
      .where((eb) => eb.or([eb('effective_to', '<=', now), eb('reassign_by', '<=', now)]))
      .limit(limit)
      .execute();
    const events: AuditEvent[] = [];
    for (const row of rows) {
      const event = await expireIn(trx, now, row);
      if (event) events.push(event);
    }
    return { value: events.length, events };
  });
}

/** Records the expiry of one version if it is due and not yet recorded (`mandate.expired`, once). */
export async function observeExpiry(ctx: Deps, id: string, version: number): Promise<void> {
  await ctx.audit.recordWith(async (trx) => {
    const row = await trx.selectFrom('mandate_versions').selectAll().where('mandate_id', '=', id).where('version', '=', version).executeTakeFirst();
    const event = row && (await expireIn(trx, ctx.clock.now(), row));
    return { value: undefined, events: event ? [event] : [] };
  });
}

/** One version as stored, or undefined. No expiry is recorded: for the hot path (coverage.ts). */
export async function readVersion(db: Kysely<Database>, id: string, version: number): Promise<MandateVersion | undefined> {
  const row = await versionRead.first(db, [id, version]);
  return row && toVersion(row);
}

// A text, not a built query: an algorithm's every order names its mandate version.
const versionRead = new FixedQuery<Database['mandate_versions']>('select * from mandate_versions where mandate_id = ? and version = ?');

/** A mandate with its history; a due expiry of its current version is recorded first. */
export async function getMandate(ctx: Deps, id: string): Promise<Mandate | undefined> {
  if (id.length > 64) return undefined;
  const read = async () => {
    const rows = await ctx.storage.db.selectFrom('mandate_versions').selectAll().where('mandate_id', '=', id).orderBy('version').execute();
    return rows.map(toVersion);
  };
  let history = await read();
  const current = history.at(-1);
  if (!current) return undefined;
  if (isDue(current, ctx.clock.now())) {
    await observeExpiry(ctx, id, current.version);
    history = await read();
  }
  return { current: history.at(-1)!, history };
}

/** Current versions of mandates, newest change first; due expiries are recorded first. */
export async function listMandates(
  ctx: Deps,
  filter: { status?: MandateStatus; grantor?: string; grantee?: string; limit?: number } = {},
): Promise<MandateVersion[]> {
  await expireDueMandates(ctx);
  let query = ctx.storage.db
    .selectFrom('mandates')
    .innerJoin('mandate_versions', (join) => join.onRef('mandate_versions.mandate_id', '=', 'mandates.id').onRef('mandate_versions.version', '=', 'mandates.current_version'))
    .selectAll('mandate_versions')
    .orderBy('mandates.updated_at', 'desc')
    .orderBy('mandates.id')
    .limit(Math.min(filter.limit ?? 100, 1000));
  if (filter.status !== undefined) query = query.where('mandate_versions.status', '=', filter.status);
  if (filter.grantor !== undefined) query = query.where('mandate_versions.grantor_id', '=', filter.grantor);
  if (filter.grantee !== undefined) query = query.where('mandate_versions.grantee_id', '=', filter.grantee);
  return (await query.execute()).map(toVersion);
}

/** The current version of a mandate inside a transaction, for the apply section; no lock, no expiry. */
export async function currentVersionIn(trx: Kysely<Database>, id: string): Promise<MandateVersion | undefined> {
  const head = await trx.selectFrom('mandates').select('current_version').where('id', '=', id).executeTakeFirst();
  return head ? readVersion(trx, id, head.current_version) : undefined;
}

/**
 * The apply section's step for one entry, inside the apply transaction: create it; accept it when
 * the terms are unchanged and the entry brings the acceptance of a proposed version; amend it when
 * the terms differ; otherwise unchanged. Pushes the events to record with the transaction.
 */
export async function applyMandateIn(
  trx: Transaction<Database>,
  now: number,
  entry: MandateEntry,
  by: Actor,
  events: AuditEvent[],
): Promise<'created' | 'updated' | 'unchanged'> {
  const current = await lockCurrent(trx, entry.id);
  if (!current) {
    await createIn(trx, now, entry, by, events);
    return 'created';
  }
  if (changedFields(current.terms, entry.terms).length === 0) {
    const expired = await expireIn(trx, now, current.row);
    if (expired) events.push(expired);
    if (entry.acceptance && current.row.status === 'proposed') {
      await acceptIn(trx, now, entry.id, current.version.version, entry.acceptance, by, events);
      return 'updated';
    }
    return 'unchanged';
  }
  await amendIn(trx, now, entry.id, current.version.version, entry.terms, entry.acceptance, by, events);
  return 'updated';
}

/** A version as the admin API shows it: the terms as an apply file writes them, then its lifecycle. */
export function mandateView(v: MandateVersion): Record<string, unknown> {
  return {
    id: v.id,
    version: v.version,
    status: v.status,
    ...termsDocument(v.terms),
    accepted_by: v.acceptance?.by ?? null,
    accepted_at: v.acceptance ? isoTime(v.acceptance.at) : null,
    created_at: isoTime(v.createdAt),
    created_by: v.createdBy,
    superseded_at: v.supersededAt === null ? null : isoTime(v.supersededAt),
    revoked_at: v.revocation ? isoTime(v.revocation.at) : null,
    revoked_by: v.revocation?.by ?? null,
    revoke_reason: v.revocation?.reason ?? null,
    expired_at: v.expiredAt === null ? null : isoTime(v.expiredAt),
    reassign_by: v.reassignBy === null ? null : isoTime(v.reassignBy),
  };
}

/**
 * When a version stops being in force by itself: its effective_to, or the reassignment deadline
 * set when the person who granted it left, whichever comes first; null when neither.
 */
export function endOf(v: Pick<MandateVersion, 'terms'> & { reassignBy?: number | null }): number | null {
  const ends = [v.terms.effectiveTo, v.reassignBy ?? null].filter((t): t is number => t !== null);
  return ends.length === 0 ? null : Math.min(...ends);
}

/** True when a proposed or active version has passed its end (effective_to or reassignment deadline) at `now`: its expiry is due. */
export function isDue(v: Pick<MandateVersion, 'status' | 'terms'> & { reassignBy?: number | null }, now: number): boolean {
  const end = endOf(v);
  return liveStatuses.includes(v.status) && end !== null && end <= now;
}

// ── A person's leaving and moving (src/lifecycle) ──────────────────────────────────────────────

/**
 * Inside the caller's transaction (a leaver's): marks every live (proposed or active) current
 * version that person `userId` granted for reassignment — in force only until `deadline`, or its
 * own end if sooner (a deadline already set earlier is kept when it is sooner). A new signatory
 * amends the mandate (`granted_by`) before then; the amendment supersedes the marked version.
 * Returns the versions marked.
 */
export async function markForReassignmentIn(trx: Transaction<Database>, now: number, userId: string, deadline: number): Promise<MandateRef[]> {
  const rows = await trx
    .selectFrom('mandate_versions')
    .innerJoin('mandates', (join) => join.onRef('mandates.id', '=', 'mandate_versions.mandate_id').onRef('mandates.current_version', '=', 'mandate_versions.version'))
    .selectAll('mandate_versions')
    .where('mandate_versions.granted_by', '=', userId)
    .where('mandate_versions.status', 'in', liveStatuses)
    .orderBy('mandate_versions.mandate_id')
    .execute();
  const marked: MandateRef[] = [];
  for (const row of rows) {
    if (isDue(toVersion(row), now)) continue;
    if (row.reassign_by !== null && Number(row.reassign_by) <= deadline) continue;
    await trx
      .updateTable('mandate_versions')
      .set({ reassign_by: deadline })
      .where('mandate_id', '=', row.mandate_id)
      .where('version', '=', row.version)
      .execute();
    await touch(trx, now, row.mandate_id);
    marked.push({ id: row.mandate_id, v: Number(row.version) });
  }
  return marked;
}

/**
 * Inside the caller's transaction: revokes mandate `id`'s current version (proposed or active), its
 * `mandate.revoked` event pushed to `events` (apply's prune: src/lifecycle/prune.ts). Undefined when
 * it is no longer live (already revoked, superseded or expired) or there is no such mandate.
 */
export async function revokeMandateIn(
  trx: Transaction<Database>,
  now: number,
  id: string,
  revocation: { by?: string; reason: string },
  actor: Actor,
  events: AuditEvent[],
): Promise<MandateVersion | undefined> {
  try {
    return await revokeIn(trx, now, id, revocation, actor, events);
  } catch (error) {
    if (error instanceof MandateError) return undefined;
    throw error;
  }
}

/**
 * Inside the caller's transaction: revokes every live current version granted to person `userId`
 * (grantee `user`), each with its `mandate.revoked` event pushed to `events`. Returns their ids.
 */
export async function revokeMandatesGrantedToIn(
  trx: Transaction<Database>,
  now: number,
  userId: string,
  revocation: { reason: string },
  actor: Actor,
  events: AuditEvent[],
  only?: ReadonlySet<string>,
): Promise<string[]> {
  const ids = await liveMandateIdsGrantedTo(trx, userId);
  const revoked: string[] = [];
  for (const id of ids) {
    if (only && !only.has(id)) continue;
    // Undefined: expired (recorded) or ended concurrently, nothing left to revoke.
    if (await revokeMandateIn(trx, now, id, revocation, actor, events)) revoked.push(id);
  }
  return revoked;
}

/** The live (proposed or active) current versions granted to person `userId`. */
export async function liveMandatesGrantedTo(db: Kysely<Database>, userId: string, now: number): Promise<MandateVersion[]> {
  const rows = await liveGrantedTo(db, userId).selectAll('mandate_versions').execute();
  return rows.map(toVersion).filter((v) => !isDue(v, now));
}

/** The ids of the live current versions granted to person `userId`, due or not (revokeIn records a due expiry itself). */
async function liveMandateIdsGrantedTo(trx: Kysely<Database>, userId: string): Promise<string[]> {
  const rows = await liveGrantedTo(trx, userId).select('mandate_versions.mandate_id').execute();
  return rows.map((r) => r.mandate_id);
}

/** The query of the live (proposed or active) current versions granted to person `userId`, by mandate id. */
function liveGrantedTo(db: Kysely<Database>, userId: string) {
  return db
    .selectFrom('mandate_versions')
    .innerJoin('mandates', (join) => join.onRef('mandates.id', '=', 'mandate_versions.mandate_id').onRef('mandates.current_version', '=', 'mandate_versions.version'))
    .where('mandate_versions.grantee_kind', '=', 'user')
    .where('mandate_versions.grantee_id', '=', userId)
    .where('mandate_versions.status', 'in', liveStatuses)
    .orderBy('mandate_versions.mandate_id');
}

// ── Steps inside a transaction ────────────────────────────────────────────────────────────────
// Each refusal (MandateError) is thrown before any write other than recording a due expiry, so
// `lifecycle` can commit that expiry and its event and still report the refusal.

/**
 * Runs a lifecycle step in one transaction with its events. A refusal still commits what the step
 * observed before refusing (a due expiry: it happened), then throws the MandateError.
 */
async function lifecycle<T>(ctx: Deps, work: (trx: Transaction<Database>, now: number, events: AuditEvent[]) => Promise<T>): Promise<T> {
  type Outcome = { ok: true; value: T } | { ok: false; error: MandateError };
  let outcome: Outcome;
  try {
    outcome = await ctx.audit.recordWith<Outcome>(async (trx) => {
      const events: AuditEvent[] = [];
      try {
        return { value: { ok: true as const, value: await work(trx, ctx.clock.now(), events) }, events };
      } catch (error) {
        if (error instanceof MandateError) return { value: { ok: false as const, error }, events };
        throw error;
      }
    });
  } catch (error) {
    // Two creations of one id at once: the primary key lets one through.
    if (isUniqueViolation(error)) throw new MandateError('conflict', 'the mandate was changed concurrently; read it and try again');
    throw error;
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

async function createIn(trx: Transaction<Database>, now: number, entry: MandateEntry, by: Actor, events: AuditEvent[]): Promise<MandateVersion> {
  const exists = await trx.selectFrom('mandates').select('id').where('id', '=', entry.id).executeTakeFirst();
  if (exists) throw new MandateError('conflict', `mandate ${entry.id} already exists`);
  if (entry.terms.effectiveTo !== null && entry.terms.effectiveTo <= now) throw new MandateError('invalid', 'effective_to is in the past');
  if (entry.acceptance && entry.acceptance.at > now) throw new MandateError('invalid', 'accepted_at is in the future');
  await trx.insertInto('mandates').values({ id: entry.id, current_version: 1, created_at: now, updated_at: now }).execute();
  const version = await insertVersion(trx, now, entry.id, 1, entry.terms, entry.acceptance, by);
  events.push(termsEvent('mandate.created', version, by, {}));
  if (entry.acceptance) events.push(acceptedEvent(version, by));
  return version;
}

async function acceptIn(trx: Transaction<Database>, now: number, id: string, version: number, acceptance: Acceptance, by: Actor, events: AuditEvent[]): Promise<MandateVersion> {
  const current = await lockCurrent(trx, id);
  if (!current) throw new MandateError('not_found', `no mandate ${id}`);
  const expired = await expireIn(trx, now, current.row);
  if (expired) events.push(expired);
  if (version !== current.version.version) throw notCurrent(id, version, current.version.version);
  if (current.row.status !== 'proposed') throw new MandateError('conflict', `mandate ${id} version ${version} is ${current.row.status}, not proposed`);
  if (acceptance.at > now) throw new MandateError('invalid', 'accepted_at is in the future');
  await trx
    .updateTable('mandate_versions')
    .set({ status: 'active', accepted_by: acceptance.by, accepted_at: acceptance.at })
    .where('mandate_id', '=', id)
    .where('version', '=', version)
    .where('status', '=', 'proposed')
    .execute();
  await touch(trx, now, id);
  const accepted: MandateVersion = { ...current.version, status: 'active', acceptance };
  events.push(acceptedEvent(accepted, by));
  return accepted;
}

async function amendIn(
  trx: Transaction<Database>,
  now: number,
  id: string,
  version: number,
  terms: MandateTerms,
  acceptance: Acceptance | undefined,
  by: Actor,
  events: AuditEvent[],
): Promise<MandateVersion> {
  const current = await lockCurrent(trx, id);
  if (!current) throw new MandateError('not_found', `no mandate ${id}`);
  const expired = await expireIn(trx, now, current.row);
  if (expired) events.push(expired);
  const previous = current.version;
  if (version !== previous.version) throw notCurrent(id, version, previous.version);
  if (current.row.status === 'revoked') throw new MandateError('conflict', `mandate ${id} was revoked; a revoked mandate cannot be amended`);
  const samePerson = (a: { kind: string; id: string }, b: { kind: string; id: string }) => a.kind === b.kind && a.id === b.id;
  if (!samePerson(previous.terms.grantor, terms.grantor) || !samePerson(previous.terms.grantee, terms.grantee)) {
    throw new MandateError('invalid', 'the grantor and grantee of a mandate cannot change; create a new mandate');
  }
  const changed = changedFields(previous.terms, terms);
  if (changed.length === 0) throw new MandateError('invalid', 'the amendment changes nothing');
  if (terms.effectiveTo !== null && terms.effectiveTo <= now) throw new MandateError('invalid', 'effective_to is in the past');
  if (acceptance) {
    if (acceptance.at > now) throw new MandateError('invalid', 'accepted_at is in the future');
    if (previous.acceptance && previous.acceptance.by === acceptance.by && previous.acceptance.at === acceptance.at) {
      throw new MandateError('invalid', `accepted_by and accepted_at are the acceptance of version ${previous.version}; the amended terms need their own`);
    }
  }
  const next = previous.version + 1;
  const moved = await trx
    .updateTable('mandates')
    .set({ current_version: next, updated_at: now })
    .where('id', '=', id)
    .where('current_version', '=', previous.version)
    .executeTakeFirst();
  if (Number(moved.numUpdatedRows) !== 1) throw notCurrent(id, version, next);
  await trx
    .updateTable('mandate_versions')
    .set({ status: 'superseded', superseded_at: now })
    .where('mandate_id', '=', id)
    .where('version', '=', previous.version)
    .where('status', 'in', liveStatuses)
    .execute();
  const amended = await insertVersion(trx, now, id, next, terms, acceptance, by);
  events.push(termsEvent('mandate.amended', amended, by, { previous_version: previous.version, previous_status: current.row.status, changed }));
  if (acceptance) events.push(acceptedEvent(amended, by));
  return amended;
}

async function revokeIn(
  trx: Transaction<Database>,
  now: number,
  id: string,
  revocation: { by?: string; reason: string },
  actor: Actor,
  events: AuditEvent[],
): Promise<MandateVersion> {
  const current = await lockCurrent(trx, id);
  if (!current) throw new MandateError('not_found', `no mandate ${id}`);
  const expired = await expireIn(trx, now, current.row);
  if (expired) events.push(expired);
  if (!liveStatuses.includes(current.row.status as MandateStatus)) throw new MandateError('conflict', `mandate ${id} is already ${current.row.status}`);
  const revokedBy = revocation.by ?? actor.actor;
  await trx
    .updateTable('mandate_versions')
    .set({ status: 'revoked', revoked_at: now, revoked_by: revokedBy, revoke_reason: revocation.reason })
    .where('mandate_id', '=', id)
    .where('version', '=', current.version.version)
    .where('status', 'in', liveStatuses)
    .execute();
  await touch(trx, now, id);
  const revoked: MandateVersion = { ...current.version, status: 'revoked', revocation: { at: now, by: revokedBy, reason: revocation.reason } };
  events.push(event('mandate.revoked', revoked, actor, { status_before: current.row.status, revoked_by: revokedBy, reason: revocation.reason }));
  return revoked;
}

/** Marks `row` expired when it is due; the event to record, or undefined (not due, or recorded before). */
async function expireIn(trx: Transaction<Database>, now: number, row: Row): Promise<AuditEvent | undefined> {
  const version = toVersion(row);
  if (!isDue(version, now)) return undefined;
  const result = await trx
    .updateTable('mandate_versions')
    .set({ status: 'expired', expired_at: now })
    .where('mandate_id', '=', row.mandate_id)
    .where('version', '=', row.version)
    .where('status', 'in', liveStatuses)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 0) return undefined;
  const statusBefore = row.status;
  row.status = 'expired';
  row.expired_at = now;
  await touch(trx, now, row.mandate_id);
  const byDeadline = version.reassignBy !== null && version.reassignBy === endOf(version);
  return event('mandate.expired', { ...version, status: 'expired', expiredAt: now }, { actor: 'clearance' }, {
    status_before: statusBefore,
    ...(byDeadline ? { reassign_by: isoTime(version.reassignBy!), reason: 'not reassigned before the deadline' } : { effective_to: isoTime(version.terms.effectiveTo!) }),
  });
}

/** The head and current version of a mandate; on PostgreSQL the head row is locked, so steps on one mandate run one after another. */
async function lockCurrent(trx: Transaction<Database>, id: string): Promise<{ row: Row; version: MandateVersion; terms: MandateTerms } | undefined> {
  if (id.length > 64) return undefined;
  const head = await trx
    .selectFrom('mandates')
    .select('current_version')
    .where('id', '=', id)
    .$if(isPostgres(trx), (qb) => qb.forUpdate())
    .executeTakeFirst();
  if (!head) return undefined;
  const row = await trx.selectFrom('mandate_versions').selectAll().where('mandate_id', '=', id).where('version', '=', head.current_version).executeTakeFirstOrThrow();
  const version = toVersion(row);
  return { row, version, terms: version.terms };
}

async function insertVersion(
  trx: Transaction<Database>,
  now: number,
  id: string,
  version: number,
  terms: MandateTerms,
  acceptance: Acceptance | undefined,
  by: Actor,
): Promise<MandateVersion> {
  const row: Row = {
    mandate_id: id,
    version,
    grantor_kind: terms.grantor.kind,
    grantor_id: terms.grantor.id,
    grantee_kind: terms.grantee.kind,
    grantee_id: terms.grantee.id,
    scopes: JSON.stringify(terms.scopes),
    constraints: JSON.stringify(terms.constraints),
    legal_basis_reference: terms.legalBasis.reference,
    legal_basis_text: terms.legalBasis.text ?? null,
    effective_from: terms.effectiveFrom,
    effective_to: terms.effectiveTo,
    status: acceptance ? 'active' : 'proposed',
    created_at: now,
    created_by: by.actor,
    accepted_by: acceptance?.by ?? null,
    accepted_at: acceptance?.at ?? null,
    superseded_at: null,
    revoked_at: null,
    revoked_by: null,
    revoke_reason: null,
    expired_at: null,
    granted_by: terms.grantedBy ?? null,
    reassign_by: null,
  };
  await trx.insertInto('mandate_versions').values(row).execute();
  return toVersion(row);
}

async function touch(trx: Transaction<Database>, now: number, id: string): Promise<void> {
  await trx.updateTable('mandates').set({ updated_at: now }).where('id', '=', id).execute();
}

function notCurrent(id: string, version: number, current: number): MandateError {
  return new MandateError('conflict', `version ${version} is not the current version of mandate ${id} (${current})`);
}

function toVersion(row: Row): MandateVersion {
  const legalBasisText = row.legal_basis_text;
  return {
    id: row.mandate_id,
    version: Number(row.version),
    status: row.status as MandateStatus,
    terms: {
      grantor: { kind: row.grantor_kind as GrantorKind, id: row.grantor_id },
      grantee: { kind: row.grantee_kind as GranteeKind, id: row.grantee_id },
      scopes: JSON.parse(row.scopes) as string[],
      constraints: JSON.parse(row.constraints) as MandateTerms['constraints'],
      legalBasis: legalBasisText === null ? { reference: row.legal_basis_reference } : { reference: row.legal_basis_reference, text: legalBasisText },
      effectiveFrom: Number(row.effective_from),
      effectiveTo: row.effective_to === null ? null : Number(row.effective_to),
      ...(row.granted_by !== null ? { grantedBy: row.granted_by } : {}),
    },
    createdAt: Number(row.created_at),
    createdBy: row.created_by,
    acceptance: row.accepted_by === null || row.accepted_at === null ? null : { by: row.accepted_by, at: Number(row.accepted_at) },
    supersededAt: row.superseded_at === null ? null : Number(row.superseded_at),
    revocation: row.revoked_at === null ? null : { at: Number(row.revoked_at), by: row.revoked_by ?? '', reason: row.revoke_reason ?? '' },
    expiredAt: row.expired_at === null ? null : Number(row.expired_at),
    reassignBy: row.reassign_by === null ? null : Number(row.reassign_by),
  };
}

// ── Audit events ──────────────────────────────────────────────────────────────────────────────
// Events name the mandate ({id, v}), the parties (a user by id, never by username) and the
// digest of the terms; the legal basis text stays in the mandate tables.

function event(type: AuditEventType, v: MandateVersion, by: Actor, details: Record<string, unknown>): AuditEvent {
  const grantee = v.terms.grantee;
  return {
    type,
    ...(by.requestId ? { requestId: by.requestId } : {}),
    actor: by.actor,
    subject: grantee.id,
    ...(grantee.kind === 'client' ? { client: grantee.id } : {}),
    scopes: v.terms.scopes,
    mandate: { id: v.id, v: v.version },
    details: { grantor: partyDocument(v.terms.grantor), grantee: partyDocument(grantee), ...details },
  };
}

function termsEvent(type: 'mandate.created' | 'mandate.amended', v: MandateVersion, by: Actor, details: Record<string, unknown>): AuditEvent {
  return event(type, v, by, {
    status: v.status,
    constraints: v.terms.constraints,
    effective_from: isoTime(v.terms.effectiveFrom),
    effective_to: v.terms.effectiveTo === null ? null : isoTime(v.terms.effectiveTo),
    legal_basis_reference: v.terms.legalBasis.reference,
    terms_sha256: termsDigest(v.terms),
    ...details,
  });
}

function acceptedEvent(v: MandateVersion, by: Actor): AuditEvent {
  return event('mandate.accepted', v, by, { accepted_by: v.acceptance!.by, accepted_at: isoTime(v.acceptance!.at) });
}
