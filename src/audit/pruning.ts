/**
 * Signed pruning records. Retention (retention.ts) removes a sealed prefix of the log only after
 * writing one: it commits to the tree the removed leaves formed (size, root, frontier), so the
 * remaining leaves still verify against every later checkpoint.
 */
import { verify, type KeyObject } from 'node:crypto';
import { CompactMerkleTree } from './merkle.ts';
import { decodeFrontier } from './tiles.ts';

export interface PruningRecord {
  origin: string;
  /** Leaves [0, treeSize) were removed. */
  treeSize: number;
  /** RFC 9162 root of those leaves, standard base64. */
  rootHash: string;
  /** CompactMerkleTree frontier at treeSize (tiles.ts encoding): where verification resumes. */
  frontier: string;
  time: number;
  /** The retention policy applied, as JSON text. */
  policy: string;
}

/** The signed text: a fixed first line, then one field per line; the policy JSON last. */
export function pruningBody(record: PruningRecord): string {
  for (const field of [record.origin, record.rootHash, record.frontier]) {
    if (/[\r\n]/.test(field)) throw new TypeError('pruning record fields must be single lines');
  }
  return `clearance audit pruning v1\n${record.origin}\n${record.treeSize}\n${record.rootHash}\n${record.frontier}\n${record.time}\n${record.policy}`;
}

export async function signPruning(record: PruningRecord, signer: { sign(data: Uint8Array): Promise<Buffer> }): Promise<string> {
  return (await signer.sign(Buffer.from(pruningBody(record), 'utf8'))).toString('base64');
}

/** True when the signature is valid and the frontier really has the recorded root. */
export function verifyPruning(record: PruningRecord, signature: string, publicKey: KeyObject): boolean {
  try {
    if (!verify(null, Buffer.from(pruningBody(record), 'utf8'), publicKey, Buffer.from(signature, 'base64'))) return false;
    return CompactMerkleTree.restore(record.treeSize, decodeFrontier(record.frontier)).root().toString('base64') === record.rootHash;
  } catch {
    return false;
  }
}
