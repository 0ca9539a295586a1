/**
 * Inclusion and consistency proofs (RFC 9162 §2.1.3-2.1.4) served from the store: subtree hashes
 * come from the sealer's tiles (audit_nodes) where a whole aligned block is cached, and from the
 * leaves otherwise, so a proof costs O(log n) small queries whatever the tree size.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import type { Checkpoint } from './checkpoint.ts';
import { consistencyProofRanges, inclusionProofRanges, nodeHash } from './merkle.ts';
import { perfectRoot } from './tiles.ts';

/** A checkpoint with its signature, as published and as stored. */
export interface SignedCheckpoint extends Checkpoint {
  keyId: string;
  signature: string;
}

export class AuditProofError extends Error {
  override name = 'AuditProofError';
}

/** MTH of leaf ranges from the store, memoized (an export asks for many overlapping ranges). */
export class StoreHasher {
  readonly #db: Kysely<Database>;
  readonly #memo = new Map<string, Buffer>();

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /** RFC 9162 §2.1.1 MTH(D[start:end]) of the sealed leaves. */
  async subtreeRoot(start: number, end: number): Promise<Buffer> {
    const key = `${start}:${end}`;
    let hash = this.#memo.get(key);
    if (!hash) {
      hash = await this.#compute(start, end);
      if (this.#memo.size > 100_000) this.#memo.clear();
      this.#memo.set(key, hash);
    }
    return hash;
  }

  async #compute(start: number, end: number): Promise<Buffer> {
    const n = end - start;
    if (n <= 0) throw new AuditProofError(`empty range ${start}..${end}`);
    if (isPowerOfTwo(n) && start % n === 0) return this.#perfect(start, Math.log2(n));
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(await this.subtreeRoot(start, start + k), await this.subtreeRoot(start + k, end));
  }

  /** The aligned perfect subtree of height `h` starting at `start`: at most 128 cached hashes. */
  async #perfect(start: number, h: number): Promise<Buffer> {
    const level = Math.floor(h / 8) * 8;
    const unit = 2 ** level;
    const first = start / unit;
    const count = 2 ** (h - level);
    const rows =
      level === 0
        ? await this.#db.selectFrom('audit_leaves').select('leaf_hash as hash').where('leaf_index', '>=', first).where('leaf_index', '<', first + count).orderBy('leaf_index').execute()
        : await this.#db.selectFrom('audit_nodes').select('hash').where('level', '=', level).where('idx', '>=', first).where('idx', '<', first + count).orderBy('idx').execute();
    if (rows.length !== count) {
      throw new AuditProofError(`the store lacks ${level === 0 ? 'leaves' : `level-${level} tiles`} for leaves ${start}..${start + 2 ** h - 1}`);
    }
    return perfectRoot(rows.map((r) => r.hash));
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(Math.log2(n));
}

/** RFC 9162 §2.1.3.1 inclusion proof of `leafIndex` in the tree of `treeSize` leaves. */
export async function inclusionProofFromStore(hasher: StoreHasher, leafIndex: number, treeSize: number): Promise<Buffer[]> {
  const proof: Buffer[] = [];
  for (const [start, end] of inclusionProofRanges(leafIndex, treeSize)) proof.push(await hasher.subtreeRoot(start, end));
  return proof;
}

/** RFC 9162 §2.1.4.1 consistency proof from tree size `first` to `second`. */
export async function consistencyProofFromStore(hasher: StoreHasher, first: number, second: number): Promise<Buffer[]> {
  const proof: Buffer[] = [];
  for (const [start, end] of consistencyProofRanges(first, second)) proof.push(await hasher.subtreeRoot(start, end));
  return proof;
}

/** The stored checkpoint at exactly `treeSize`, or the latest when `treeSize` is undefined. */
export async function storedCheckpoint(db: Kysely<Database>, treeSize?: number): Promise<SignedCheckpoint | undefined> {
  let query = db.selectFrom('audit_checkpoints').selectAll();
  query = treeSize === undefined ? query.orderBy('tree_size', 'desc').limit(1) : query.where('tree_size', '=', treeSize);
  const row = await query.executeTakeFirst();
  return row && toSignedCheckpoint(row);
}

/** The smallest stored checkpoint whose tree includes leaf `leafIndex`. */
export async function checkpointCovering(db: Kysely<Database>, leafIndex: number): Promise<SignedCheckpoint | undefined> {
  const row = await db.selectFrom('audit_checkpoints').selectAll().where('tree_size', '>', leafIndex).orderBy('tree_size').limit(1).executeTakeFirst();
  return row && toSignedCheckpoint(row);
}

export function toSignedCheckpoint(row: Database['audit_checkpoints']): SignedCheckpoint {
  return { origin: row.origin, treeSize: row.tree_size, rootHash: row.root_hash, time: row.time, keyId: row.key_id, signature: row.signature };
}

/** An event with the proof that it is leaf `leafIndex` of the checkpointed tree. */
export interface EventProof {
  leafIndex: number;
  /** The stored event: RFC 8785 canonical JSON, the exact bytes of the leaf. */
  event: string;
  checkpoint: SignedCheckpoint;
  /** Standard base64 hashes, RFC 9162 §2.1.3.1 order. */
  inclusionProof: string[];
}

/**
 * The inclusion proof of event `eventId` against the checkpoint at `treeSize` (default: the
 * latest). Throws AuditProofError when the event is unknown, not sealed yet, or not in that tree.
 */
export async function proveEvent(db: Kysely<Database>, eventId: string, treeSize?: number, hasher = new StoreHasher(db)): Promise<EventProof> {
  const row = await db
    .selectFrom('audit_events as e')
    .leftJoin('audit_leaves as l', 'l.event_seq', 'e.seq')
    .select(['e.event', 'l.leaf_index'])
    .where('e.id', '=', eventId)
    .executeTakeFirst();
  if (!row) throw new AuditProofError(`no audit event with id ${eventId}`);
  if (row.leaf_index === null) throw new AuditProofError(`audit event ${eventId} is not sealed yet`);
  const checkpoint = await storedCheckpoint(db, treeSize);
  if (!checkpoint) throw new AuditProofError(treeSize === undefined ? 'no checkpoint yet' : `no checkpoint at tree size ${treeSize}`);
  if (row.leaf_index >= checkpoint.treeSize) {
    throw new AuditProofError(`audit event ${eventId} (leaf ${row.leaf_index}) is not in the tree of size ${checkpoint.treeSize}`);
  }
  const proof = await inclusionProofFromStore(hasher, row.leaf_index, checkpoint.treeSize);
  return { leafIndex: row.leaf_index, event: row.event, checkpoint, inclusionProof: proof.map((h) => h.toString('base64')) };
}

/** Two checkpoints and the proof that the first tree is a prefix of the second. */
export interface ConsistencyEvidence {
  first: SignedCheckpoint;
  second: SignedCheckpoint;
  /** Standard base64 hashes, RFC 9162 §2.1.4.1 order. */
  consistencyProof: string[];
}

/** The consistency proof between the stored checkpoints at `first` and `second` (default latest). */
export async function proveConsistency(db: Kysely<Database>, first: number, second?: number): Promise<ConsistencyEvidence> {
  const a = await storedCheckpoint(db, first);
  const b = await storedCheckpoint(db, second);
  if (!a) throw new AuditProofError(`no checkpoint at tree size ${first}`);
  if (!b) throw new AuditProofError(second === undefined ? 'no checkpoint yet' : `no checkpoint at tree size ${second}`);
  if (a.treeSize > b.treeSize) throw new AuditProofError('the first checkpoint must not be larger than the second');
  const proof = await consistencyProofFromStore(new StoreHasher(db), a.treeSize, b.treeSize);
  return { first: a, second: b, consistencyProof: proof.map((h) => h.toString('base64')) };
}
