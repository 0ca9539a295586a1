/**
 * Full verification of the stored audit log, trusting nothing in the database but the audit
 * public keys (which the caller can pin). It recomputes every leaf hash from the stored event
 * (RFC 9162 §2.1.1), rebuilds the tree, and requires every checkpoint to be validly signed and
 * to have exactly the recomputed root at its size — which also proves each checkpoint consistent
 * with every later one (RFC 9162 §2.1.4: the smaller tree is a prefix of the larger).
 */
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { sql, type Kysely } from 'kysely';
import type { Storage } from '../storage/database.ts';
import type { Database } from '../storage/schema.ts';
import { auditKeyFingerprint, type AuditPublicKey } from './audit-key.ts';
import { trustedByHandover } from './bundle-keys.ts';
import { verifyCheckpoint } from './checkpoint.ts';
import { isPostgres } from './dialect.ts';
import { eventBytesLeafHash, eventLeafHash, eventLeafHashHex } from './event-format.ts';
import { CompactMerkleTree } from './merkle.ts';
import { toSignedCheckpoint, type SignedCheckpoint } from './proofs.ts';
import { verifyPruning } from './pruning.ts';
import { decisionColumn } from './recorder.ts';
import { completedTiles, decodeFrontier, encodeFrontier, tileWidth } from './tiles.ts';
import { tileProblem, type Tile } from './verify-tiles.ts';
import { checkBeside, openForVerification, openVerificationDb, sideProblem, sideTasks, takeSideTasks, type SideAnswer, type SideProblem } from './verify-side.ts';

export interface VerifyOptions {
  /** Audit public keys by key id, normally from the store (AuditKeys.publicKeys()). */
  keys: Map<string, AuditPublicKey>;
  /**
   * When set, only signatures by this key (or these keys) count: pin the keys an auditor obtained
   * out of band — after an audit key rotation, the old and the new.
   */
  pinnedKey?: KeyObject | KeyObject[];
  /** Checkpoints kept outside the database (from bundles, witnesses): the store must match them. */
  externalCheckpoints?: SignedCheckpoint[];
  /** Leaves read per query (default 10000). */
  pageSize?: number;
  /**
   * The SQLite file behind `db`, if it is one: the column and query-index checks then run in a
   * worker thread on their own connection while this thread scans the leaves.
   */
  sqliteFile?: string;
  /**
   * On a SQLite file, the side checks are cut into tasks of this many events (by seq) that the
   * worker and this thread share (default 50,000).
   */
  sideTaskEvents?: number;
}

/** What went wrong first. `leafIndex` is the first leaf that is not what the signed log holds. */
export interface VerifyProblem {
  message: string;
  leafIndex?: number;
  /** Tree size of the checkpoint (or pruning record) at fault, when one is. */
  checkpoint?: number;
}

export interface VerifyReport {
  ok: boolean;
  /** Leaves checked (after any pruned prefix). */
  leaves: number;
  /** Leaves removed by retention (the verified prefix starts here). */
  prunedBefore: number;
  checkpoints: number;
  /** Events recorded but not sealed yet (the sealer takes them on its next round). */
  unsealed: number;
  latest?: SignedCheckpoint;
  /** Fingerprints of the keys that signed what was checked. */
  keyIds: string[];
  problem?: VerifyProblem;
}

type EventColumns = Pick<Database['audit_events'], 'id' | 'type' | 'time' | 'txn' | 'subject' | 'client' | 'decision' | 'event'>;

interface LeafRow {
  leaf_index: number;
  event_seq: number;
  /** The leaf's stored hash; as lowercase hex in the SQLite scan (a string costs less to read than a blob). */
  stored_leaf_hash: Uint8Array | string;
  seq: number | null;
  /** The event text; its stored UTF-8 bytes in `event_bytes` where the text alone cannot tell them (SQLite), or instead of it (SQLite without its file). */
  event?: string | null;
  event_bytes?: Uint8Array | null;
  /** Whether the events table's own copy of the hash (the sealer's source) is the leaf's: 1/0 on SQLite, a boolean on PostgreSQL. */
  copy_matches: number | boolean | null;
  /** PostgreSQL only: the indexed columns, checked in the scan. */
  id?: string | null;
  type?: string | null;
  time?: number | null;
  txn?: string | null;
  subject?: string | null;
  client?: string | null;
  decision?: string | null;
}

/** Verifies the whole stored log; reports the first problem. */
export async function verifyStore(db: Kysely<Database>, options: VerifyOptions): Promise<VerifyReport> {
  const postgres = isPostgres(db);
  // The pinned keys, and each key a trusted one handed over to when it rotated (./bundle-keys.ts):
  // a pinned key is checked with the auditor's own copy, never the database's.
  const pinned = options.pinnedKey && trustedByHandover([options.pinnedKey].flat(), options.keys);
  const usedKeys = new Set<string>();
  const report: VerifyReport = { ok: false, leaves: 0, prunedBefore: 0, checkpoints: 0, unsealed: 0, keyIds: [] };
  const fail = (problem: VerifyProblem): VerifyReport => ({ ...report, ok: false, problem, keyIds: [...usedKeys] });

  const keyFor = (keyId: string): KeyObject | undefined => {
    if (pinned && !pinned.has(keyId)) return undefined;
    const key = pinned ? pinned.get(keyId) : options.keys.get(keyId)?.publicKey;
    if (key && auditKeyFingerprint(key) !== keyId) return undefined;
    if (key) usedKeys.add(keyId);
    return key;
  };
  const origins = new Set([...options.keys.values()].map((k) => k.origin));

  // 1. The pruned prefix, if any: the latest signed pruning record is where the tree resumes.
  const prunings = await db.selectFrom('audit_prunings').selectAll().orderBy('tree_size').execute();
  const checkpointRows = await db.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size').execute();
  const stored = checkpointRows.map(toSignedCheckpoint);
  // What a checkpoint row holds besides what is signed, which the sealer resumes from: checked in the scan.
  const sealerState = new Map(checkpointRows.map((row) => [Number(row.tree_size), { lastSeq: Number(row.last_seq), frontier: row.frontier }]));
  const latest = stored.at(-1);
  // The latest checkpoint's sealer cursor: the side checks look at the events sealed up to it.
  const lastSeq = checkpointRows.at(-1)?.last_seq ?? -1;

  // Steps 3 and 4 run side by side: the side checks need nothing from the scan. They start
  // before the signatures are checked, so that their worker's start-up overlaps that work; a bad
  // signature ends verification, and the side checks with it.
  const side = await startSideChecks(db, lastSeq, postgres, options.sqliteFile, options.sideTaskEvents ?? sideTaskEvents);
  try {
    let tree = new CompactMerkleTree();
    for (const p of prunings) {
      const key = keyFor(p.key_id);
      const record = { origin: p.origin, treeSize: p.tree_size, rootHash: p.root_hash, frontier: p.frontier, time: p.time, policy: p.policy };
      if (!key || !verifyPruning(record, p.signature, key) || !origins.has(p.origin)) {
        return fail({ message: `the pruning record at tree size ${p.tree_size} is not validly signed by the audit key`, checkpoint: p.tree_size });
      }
      tree = CompactMerkleTree.restore(p.tree_size, decodeFrontier(p.frontier));
    }
    const start = tree.size;
    report.prunedBefore = start;
    const prunedRoot = start > 0 ? tree.root().toString('base64') : undefined;

    // 2. Every checkpoint, stored or external, must be validly signed.
    const checkpoints = [...stored, ...(options.externalCheckpoints ?? [])].sort((a, b) => a.treeSize - b.treeSize);
    for (const cp of checkpoints) {
      const key = keyFor(cp.keyId);
      if (!key || !verifyCheckpoint(cp, cp.signature, key) || !origins.has(cp.origin)) {
        return fail({ message: `the checkpoint at tree size ${cp.treeSize} is not validly signed by the audit key`, checkpoint: cp.treeSize, leafIndex: Math.max(start, previousSize(checkpoints, cp)) });
      }
      if (cp.treeSize === start && prunedRoot !== undefined && cp.rootHash !== prunedRoot) {
        return fail({ message: `the checkpoint at tree size ${cp.treeSize} disagrees with the pruning record`, checkpoint: cp.treeSize, leafIndex: start });
      }
    }
    const due = checkpoints.filter((cp) => cp.treeSize > start);
    report.checkpoints = due.length;
    report.latest = latest;

    const pages = leafPages(db, postgres, options.sqliteFile);
    const tiles: Tile[] = [];
    let scanned: VerifyProblem | undefined;
    try {
      scanned = await scanLeaves(pages.page, tree, due, sealerState, tiles, postgres, options.pageSize ?? 10_000);
    } finally {
      pages.close();
    }
    const problem = scanned ?? (await coverage(db, tree.size, start, due, lastSeq)) ?? (await tileProblem(db, tiles, start, tree.size));
    report.leaves = tree.size - start;
    const besides = await side.finish();
    const sideLeaf = besides && (await leafOf(db, besides.seq));
    // Report whichever names the earlier leaf; a side problem of an event without a leaf last.
    const sideFirst = besides && (problem === undefined || (sideLeaf !== undefined && problem.leafIndex !== undefined && sideLeaf < problem.leafIndex));
    if (sideFirst) return fail(await describeSideProblem(db, besides, sideLeaf));
    if (problem) return fail(problem);
    report.unsealed = await countEvents(db, lastSeq, 'after');
    return { ...report, ok: true, keyIds: [...usedKeys] };
  } finally {
    side.cancel();
  }
}

/**
 * 3. Every leaf, in order: present, its event present and hashing to it, the events table's copy
 * of the hash the same, the sealing order respected (and on PostgreSQL the indexed columns
 * agreeing with the event); and the tree matching each checkpoint — its signed root, and what its
 * row holds unsigned for the sealer to resume from (`sealerState`: the last sealed event's seq and
 * the tree's frontier; a cursor moved on would leave the events behind it unsealed for ever, one
 * moved back would let an event be slipped in behind it). Appends to `tree`, and the tiles its
 * leaves complete to `tiles`; returns the first problem.
 */
async function scanLeaves(
  page: LeafPage,
  tree: CompactMerkleTree,
  due: SignedCheckpoint[],
  sealerState: ReadonlyMap<number, { lastSeq: number; frontier: string }>,
  tiles: Tile[],
  postgres: boolean,
  pageSize: number,
): Promise<VerifyProblem | undefined> {
  let next = 0; // index into `due`
  let intervalStart = tree.size;
  let previous: number | undefined;
  for (let from = tree.size; ; from = tree.size) {
    const rows = await page(from, pageSize);
    for (const row of rows) {
      const index = tree.size;
      // A local fault names its leaf exactly.
      if (row.leaf_index !== index) return { message: `leaf ${index} is missing`, leafIndex: index };
      const bytes = row.event_bytes;
      if ((bytes === undefined ? row.event : bytes) === null || row.seq === null) return { message: `the event of leaf ${index} (seq ${row.event_seq}) is missing`, leafIndex: index };
      const hash = leafHashOf(row);
      const problem = checkLeaf(row, hash, previous, postgres) ?? (postgres ? columnProblem(row as EventColumns) : undefined);
      if (problem) return { message: `leaf ${index}: ${problem}`, leafIndex: index };
      previous = row.seq;
      if ((tree.size + 1) % tileWidth === 0) completedTiles(tree, hash.bytes, tiles);
      tree.append(hash.bytes);
      for (; next < due.length && due[next]!.treeSize === tree.size; next++) {
        const cp = due[next]!;
        if (cp.rootHash !== tree.root().toString('base64')) {
          // Rewritten consistently (event and both hash copies): only the signed root shows it,
          // and it commits to leaves [intervalStart, size) as a whole.
          return {
            message:
              `the leaves do not match the signed checkpoint at tree size ${cp.treeSize}: one of leaves ` +
              `${intervalStart}..${cp.treeSize - 1} was altered together with its stored hashes, removed, inserted or reordered`,
            leafIndex: intervalStart,
            checkpoint: cp.treeSize,
          };
        }
        const resume = sealerState.get(cp.treeSize);
        if (resume && (resume.lastSeq !== Number(previous) || resume.frontier !== encodeFrontier(tree.frontier()))) {
          return { message: `the checkpoint at tree size ${cp.treeSize} holds another sealer cursor or tree frontier than its leaves make (altered)`, leafIndex: cp.treeSize - 1, checkpoint: cp.treeSize };
        }
        intervalStart = cp.treeSize;
      }
    }
    if (rows.length < pageSize) return undefined;
  }
}

/**
 * 5. Coverage: the sealer writes leaves and their checkpoint in one transaction, so every leaf is
 * under a checkpoint and no checkpoint is beyond the leaves. 6. Events behind the sealer's cursor
 * must all be leaves (the rest wait to be sealed).
 */
async function coverage(db: Kysely<Database>, size: number, start: number, due: SignedCheckpoint[], lastSeq: number): Promise<VerifyProblem | undefined> {
  const beyond = due.find((cp) => cp.treeSize > size);
  if (beyond) {
    return { message: `the checkpoint at tree size ${beyond.treeSize} covers leaves that are missing (the log was truncated)`, leafIndex: size, checkpoint: beyond.treeSize };
  }
  const lastSize = due.at(-1)?.treeSize ?? start;
  if (size > lastSize) return { message: `leaves ${lastSize}..${size - 1} are not covered by any signed checkpoint`, leafIndex: lastSize };
  const behind = await countEvents(db, lastSeq, 'behind');
  if (behind !== size - start) {
    return { message: `${behind - (size - start)} event(s) before the sealer's cursor have no leaf (inserted into the log)`, leafIndex: size };
  }
  return undefined;
}

/** Events of seq per side task on a SQLite file: about 90 ms of work each, so the two threads end close together. */
const sideTaskEvents = 50_000;

/**
 * 4. The side checks (verify-side.ts). On a SQLite file a worker starts on their tasks at once,
 * and this thread takes the tasks left once its scan is done (`finish`; node:sqlite is
 * synchronous, so meanwhile it serves nothing else: verification is a command of its own). On a
 * log of 1,000,000 events the scan took 2.8 s and the side checks 3.7 s, so the worker alone
 * finished a second after the scan; shared, both end together. Elsewhere they run as concurrent
 * queries on the pool.
 */
async function startSideChecks(db: Kysely<Database>, lastSeq: number, postgres: boolean, sqliteFile: string | undefined, eventsPerTask: number): Promise<{ finish(): Promise<SideProblem | undefined>; cancel(): void }> {
  if (!sqliteFile) {
    const result = checkBeside(db, lastSeq, { columns: !postgres });
    result.catch(() => {}); // awaited, or abandoned when the scan fails first
    return { finish: () => result, cancel() {} };
  }
  const tasks = await sideTasks(db, lastSeq, { columns: true, eventsPerTask });
  const next = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./verify-side-worker.ts', import.meta.url), { workerData: { sqliteFile, tasks, next } });
  const theirs = new Promise<SideAnswer[]>((resolve, reject) => {
    worker.once('message', (message: { ok: boolean; answers?: SideAnswer[]; error?: string }) => (message.ok ? resolve(message.answers!) : reject(new Error(message.error))));
    worker.once('error', reject);
  });
  theirs.catch(() => {}); // awaited, or abandoned when verification ends early
  return {
    async finish() {
      // This thread's share: the tasks the worker has not taken yet, on a connection of its own.
      const own = openVerificationDb(sqliteFile);
      const ours = await takeSideTasks(own, tasks, next).finally(() => own.destroy());
      return sideProblem(db, lastSeq, [...ours, ...(await theirs)]);
    },
    cancel: () => void worker.terminate(),
  };
}

/** The SQLite file of a storage handle, for VerifyOptions.sqliteFile. */
export function sqliteFileOf(storage: Pick<Storage, 'dialect' | 'location'>): string | undefined {
  return storage.dialect === 'sqlite' && storage.location.startsWith('sqlite:') && !storage.location.endsWith(':memory:') ? storage.location.slice('sqlite:'.length) : undefined;
}

async function leafOf(db: Kysely<Database>, seq: number): Promise<number | undefined> {
  return (await db.selectFrom('audit_leaves').select('leaf_index').where('event_seq', '=', seq).executeTakeFirst())?.leaf_index;
}

async function describeSideProblem(db: Kysely<Database>, problem: SideProblem, leafIndex: number | undefined): Promise<VerifyProblem> {
  let message = problem.message;
  if (problem.kind === 'columns') {
    const row = await db.selectFrom('audit_events').select(['id', 'type', 'time', 'txn', 'subject', 'client', 'decision', 'event']).where('seq', '=', problem.seq).executeTakeFirst();
    const which = row && columnProblem(row);
    if (which) message = `${leafIndex === undefined ? `event seq ${problem.seq}` : `leaf ${leafIndex}`}: ${which}`;
  }
  return leafIndex === undefined ? { message } : { message, leafIndex };
}

function previousSize(checkpoints: SignedCheckpoint[], cp: SignedCheckpoint): number {
  return checkpoints.filter((c) => c.treeSize < cp.treeSize).at(-1)?.treeSize ?? 0;
}

/**
 * The leaf hash of a row's event: as the stored hash's hex where the scan read it so (SQLite), with
 * the bytes it then appends to the tree.
 */
function leafHashOf(row: LeafRow): { bytes: Buffer; matches: boolean } {
  const stored = row.stored_leaf_hash;
  if (typeof stored === 'string' && !row.event_bytes) {
    const hex = eventLeafHashHex(row.event!);
    return { bytes: Buffer.from(hex, 'hex'), matches: hex === stored };
  }
  const bytes = row.event_bytes ? eventBytesLeafHash(row.event_bytes) : eventLeafHash(row.event!);
  return { bytes, matches: typeof stored === 'string' ? bytes.toString('hex') === stored : bytes.equals(stored) };
}

/** The hash and the sealing order. */
function checkLeaf(row: LeafRow, hash: { matches: boolean }, previous: number | undefined, postgres: boolean): string | undefined {
  if (!hash.matches) return 'the event does not match its leaf hash (altered)';
  // The events table's own copy feeds the sealer only, but a copy changed is a change all the same.
  if (row.copy_matches === 0 || row.copy_matches === false) return "the events table's copy of its leaf hash was altered";
  // Leaves follow seq. SQLite's AUTOINCREMENT never skips a value (a rollback rolls it back too);
  // a PostgreSQL identity skips the values of rolled-back inserts.
  const seq = row.seq!;
  if (previous !== undefined && (postgres ? seq <= previous : seq !== previous + 1)) {
    return `the event (seq ${seq}) is out of sealing order after seq ${previous} (rows removed, inserted or reordered)`;
  }
  return undefined;
}

/** Which indexed column disagrees with the event, if any. */
function columnProblem(row: EventColumns): string | undefined {
  let event: Record<string, unknown>;
  try {
    event = JSON.parse(row.event) as Record<string, unknown>;
  } catch {
    return 'the event is not JSON';
  }
  const columns: [string, unknown, unknown][] = [
    ['id', row.id, event.id],
    ['type', row.type, event.type],
    ['time', row.time, event.time],
    ['txn', row.txn, event.txn ?? null],
    ['subject', row.subject, event.subject ?? null],
    ['client', row.client, event.client ?? null],
    ['decision', row.decision, decisionColumn(event as never)],
  ];
  for (const [name, column, value] of columns) {
    if (column !== value) return `the indexed column ${name} disagrees with the event (altered)`;
  }
  return undefined;
}

type LeafPage = (from: number, limit: number) => Promise<LeafRow[]>;

/**
 * Where the scan reads its pages. A SQLite file is read on a read-only node:sqlite connection of
 * its own, memory-mapped (no copy of each page through a read call), rows as arrays, without
 * Kysely's per-row work, the stored hash as hex and the event as text: measured about four times
 * cheaper per leaf than rows as objects with blobs (node:sqlite gives every blob a backing store
 * of its own). The hash must cover exactly the bytes stored: bytes that are not UTF-8 would read
 * back as text with U+FFFD in their place, so an event whose text holds one is hashed from its
 * bytes.
 */
function leafPages(db: Kysely<Database>, postgres: boolean, sqliteFile: string | undefined): { page: LeafPage; close(): void } {
  if (postgres || !sqliteFile) return { page: (from, limit) => leafPage(db, from, limit, postgres), close() {} };
  const conn = openForVerification(sqliteFile);
  const statement = conn.prepare(
    `select l.leaf_index, l.event_seq, lower(hex(l.leaf_hash)), e.seq, e.event, e.leaf_hash = l.leaf_hash
     from audit_leaves l left join audit_events e on e.seq = l.event_seq where l.leaf_index >= ? order by l.leaf_index limit ?`,
  );
  statement.setReturnArrays(true);
  const bytesOf = conn.prepare('select cast(event as blob) as bytes from audit_events where seq = ?');
  return {
    page: async (from, limit) =>
      (statement.all(from, limit) as unknown as [number, number, string, number | null, string | null, number | null][]).map(([leafIndex, eventSeq, storedLeafHash, seq, event, copyMatches]) => {
        const row: LeafRow = { leaf_index: leafIndex, event_seq: eventSeq, stored_leaf_hash: storedLeafHash, seq, event, copy_matches: copyMatches };
        if (event?.includes('\uFFFD')) row.event_bytes = (bytesOf.get(seq) as { bytes: Uint8Array }).bytes;
        return row;
      }),
    close: () => conn.close(),
  };
}

/**
 * A page of leaves with their events; on PostgreSQL as text, with the indexed columns (checked in
 * the scan). On SQLite (a handle without its file: `:memory:`, a caller that gave none) as the
 * stored bytes, hashed as they are: read as text, a byte that is not UTF-8 would come back as the
 * U+FFFD it replaced and hash as the original.
 */
async function leafPage(db: Kysely<Database>, from: number, limit: number, postgres: boolean): Promise<LeafRow[]> {
  const base = db
    .selectFrom('audit_leaves as l')
    .leftJoin('audit_events as e', 'e.seq', 'l.event_seq')
    .select(['l.leaf_index', 'l.event_seq', 'l.leaf_hash as stored_leaf_hash', 'e.seq', sql<number | boolean | null>`e.leaf_hash = l.leaf_hash`.as('copy_matches')])
    .where('l.leaf_index', '>=', from)
    .orderBy('l.leaf_index')
    .limit(limit);
  return postgres
    ? base.select(['e.event', 'e.id', 'e.type', 'e.time', 'e.txn', 'e.subject', 'e.client', 'e.decision']).execute()
    : base.select(sql<Uint8Array | null>`cast(e.event as blob)`.as('event_bytes')).execute();
}

/** Events with seq up to the sealer's cursor ('behind') or after it. */
async function countEvents(db: Kysely<Database>, lastSeq: number, side: 'behind' | 'after'): Promise<number> {
  // SQLite: `+seq` keeps the rowid out of the plan, so the count scans a small covering index
  // instead of the table's pages with every event's text (ten times faster for a large log).
  const seq = isPostgres(db) ? sql.ref<number>('seq') : sql<number>`+seq`;
  const row = await db
    .selectFrom('audit_events')
    .select(({ fn }) => fn.countAll<number | string>().as('n'))
    .where(seq, side === 'behind' ? '<=' : '>', lastSeq)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}
