import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { bumpGeneration } from '../storage/generations.ts';
import { keyringOf, masterKeyId, setSealing } from './keyring.ts';
import { masterKeyGeneration, rootBinding, rootRow, sealingRefreshMs } from './master-key-state.ts';
import { open, seal } from './sealed-box.ts';
import { columnName, sealedColumns, type SealedColumn } from './sealed-columns.ts';

/**
 * `clearance keys rewrap` (docs/keys.md "The master key"): every value sealed with the master key
 * re-sealed with the new one (CLEARANCE_MASTER_KEY), opened with whichever configured key sealed
 * it (the previous one, CLEARANCE_PREVIOUS_MASTER_KEY).
 *
 * 1. Begin: the derivation root is re-sealed with the new key, in one conditional update — from
 *    then on (within `sealingRefreshMs`, at once on a PostgreSQL change notice) every node
 *    configured with both keys seals with the new one, a running node with the previous key alone
 *    seals nothing and reports not ready (master-key-state.ts watchMasterKeyState), and one
 *    started with the previous key alone is refused. What authenticates (cookies, the console's
 *    client key, DPoP nonces: master-key.ts authenticationKey) follows the sealing key, so what the
 *    previous key authenticated is no longer accepted.
 * 2. Sweep: each sealed column (sealed-columns.ts), a batch at a time, takes the values whose
 *    sealed box does not name the new key (sealed-box.ts), opens and re-seals each, and writes it
 *    back only if the row still holds the value read (a conditional update: a value changed
 *    meanwhile is taken by the next batch). Progress is counted in `master_key_rewraps`.
 * 3. Settle: nodes learn of the begin within `sealingRefreshMs`; after `settleMs` the sweep runs
 *    again until one finds nothing left, so a value a node sealed with the previous key just
 *    before it switched is not missed.
 * 4. Complete: the rewrap's row says so; the previous key may be removed.
 *
 * Resumable: what is left is read from the data itself — a box names its key — so a rerun after
 * a crash goes on where the last one stopped (the same rewrap row), and nothing is sealed twice:
 * a value already under the new key is never selected, and what is re-sealed is the plaintext.
 * Audited: `master_key.rewrap_started`, `master_key.rewrap_progress` (per column),
 * `master_key.rewrap_completed`, with key ids and counts only.
 */
export interface RewrapOptions {
  /** Who runs it, for the events (`cli:<user>`). */
  actor: string;
  /** Values per batch (one transaction each). */
  batchSize?: number;
  /** How long after the begin the last sweep starts: longer than nodes take to switch (master-key-state.ts sealingRefreshMs). */
  settleMs?: number;
  /** Told after each batch. */
  onProgress?: (column: string, resealed: number) => void;
  /** Stops with an error after this many values, as a crash would (tests of resumption). */
  stopAfter?: number;
}

export interface RewrapReport {
  id: string;
  fromKeyId: string;
  toKeyId: string;
  /** True when it went on with an unfinished rewrap to the same key. */
  resumed: boolean;
  /** Values re-sealed, by `<table>.<column>`, over every run of this rewrap. */
  resealed: Record<string, number>;
  /** Rows removed because their binding cannot be known here (pending TOTP enrolments), by column. */
  deleted: Record<string, number>;
  completedAt: number;
}

export class RewrapError extends Error {
  override name = 'RewrapError';
}

/** A query Kysely narrows by `where(column, '=', value)`, as its update and delete queries are. */
type Where<Q> = { where(column: string, op: '=', value: unknown): Q };
type Progress = { resealed: Record<string, number>; deleted: Record<string, number> };
type RewrapContext = Pick<Context, 'storage' | 'clock' | 'audit'>;

export async function rewrap(ctx: RewrapContext, masterKey: Buffer, options: RewrapOptions): Promise<RewrapReport> {
  const keyring = keyringOf(masterKey);
  if (!keyring) throw new RewrapError('the master key was not loaded with its database (openContext)');
  const began = Date.now();
  const run = await begin(ctx, masterKey, options.actor);
  const state = { ...run, budget: options.stopAfter ?? Infinity };
  await ctx.audit.record({ type: 'master_key.rewrap_started', actor: options.actor, details: { rewrap_id: run.id, from_key_id: run.fromKeyId, to_key_id: run.toKeyId, resumed: run.resumed } });

  await sweep(ctx, masterKey, state, options, true);
  const settleMs = options.settleMs ?? 5 * sealingRefreshMs;
  const wait = began + settleMs - Date.now();
  if (wait > 0) await sleep(wait);
  // Until a sweep finds nothing: a node that sealed with the previous key before it switched.
  for (let round = 0; ; round++) {
    if ((await sweep(ctx, masterKey, state, options, false)) === 0) break;
    if (round === 4) throw new RewrapError('values are still being sealed with the previous master key: is every node configured with the new key as CLEARANCE_MASTER_KEY? Run clearance keys rewrap again once they are');
    await sleep(settleMs);
  }

  const completedAt = ctx.clock.now();
  await ctx.storage.db.updateTable('master_key_rewraps').set({ completed_at: completedAt, updated_at: completedAt, progress: JSON.stringify(state.progress) }).where('id', '=', run.id).execute();
  await ctx.audit.record({
    type: 'master_key.rewrap_completed',
    actor: options.actor,
    // Column names are values, not member names: the audit guard refuses a member named like a secret.
    details: { rewrap_id: run.id, from_key_id: run.fromKeyId, to_key_id: run.toKeyId, columns: counts(state.progress) },
  });
  return { id: run.id, fromKeyId: run.fromKeyId, toKeyId: run.toKeyId, resumed: run.resumed, ...state.progress, completedAt };
}

/** Each column's counts, as a list (a column is a value here, never a member name). */
function counts(progress: Progress): { column: string; resealed: number; deleted: number }[] {
  const names = [...new Set([...Object.keys(progress.resealed), ...Object.keys(progress.deleted)])];
  return names.map((column) => ({ column, resealed: progress.resealed[column] ?? 0, deleted: progress.deleted[column] ?? 0 }));
}

/**
 * Finds or makes the rewrap's row and re-seals the root with the new key (if not done yet), in one
 * transaction: the row names the key the rotation is from, whatever happens after. From here on
 * this process seals with the new key.
 */
async function begin(ctx: RewrapContext, masterKey: Buffer, actor: string): Promise<{ id: string; fromKeyId: string; toKeyId: string; resumed: boolean; progress: Progress }> {
  const keyring = keyringOf(masterKey)!;
  const toKeyId = masterKeyId(keyring.current);
  const run = await ctx.storage.db.transaction().execute(async (trx) => {
    const root = await rootRow(trx);
    if (!root) throw new RewrapError('the database has no derivation root yet: start the server once first');
    if (root.master_key_id !== toKeyId) {
      // open() takes the previous key for a root it sealed; a bare copy of the new key (no keyring
      // attached, so it seals with itself) seals it, whatever this process seals with until commit.
      const sealed = seal(Buffer.from(keyring.current), open(masterKey, root.sealed_root, rootBinding), rootBinding);
      await trx.updateTable('master_key_root').set({ sealed_root: sealed, master_key_id: toKeyId }).where('id', '=', 'root').where('master_key_id', '=', root.master_key_id).execute();
      await bumpGeneration(trx, masterKeyGeneration);
    }
    const unfinished = await trx.selectFrom('master_key_rewraps').selectAll().where('to_key_id', '=', toKeyId).where('completed_at', 'is', null).orderBy('started_at', 'desc').executeTakeFirst();
    if (unfinished) return { id: unfinished.id, fromKeyId: unfinished.from_key_id, toKeyId, resumed: true, progress: JSON.parse(unfinished.progress) as Progress };
    const id = randomUUID();
    const now = ctx.clock.now();
    const progress: Progress = { resealed: {}, deleted: {} };
    await trx.insertInto('master_key_rewraps').values({ id, from_key_id: root.master_key_id, to_key_id: toKeyId, started_at: now, updated_at: now, completed_at: null, progress: JSON.stringify(progress), actor }).execute();
    return { id, fromKeyId: root.master_key_id, toKeyId, resumed: false, progress };
  });
  setSealing(keyring, keyring.current);
  return run;
}

/** One pass over every sealed column; returns how many values it re-sealed or removed. */
async function sweep(ctx: RewrapContext, masterKey: Buffer, state: { id: string; toKeyId: string; progress: Progress; budget: number }, options: RewrapOptions, first: boolean): Promise<number> {
  let total = 0;
  for (const column of sealedColumns) {
    const name = columnName(column);
    let changed = 0;
    for (;;) {
      const batch = await rewrapBatch(ctx, masterKey, column, state.toKeyId, Math.min(options.batchSize ?? 200, state.budget));
      // Done when nothing is left to select; a batch whose rows all changed meanwhile is selected again.
      if (batch.selected === 0) break;
      changed += batch.resealed + batch.deleted;
      state.budget -= batch.resealed + batch.deleted;
      if (batch.resealed) state.progress.resealed[name] = (state.progress.resealed[name] ?? 0) + batch.resealed;
      if (batch.deleted) state.progress.deleted[name] = (state.progress.deleted[name] ?? 0) + batch.deleted;
      await ctx.storage.db.updateTable('master_key_rewraps').set({ progress: JSON.stringify(state.progress), updated_at: ctx.clock.now() }).where('id', '=', state.id).execute();
      options.onProgress?.(name, state.progress.resealed[name] ?? 0);
      if (state.budget <= 0) throw new RewrapError(`stopped after the values asked for (${options.stopAfter}); run it again to go on`);
    }
    total += changed;
    if (changed > 0) {
      // `late`: found by a sweep after the settling wait (sealed by a node before it switched).
      await ctx.audit.record({
        type: 'master_key.rewrap_progress',
        details: { rewrap_id: state.id, column: name, resealed: state.progress.resealed[name] ?? 0, deleted: state.progress.deleted[name] ?? 0, ...(first ? {} : { late: changed }) },
      });
    }
  }
  return total;
}

/**
 * Up to `limit` values of one column not sealed with `toKeyId`, re-sealed in one transaction.
 * A value changed since it was read is left for the next batch.
 */
async function rewrapBatch(ctx: RewrapContext, masterKey: Buffer, column: SealedColumn, toKeyId: string, limit: number): Promise<{ selected: number; resealed: number; deleted: number }> {
  // The tables are many and each component's own: addressed by name here, from sealed-columns.ts.
  const db = ctx.storage.db as unknown as Kysely<Record<string, Record<string, unknown>>>;
  const prefix = `v2.${toKeyId}.`;
  let query = db
    .selectFrom(column.table)
    .select([...column.key, ...(column.reads ?? []), column.column])
    .where(column.column, 'is not', null)
    .where(sql<string>`substr(${sql.ref(column.column)}, 1, ${prefix.length})`, '!=', prefix);
  if (column.skipEmpty) query = query.where(column.column, '!=', '');
  for (const key of column.key) query = query.orderBy(key);
  const rows = await query.limit(limit).execute();
  if (rows.length === 0) return { selected: 0, resealed: 0, deleted: 0 };
  let resealed = 0;
  let deleted = 0;
  await ctx.storage.db.transaction().execute(async (trx) => {
    const tx = trx as unknown as Kysely<Record<string, Record<string, unknown>>>;
    for (const row of rows) {
      const value = String(row[column.column]);
      // This row, still holding the value read.
      const where = <Q extends Where<Q>>(q: Q): Q => [...column.key, column.column].reduce((acc, key) => acc.where(key, '=', key === column.column ? value : row[key]), q);
      const binding = column.binding(row);
      if (binding === undefined) {
        const result = await where(tx.deleteFrom(column.table)).executeTakeFirst();
        deleted += Number(result.numDeletedRows);
        continue;
      }
      let plaintext: Buffer;
      try {
        plaintext = (column.open ?? open)(masterKey, value, binding);
      } catch (error) {
        const id = column.key.map((key) => String(row[key])).join('/');
        throw new RewrapError(`${columnName(column)} of ${id} does not open with the configured master keys: ${(error as Error).message}`);
      }
      const changes: Record<string, unknown> = { [column.column]: seal(masterKey, plaintext, binding) };
      if (column.keyIdColumn) changes[column.keyIdColumn] = toKeyId;
      const result = await where(tx.updateTable(column.table).set(changes)).executeTakeFirst();
      resealed += Number(result.numUpdatedRows);
    }
  });
  return { selected: rows.length, resealed, deleted };
}
