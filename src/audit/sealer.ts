// Gives the event loop a turn (timers, I/O, other requests) before going on.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { isMasterKeyUnavailable } from '../keys/keyring.ts';
import { isDatabaseUnavailable } from '../storage/faults.ts';
import type { Database } from '../storage/schema.ts';
import { autocheckpointPages, checkpointWal, setWalAutocheckpoint, WalCheckpointer, type WalCheckpoint } from '../storage/wal.ts';
import type { AuditKeys, AuditPublicKey } from './audit-key.ts';
import { signCheckpointWith, verifyCheckpoint, type Checkpoint } from './checkpoint.ts';
import { isPostgres, sealerLockKey, writersLockKey } from './dialect.ts';
import { CompactMerkleTree } from './merkle.ts';
import { completedTiles, decodeFrontier, encodeFrontier, tileWidth } from './tiles.ts';

export interface SealerOptions {
  clock: Clock;
  keys: AuditKeys;
  /** The log identity, used when the first audit key is created. */
  origin: string;
  log?: Logger;
  /**
   * Time between two rounds, in ms (default `sealIntervalDefaults` for the dialect): about the
   * longest time between an event's commit and the checkpoint covering it.
   */
  intervalMs?: number;
  /** A checkpoint is signed at every multiple of this tree size (default 1000). */
  checkpointEvery?: number;
  /** Most leaves sealed in one round (default 20000). */
  maxLeavesPerRound?: number;
  /**
   * Longest piece of a round's reading and hashing between two turns of the event loop, in ms
   * (default 2). Paced by time, not by count: under load every turn the sealer gives takes as long
   * as the requests queued meanwhile, and with a turn every 250 events it sealed 5k events/s while
   * 70k/s were recorded (docs/performance.md).
   */
  pieceMs?: number;
  /**
   * SQLite: the longest time between two WAL checkpoints of the loop, in ms (default 500). After a
   * round that sealed events the WAL is checkpointed at once; after one that sealed nothing, only
   * once this much has passed since the last checkpoint: an idle server's rounds then cost a read
   * or two (at ten rounds a second, a checkpoint after each took 8 ms of CPU a second more than
   * at two), and the WAL stays as bounded as with a checkpoint after every round of 500 ms.
   */
  walCheckpointGapMs?: number;
  /** SQLite: told what each WAL checkpoint between two rounds did (tests watch the loop with it). */
  onWalCheckpoint?: (result: WalCheckpoint) => void;
  /** Told after a round of the loop sealed events (how many): what reads the sealed log (Shared Signals) looks now. Must not throw. */
  onSealed?: (count: number) => void;
}

export class AuditIntegrityError extends Error {
  override name = 'AuditIntegrityError';
}

/** Another sealer stored checkpoints after this one read its state; nothing of this one's was written. */
export class AuditSealRaceError extends Error {
  override name = 'AuditSealRaceError';
}

/**
 * The default time between two rounds, in ms. On SQLite a round's write transaction holds the
 * server's only connection, so every request's database work waits for its commit: rounds ten
 * times a second keep each one to a tenth of a second's events (1.3 ms p50 at 1,600 tokens/s)
 * instead of half a second's, and each WAL checkpoint after them as short. Measured at half the m2m
 * peak, the requests' p99 went from 10-31 ms to 6-9 ms, throughput and the audit append rate
 * unchanged (docs/performance.md, "Sealing ten times a second"). On PostgreSQL the requests have
 * connections of their own, and each round's barrier holds every inserting transaction back for
 * an instant: twice a second.
 */
export const sealIntervalDefaults = { sqlite: 100, postgres: 500 } as const;

/** Events read per query of a round. */
const sliceSize = 250;

/** SQLite: events whose leaves and index rows one statement of a segment's transaction inserts. */
export const sqliteChunk = 64;

/** Yields to the event loop once `pieceMs` have passed since the last turn it gave. */
class Pacer {
  readonly #pieceMs: number;
  #since = performance.now();

  constructor(pieceMs: number) {
    this.#pieceMs = pieceMs;
  }

  async pace(): Promise<void> {
    if (performance.now() - this.#since < this.#pieceMs) return;
    await yieldToEventLoop();
    this.#since = performance.now();
  }
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

/** The leaves up to one checkpoint, written in one transaction. */
interface Segment {
  /** The checkpoint this one extends (tree size 0 and the empty root for the first). */
  base: { size: number; root: string };
  /** Its events, in seq order. */
  rows: UnsealedRow[];
  nodes: Database['audit_nodes'][];
  checkpoint: Database['audit_checkpoints'] | undefined;
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
  readonly #pieceMs: number;
  readonly #walCheckpointGapMs: number;
  readonly #postgres: boolean;
  readonly #onWalCheckpoint: ((result: WalCheckpoint) => void) | undefined;
  readonly #onSealed: ((count: number) => void) | undefined;
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
    this.#postgres = isPostgres(db);
    this.#intervalMs = options.intervalMs ?? (this.#postgres ? sealIntervalDefaults.postgres : sealIntervalDefaults.sqlite);
    this.#checkpointEvery = options.checkpointEvery ?? 1000;
    this.#maxLeaves = options.maxLeavesPerRound ?? 20_000;
    this.#pieceMs = options.pieceMs ?? 2;
    this.#walCheckpointGapMs = options.walCheckpointGapMs ?? 500;
    this.#onWalCheckpoint = options.onWalCheckpoint;
    this.#onSealed = options.onSealed;
  }

  /** The time between two rounds of the loop, in ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /** Seals until nothing committed is left unsealed; returns how many events it sealed. */
  async sealAll(db: Kysely<Database> = this.#db): Promise<number> {
    let total = 0;
    let races = 0;
    for (;;) {
      let sealed: number;
      try {
        sealed = await this.sealOnce(db);
      } catch (error) {
        // Someone else sealed part of it: go on from what they stored.
        if (error instanceof AuditSealRaceError && ++races <= 3) continue;
        throw error;
      }
      total += sealed;
      if (sealed < this.#maxLeaves) return total;
    }
  }

  /**
   * One sealing round; returns how many events it sealed (at most `maxLeavesPerRound`).
   *
   * The work is cut so that no piece keeps the event loop long (node:sqlite is synchronous, and
   * a round of 1,000 events in one piece blocked it for ~10 ms, docs/architecture.md):
   * 1. read the unsealed events and hash them into the tree, outside any transaction, yielding to
   *    the event loop whenever a piece of this has run `pieceMs`; sign the checkpoints;
   * 2. write one transaction per checkpoint (the leaves up to it, their index rows, the tiles they
   *    complete, the checkpoint), yielding between transactions. Each transaction first checks
   *    that the latest stored checkpoint is still the one it extends.
   * The checkpoints are the ones a single transaction would sign (one at every multiple of
   * `checkpointEvery`, one at the end), and the tree and the cursor still move only together with
   * a checkpoint: a crash between two transactions leaves the first sealed and the rest unsealed.
   */
  async sealOnce(db: Kysely<Database> = this.#db): Promise<number> {
    // Read before any transaction: on SQLite a query outside it would wait for its connection.
    const key = await this.#keys.signingKey(this.#origin);
    try {
      const state = await this.#currentState(db);
      const base = { size: state.tree.size, root: state.tree.root().toString('base64') };
      const pacer = new Pacer(this.#pieceMs);
      const rows = await this.#unsealed(db, state, pacer);
      if (rows.length === 0) return 0;

      // 1. Hash and sign, a piece at a time.
      const segments: Segment[] = [];
      let segment: Segment = { base, rows: [], nodes: [], checkpoint: undefined };
      for (let i = 0; i < rows.length; i++) {
        if (i % 32 === 0) await pacer.pace();
        const row = rows[i]!;
        if ((state.tree.size + 1) % tileWidth === 0) completedTiles(state.tree, row.leaf_hash, segment.nodes);
        state.tree.append(row.leaf_hash);
        segment.rows.push(row);
        if (state.tree.size % this.#checkpointEvery === 0 || i === rows.length - 1) {
          segment.checkpoint = await this.#checkpoint(state, key, row);
          segments.push(segment);
          segment = { base: { size: state.tree.size, root: segment.checkpoint.root_hash }, rows: [], nodes: [], checkpoint: undefined };
        }
      }
      state.lastSeq = rows[rows.length - 1]!.seq;

      // 2. One short transaction per checkpoint.
      for (const [i, part] of segments.entries()) {
        if (i > 0) await yieldToEventLoop();
        await db.transaction().execute((trx) => this.#write(trx, part));
      }
      return rows.length;
    } catch (error) {
      // Whatever was appended in memory and not committed: start again from the store.
      this.#state = undefined;
      throw error;
    }
  }

  /** The signed checkpoint row for the tree as it is now, `row` being its last leaf's event. */
  async #checkpoint(state: SealState, key: Awaited<ReturnType<AuditKeys['signingKey']>>, row: UnsealedRow): Promise<Database['audit_checkpoints']> {
    const time = Math.max(this.#clock.now(), state.lastTime);
    const cp: Checkpoint = { origin: key.origin, treeSize: state.tree.size, rootHash: state.tree.root().toString('base64'), time };
    state.lastTime = time;
    return {
      tree_size: cp.treeSize,
      origin: cp.origin,
      root_hash: cp.rootHash,
      time,
      key_id: key.keyId,
      signature: await signCheckpointWith(cp, key.signer),
      frontier: encodeFrontier(state.tree.frontier()),
      last_seq: row.seq,
    };
  }

  /**
   * Writes one segment: its leaves, index rows, tiles and checkpoint, after the one it extends.
   *
   * On SQLite the leaves and their index rows are inserted `sqliteChunk` events at a time, with a
   * turn of the event loop between two pieces and one before the tiles and the checkpoint:
   * node:sqlite runs each statement on the event loop, and a segment of a few hundred events in
   * one piece held it 2.4-4.9 ms (p50-p90 on a slow VM; its longest piece now 0.8-1.2 ms,
   * docs/performance.md). The transaction keeps the connection meanwhile, so the requests'
   * statements wait for its commit, as they did before; what the turns give them is the rest of
   * their work (reading the request, checking signatures), done while the segment is written
   * instead of after it.
   */
  async #write(trx: Kysely<Database>, part: Segment): Promise<void> {
    const latest = await trx.selectFrom('audit_checkpoints').select(['tree_size', 'root_hash']).orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    if ((latest?.tree_size ?? 0) !== part.base.size || (latest !== undefined && latest.root_hash !== part.base.root)) {
      // Another sealer (the CLI, or a node without the lock) sealed meanwhile; the next round
      // starts again from what it stored.
      throw new AuditSealRaceError(`the audit log was sealed elsewhere meanwhile (tree size ${latest?.tree_size ?? 0}, expected ${part.base.size})`);
    }
    const chunk = this.#postgres ? part.rows.length : sqliteChunk;
    for (let i = 0; i < part.rows.length; i += chunk) {
      if (i > 0) await yieldToEventLoop();
      const rows = part.rows.slice(i, i + chunk);
      const first = rows[0]!;
      const last = rows[rows.length - 1]!;
      // Every event between the first and the last must be one the tree was given: one committed
      // since the events were read would be sealed without its hash in the tree.
      const inserted = await this.#insertLeaves(trx, part.base.size + i, first, last);
      if (inserted !== rows.length) {
        throw new AuditIntegrityError(`sealing expected ${rows.length} leaves but would insert ${inserted}`);
      }
      await this.#insertLookups(trx, first, last);
    }
    if (!this.#postgres) await yieldToEventLoop();
    for (let i = 0; i < part.nodes.length; i += 500) await trx.insertInto('audit_nodes').values(part.nodes.slice(i, i + 500)).execute();
    await trx.insertInto('audit_checkpoints').values(part.checkpoint!).execute();
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

  /**
   * The loop. On SQLite it also keeps the WAL short: SQLite's automatic checkpoint would run
   * inside whichever COMMIT crosses its threshold and block the event loop for as long as it
   * copies (~100-150 ms, docs/architecture.md), so it is off while the loop runs, and after each
   * round that sealed events (and at least every `walCheckpointGapMs`) a worker thread checkpoints
   * what was written since the last one (WalCheckpointer).
   */
  async #run(db: Kysely<Database>): Promise<void> {
    let checkpointer: WalCheckpointer | undefined;
    if (!this.#postgres) {
      await this.#walLogged(async () => {
        checkpointer = await WalCheckpointer.open(db);
        await setWalAutocheckpoint(db, 0);
      });
    }
    try {
      let walCheckpointAt = performance.now();
      while (!this.#stopped) {
        await this.#sleep(this.#intervalMs);
        const sealed = await this.#roundLogged(db);
        if (!this.#postgres && (sealed > 0 || performance.now() - walCheckpointAt >= this.#walCheckpointGapMs)) {
          walCheckpointAt = performance.now();
          await this.#checkpointWal(db, checkpointer);
        }
      }
      // A last round so a graceful shutdown leaves nothing unsealed that it could seal.
      await this.#roundLogged(db);
    } finally {
      if (!this.#postgres) {
        await this.#walLogged(() => setWalAutocheckpoint(db, autocheckpointPages));
        await checkpointer?.close();
      }
    }
  }

  async #checkpointWal(db: Kysely<Database>, checkpointer: WalCheckpointer | undefined): Promise<void> {
    // The checkpoint is awaited on a line of its own: inside `this.#onWalCheckpoint?.(…)` it would
    // not run at all without an observer (an optional call skips its arguments), and the WAL of
    // every server would grow without bound.
    try {
      const result = await (checkpointer ? checkpointer.checkpoint() : checkpointWal(db));
      this.#onWalCheckpoint?.(result);
    } catch (error) {
      // Without its worker, on this thread: a longer pause, but the WAL stays bounded.
      this.#log?.warn({ err: error }, 'SQLite WAL checkpoint in the worker thread failed; checkpointing on the main thread');
      await this.#walLogged(async () => {
        const result = await checkpointWal(db);
        this.#onWalCheckpoint?.(result);
      });
    }
  }

  async #walLogged(work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (error) {
      // A locked file (another process checkpointing) is retried after the next round.
      this.#log?.warn({ err: error }, 'SQLite WAL maintenance failed; retried after the next round');
    }
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
      // A node left with the old master key (a rewrap began) takes no sealer lock: it could sign
      // nothing, and holding the lock would keep every other node from sealing.
      if (this.#keys.unavailable()) {
        await this.#sleep(Math.max(this.#intervalMs, 2000));
        continue;
      }
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
        if (!isMasterKeyUnavailable(error)) this.#log?.warn({ err: error }, 'audit sealer lost its database connection (and with it the sealer lock); retrying');
      }
      if (!this.#stopped) await this.#sleep(Math.max(this.#intervalMs, 2000));
    }
  }

  /** One round of the loop; returns how many events it sealed (0 when it failed). */
  async #roundLogged(db: Kysely<Database>): Promise<number> {
    try {
      this.#pendingEvents = 0;
      const sealed = await this.sealAll(db);
      if (sealed > 0) this.#onSealed?.(sealed);
      return sealed;
    } catch (error) {
      // A connection that no longer answers has lost the sealer lock with its session: leave the
      // loop and take the lock again on a new connection. A fault elsewhere (the pool was busy,
      // a statement timed out) leaves this connection, and the lock, as they are.
      if (this.#postgres && !(error instanceof AuditIntegrityError) && isDatabaseUnavailable(error) && !(await answers(db))) throw error;
      // The master key moved on (a rewrap began): give the lock up for a node that holds it.
      if (this.#postgres && isMasterKeyUnavailable(error)) {
        this.#log?.error('audit sealing stopped: this node no longer holds the master key the database seals with; the sealer lock is released for another node');
        throw error;
      }
      this.#log?.error({ err: error }, 'audit sealing failed; events stay recorded and are sealed on the next round');
      return 0;
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

  /**
   * The in-memory state if it still matches the latest checkpoint, else reloaded and verified
   * (only then are the public keys read and imported).
   */
  async #currentState(db: Kysely<Database>): Promise<SealState> {
    const latest = await db.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size', 'desc').limit(1).executeTakeFirst();
    const state = this.#state;
    if (state && (latest?.tree_size ?? 0) === state.tree.size && (latest === undefined || latest.root_hash === state.tree.root().toString('base64'))) {
      return state;
    }
    this.#state = undefined;
    const loaded = latest ? this.#restore(latest, await this.#keys.publicKeys()) : emptyState();
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

  /**
   * The next committed events after the cursor, in seq order, at most `maxLeavesPerRound`, read
   * `sliceSize` at a time, paced by `pacer` between two reads. On SQLite writers are
   * serialized, so an event committed meanwhile has a higher seq than every one read before it.
   */
  async #unsealed(db: Kysely<Database>, state: SealState, pacer: Pacer): Promise<UnsealedRow[]> {
    let upto: number | undefined;
    if (this.#postgres) {
      // The barrier: with the writers' lock held exclusively no insert is in flight, so every
      // seq up to the maximum belongs to a finished transaction. (In a transaction of its own:
      // lock, read and unlock on one connection.)
      upto = await db.transaction().execute(async (trx) => {
        await sql`select pg_advisory_lock(${writersLockKey})`.execute(trx);
        try {
          const { rows } = await sql<{ upto: number | null }>`select max(seq) as upto from audit_events`.execute(trx);
          return Number(rows[0]?.upto ?? -1);
        } finally {
          await sql`select pg_advisory_unlock(${writersLockKey})`.execute(trx);
        }
      });
    }
    const rows: UnsealedRow[] = [];
    let cursor = state.lastSeq;
    while (rows.length < this.#maxLeaves) {
      if (rows.length > 0) await pacer.pace();
      let query = db.selectFrom('audit_events').select(['seq', 'leaf_hash']).where('seq', '>', cursor);
      if (upto !== undefined) query = query.where('seq', '<=', upto);
      const slice = await query.orderBy('seq').limit(Math.min(sliceSize, this.#maxLeaves - rows.length)).execute();
      for (const row of slice) rows.push(row);
      if (slice.length < sliceSize) break;
      cursor = slice[slice.length - 1]!.seq;
    }
    return rows;
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
