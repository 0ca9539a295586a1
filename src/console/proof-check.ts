import { createPublicKey } from 'node:crypto';
import { auditKeyFingerprint } from '../audit/audit-key.ts';
import { verifyCheckpoint } from '../audit/checkpoint.ts';
import { leafHash, verifyInclusion } from '../audit/merkle.ts';
import type { EventProof } from '../audit/proofs.ts';

/** What the console could establish about one event, for its page. */
export type ProofCheck =
  | { verified: true; leafIndex: number; treeSize: number; rootHash: string; checkpointTime: number; keyId: string }
  | { verified: false; reason: string };

/**
 * Checks an event's inclusion proof as an outside verifier would (RFC 9162 §2.1.3.2), from what
 * the audit API answered: the event's bytes hash to the leaf, the proof leads from it to the
 * checkpoint's root, the checkpoint is signed by the audit key, and that key is the one whose
 * fingerprint the API names. Nothing is taken on the API's word but the key's publication.
 */
export function checkEventProof(proof: EventProof, key: { key_id: string; public_key: string }): ProofCheck {
  let publicKey;
  try {
    publicKey = createPublicKey(key.public_key);
  } catch {
    return { verified: false, reason: 'the audit key does not parse' };
  }
  if (auditKeyFingerprint(publicKey) !== key.key_id) return { verified: false, reason: 'the audit key does not match its fingerprint' };
  const checkpoint = proof.checkpoint;
  if (checkpoint.keyId !== key.key_id) return { verified: false, reason: `the checkpoint is signed by another audit key (${checkpoint.keyId})` };
  if (!verifyCheckpoint(checkpoint, checkpoint.signature, publicKey)) return { verified: false, reason: 'the checkpoint signature does not verify' };
  const leaf = leafHash(Buffer.from(proof.event, 'utf8'));
  const path = proof.inclusionProof.map((hash) => Buffer.from(hash, 'base64'));
  if (!verifyInclusion(proof.leafIndex, checkpoint.treeSize, leaf, path, Buffer.from(checkpoint.rootHash, 'base64'))) {
    return { verified: false, reason: 'the inclusion proof does not lead to the checkpoint root' };
  }
  return { verified: true, leafIndex: proof.leafIndex, treeSize: checkpoint.treeSize, rootHash: checkpoint.rootHash, checkpointTime: checkpoint.time, keyId: key.key_id };
}
