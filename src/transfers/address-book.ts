import type { Kysely, Transaction } from 'kysely';
import type { Config } from '../config.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { Destination } from './destination-input.ts';

/**
 * The address book of transfer destinations (issue 24 item 2; docs/transfers.md "Destination
 * control"): per legal entity and account, the destinations money may be moved to, each by its key
 * (src/transfers/detail.ts `destinationKey`) with the history of its versions. A version is asked
 * for (./change-control.ts), approved by a second person through the four-eyes machinery
 * (src/approvals/kinds/transfer-destination.ts), then cools down before its first use; a removal
 * takes effect at once. Transfers are checked against the book at issuance
 * (src/transfers/enforce.ts) through `destinationStatus`, which reads the database every time: a
 * removal on one node holds on every node from its commit.
 */

/** A version's stored status (src/transfers/tables.ts). */
export type VersionStatus = 'pending' | 'held_for_review' | 'approved' | 'rejected' | 'removed';

/** What the book says of a destination now, for a transfer to it. */
export type DestinationState = 'unknown' | 'pending' | 'held_for_review' | 'cooling_down' | 'usable' | 'removed';

export interface DestinationStatus {
  state: DestinationState;
  /** The destination's id in the book (absent when unknown). */
  id?: string;
  /** The version the state is about: the usable one, the one cooling down, or the one waiting. */
  version?: number;
  /** Epoch ms when it becomes (or became) usable: for `cooling_down` and `usable`. */
  usableFrom?: number;
  /**
   * Epoch ms of the destination's latest removal from the book, when it was ever removed: a
   * destination added again is a new destination as far as risk goes, so a use from before this is
   * not a use of it (./destination-uses.ts `usedBefore`: its first use is held again).
   */
  removedAt?: number;
  /** The beneficiary's name the book holds for the version the state is about (an IBAN's, when it names one). */
  name?: string;
}

export interface DestinationEntry {
  id: string;
  lei: string;
  account: string;
  key: string;
  kind: Destination['kind'];
  createdAt: number;
}

export interface DestinationVersion {
  destinationId: string;
  version: number;
  destination: Destination;
  label?: string;
  status: VersionStatus;
  requestedBy: string;
  requesterType: 'user' | 'client';
  requestedAt: number;
  via: 'admin-api' | 'apply';
  approvalRequest?: string;
  requestExpiresAt?: number;
  reviewReason?: string;
  approvedBy?: string[];
  approvedAt?: number;
  usableFrom?: number;
  cooldownMs?: number;
  decidedAt?: number;
  removedBy?: string;
}

/** Statuses of a version still in play: waiting, or approved. */
export const liveStatuses: readonly VersionStatus[] = ['pending', 'held_for_review', 'approved'];

type Db = Kysely<Database> | Transaction<Database>;

/**
 * The state of the destination `key` in the book of `lei`'s `account` now — the lookup a transfer
 * is checked by (src/transfers/enforce.ts). One indexed query (the book's unique key), no cache:
 * a removal, an approval or the end of a cool-down counts from the moment it commits, on every node.
 * Of several versions, the best for the transfer answers: a usable one (the latest), else one
 * cooling down (the earliest to become usable), else one held for review, else one pending (its
 * request unexpired), else `removed` when the destination was taken out; else `unknown`. With it,
 * when the destination was ever removed, the time of its latest removal (`removedAt`), and the
 * beneficiary's name of that version when it names one (`name`: an IBAN's).
 */
export async function destinationStatus(ctx: Pick<Context, 'storage' | 'clock'>, query: { lei: string; account: string; key: string }): Promise<DestinationStatus> {
  const rows = await ctx.storage.db
    .selectFrom('transfer_destinations as d')
    .innerJoin('transfer_destination_versions as v', 'v.destination_id', 'd.id')
    .select(['d.id', 'v.version', 'v.status', 'v.usable_from', 'v.request_expires_at', 'v.decided_at', 'v.destination'])
    .where('d.lei', '=', query.lei)
    .where('d.account', '=', query.account)
    .where('d.destination_key', '=', query.key)
    .execute();
  if (rows.length === 0) return { state: 'unknown' };
  const versions = rows.map((r) => ({
    version: Number(r.version),
    status: r.status as VersionStatus,
    ...(r.usable_from !== null ? { usableFrom: Number(r.usable_from) } : {}),
    ...(r.request_expires_at !== null ? { requestExpiresAt: Number(r.request_expires_at) } : {}),
  }));
  const removals = rows.filter((r) => r.status === 'removed' && r.decided_at !== null).map((r) => Number(r.decided_at));
  const state = stateOf(versions, ctx.clock.now());
  const row = state.version !== undefined ? rows.find((r) => Number(r.version) === state.version) : undefined;
  const destination = row ? (JSON.parse(row.destination) as Destination) : undefined;
  const name = destination?.kind === 'iban' ? destination.name : undefined;
  return { id: rows[0]!.id, ...state, ...(removals.length > 0 ? { removedAt: Math.max(...removals) } : {}), ...(name !== undefined ? { name } : {}) } as DestinationStatus;
}

/** The state of a destination from its versions at `now` (see destinationStatus). */
export function stateOf(versions: readonly Pick<DestinationVersion, 'version' | 'status' | 'usableFrom' | 'requestExpiresAt'>[], now: number): Omit<DestinationStatus, 'id'> {
  const approved = versions.filter((v) => v.status === 'approved' && v.usableFrom !== undefined);
  const usable = approved.filter((v) => v.usableFrom! <= now).sort((a, b) => b.version - a.version)[0];
  if (usable) return { state: 'usable', version: usable.version, usableFrom: usable.usableFrom! };
  const cooling = approved.sort((a, b) => a.usableFrom! - b.usableFrom! || a.version - b.version)[0];
  if (cooling) return { state: 'cooling_down', version: cooling.version, usableFrom: cooling.usableFrom! };
  const waiting = (status: VersionStatus) => versions.filter((v) => v.status === status && !expired(v, now)).sort((a, b) => b.version - a.version)[0];
  const held = waiting('held_for_review');
  if (held) return { state: 'held_for_review', version: held.version };
  const pending = waiting('pending');
  if (pending) return { state: 'pending', version: pending.version };
  if (versions.some((v) => v.status === 'removed')) return { state: 'removed' };
  return { state: 'unknown' };
}

/** A waiting version whose approval request ran out (an unopened one, from apply, has not). */
export function expired(version: Pick<DestinationVersion, 'status' | 'requestExpiresAt'>, now: number): boolean {
  return (version.status === 'pending' || version.status === 'held_for_review') && version.requestExpiresAt !== undefined && version.requestExpiresAt <= now;
}

/** A version's status as shown: its stored one, `expired` for a waiting one whose request ran out, `cooling_down` / `usable` for an approved one. */
export function shownStatus(version: DestinationVersion, now: number): string {
  if (expired(version, now)) return 'expired';
  if (version.status === 'approved') return version.usableFrom! <= now ? 'usable' : 'cooling_down';
  return version.status;
}

/** The entry with this id, or undefined. */
export async function findDestination(db: Db, id: string): Promise<DestinationEntry | undefined> {
  const row = await db.selectFrom('transfer_destinations').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? entryFromRow(row) : undefined;
}

/** The entry for this key in this book, or undefined. */
export async function findDestinationByKey(db: Db, where: { lei: string; account: string; key: string }): Promise<DestinationEntry | undefined> {
  const row = await db
    .selectFrom('transfer_destinations')
    .selectAll()
    .where('lei', '=', where.lei)
    .where('account', '=', where.account)
    .where('destination_key', '=', where.key)
    .executeTakeFirst();
  return row ? entryFromRow(row) : undefined;
}

/** Every version of an entry, oldest first. */
export async function versionsOf(db: Db, destinationId: string): Promise<DestinationVersion[]> {
  const rows = await db.selectFrom('transfer_destination_versions').selectAll().where('destination_id', '=', destinationId).orderBy('version').execute();
  return rows.map(versionFromRow);
}

/** The version an approval request is about, or undefined. */
export async function versionOfRequest(db: Db, requestId: string): Promise<DestinationVersion | undefined> {
  const row = await db.selectFrom('transfer_destination_versions').selectAll().where('approval_request', '=', requestId).executeTakeFirst();
  return row ? versionFromRow(row) : undefined;
}

/**
 * The books of a legal entity (or one account of it): each entry with its versions, by account and
 * creation. `within`: only the books of these legal entities (a reader's scope; none: nothing).
 */
export async function listBook(db: Db, where: { lei?: string; account?: string; within?: ReadonlySet<string> }): Promise<{ entry: DestinationEntry; versions: DestinationVersion[] }[]> {
  if (where.within !== undefined && (where.within.size === 0 || (where.lei !== undefined && !where.within.has(where.lei)))) return [];
  let query = db.selectFrom('transfer_destinations').selectAll();
  if (where.lei !== undefined) query = query.where('lei', '=', where.lei);
  else if (where.within !== undefined) query = query.where('lei', 'in', [...where.within]);
  if (where.account !== undefined) query = query.where('account', '=', where.account);
  const entries = (await query.orderBy('lei').orderBy('account').orderBy('created_at').orderBy('id').limit(1000).execute()).map(entryFromRow);
  if (entries.length === 0) return [];
  const rows = await db.selectFrom('transfer_destination_versions').selectAll().where('destination_id', 'in', entries.map((e) => e.id)).orderBy('version').execute();
  const versions = rows.map(versionFromRow);
  return entries.map((entry) => ({ entry, versions: versions.filter((v) => v.destinationId === entry.id) }));
}

/**
 * The shortest cool-down there is, hours: apply and CLEARANCE_TRANSFER_COOLDOWN_HOURS refuse less.
 * A cool-down of 0 would let a destination slipped in with a stolen session (and one careless
 * approval) be used at once, before anyone saw its `transfer_destination.*` events.
 */
export const minCooldownHours = 1;

/**
 * The cool-down of `lei`'s destinations, ms: its own (apply's `transfer_destinations.cooldowns`),
 * else CLEARANCE_TRANSFER_COOLDOWN_HOURS — never below `minCooldownHours` (a setting stored before
 * the floor existed is read as the floor).
 */
export async function cooldownMsOf(db: Db, config: Pick<Config, 'transferCooldownHours'>, lei: string): Promise<number> {
  const row = await db.selectFrom('transfer_destination_settings').select('cooldown_ms').where('lei', '=', lei).executeTakeFirst();
  return Math.max(row ? Number(row.cooldown_ms) : config.transferCooldownHours * 3600_000, minCooldownHours * 3600_000);
}

/** The change transactions (approval request ids) of these destination versions, for an evidence bundle (src/audit/bundle-destinations.ts). */
export async function changeTransactions(db: Db, refs: readonly { id: string; version?: number }[]): Promise<{ id: string; version: number; txn: string }[]> {
  if (refs.length === 0) return [];
  const rows = await db
    .selectFrom('transfer_destination_versions')
    .select(['destination_id', 'version', 'approval_request', 'status', 'approved_at'])
    .where('destination_id', 'in', [...new Set(refs.map((r) => r.id))])
    .where('approval_request', 'is not', null)
    .orderBy('destination_id')
    .orderBy('version')
    .execute();
  return rows
    .filter((row) => refs.some((r) => r.id === row.destination_id && (r.version === undefined ? row.approved_at !== null : r.version === Number(row.version))))
    .map((row) => ({ id: row.destination_id, version: Number(row.version), txn: row.approval_request! }));
}

/** What the admin API shows of an entry: its state now, its current destination and every version. */
export function entryView(entry: DestinationEntry, versions: readonly DestinationVersion[], now: number): Record<string, unknown> {
  const status = stateOf(versions, now);
  const current = versions.find((v) => v.version === status.version) ?? versions.at(-1);
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    id: entry.id,
    lei: entry.lei,
    account: entry.account,
    destination_key: entry.key,
    kind: entry.kind,
    status: status.state,
    ...(status.version !== undefined ? { version: status.version } : {}),
    ...(status.usableFrom !== undefined ? { usable_from: iso(status.usableFrom) } : {}),
    ...(current ? { destination: current.destination, ...(current.label !== undefined ? { label: current.label } : {}) } : {}),
    versions: versions.map((v) => ({
      version: v.version,
      status: shownStatus(v, now),
      ...(v.label !== undefined ? { label: v.label } : {}),
      destination: v.destination,
      requested_by: v.requestedBy,
      requester_type: v.requesterType,
      requested_at: iso(v.requestedAt),
      via: v.via,
      ...(v.approvalRequest !== undefined ? { approval_request: v.approvalRequest } : {}),
      ...(v.requestExpiresAt !== undefined ? { request_expires_at: iso(v.requestExpiresAt) } : {}),
      ...(v.reviewReason !== undefined ? { review_reason: v.reviewReason } : {}),
      ...(v.approvedBy !== undefined ? { approved_by: v.approvedBy } : {}),
      ...(v.approvedAt !== undefined ? { approved_at: iso(v.approvedAt) } : {}),
      ...(v.usableFrom !== undefined ? { usable_from: iso(v.usableFrom) } : {}),
      ...(v.cooldownMs !== undefined ? { cooldown_hours: v.cooldownMs / 3600_000 } : {}),
      ...(v.decidedAt !== undefined ? { [v.status === 'removed' ? 'removed_at' : 'decided_at']: iso(v.decidedAt) } : {}),
      ...(v.removedBy !== undefined ? { removed_by: v.removedBy } : {}),
    })),
  };
}

function entryFromRow(row: Database['transfer_destinations']): DestinationEntry {
  return { id: row.id, lei: row.lei, account: row.account, key: row.destination_key, kind: row.kind as Destination['kind'], createdAt: Number(row.created_at) };
}

function versionFromRow(row: Database['transfer_destination_versions']): DestinationVersion {
  const n = (value: number | null) => (value === null ? undefined : Number(value));
  const optional = <K extends string, V>(key: K, value: V | undefined) => (value === undefined ? {} : ({ [key]: value } as Record<K, V>));
  return {
    destinationId: row.destination_id,
    version: Number(row.version),
    destination: JSON.parse(row.destination) as Destination,
    ...optional('label', row.label ?? undefined),
    status: row.status as VersionStatus,
    requestedBy: row.requested_by,
    requesterType: row.requester_type as 'user' | 'client',
    requestedAt: Number(row.requested_at),
    via: row.via as 'admin-api' | 'apply',
    ...optional('approvalRequest', row.approval_request ?? undefined),
    ...optional('requestExpiresAt', n(row.request_expires_at)),
    ...optional('reviewReason', row.review_reason ?? undefined),
    ...optional('approvedBy', row.approved_by === null ? undefined : (JSON.parse(row.approved_by) as string[])),
    ...optional('approvedAt', n(row.approved_at)),
    ...optional('usableFrom', n(row.usable_from)),
    ...optional('cooldownMs', n(row.cooldown_ms)),
    ...optional('decidedAt', n(row.decided_at)),
    ...optional('removedBy', row.removed_by ?? undefined),
  };
}
