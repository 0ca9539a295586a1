/**
 * RFC 9162 §2.1 Merkle Tree Hash over SHA-256: tree hashing, an append-only
 * compact tree for the sealer, and inclusion/consistency proofs.
 *
 * Tree sizes and indices are plain numbers restricted to safe integers. All
 * size arithmetic uses `%`/`Math.floor` rather than bitwise operators, which
 * would silently truncate to 32 bits.
 */
import { createHash, hash } from "node:crypto";

/** Length in bytes of every hash handled here (SHA-256). */
export const HASH_SIZE = 32;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** RFC 9162 §2.1.1: MTH({}) = SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = createHash("sha256").digest();

/**
 * SHA-256 of `input` as a Buffer, with the one-shot hash() (a fifth cheaper than a Hash object).
 * Asked for a 'buffer', hash() gives every digest a backing store of its own, which costs several
 * times the hash of a short input on Node 24; as a binary (latin1) string, one char a byte, the
 * digest is copied into Buffer's shared pool instead. Every leaf and node of the log is hashed here, on the
 * token path (an issuance's event) and by the sealer and verification for each leaf.
 */
export function sha256(input: Uint8Array | string): Buffer {
  return Buffer.from(hash("sha256", input, "binary"), "latin1");
}

/** RFC 9162 §2.1.1: leaf hash, SHA-256(0x00 || data). */
export function leafHash(data: Uint8Array): Buffer {
  return sha256(Buffer.concat([LEAF_PREFIX, data]));
}

// Reused input buffer for nodeHash: hash() reads it synchronously, so sharing it is safe.
const nodeInput = Buffer.alloc(1 + 2 * HASH_SIZE);
NODE_PREFIX.copy(nodeInput, 0);

/** RFC 9162 §2.1.1: interior node hash, SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) {
    return createHash("sha256").update(NODE_PREFIX).update(left).update(right).digest();
  }
  nodeInput.set(left, 1);
  nodeInput.set(right, 1 + HASH_SIZE);
  return sha256(nodeInput);
}

/** Largest power of two strictly less than `n` (requires n > 1). RFC 9162 §2.1.1 "k". */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isSize(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function popcount(n: number): number {
  let count = 0;
  while (n > 0) {
    count += n % 2;
    n = Math.floor(n / 2);
  }
  return count;
}

/**
 * RFC 9162 §2.1.1 Merkle Tree Hash of a list of leaf hashes (already
 * `leafHash`ed). This is the direct recursive definition and serves as the
 * reference the faster structures are tested against.
 */
export function rootFromLeafHashes(hashes: readonly Uint8Array[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT;
  return mth(hashes, 0, hashes.length);
}

function mth(hashes: readonly Uint8Array[], start: number, end: number): Buffer {
  const n = end - start;
  if (n === 1) return Buffer.from(hashes[start]!);
  const k = splitPoint(n);
  return nodeHash(mth(hashes, start, start + k), mth(hashes, start + k, end));
}

/**
 * Append-only Merkle tree that keeps only its frontier: the roots of the
 * maximal perfect subtrees covering the leaves, one per set bit of `size`,
 * ordered left (largest) to right (smallest). That is at most ⌈log2 n⌉
 * hashes, enough to append and to compute the root, and small enough to
 * persist next to each checkpoint so a sealer can resume after a restart
 * without re-reading the leaves.
 */
export class CompactMerkleTree {
  #size = 0;
  #frontier: Buffer[] = [];

  /**
   * Rebuilds a tree from a persisted `(size, frontier)` pair as returned by
   * `size` and `frontier()`.
   *
   * @throws RangeError if `size` is not a non-negative safe integer, or the
   *   frontier does not hold exactly popcount(size) hashes of 32 bytes.
   */
  static restore(size: number, frontier: readonly Uint8Array[]): CompactMerkleTree {
    if (!isSize(size)) throw new RangeError(`invalid tree size: ${String(size)}`);
    if (!Array.isArray(frontier) || frontier.length !== popcount(size)) {
      throw new RangeError(`frontier for size ${size} must hold ${popcount(size)} hashes`);
    }
    if (!frontier.every(isHash)) throw new RangeError("frontier hashes must be 32 bytes");
    const tree = new CompactMerkleTree();
    tree.#size = size;
    tree.#frontier = frontier.map((h) => Buffer.from(h));
    return tree;
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /** Copies of the frontier hashes, left to right, for persistence. */
  frontier(): Buffer[] {
    return this.#frontier.map((h) => Buffer.from(h));
  }

  /**
   * Appends one leaf hash (the output of `leafHash`, not raw data).
   * Amortized O(1) node hashes, worst case O(log n).
   */
  append(hash: Uint8Array): void {
    if (!isHash(hash)) throw new RangeError("leaf hash must be 32 bytes");
    if (this.#size >= Number.MAX_SAFE_INTEGER) throw new RangeError("tree is full");
    // Each trailing 1 bit of the old size is a perfect subtree of the same
    // height as the carry; merge them like binary addition.
    let node: Buffer = Buffer.from(hash);
    let s = this.#size;
    while (s % 2 === 1) {
      node = nodeHash(this.#frontier.pop()!, node);
      s = Math.floor(s / 2);
    }
    this.#frontier.push(node);
    this.#size += 1;
  }

  /**
   * RFC 9162 §2.1.1 root of the current tree in O(log n). Folding the frontier
   * from the right reproduces MTH because the leftmost frontier entry is the
   * subtree D[0:k] for the largest power of two k < n, recursively.
   */
  root(): Buffer {
    const f = this.#frontier;
    if (f.length === 0) return EMPTY_ROOT;
    let r = f[f.length - 1]!;
    for (let i = f.length - 2; i >= 0; i--) r = nodeHash(f[i]!, r);
    return Buffer.from(r);
  }
}

/**
 * A half-open leaf range `[start, end)` whose Merkle Tree Hash is one element
 * of a proof.
 */
export type SubtreeRange = readonly [start: number, end: number];

/**
 * Where proof generators get hashes from:
 * - an array of leaf hashes;
 * - a leaf-hash accessor `(index) => Buffer`, which is streamed through a
 *   `CompactMerkleTree` so memory stays O(log n), though hashing is O(n);
 * - `{ subtreeRoot(start, end) }` returning MTH(D[start:end]), for stores that
 *   cache subtree hashes and can answer in O(1) or O(log n).
 *
 * Callers whose storage is asynchronous can instead use
 * `inclusionProofRanges` / `consistencyProofRanges`, fetch MTH for each range
 * themselves, and use the hashes in the same order as the proof.
 */
export type ProofSource =
  | readonly Uint8Array[]
  | ((index: number) => Uint8Array)
  | { readonly subtreeRoot: (start: number, end: number) => Uint8Array };

function subtreeRootFrom(source: ProofSource): (start: number, end: number) => Buffer {
  if (Array.isArray(source)) {
    const leaves = source as readonly Uint8Array[];
    return (start, end) => {
      if (end > leaves.length) throw new RangeError(`leaf ${end - 1} is beyond the ${leaves.length} supplied`);
      return mth(leaves, start, end);
    };
  }
  if (typeof source === "function") {
    return (start, end) => {
      const tree = new CompactMerkleTree();
      for (let i = start; i < end; i++) tree.append(source(i));
      return tree.root();
    };
  }
  const { subtreeRoot } = source as { readonly subtreeRoot: (start: number, end: number) => Uint8Array };
  return (start, end) => {
    const h = subtreeRoot(start, end);
    if (!isHash(h)) throw new RangeError(`subtreeRoot(${start}, ${end}) did not return a 32-byte hash`);
    return Buffer.from(h);
  };
}

/**
 * Leaf ranges whose hashes form the RFC 9162 §2.1.3.1 inclusion proof
 * (audit path) of leaf `leafIndex` in a tree of `treeSize` leaves, in proof
 * order (nearest the leaf first).
 *
 * @throws RangeError unless 0 <= leafIndex < treeSize (safe integers).
 */
export function inclusionProofRanges(leafIndex: number, treeSize: number): SubtreeRange[] {
  if (!isSize(treeSize) || !isSize(leafIndex) || leafIndex >= treeSize) {
    throw new RangeError(`invalid leaf index ${String(leafIndex)} for tree size ${String(treeSize)}`);
  }
  const out: SubtreeRange[] = [];
  pathRanges(leafIndex, 0, treeSize, out);
  return out;
}

// RFC 9162 §2.1.3.1 PATH(m, D[start:end]), with m relative to start.
function pathRanges(m: number, start: number, end: number, out: SubtreeRange[]): void {
  const n = end - start;
  if (n <= 1) return; // PATH(0, {d(0)}) = {}
  const k = splitPoint(n);
  if (m < k) {
    // PATH(m, D[0:k]) : MTH(D[k:n])
    pathRanges(m, start, start + k, out);
    out.push([start + k, end]);
  } else {
    // PATH(m - k, D[k:n]) : MTH(D[0:k])
    pathRanges(m - k, start + k, end, out);
    out.push([start, start + k]);
  }
}

/**
 * RFC 9162 §2.1.3.1 inclusion proof for leaf `leafIndex` in the tree formed
 * by the first `treeSize` leaves of `source`.
 *
 * @throws RangeError on an out-of-range index/size or a source that cannot
 *   supply the needed hashes.
 */
export function inclusionProof(leafIndex: number, source: ProofSource, treeSize: number): Buffer[] {
  const root = subtreeRootFrom(source);
  return inclusionProofRanges(leafIndex, treeSize).map(([s, e]) => root(s, e));
}

/**
 * RFC 9162 §2.1.3.2: checks that `hash` (a leaf hash) is leaf `leafIndex` of
 * the tree of `treeSize` leaves whose root is `root`, using `proof`. Returns
 * false, never throws, on malformed input.
 */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  hash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isSize(leafIndex) || !isSize(treeSize) || !isHash(hash) || !isHash(root)) return false;
  if (!Array.isArray(proof) || !proof.every(isHash)) return false;
  // 1. If leaf_index >= tree_size, fail.
  if (leafIndex >= treeSize) return false;
  // 2. fn = leaf_index, sn = tree_size - 1.
  let fn = leafIndex;
  let sn = treeSize - 1;
  // 3. r = hash.
  let r: Buffer = Buffer.from(hash);
  // 4. For each p in inclusion_path:
  for (const p of proof) {
    // 4a. If sn is 0, fail.
    if (sn === 0) return false;
    // 4b. If LSB(fn) is set, or fn == sn:
    if (fn % 2 === 1 || fn === sn) {
      // 4b.i. r = HASH(0x01 || p || r)
      r = nodeHash(p, r);
      // 4b.ii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      // 4b. Otherwise r = HASH(0x01 || r || p).
      r = nodeHash(r, p);
    }
    // 4c. Right-shift fn and sn once.
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 5. Succeed iff sn == 0 and r == root_hash.
  return sn === 0 && r.equals(root);
}

/**
 * Leaf ranges whose hashes form the RFC 9162 §2.1.4.1 consistency proof
 * PROOF(m, D[n]), in proof order. Empty when m == n or m == 0 (an empty tree
 * is a prefix of every tree).
 *
 * @throws RangeError unless 0 <= m <= n (safe integers).
 */
export function consistencyProofRanges(m: number, n: number): SubtreeRange[] {
  if (!isSize(m) || !isSize(n) || m > n) {
    throw new RangeError(`invalid consistency proof sizes ${String(m)} -> ${String(n)}`);
  }
  const out: SubtreeRange[] = [];
  // SUBPROOF is only defined for 0 < m; the m == 0 proof is empty by convention.
  if (m > 0) subproofRanges(m, 0, n, true, out);
  return out;
}

// RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b), with m relative to start.
function subproofRanges(m: number, start: number, end: number, b: boolean, out: SubtreeRange[]): void {
  const n = end - start;
  if (m === n) {
    // SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
    if (!b) out.push([start, end]);
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    subproofRanges(m, start, start + k, b, out);
    out.push([start + k, end]);
  } else {
    // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    subproofRanges(m - k, start + k, end, false, out);
    out.push([start, start + k]);
  }
}

/**
 * RFC 9162 §2.1.4.1 consistency proof between the trees formed by the first
 * `m` and first `n` leaves of `source`.
 *
 * @throws RangeError unless 0 <= m <= n, or if the source cannot supply the
 *   needed hashes.
 */
export function consistencyProof(m: number, n: number, source: ProofSource): Buffer[] {
  const root = subtreeRootFrom(source);
  return consistencyProofRanges(m, n).map(([s, e]) => root(s, e));
}

/**
 * RFC 9162 §2.1.4.2: checks that the tree of size `m` with root `rootM` is a
 * prefix of the tree of size `n` with root `rootN`. Returns false, never
 * throws, on malformed input.
 *
 * Cases outside the §2.1.4.2 algorithm (which assumes 0 < m < n):
 * - m == n: valid iff the proof is empty and the roots are equal;
 * - m == 0: valid iff the proof is empty and `rootM` is the empty-tree hash.
 */
export function verifyConsistency(
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isSize(m) || !isSize(n) || !isHash(rootM) || !isHash(rootN)) return false;
  if (!Array.isArray(proof) || !proof.every(isHash)) return false;
  if (m > n) return false;
  if (m === n) return proof.length === 0 && Buffer.from(rootM).equals(rootN);
  if (m === 0) return proof.length === 0 && EMPTY_ROOT.equals(rootM);

  // 1. If consistency_path is empty, fail.
  if (proof.length === 0) return false;
  // 2. If first is an exact power of 2, prepend first_hash to consistency_path.
  const path: readonly Uint8Array[] = isPowerOfTwo(m) ? [rootM, ...proof] : proof;
  // 3. fn = first - 1, sn = second - 1.
  let fn = m - 1;
  let sn = n - 1;
  // 4. If LSB(fn) is set, right-shift fn and sn until LSB(fn) is not set.
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 5. fr = sr = first value of consistency_path.
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  // 6. For each subsequent value c:
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    // 6a. If sn is 0, fail.
    if (sn === 0) return false;
    // 6b. If LSB(fn) is set, or fn == sn:
    if (fn % 2 === 1 || fn === sn) {
      // 6b.i-ii. fr = HASH(0x01 || c || fr); sr = HASH(0x01 || c || sr)
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      // 6b.iii. If LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      // 6b. Otherwise sr = HASH(0x01 || sr || c).
      sr = nodeHash(sr, c);
    }
    // 6c. Right-shift fn and sn once.
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 7. Succeed iff fr == first_hash, sr == second_hash and sn == 0.
  return sn === 0 && fr.equals(rootM) && sr.equals(rootN);
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}
