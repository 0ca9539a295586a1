/**
 * The checks of `verify` that need no result of the leaf scan, so they run beside it (on SQLite in
 * a worker thread with its own connection, verify-side-worker.ts):
 *
 * - the indexed columns of every sealed event agree with the event (SQLite: json_extract, in C;
 *   PostgreSQL checks them in the scan instead);
 * - the query index (audit_index) holds exactly the lookups of the sealed events, or a query (and
 *   so an export) could hide an event or show it under another transaction, subject or client.
 */
import { DatabaseSync } from 'node:sqlite';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';

/**
 * How much of the log's SQLite file verification maps into memory (SQLite caps it at its own
 * maximum): the scan and the index probes touch every page of the log, many out of order, and a
 * page read through the mapping costs no system call.
 */
export const verificationMmapBytes = 64 * 1024 ** 3;

/** A read-only connection to the log's SQLite file for verification (the scan's, the side checks'), memory-mapped. */
export function openForVerification(sqliteFile: string): DatabaseSync {
  const conn = new DatabaseSync(sqliteFile, { readOnly: true });
  conn.exec(`PRAGMA mmap_size = ${verificationMmapBytes}`);
  return conn;
}

export interface SideProblem {
  /** The event at fault (verify maps it to its leaf). */
  seq: number;
  kind: 'columns' | 'index';
  message: string;
}

/** The problem with the smallest seq, if any. */
export async function checkBeside(db: Kysely<Database>, lastSeq: number, options: { columns: boolean }): Promise<SideProblem | undefined> {
  const problems = [options.columns ? await checkColumns(db, lastSeq) : undefined, await checkLookupIndex(db, lastSeq)];
  return problems.filter((p) => p !== undefined).sort((a, b) => a.seq - b.seq)[0];
}

/** SQLite: the first sealed event whose indexed columns disagree with its JSON. */
async function checkColumns(db: Kysely<Database>, lastSeq: number): Promise<SideProblem | undefined> {
  const field = (path: string) => sql`json_extract(event, ${path})`;
  const { rows } = await sql<{ seq: number | null }>`
    select min(seq) as seq from audit_events where seq <= ${lastSeq} and not coalesce(case when json_valid(event) then (
      ${field('$.id')} is id and ${field('$.type')} is type and ${field('$.time')} is time and
      ${field('$.txn')} is txn and ${field('$.subject')} is subject and ${field('$.client')} is client and
      (case ${field('$.decision.allow')} when 1 then 'allow' when 0 then 'deny' end) is decision
    ) else 0 end, 0)`.execute(db);
  const seq = rows[0]?.seq;
  return seq == null ? undefined : { seq: Number(seq), kind: 'columns', message: `the indexed columns of event seq ${seq} disagree with the event (altered)` };
}

/**
 * The first sealed event whose lookup rows are wrong, if any. Every expected row exists (one probe
 * each) and the index holds no more rows than expected: together, the index is exactly right. The
 * rows expected are counted in the probes' own pass over the events (a second pass cost a tenth
 * more of this check's time on a log of 1,000,000 events).
 */
async function checkLookupIndex(db: Kysely<Database>, lastSeq: number): Promise<SideProblem | undefined> {
  const lacks = (column: 'txn' | 'subject' | 'client', prefix: string) =>
    sql`(e.${sql.ref(column)} is not null and not exists (select 1 from audit_index i where i.key = ${prefix} || e.${sql.ref(column)} and i.seq = e.seq))`;
  const { rows } = await sql<{ seq: number | null; expected: number | string }>`
    select min(case when ${lacks('txn', 'txn:')} or ${lacks('subject', 'sub:')} or ${lacks('client', 'cli:')} then e.seq end) as seq,
      count(e.txn) + count(e.subject) + count(e.client) as expected
    from audit_events e where e.seq <= ${lastSeq}`.execute(db);
  const missing = rows[0]?.seq;
  if (missing != null) return { seq: Number(missing), kind: 'index', message: `the query index lacks a lookup of event seq ${missing} (removed or altered)` };
  const actual = await db.selectFrom('audit_index').select(({ fn }) => fn.countAll<number>().as('n')).executeTakeFirst();
  if (Number(rows[0]?.expected ?? 0) === Number(actual?.n ?? 0)) return undefined;
  // Extra rows: find the first one that matches no event column.
  const { rows: extra } = await sql<{ seq: number | null }>`
    select min(i.seq) as seq from audit_index i left join audit_events e on e.seq = i.seq
    where e.seq is null or e.seq > ${lastSeq} or not (coalesce(i.key = 'txn:' || e.txn, false) or coalesce(i.key = 'sub:' || e.subject, false) or coalesce(i.key = 'cli:' || e.client, false))`.execute(db);
  const seq = Number(extra[0]?.seq ?? -1);
  return { seq, kind: 'index', message: `the query index has a row for event seq ${seq} that does not match it (inserted or altered)` };
}
