/**
 * Tile cache helpers. The sealer stores the hash of every complete, aligned perfect subtree of
 * 256^k leaves (levels 8, 16, ...), so any subtree hash a proof needs (RFC 9162 §2.1.3-2.1.4)
 * costs at most one query of at most 255 hashes instead of reading the leaves below it.
 */
import { HASH_SIZE, nodeHash, type CompactMerkleTree } from './merkle.ts';

/** Leaves per level-8 node; a node at level 8(k+1) covers 256 nodes of level 8k. */
export const tileWidth = 256;

/**
 * Called before appending `leaf` to `tree` when that append completes a 256-leaf block: pushes
 * the node of every level (8, 16, ...) the append completes. With s = tree.size, s + 1 ends in
 * tz zero bits, so the last tz frontier entries are the perfect subtrees of heights tz-1 ... 0
 * that, folded with the leaf, make the subtrees of heights 1 ... tz ending at s + 1 (RFC 9162
 * §2.1.1 with k = the subtree's left half).
 */
export function completedTiles(tree: CompactMerkleTree, leaf: Uint8Array, out: { level: number; idx: number; hash: Uint8Array }[]): void {
  const next = tree.size + 1;
  const frontier = tree.frontier();
  let node: Buffer = Buffer.from(leaf);
  for (let height = 1, i = frontier.length - 1; next % 2 ** height === 0; height++, i--) {
    node = nodeHash(frontier[i]!, node);
    if (height % 8 === 0) out.push({ level: height, idx: next / 2 ** height - 1, hash: node });
  }
}

/** RFC 9162 §2.1.1 MTH of a perfect tree (power-of-two count) given its leaf-level hashes. */
export function perfectRoot(hashes: readonly Uint8Array[]): Buffer {
  let level: Uint8Array[] = [...hashes];
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return Buffer.from(level[0]!);
}

/** Frontier hashes as stored: standard base64, comma separated ('' for the empty tree). */
export function encodeFrontier(frontier: readonly Uint8Array[]): string {
  return frontier.map((h) => Buffer.from(h).toString('base64')).join(',');
}

export function decodeFrontier(text: string): Buffer[] {
  if (text === '') return [];
  return text.split(',').map((part) => {
    const hash = Buffer.from(part, 'base64');
    if (hash.length !== HASH_SIZE) throw new RangeError('frontier hashes must be 32 bytes');
    return hash;
  });
}
