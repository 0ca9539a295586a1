import { createHash } from 'node:crypto';

/**
 * What the configured master key stands for in this process (docs/keys.md "The master key"):
 *
 * - `previous`: the key it replaces, configured during a rotation (CLEARANCE_PREVIOUS_MASTER_KEY),
 *   accepted for opening only;
 * - `sealing`: the one of the two that seals new values — the key that sealed the database's
 *   derivation root (master-key-state.ts). Until `clearance keys rewrap` begins, that is the
 *   previous key, so nodes not yet restarted with the new one read everything a restarted node
 *   writes; from its start on, the new one;
 * - `root`: what purpose keys are derived from (master-key.ts derivedKey), fixed for the life of
 *   the database, so a rotation changes no pairwise subject, audit pseudonym or digest.
 *
 * It is attached to the master key's Buffer, once, when the server opens its database
 * (master-key-state.ts loadMasterKeyring): the buffer is what every component was already handed,
 * so sealing (sealed-box.ts) and derivation follow the keyring without each of them carrying it.
 * A buffer with no keyring attached (a unit test's key) is its own sealing key and root.
 */
export interface Keyring {
  current: Buffer;
  previous: Buffer | undefined;
  sealing: Buffer;
  root: Buffer;
}

const keyrings = new WeakMap<Buffer, Keyring>();
const ids = new WeakMap<Buffer, string>();

/** A short public identifier of a master key (not a secret: a truncated hash of a 256-bit key). */
export function masterKeyId(masterKey: Buffer): string {
  let id = ids.get(masterKey);
  if (id === undefined) {
    id = createHash('sha256').update('clearance master key id').update(masterKey).digest('hex').slice(0, 16);
    ids.set(masterKey, id);
  }
  return id;
}

/** Makes `keyring` what `keyring.current` stands for in this process (replacing any earlier one). */
export function attachKeyring(keyring: Keyring): void {
  keyrings.set(keyring.current, keyring);
}

export function keyringOf(masterKey: Buffer): Keyring | undefined {
  return keyrings.get(masterKey);
}

/** The key that seals new values for this master key. */
export function sealingKeyOf(masterKey: Buffer): Buffer {
  return keyrings.get(masterKey)?.sealing ?? masterKey;
}

/** The id `master_key_id` columns record for what is sealed now. */
export function sealingKeyId(masterKey: Buffer): string {
  return masterKeyId(sealingKeyOf(masterKey));
}

/** Every key that opens for this master key: itself, and the previous one during a rotation. */
export function openingKeysOf(masterKey: Buffer): Buffer[] {
  const keyring = keyrings.get(masterKey);
  return keyring?.previous ? [keyring.current, keyring.previous] : [masterKey];
}

/** The configured key (current or previous) with this id, if any. */
export function openingKeyById(masterKey: Buffer, id: string): Buffer | undefined {
  return openingKeysOf(masterKey).find((key) => masterKeyId(key) === id);
}

/** Whether a value recorded as sealed by master key `id` opens here (a `master_key_id` column's check). */
export function opensKeyId(masterKey: Buffer, id: string): boolean {
  return openingKeyById(masterKey, id) !== undefined;
}

/** What purpose keys derive from: the database's root, or the key itself where none is attached. */
export function derivationRootOf(masterKey: Buffer): Buffer {
  return keyrings.get(masterKey)?.root ?? masterKey;
}
