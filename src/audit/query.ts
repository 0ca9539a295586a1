/**
 * The compliance query (issue 3 §7): events by transaction, subject, client, type, decision and
 * time range, oldest first, in pages with an opaque cursor. Protocol-free: the admin endpoint
 * (endpoints/audit) and the CLI export call it.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import { auditEventTypes, type StoredAuditEvent } from './events.ts';

export interface AuditQuery {
  txn?: string;
  subject?: string;
  client?: string;
  type?: string;
  decision?: 'allow' | 'deny';
  /** Epoch ms, inclusive. */
  since?: number;
  /** Epoch ms, exclusive. */
  until?: number;
}

export interface QueriedEvent {
  /** The leaf index, or null while the event waits for the sealer. */
  leafIndex: number | null;
  event: StoredAuditEvent;
}

export interface AuditPage {
  events: QueriedEvent[];
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export class AuditQueryError extends Error {
  override name = 'AuditQueryError';
}

export const maxPageSize = 1000;

/** Reads and validates query parameters (strings, as from a URL or the command line). */
export function readAuditQuery(input: Record<string, string | undefined>): AuditQuery {
  const query: AuditQuery = {};
  for (const field of ['txn', 'subject', 'client'] as const) {
    const value = input[field];
    if (value !== undefined) {
      if (value === '' || value.length > 512) throw new AuditQueryError(`${field} must be 1 to 512 characters`);
      query[field] = value;
    }
  }
  if (input.type !== undefined) {
    if (!(auditEventTypes as readonly string[]).includes(input.type)) throw new AuditQueryError(`type "${input.type}" is not an audit event type`);
    query.type = input.type;
  }
  if (input.decision !== undefined) {
    if (input.decision !== 'allow' && input.decision !== 'deny') throw new AuditQueryError('decision must be allow or deny');
    query.decision = input.decision;
  }
  if (input.since !== undefined) query.since = readTime('since', input.since);
  if (input.until !== undefined) query.until = readTime('until', input.until);
  return query;
}

/** Epoch milliseconds, or an ISO 8601 date-time (or date). */
export function readTime(name: string, value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(ms) || ms < 0) throw new AuditQueryError(`${name} must be epoch milliseconds or an ISO 8601 time`);
  return ms;
}

/** The latest signed checkpoint's size, time and sealer cursor (`last_seq`), or undefined before the first. */
export async function latestCheckpointCursor(db: Kysely<Database>): Promise<{ treeSize: number; time: number; lastSeq: number } | undefined> {
  const row = await db.selectFrom('audit_checkpoints').select(['tree_size', 'time', 'last_seq']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
  return row && { treeSize: Number(row.tree_size), time: Number(row.time), lastSeq: Number(row.last_seq) };
}

/**
 * The seq up to which every event is sealed and in the lookup index (0 before the first
 * checkpoint): those after it are the unsealed tail, found by scanning their seq range.
 */
export async function sealedUpTo(db: Kysely<Database>): Promise<number> {
  return (await latestCheckpointCursor(db))?.lastSeq ?? 0;
}

/** The audit_index key for a lookup value (the sealer writes these, sealer.ts). */
export function lookupKey(kind: 'txn' | 'sub' | 'cli', value: string): string {
  return `${kind}:${value}`;
}

type Row = { seq: number; event: string; leaf_index: number | null };

/**
 * One page of matching events, oldest first. A transaction, subject or client filter reads the
 * sealer's lookup index for sealed events, then scans the events after the latest checkpoint's
 * cursor (those not indexed yet).
 */
export async function queryEvents(db: Kysely<Database>, query: AuditQuery, page: { limit?: number; after?: string } = {}): Promise<AuditPage> {
  const limit = page.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) throw new AuditQueryError(`limit must be 1 to ${maxPageSize}`);
  const after = page.after === undefined ? -1 : readCursor(page.after);
  const lookup =
    query.txn !== undefined ? lookupKey('txn', query.txn) : query.subject !== undefined ? lookupKey('sub', query.subject) : query.client !== undefined ? lookupKey('cli', query.client) : undefined;

  let rows: Row[];
  if (lookup === undefined) {
    rows = await filtered(db, query).where('e.seq', '>', after).orderBy('e.seq').limit(limit + 1).execute();
  } else {
    // Read the cursor first: what is sealed after it is found by both parts (and deduplicated).
    const indexedUpTo = await sealedUpTo(db);
    const indexed = await filtered(db, query, { key: lookup, after }).where('e.seq', '>', after).orderBy('e.seq').limit(limit + 1).execute();
    rows = indexed;
    if (rows.length <= limit) {
      const tail = await filtered(db, query)
        .where('e.seq', '>', Math.max(after, indexedUpTo))
        .orderBy('e.seq')
        .limit(limit + 1)
        .execute();
      const seen = new Set(rows.map((r) => r.seq));
      rows = [...rows, ...tail.filter((r) => !seen.has(r.seq))].sort((a, b) => a.seq - b.seq).slice(0, limit + 1);
    }
  }
  const events = rows.slice(0, limit).map((row) => ({ leafIndex: row.leaf_index, event: JSON.parse(row.event) as StoredAuditEvent }));
  const last = rows[limit - 1];
  return rows.length > limit && last ? { events, next: Buffer.from(`seq:${last.seq}`).toString('base64url') } : { events };
}

/** Events with every filter applied to their columns; through the lookup index when `lookup` is given. */
function filtered(db: Kysely<Database>, query: AuditQuery, lookup?: { key: string; after: number }) {
  let q = db
    .selectFrom('audit_events as e')
    .leftJoin('audit_leaves as l', 'l.event_seq', 'e.seq')
    .select(['e.seq', 'e.event', 'l.leaf_index']);
  if (lookup !== undefined) {
    q = q.where('e.seq', 'in', db.selectFrom('audit_index').select('seq').where('key', '=', lookup.key).where('seq', '>', lookup.after));
  }
  if (query.txn !== undefined) q = q.where('e.txn', '=', query.txn);
  if (query.subject !== undefined) q = q.where('e.subject', '=', query.subject);
  if (query.client !== undefined) q = q.where('e.client', '=', query.client);
  if (query.type !== undefined) q = q.where('e.type', '=', query.type);
  if (query.decision !== undefined) q = q.where('e.decision', '=', query.decision);
  if (query.since !== undefined) q = q.where('e.time', '>=', query.since);
  if (query.until !== undefined) q = q.where('e.time', '<', query.until);
  return q;
}

function readCursor(cursor: string): number {
  const match = /^seq:(\d{1,16})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw new AuditQueryError('the page cursor is not valid');
  return Number(match[1]);
}

/**
 * The newest `limit` events of the given types, newest first (`clearance policy simulate` replays
 * the latest decisions); with `decided`, only those carrying a decision. Uses the (type, seq) index.
 */
export async function latestEvents(db: Kysely<Database>, types: readonly string[], limit: number, options: { decided?: boolean } = {}): Promise<StoredAuditEvent[]> {
  if (!Number.isInteger(limit) || limit < 1) throw new AuditQueryError('limit must be a positive integer');
  let query = db.selectFrom('audit_events').select('event').where('type', 'in', [...types]);
  if (options.decided) query = query.where('decision', 'is not', null);
  const rows = await query.orderBy('seq', 'desc').limit(limit).execute();
  return rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
}
