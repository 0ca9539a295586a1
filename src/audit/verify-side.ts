/**
 * The checks of `verify` that need no result of the leaf scan, so they run beside it (on SQLite in
 * a worker thread with its own connection, verify-side-worker.ts, which this thread joins once its
 * scan is done):
 *
 * - the indexed columns of every sealed event agree with the event (SQLite: json_extract, in C;
 *   PostgreSQL checks them in the scan instead);
 * - the query index (audit_index) holds exactly the lookups of the sealed events, or a query (and
 *   so an export) could hide an event or show it under another transaction, subject or client.
 *
 * Both are cut into tasks over ranges of seq (`sideTasks`), so that two threads can share them:
 * each task's answer is the earliest problem in its range, and for the query index the number of
 * lookups its events should have; `sideProblem` puts the answers together.
 */
import { DatabaseSync } from 'node:sqlite';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { adaptStatement } from '../storage/node-sqlite-statement.ts';
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

/** Kysely on a connection of openForVerification (the side checks' queries are Kysely's). */
export function openVerificationDb(sqliteFile: string): Kysely<Database> {
  const conn = openForVerification(sqliteFile);
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: { close: () => conn.close(), prepare: (text) => adaptStatement(conn.prepare(text)) } }) });
}

export interface SideProblem {
  /** The event at fault (verify maps it to its leaf). */
  seq: number;
  kind: 'columns' | 'index';
  message: string;
}

/**
 * One share of the side checks: the indexed columns or the lookups of the sealed events with seq
 * from `from` to `to`, or the number of rows in the query index (`count`).
 */
export type SideTask = { check: 'columns' | 'lookups'; from: number; to: number } | { check: 'count' };

/** What one task found: the earliest problem of its range; lookups expected (`lookups`) or held (`count`). */
export interface SideAnswer {
  task: SideTask;
  problem?: SideProblem;
  lookups?: number;
}

/**
 * The side checks of the events sealed up to `lastSeq`, cut into ranges of `eventsPerTask` seq
 * values each (one range: Infinity). The count comes first: it is the longest single task.
 */
export async function sideTasks(db: Kysely<Database>, lastSeq: number, options: { columns: boolean; eventsPerTask: number }): Promise<SideTask[]> {
  const tasks: SideTask[] = [{ check: 'count' }];
  const first = (await db.selectFrom('audit_events').select(({ fn }) => fn.min<number | string | null>('seq').as('seq')).executeTakeFirst())?.seq;
  if (first == null || Number(first) > lastSeq) return tasks;
  const step = Number.isFinite(options.eventsPerTask) ? Math.max(1, Math.floor(options.eventsPerTask)) : Infinity;
  for (let from = Number(first); from <= lastSeq; from += step) {
    const to = Math.min(lastSeq, from + step - 1);
    if (options.columns) tasks.push({ check: 'columns', from, to });
    tasks.push({ check: 'lookups', from, to });
  }
  return tasks;
}

/** Runs one task. */
export async function runSideTask(db: Kysely<Database>, task: SideTask): Promise<SideAnswer> {
  if (task.check === 'count') {
    const row = await db.selectFrom('audit_index').select(({ fn }) => fn.countAll<number | string>().as('n')).executeTakeFirst();
    return { task, lookups: Number(row?.n ?? 0) };
  }
  if (task.check === 'columns') return { task, ...(await columnsProblem(db, task.from, task.to)) };
  return { task, ...(await lookupsOf(db, task.from, task.to)) };
}

/**
 * Runs tasks of `tasks` until none is left, each taken through `next`: a counter shared by the
 * threads that take them, so that each task runs once.
 */
export async function takeSideTasks(db: Kysely<Database>, tasks: readonly SideTask[], next: Int32Array): Promise<SideAnswer[]> {
  const answers: SideAnswer[] = [];
  for (let i = Atomics.add(next, 0, 1); i < tasks.length; i = Atomics.add(next, 0, 1)) answers.push(await runSideTask(db, tasks[i]!));
  return answers;
}

/**
 * Every task's answer put together: the problem with the smallest seq, if any. When no expected
 * lookup is missing but the index holds more rows than expected, one more query finds the first
 * row that matches no event (`db`: any connection to the log).
 */
export async function sideProblem(db: Kysely<Database>, lastSeq: number, answers: readonly SideAnswer[]): Promise<SideProblem | undefined> {
  const earliest = (check: SideTask['check']) =>
    answers
      .filter((a) => a.task.check === check && a.problem)
      .map((a) => a.problem!)
      .sort((a, b) => a.seq - b.seq)[0];
  const columns = earliest('columns');
  let index = earliest('lookups');
  if (!index) {
    const expected = answers.filter((a) => a.task.check === 'lookups').reduce((sum, a) => sum + (a.lookups ?? 0), 0);
    const held = answers.find((a) => a.task.check === 'count')?.lookups;
    if (held === undefined) throw new Error('the side checks did not count the query index');
    if (held !== expected) index = await extraLookup(db, lastSeq);
  }
  return [columns, index].filter((p) => p !== undefined).sort((a, b) => a.seq - b.seq)[0];
}

/** Every side check on one connection, one task after the other (PostgreSQL; SQLite without a file). */
export async function checkBeside(db: Kysely<Database>, lastSeq: number, options: { columns: boolean }): Promise<SideProblem | undefined> {
  const answers: SideAnswer[] = [];
  for (const task of await sideTasks(db, lastSeq, { columns: options.columns, eventsPerTask: Infinity })) answers.push(await runSideTask(db, task));
  return sideProblem(db, lastSeq, answers);
}

/** SQLite: the first event of the range whose indexed columns disagree with its JSON. */
async function columnsProblem(db: Kysely<Database>, from: number, to: number): Promise<{ problem?: SideProblem }> {
  const field = (path: string) => sql`json_extract(event, ${path})`;
  const { rows } = await sql<{ seq: number | null }>`
    select min(seq) as seq from audit_events where seq >= ${from} and seq <= ${to} and not coalesce(case when json_valid(event) then (
      ${field('$.id')} is id and ${field('$.type')} is type and ${field('$.time')} is time and
      ${field('$.txn')} is txn and ${field('$.subject')} is subject and ${field('$.client')} is client and
      (case ${field('$.decision.allow')} when 1 then 'allow' when 0 then 'deny' end) is decision
    ) else 0 end, 0)`.execute(db);
  const seq = rows[0]?.seq;
  return seq == null ? {} : { problem: { seq: Number(seq), kind: 'columns', message: `the indexed columns of event seq ${seq} disagree with the event (altered)` } };
}

/**
 * The first event of the range whose lookup rows are missing, and the lookups its events should
 * have. Every expected row exists (one probe each) and the index holds no more rows than expected
 * (`sideProblem`): together, the index is exactly right. The rows expected are counted in the
 * probes' own pass over the events (a second pass cost a tenth more of this check's time on a
 * log of 1,000,000 events).
 */
async function lookupsOf(db: Kysely<Database>, from: number, to: number): Promise<{ problem?: SideProblem; lookups: number }> {
  const lacks = (column: 'txn' | 'subject' | 'client', prefix: string) =>
    sql`(e.${sql.ref(column)} is not null and not exists (select 1 from audit_index i where i.key = ${prefix} || e.${sql.ref(column)} and i.seq = e.seq))`;
  const { rows } = await sql<{ seq: number | null; expected: number | string }>`
    select min(case when ${lacks('txn', 'txn:')} or ${lacks('subject', 'sub:')} or ${lacks('client', 'cli:')} then e.seq end) as seq,
      count(e.txn) + count(e.subject) + count(e.client) as expected
    from audit_events e where e.seq >= ${from} and e.seq <= ${to}`.execute(db);
  const lookups = Number(rows[0]?.expected ?? 0);
  const missing = rows[0]?.seq;
  if (missing == null) return { lookups };
  return { lookups, problem: { seq: Number(missing), kind: 'index', message: `the query index lacks a lookup of event seq ${missing} (removed or altered)` } };
}

/** The first row of the query index that matches no sealed event's column. */
async function extraLookup(db: Kysely<Database>, lastSeq: number): Promise<SideProblem> {
  const { rows } = await sql<{ seq: number | null }>`
    select min(i.seq) as seq from audit_index i left join audit_events e on e.seq = i.seq
    where e.seq is null or e.seq > ${lastSeq} or not (coalesce(i.key = 'txn:' || e.txn, false) or coalesce(i.key = 'sub:' || e.subject, false) or coalesce(i.key = 'cli:' || e.client, false))`.execute(db);
  const seq = Number(rows[0]?.seq ?? -1);
  return { seq, kind: 'index', message: `the query index has a row for event seq ${seq} that does not match it (inserted or altered)` };
}
