import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { isDatabaseUnavailable } from '../storage/faults.ts';
import type { Database } from '../storage/schema.ts';
import type { AuditKeys, AuditPublicKey } from './audit-key.ts';
import { signCheckpoint, verifyCheckpoint, type Checkpoint } from './checkpoint.ts';
import { isPostgres, sealerLockKey, writersLockKey } from './dialect.ts';
import { CompactMerkleTree } from './merkle.ts';
import { completedTiles, decodeFrontier, encodeFrontier, tileWidth } from './tiles.ts';

export interface SealerOptions {
  clock: Clock;
  keys: AuditKeys;
  /** The log identity, used when the first audit key is created. */
  origin: string;
  log?: Logger;
  /** Longest time between an event's commit and the checkpoint covering it, in ms (default 500). */
  intervalMs?: number;
  /** A checkpoint is signed at every multiple of this tree size (default 1000). */
  checkpointEvery?: number;
  /** Most leaves sealed in one transaction (default 20000). */
  maxLeavesPerRound?: number;
}

export class AuditIntegrityError extends Error {
  override name = 'AuditIntegrityError';
}

/** The sealer's view of the tree, valid while it matches the latest checkpoint in the store. */
interface SealState {
  tree: CompactMerkleTree;
  lastSeq: number;
  lastTime: number;
}

interface UnsealedRow {
  seq: number;
  leaf_hash: Uint8Array;
}

/**
 * Assigns leaf indexes to recorded events and signs checkpoints (DESIGN §5, RFC 9162 §2.1).
 *
 * One round is one transaction: read the latest checkpoint (which stores the tree frontier and the
 * cursor), take the next committed events in order, insert their leaves, the completed tiles and
 * the signed checkpoints (one at every multiple of `checkpointEvery`, one at the end), commit. The
 * tree and the cursor only ever move together with a checkpoint, so a crash at any point leaves
 * no gap and no index given twice: the next round starts again from the latest checkpoint.
 *
 * Order: events are sealed in `seq` order. SQLite serializes writers, so that is commit order.
 * On PostgreSQL a transaction holding a lower seq may commit after one holding a higher seq, so
 * each round first passes a barrier: it takes the writers' lock exclusively for an instant (every
 * inserting transaction holds it shared), reads the highest seq, and seals only up to it. Every
 * event up to it has then committed or rolled back, so none can appear behind the cursor later.
 * Only the node holding the sealer's advisory lock seals.
 */
export class AuditSealer {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #keys: AuditKeys;
  readonly #origin: string;
  readonly #log: Logger | undefined;
  readonly #intervalMs: number;
  readonly #checkpointEvery: number;
  readonly #maxLeaves: number;
  readonly #postgres: boolean;
  #state: SealState | undefined;
  #stopped = true;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #pendingEvents = 0;

  constructor(db: Kysely<Database>, options: SealerOptions) {
    this.#db = db;
    this.#clock = options.clock;
    this.#keys = options.keys;
    this.#origin = options.origin;
    this.#log = options.log;
    this.#intervalMs = options.intervalMs ?? 500;
    this.#checkpointEvery = options.checkpointEvery ?? 1000;
    this.#maxLeaves = options.maxLeavesPerRound ?? 20_000;
    this.#postgres = isPostgres(db);
  }

  /** Seals until nothing committed is left unsealed; returns how many events it sealed. */
  async sealAll(db: Kysely<Database> = this.#db): Promise<number> {
    let total = 0;
    for (;;) {
      const sealed = await this.sealOnce(db);
      total += sealed;
      if (sealed < this.#maxLeaves) return total;
    }
  }

  /** One sealing round in one transaction; returns how many events it sealed. */
  async sealOnce(db: Kysely<Database> = this.#db): Promise<number> {
    // Read before the transaction: on SQLite a query outside it would wait for its connection.
    const key = await this.#keys.signingKey(this.#origin);
    const publicKeys = await this.#keys.publicKeys();
    try {
      return await db.transaction().execute(async (trx) => {
        const state = await this.#currentState(trx, publicKeys);
        const rows = await this.#unsealed(trx, state);
        if (rows.length === 0) return 0;
        const base = state.tree.size;
        const checkpoints: Database['audit_checkpoints'][] = [];
        const nodes: Database['audit_nodes'][] = [];
        const checkpoint = (row: UnsealedRow) => {
          const time = Math.max(this.#clock.now(), state.lastTime);
          const cp: Checkpoint = { origin: key.origin, treeSize: state.tree.size, rootHash: state.tree.root().toString('base64'), time };
          checkpoints.push({
            tree_size: cp.treeSize,
            origin: cp.origin,
            root_hash: cp.rootHash,
            time,
            key_id: key.keyId,
            signature: signCheckpoint(cp, key.privateKey),
            frontier: encodeFrontier(state.tree.frontier()),
            last_seq: row.seq,
          });
          state.lastTime = time;
        };
        for (const row of rows) {
          if ((state.tree.size + 1) % tileWidth === 0) completedTiles(state.tree, row.leaf_hash, nodes);
          state.tree.append(row.leaf_hash);
          if (state.tree.size % this.#checkpointEvery === 0) checkpoint(row);
        }
        const last = rows[rows.length - 1]!;
        if (state.tree.size % this.#checkpointEvery !== 0) checkpoint(last);
        state.lastSeq = last.seq;

        const inserted = await this.#insertLeaves(trx, base, rows[0]!, last);
        if (inserted !== rows.length) {
          throw new AuditIntegrityError(`sealing expected ${rows.length} leaves but would insert ${inserted}`);
        }
        await this.#insertLookups(trx, rows[0]!, last);
        for (let i = 0; i < nodes.length; i += 500) await trx.insertInto('audit_nodes').values(nodes.slice(i, i + 500)).execute();
        await trx.insertInto('audit_checkpoints').values(checkpoints).execute();
        return rows.length;
      });
    } catch (error) {
      // Whatever was appended in memory was not committed: start again from the store.
      this.#state = undefined;
      throw error;
    }
  }

  /**
   * Runs rounds every `intervalMs`, and at once when `notify` reports many new events.
   * On PostgreSQL it first takes the sealer lock on a dedicated connection and retries while
   * another node holds it.
   */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loop = this.#postgres ? this.#runPostgres() : this.#run(this.#db);
  }

  /**
   * Tells the sealer that `count` events were committed (the recorder calls it). A round runs at
   * least every `intervalMs` anyway and signs a checkpoint at every `checkpointEvery` leaves, so
   * the sealer is only woken early when a round's worth of events is waiting.
   */
  notify(count: number): void {
    this.#pendingEvents += count;
    if (this.#pendingEvents >= this.#maxLeaves / 2) this.#wake?.();
  }

  /** Finishes the round in progress, seals what is committed, and stops. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }

  async #run(db: Kysely<Database>): Promise<void> {
    while (!this.#stopped) {
      await this.#sleep(this.#intervalMs);
      await this.#roundLogged(db);
    }
    // A last round so a graceful shutdown leaves nothing unsealed that it could seal.
    await this.#roundLogged(db);
  }

  /**
   * The PostgreSQL loop. The sealer lock is a session lock, so it lives exactly as long as the
   * connection that took it: when that connection is lost (terminated, reset, or given up after
   * the statement timeout), the lock is gone with it and another node may take over. This node
   * then drops the connection, waits, and competes for the lock again on a new one; whoever seals
   * next starts from the latest checkpoint, so no event is skipped or sealed twice.
   */
  async #runPostgres(): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.#db.connection().execute(async (conn) => {
          // The server should notice within about a minute if this node vanishes without closing
          // the connection (a partition): until then the lock would keep every node from sealing.
          const { rows } = await sql<{ locked: boolean }>`
            select set_config('tcp_keepalives_idle', '30', false), set_config('tcp_keepalives_interval', '10', false),
                   set_config('tcp_keepalives_count', '3', false), pg_try_advisory_lock(${sealerLockKey}) as locked`.execute(conn);
          if (!rows[0]?.locked) return;
          this.#log?.info('audit sealer: this node seals the audit log');
          this.#state = undefined; // another node may have sealed while we waited
          try {
            await this.#run(conn);
          } finally {
            await sql`select pg_advisory_unlock(${sealerLockKey})`.execute(conn).catch(() => {});
          }
        });
      } catch (error) {
        this.#log?.warn({ err: error }, 'audit sealer lost its database connection (and with it the sealer lock); retrying');
      }
      if (!this.#stopped) await this.#sleep(Math.max(this.#intervalMs, 2000));
    }
  }

  async #roundLogged(db: Kysely<Database>): Promise<void> {
    try {
      this.#pendingEvents = 0;
      await this.sealAll(db);
    } catch (error) {
      // A connection that no longer answers has lost the sealer lock with its session: leave the
      // loop and take the lock again on a new connection. A fault elsewhere (the pool was busy,
      // a statement timed out) leaves this connection, and the lock, as they are.
      if (this.#postgres && !(error instanceof AuditIntegrityError) && isDatabaseUnavailable(error) && !(await answers(db))) throw error;
      this.#log?.error({ err: error }, 'audit sealing failed; events stay recorded and are sealed on the next round');
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  /** The in-memory state if it still matches the latest checkpoint, else reloaded and verified. */
  async #currentState(trx: Kysely<Database>, publicKeys: Map<string, AuditPublicKey>): Promise<SealState> {
    const latest = await trx.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    const state = this.#state;
    if (state && (latest?.tree_size ?? 0) === state.tree.size && (latest === undefined || latest.root_hash === state.tree.root().toString('base64'))) {
      return state;
    }
    this.#state = undefined;
    const loaded = latest ? this.#restore(latest, publicKeys) : emptyState();
    this.#state = loaded;
    return loaded;
  }

  #restore(latest: Database['audit_checkpoints'], publicKeys: Map<string, AuditPublicKey>): SealState {
    let tree: CompactMerkleTree;
    try {
      tree = CompactMerkleTree.restore(latest.tree_size, decodeFrontier(latest.frontier));
    } catch (error) {
      throw new AuditIntegrityError(`the latest audit checkpoint (tree size ${latest.tree_size}) has a malformed frontier: ${(error as Error).message}`);
    }
    const key = publicKeys.get(latest.key_id);
    const cp: Checkpoint = { origin: latest.origin, treeSize: latest.tree_size, rootHash: latest.root_hash, time: latest.time };
    // Never extend a tree whose stored state the signature does not vouch for.
    if (!key || tree.root().toString('base64') !== latest.root_hash || !verifyCheckpoint(cp, latest.signature, key.publicKey)) {
      throw new AuditIntegrityError(`the latest audit checkpoint (tree size ${latest.tree_size}) does not verify; run \`clearance audit verify\``);
    }
    return { tree, lastSeq: latest.last_seq, lastTime: latest.time };
  }

  async #unsealed(trx: Kysely<Database>, state: SealState): Promise<UnsealedRow[]> {
    let query = trx.selectFrom('audit_events').select(['seq', 'leaf_hash']).where('seq', '>', state.lastSeq);
    if (this.#postgres) {
      // The barrier: with the writers' lock held exclusively no insert is in flight, so every
      // seq up to the maximum belongs to a finished transaction.
      await sql`select pg_advisory_lock(${writersLockKey})`.execute(trx);
      try {
        const { rows } = await sql<{ upto: number | null }>`select max(seq) as upto from audit_events`.execute(trx);
        query = query.where('seq', '<=', Number(rows[0]?.upto ?? -1));
      } finally {
        await sql`select pg_advisory_unlock(${writersLockKey})`.execute(trx);
      }
    }
    return query.orderBy('seq').limit(this.#maxLeaves).execute();
  }

  /** The query index rows of the sealed events (query.ts): a round at a time, not per commit. */
  async #insertLookups(trx: Kysely<Database>, first: UnsealedRow, last: UnsealedRow): Promise<void> {
    const part = (prefix: string, column: 'txn' | 'subject' | 'client') =>
      sql`select ${prefix} || ${sql.ref(column)}, seq from audit_events where seq >= ${first.seq} and seq <= ${last.seq} and ${sql.ref(column)} is not null`;
    await sql`insert into audit_index (key, seq) ${part('txn:', 'txn')} union all ${part('sub:', 'subject')} union all ${part('cli:', 'client')}`.execute(trx);
  }

  async #insertLeaves(trx: Kysely<Database>, base: number, first: UnsealedRow, last: UnsealedRow): Promise<number> {
    const offset = this.#postgres ? sql`${base}::bigint` : sql`${base}`;
    const result = await sql`
      insert into audit_leaves (leaf_index, event_seq, leaf_hash)
      select ${offset} + row_number() over (order by seq) - 1, seq, leaf_hash from audit_events
      where seq >= ${first.seq} and seq <= ${last.seq}`.execute(trx);
    return Number(result.numAffectedRows ?? -1);
  }
}

function emptyState(): SealState {
  return { tree: new CompactMerkleTree(), lastSeq: -1, lastTime: 0 };
}

/** True when `db` (the sealer's own connection) still answers. */
async function answers(db: Kysely<Database>): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}
