/**
 * The audit keys behind a bundle's key (docs/keys.md "Audit checkpoint keys"): a bundle is signed,
 * and its checkpoint too, by one audit key — after a rotation a newer one than an auditor may have
 * pinned. Each rotation since migration 0059 stored a handover signed by the key it replaced
 * (audit-key.ts handoverBody); the bundle carries that chain, so `verify-bundle --key OLD.pem`
 * accepts a bundle signed by a successor of the pinned key, and nothing else, offline.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import { auditKeyFingerprint, handoverBody, type AuditPublicKey } from './audit-key.ts';
import { isCanonicalBase64 } from './checkpoint.ts';

/** An older audit key and its handover to the next one, as a bundle carries it. */
export interface BundledAuditKey {
  keyId: string;
  /** SPKI DER, standard base64. */
  publicKey: string;
  /** The key it handed over to. */
  next: string;
  /** Ed25519 by this key over handoverBody(origin, keyId, next), standard base64. */
  handover: string;
}

/** The handovers that lead to `keyId`, newest first, as far back as handovers were signed; empty for a first key. */
export async function auditKeyChainTo(db: Kysely<Database>, keyId: string): Promise<BundledAuditKey[]> {
  const rows = new Map((await db.selectFrom('audit_keys').select(['key_id', 'public_key', 'handover_from', 'handover_signature']).execute()).map((row) => [row.key_id, row]));
  const chain: BundledAuditKey[] = [];
  for (let row = rows.get(keyId); row?.handover_from && row.handover_signature; ) {
    const previous = rows.get(row.handover_from);
    if (!previous || chain.some((link) => link.keyId === previous.key_id)) break;
    chain.push({ keyId: previous.key_id, publicKey: previous.public_key, next: row.key_id, handover: row.handover_signature });
    row = previous;
  }
  return chain;
}

/**
 * Checks a bundle's chain back from its signing key `keyId`: every link's key is its fingerprint
 * and signed the handover to the next. Returns the key ids from `keyId` back, and whether a pinned
 * key is among them (true when nothing is pinned).
 */
export function checkAuditKeyChain(chain: unknown, keyId: string, origin: string, pinned: Set<string> | undefined): { problems: string[]; keyIds: string[]; pinnedReached: boolean } {
  const problems: string[] = [];
  const keyIds = [keyId];
  if (chain !== undefined && !Array.isArray(chain)) return { problems: ['auditKeyChain must be a list'], keyIds, pinnedReached: !pinned || pinned.has(keyId) };
  const links = (chain ?? []) as BundledAuditKey[];
  let next = keyId;
  for (const [i, link] of links.entries()) {
    let key: KeyObject;
    try {
      key = createPublicKey({ key: Buffer.from(String(link?.publicKey), 'base64'), format: 'der', type: 'spki' });
      if (key.asymmetricKeyType !== 'ed25519') throw new Error('not Ed25519');
    } catch {
      problems.push(`auditKeyChain ${i}: not an Ed25519 public key`);
      break;
    }
    const signed = link.next === next && auditKeyFingerprint(key) === link.keyId && isCanonicalBase64(link.handover, 64) && verify(null, Buffer.from(handoverBody(origin, link.keyId, next), 'utf8'), key, Buffer.from(link.handover, 'base64'));
    if (!signed) {
      problems.push(`auditKeyChain ${i}: not a valid handover from ${String(link?.keyId)} to ${next}`);
      break;
    }
    keyIds.push(link.keyId);
    next = link.keyId;
  }
  return { problems, keyIds, pinnedReached: !pinned || keyIds.some((id) => pinned.has(id)) };
}

/**
 * The keys a verifier pinning `pinned` trusts among `keys` (verify.ts), by key id: the pinned keys
 * themselves — the verifier's own objects, never the database's copy under the same id — and each
 * key whose handover was validly signed by a trusted one. A stored key is trusted only if it is its
 * id's fingerprint: whoever can write the database could otherwise put a key of their own under
 * the pinned id, have it "hand over" to another, and sign a rewritten log with that one.
 */
export function trustedByHandover(pinned: KeyObject[], keys: Map<string, AuditPublicKey>): Map<string, KeyObject> {
  const trusted = new Map(pinned.map((key) => [auditKeyFingerprint(key), key]));
  for (let grew = true; grew; ) {
    grew = false;
    for (const key of keys.values()) {
      if (trusted.has(key.keyId) || !key.handover) continue;
      const from = trusted.get(key.handover.from);
      if (!from || !isCanonicalBase64(key.handover.signature, 64)) continue;
      if (auditKeyFingerprint(key.publicKey) !== key.keyId) continue;
      if (!verify(null, Buffer.from(handoverBody(key.origin, key.handover.from, key.keyId), 'utf8'), from, Buffer.from(key.handover.signature, 'base64'))) continue;
      trusted.set(key.keyId, key.publicKey);
      grew = true;
    }
  }
  return trusted;
}
