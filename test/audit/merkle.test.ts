import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  CompactMerkleTree,
  EMPTY_ROOT,
  consistencyProof,
  consistencyProofRanges,
  inclusionProof,
  inclusionProofRanges,
  leafHash,
  nodeHash,
  rootFromLeafHashes,
  sha256 as poolSha256,
  verifyConsistency,
  verifyInclusion,
} from "../../src/audit/merkle.ts";

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};

const makeLeaves = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));

const flipBit = (b: Uint8Array): Buffer => {
  const copy = Buffer.from(b);
  copy[0] = copy[0]! ^ 0x01;
  return copy;
};

// RFC 6962 reference test data (certificate-transparency test vectors).
const VECTOR_LEAVES = [
  "",
  "00",
  "10",
  "2021",
  "3031",
  "40414243",
  "5051525354555657",
  "606162636465666768696a6b6c6d6e6f",
].map((h) => leafHash(Buffer.from(h, "hex")));

const VECTOR_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

// Which side of the running hash each audit path element sits on, e.g. "RRL".
const pathShape = (index: number, size: number): string =>
  inclusionProofRanges(index, size)
    .map(([start]) => (start > index ? "R" : "L"))
    .join("");

const hexes = (bs: Buffer[]): string[] => bs.map((b) => b.toString("hex"));

test("hashes leaves and nodes with the RFC 9162 domain-separation prefixes", () => {
  const data = Buffer.from("hello");
  assert.deepEqual(leafHash(data), sha256(Buffer.from([0]), data));
  const l = leafHash(Buffer.from("l"));
  const r = leafHash(Buffer.from("r"));
  assert.deepEqual(nodeHash(l, r), sha256(Buffer.from([1]), l, r));
  assert.notDeepEqual(nodeHash(l, r), nodeHash(r, l));
});

test("gives the empty tree the SHA-256 hash of the empty string", () => {
  const expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  assert.equal(rootFromLeafHashes([]).toString("hex"), expected);
  assert.equal(EMPTY_ROOT.toString("hex"), expected);
  assert.equal(new CompactMerkleTree().root().toString("hex"), expected);
});

test("reproduces the RFC 6962 reference roots for the first 1 to 8 test leaves", () => {
  for (let n = 1; n <= 8; n++) {
    assert.equal(rootFromLeafHashes(VECTOR_LEAVES.slice(0, n)).toString("hex"), VECTOR_ROOTS[n - 1], `size ${n}`);
  }
  assert.equal(rootFromLeafHashes(VECTOR_LEAVES).toString("hex"), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
});

test("reproduces the RFC 6962 reference inclusion and consistency proofs", () => {
  assert.deepEqual(hexes(inclusionProof(0, VECTOR_LEAVES, 8)), [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
  ]);
  assert.deepEqual(hexes(inclusionProof(5, VECTOR_LEAVES, 8)), [
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  ]);
  assert.deepEqual(hexes(consistencyProof(6, 8, VECTOR_LEAVES)), [
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  ]);
  assert.deepEqual(hexes(consistencyProof(2, 5, VECTOR_LEAVES)), [
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
  ]);
  const root8 = Buffer.from(VECTOR_ROOTS[7]!, "hex");
  const root6 = Buffer.from(VECTOR_ROOTS[5]!, "hex");
  assert.ok(verifyInclusion(5, 8, VECTOR_LEAVES[5]!, inclusionProof(5, VECTOR_LEAVES, 8), root8));
  assert.ok(verifyConsistency(6, 8, root6, root8, consistencyProof(6, 8, VECTOR_LEAVES)));
});

test("computes the same root with CompactMerkleTree as the reference for every size up to 70", () => {
  const leaves = makeLeaves(70);
  const tree = new CompactMerkleTree();
  for (let n = 0; n <= 70; n++) {
    assert.equal(tree.size, n);
    assert.deepEqual(tree.root(), rootFromLeafHashes(leaves.slice(0, n)), `size ${n}`);
    // The frontier holds one hash per set bit of the size, i.e. at most log2(n) + 1.
    assert.equal(tree.frontier().length, n.toString(2).replaceAll("0", "").length);
    if (n < 70) tree.append(leaves[n]!);
  }
});

test("extends a restored tree to the same roots as appending straight through", () => {
  const leaves = makeLeaves(70);
  for (let cut = 0; cut <= 70; cut += 1) {
    const first = new CompactMerkleTree();
    for (const l of leaves.slice(0, cut)) first.append(l);
    const restored = CompactMerkleTree.restore(first.size, first.frontier());
    assert.deepEqual(restored.root(), first.root());
    for (let n = cut; n < 70; n++) {
      restored.append(leaves[n]!);
      if ((n + 1) % 7 === 0 || n === 69) {
        assert.deepEqual(restored.root(), rootFromLeafHashes(leaves.slice(0, n + 1)), `cut ${cut}, size ${n + 1}`);
      }
    }
  }
});

test("keeps its frontier private from callers who mutate the returned copies", () => {
  const tree = new CompactMerkleTree();
  for (const l of makeLeaves(5)) tree.append(l);
  const before = tree.root();
  for (const h of tree.frontier()) h.fill(0);
  assert.deepEqual(tree.root(), before);
});

test("refuses to restore from a frontier that does not match the size", () => {
  const hash = leafHash(Buffer.from("x"));
  assert.throws(() => CompactMerkleTree.restore(3, [hash]), RangeError);
  assert.throws(() => CompactMerkleTree.restore(1, []), RangeError);
  assert.throws(() => CompactMerkleTree.restore(1, [Buffer.alloc(31)]), RangeError);
  assert.throws(() => CompactMerkleTree.restore(-1, []), RangeError);
  assert.throws(() => CompactMerkleTree.restore(1.5, [hash]), RangeError);
  assert.equal(CompactMerkleTree.restore(0, []).size, 0);
});

test("refuses to append something that is not a 32-byte hash", () => {
  assert.throws(() => new CompactMerkleTree().append(Buffer.from("raw data")), RangeError);
});

test("handles sizes beyond 32 bits without bitwise truncation", () => {
  // 2^32 + 5 leaves: frontier has entries for 2^32, 4 and 1.
  const size = 2 ** 32 + 5;
  const [a, b, c] = makeLeaves(3);
  const tree = CompactMerkleTree.restore(size, [a!, b!, c!]);
  assert.deepEqual(tree.root(), nodeHash(a!, nodeHash(b!, c!)));
  const next = makeLeaves(4)[3]!;
  tree.append(next);
  assert.equal(tree.size, size + 1);
  // 2^32 + 6 = 2^32 + 4 + 2: the new leaf merges with c only.
  assert.deepEqual(tree.frontier(), [a!, b!, nodeHash(c!, next)]);
  assert.deepEqual(tree.root(), nodeHash(a!, nodeHash(b!, nodeHash(c!, next))));
  assert.deepEqual(inclusionProofRanges(size - 1, size), [
    [2 ** 32, 2 ** 32 + 4],
    [0, 2 ** 32],
  ]);
});

test("verifies the inclusion proof of every leaf in trees of size 1 to 40", () => {
  const leaves = makeLeaves(40);
  for (let n = 1; n <= 40; n++) {
    const root = rootFromLeafHashes(leaves.slice(0, n));
    for (let i = 0; i < n; i++) {
      const proof = inclusionProof(i, leaves, n);
      assert.ok(verifyInclusion(i, n, leaves[i]!, proof, root), `leaf ${i} of ${n}`);
    }
  }
});

test("rejects inclusion proofs with a wrong leaf, index, size, root or path element", () => {
  const leaves = makeLeaves(40);
  for (let n = 1; n <= 40; n++) {
    const root = rootFromLeafHashes(leaves.slice(0, n));
    for (let i = 0; i < n; i++) {
      const proof = inclusionProof(i, leaves, n);
      const label = `leaf ${i} of ${n}`;
      assert.equal(verifyInclusion(i, n, flipBit(leaves[i]!), proof, root), false, `${label}: wrong leaf`);
      assert.equal(verifyInclusion(i, n, leaves[(i + 1) % 40]!, proof, root), false, `${label}: other leaf`);
      assert.equal(verifyInclusion(i, n, leaves[i]!, proof, flipBit(root)), false, `${label}: wrong root`);
      for (const j of [i - 1, i + 1, i + 2 ** 8]) {
        assert.equal(verifyInclusion(j, n, leaves[i]!, proof, root), false, `${label}: index ${j}`);
      }
      for (let m = i + 1; m <= 2 * n + 1; m++) {
        if (m === n) continue;
        // §2.1.3.2 reads the size only through the path's shape, so a size
        // giving leaf i the same shape verifies too; the signed checkpoint is
        // what binds the size to the root.
        const expected = pathShape(i, m) === pathShape(i, n);
        assert.equal(verifyInclusion(i, m, leaves[i]!, proof, root), expected, `${label}: size ${m}`);
      }
      for (let k = 0; k < proof.length; k++) {
        const tampered = proof.map((p, idx) => (idx === k ? flipBit(p) : p));
        assert.equal(verifyInclusion(i, n, leaves[i]!, tampered, root), false, `${label}: element ${k}`);
      }
      assert.equal(verifyInclusion(i, n, leaves[i]!, [...proof, root], root), false, `${label}: extra element`);
      if (proof.length > 0) {
        assert.equal(verifyInclusion(i, n, leaves[i]!, proof.slice(0, -1), root), false, `${label}: short path`);
      }
    }
  }
});

test("returns false instead of throwing for malformed inclusion inputs", () => {
  const leaves = makeLeaves(4);
  const root = rootFromLeafHashes(leaves);
  const proof = inclusionProof(1, leaves, 4);
  const bad: Array<() => boolean> = [
    () => verifyInclusion(-1, 4, leaves[1]!, proof, root),
    () => verifyInclusion(1.5, 4, leaves[1]!, proof, root),
    () => verifyInclusion(4, 4, leaves[1]!, proof, root),
    () => verifyInclusion(0, 0, leaves[0]!, [], root),
    () => verifyInclusion(Number.NaN, 4, leaves[1]!, proof, root),
    () => verifyInclusion(1, 4, Buffer.alloc(5), proof, root),
    () => verifyInclusion(1, 4, leaves[1]!, proof, Buffer.alloc(0)),
    () => verifyInclusion(1, 4, leaves[1]!, [proof[0]!, Buffer.alloc(31)], root),
    () => verifyInclusion(1, 4, leaves[1]!, null as unknown as Buffer[], root),
    () => verifyInclusion(1, 4, leaves[1]!, ["not a buffer"] as unknown as Buffer[], root),
    () => verifyInclusion(1, 4, null as unknown as Buffer, proof, root),
  ];
  for (const call of bad) assert.equal(call(), false);
});

test("accepts a single-leaf tree with an empty proof only when the leaf is the root", () => {
  const [leaf] = makeLeaves(1);
  assert.ok(verifyInclusion(0, 1, leaf!, [], leaf!));
  assert.equal(verifyInclusion(0, 1, leaf!, [], flipBit(leaf!)), false);
});

test("generates identical proofs from an array, a leaf accessor and a subtree-root source", () => {
  const leaves = makeLeaves(23);
  let accessorReads = 0;
  const accessor = (i: number): Buffer => {
    accessorReads++;
    return leaves[i]!;
  };
  const subtrees = { subtreeRoot: (s: number, e: number) => rootFromLeafHashes(leaves.slice(s, e)) };
  for (let n = 1; n <= 23; n++) {
    for (let i = 0; i < n; i++) {
      const expected = inclusionProof(i, leaves, n);
      assert.deepEqual(inclusionProof(i, accessor, n), expected);
      assert.deepEqual(inclusionProof(i, subtrees, n), expected);
    }
    for (let m = 0; m <= n; m++) {
      const expected = consistencyProof(m, n, leaves);
      assert.deepEqual(consistencyProof(m, n, accessor), expected);
      assert.deepEqual(consistencyProof(m, n, subtrees), expected);
    }
  }
  assert.ok(accessorReads > 0);
});

test("never reads leaves at or beyond the tree size when generating proofs", () => {
  const leaves = makeLeaves(40);
  for (let n = 1; n <= 40; n++) {
    const guarded = (i: number): Buffer => {
      assert.ok(i >= 0 && i < n, `read leaf ${i} of ${n}`);
      return leaves[i]!;
    };
    for (let i = 0; i < n; i++) inclusionProof(i, guarded, n);
    for (let m = 0; m <= n; m++) consistencyProof(m, n, guarded);
  }
});

test("rejects out-of-range proof requests with a RangeError", () => {
  const leaves = makeLeaves(4);
  assert.throws(() => inclusionProof(4, leaves, 4), RangeError);
  assert.throws(() => inclusionProof(-1, leaves, 4), RangeError);
  assert.throws(() => inclusionProof(0, leaves, 0), RangeError);
  assert.throws(() => inclusionProof(0, leaves, 5), RangeError);
  assert.throws(() => consistencyProof(5, 4, leaves), RangeError);
  assert.throws(() => consistencyProof(2, 5, leaves), RangeError);
  assert.throws(() => consistencyProof(1, 2, { subtreeRoot: () => Buffer.alloc(3) }), RangeError);
});

test("verifies consistency proofs for every 1 <= m <= n <= 40", () => {
  const leaves = makeLeaves(40);
  const roots = Array.from({ length: 41 }, (_, n) => rootFromLeafHashes(leaves.slice(0, n)));
  for (let n = 1; n <= 40; n++) {
    for (let m = 1; m <= n; m++) {
      const proof = consistencyProof(m, n, leaves);
      assert.deepEqual(consistencyProofRanges(m, n).length, proof.length);
      assert.ok(verifyConsistency(m, n, roots[m]!, roots[n]!, proof), `${m} -> ${n}`);
    }
  }
});

test("rejects consistency proofs when either root is altered or a proof element is flipped", () => {
  const leaves = makeLeaves(40);
  const roots = Array.from({ length: 41 }, (_, n) => rootFromLeafHashes(leaves.slice(0, n)));
  for (let n = 1; n <= 40; n++) {
    for (let m = 1; m <= n; m++) {
      const proof = consistencyProof(m, n, leaves);
      const rootM = roots[m]!;
      const rootN = roots[n]!;
      const label = `${m} -> ${n}`;
      assert.equal(verifyConsistency(m, n, flipBit(rootM), rootN, proof), false, `${label}: first root`);
      assert.equal(verifyConsistency(m, n, rootM, flipBit(rootN), proof), false, `${label}: second root`);
      for (let k = 0; k < proof.length; k++) {
        const tampered = proof.map((p, idx) => (idx === k ? flipBit(p) : p));
        assert.equal(verifyConsistency(m, n, rootM, rootN, tampered), false, `${label}: element ${k}`);
      }
      assert.equal(verifyConsistency(m, n, rootM, rootN, [...proof, rootN]), false, `${label}: extra element`);
      if (proof.length > 0) {
        assert.equal(verifyConsistency(m, n, rootM, rootN, proof.slice(0, -1)), false, `${label}: short proof`);
      }
      // A genuine proof between other sizes must not pass for these.
      if (m > 1) assert.equal(verifyConsistency(m - 1, n, roots[m - 1]!, rootN, proof), false, `${label}: as ${m - 1}`);
      if (m < n) assert.equal(verifyConsistency(m, n, rootM, roots[n - 1]!, proof), false, `${label}: other tree`);
    }
  }
});

test("treats m == n as consistent only with an empty proof and equal roots", () => {
  const leaves = makeLeaves(9);
  const root = rootFromLeafHashes(leaves);
  assert.deepEqual(consistencyProof(9, 9, leaves), []);
  assert.ok(verifyConsistency(9, 9, root, root, []));
  assert.equal(verifyConsistency(9, 9, root, flipBit(root), []), false);
  assert.equal(verifyConsistency(9, 9, root, root, [root]), false);
});

test("prepends the first root when m is a power of two, so its proof omits it", () => {
  const leaves = makeLeaves(13);
  const root8 = rootFromLeafHashes(leaves.slice(0, 8));
  const root13 = rootFromLeafHashes(leaves);
  const proof = consistencyProof(8, 13, leaves);
  // RFC 9162 §2.1.4.1: D[0:8] is a complete subtree, so only MTH(D[8:13]) is needed.
  assert.deepEqual(proof, [rootFromLeafHashes(leaves.slice(8))]);
  assert.ok(verifyConsistency(8, 13, root8, root13, proof));
  assert.equal(verifyConsistency(8, 13, root8, root13, [root8, ...proof]), false);
});

test("treats the empty tree as consistent with every tree given an empty proof", () => {
  const leaves = makeLeaves(5);
  const root = rootFromLeafHashes(leaves);
  assert.deepEqual(consistencyProof(0, 5, leaves), []);
  assert.ok(verifyConsistency(0, 5, EMPTY_ROOT, root, []));
  assert.ok(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, []));
  assert.equal(verifyConsistency(0, 5, root, root, []), false);
  assert.equal(verifyConsistency(0, 5, EMPTY_ROOT, root, [root]), false);
});

test("returns false instead of throwing for malformed consistency inputs", () => {
  const leaves = makeLeaves(6);
  const r3 = rootFromLeafHashes(leaves.slice(0, 3));
  const r6 = rootFromLeafHashes(leaves);
  const proof = consistencyProof(3, 6, leaves);
  const bad: Array<() => boolean> = [
    () => verifyConsistency(6, 3, r6, r3, proof),
    () => verifyConsistency(-3, 6, r3, r6, proof),
    () => verifyConsistency(3, 6.5, r3, r6, proof),
    () => verifyConsistency(3, Number.POSITIVE_INFINITY, r3, r6, proof),
    () => verifyConsistency(3, 6, r3, r6, []),
    () => verifyConsistency(3, 6, Buffer.alloc(0), r6, proof),
    () => verifyConsistency(3, 6, r3, "root" as unknown as Buffer, proof),
    () => verifyConsistency(3, 6, r3, r6, undefined as unknown as Buffer[]),
    () => verifyConsistency(3, 6, r3, r6, [proof[0]!, Buffer.alloc(33)]),
    () => verifyConsistency(3, 6, r3, r6, [{}] as unknown as Buffer[]),
  ];
  for (const call of bad) assert.equal(call(), false);
});

test("sha256 gives the digest a Hash object gives, for every byte value in and out, and for strings as UTF-8", () => {
  const inputs: (Uint8Array | string)[] = [Buffer.alloc(0), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(65), randomBytes(1000), "", "\u0000{\"a\":\"é😀\"}"];
  for (let i = 0; i < 200; i++) inputs.push(randomBytes(i));
  for (const input of inputs) {
    const expected = createHash("sha256").update(input).digest();
    const actual = poolSha256(input);
    assert.ok(Buffer.isBuffer(actual) && actual.length === 32);
    assert.deepEqual(actual, expected);
  }
});
