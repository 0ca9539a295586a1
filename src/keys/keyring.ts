import { createHash } from 'node:crypto';

/**
 * What the configured master key stands for in this process (docs/keys.md "The master key"):
 *
 * - `previous`: the key it replaces, configured during a rotation (CLEARANCE_PREVIOUS_MASTER_KEY),
 *   accepted for opening only;
 * - `sealing`: the one of the two that seals new values — the key that sealed the database's
 *   derivation root (master-key-state.ts). Until `clearance keys rewrap` begins, that is the
 *   previous key, so nodes not yet restarted with the new one read everything a restarted node
 *   writes; from its start on, the new one. Undefined when the database says sealing has moved to
 *   a key this node does not hold (`movedTo`): it then seals nothing (fail closed), and what
 *   authenticates (master-key.ts authenticationKey) is refused too, until it is restarted with it;
 * - `root`: what identifier keys are derived from (master-key.ts derivedKey), fixed for the life
 *   of the database, so a rotation changes no pairwise subject, audit pseudonym or digest.
 *
 * It is attached to the master key's Buffer, once, when the server opens its database
 * (master-key-state.ts loadMasterKeyring): the buffer is what every component was already handed,
 * so sealing (sealed-box.ts) and derivation follow the keyring without each of them carrying it.
 * A buffer with no keyring attached (a unit test's key) is its own sealing key and root.
 */
export interface Keyring {
  current: Buffer;
  previous: Buffer | undefined;
  sealing: Buffer | undefined;
  /** The id of the key the database seals with, when this node does not hold it (`sealing` undefined). */
  movedTo?: string;
  root: Buffer;
}

/**
 * Nothing can be sealed, nor anything authenticated, with the keys this node holds: the database
 * seals with another master key now (a rewrap began). Answered as 503 temporarily_unavailable
 * (src/http/errors.ts); the message names key ids only.
 */
export class MasterKeyUnavailableError extends Error {
  override name = 'MasterKeyUnavailableError';
}

/** True when `error` (or its cause) is a MasterKeyUnavailableError. */
export function isMasterKeyUnavailable(error: unknown): boolean {
  for (let depth = 0; depth < 5 && error instanceof Error; depth++) {
    if (error instanceof MasterKeyUnavailableError) return true;
    error = error.cause;
  }
  return false;
}

const keyrings = new WeakMap<Buffer, Keyring>();
const listeners = new WeakMap<Keyring, Set<() => void>>();
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

/** The key that seals new values for this master key; throws MasterKeyUnavailableError when this node holds it no longer. */
export function sealingKeyOf(masterKey: Buffer): Buffer {
  const keyring = keyrings.get(masterKey);
  if (!keyring) return masterKey;
  if (!keyring.sealing) throw new MasterKeyUnavailableError(masterKeyUnavailable(masterKey));
  return keyring.sealing;
}

/**
 * Why this node can seal nothing now, or undefined while it can: the readiness check's reason
 * (`/readyz`) and the refusal's message. Key ids only (public).
 */
export function masterKeyUnavailable(masterKey: Buffer): string | undefined {
  const keyring = keyrings.get(masterKey);
  if (!keyring || keyring.sealing) return undefined;
  const held = [keyring.current, keyring.previous].filter((key) => key !== undefined).map(masterKeyId).join(', ');
  return `master key unavailable: the database seals with master key ${keyring.movedTo ?? 'unknown'}, and this node holds ${held}`;
}

/** Makes `key` the sealing key (undefined: none, sealing moved to `movedTo`), and tells the listeners (`onSealingChange`). */
export function setSealing(keyring: Keyring, key: Buffer | undefined, movedTo?: string): void {
  if (keyring.sealing === key) return;
  keyring.sealing = key;
  keyring.movedTo = key ? undefined : movedTo;
  for (const listener of listeners.get(keyring) ?? []) listener();
}

/**
 * Calls `listener` whenever the sealing key of `masterKey`'s keyring changes — and with it every
 * authentication key (master-key.ts authenticationKey): what registered a key derived from it (the
 * console client's) registers it again.
 */
export function onSealingChange(masterKey: Buffer, listener: () => void): void {
  const keyring = keyrings.get(masterKey);
  if (!keyring) return;
  let set = listeners.get(keyring);
  if (!set) listeners.set(keyring, (set = new Set()));
  set.add(listener);
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

/** What identifier keys derive from: the database's root, or the key itself where none is attached. */
export function derivationRootOf(masterKey: Buffer): Buffer {
  return keyrings.get(masterKey)?.root ?? masterKey;
}

/**
 * What authentication keys derive from (master-key.ts authenticationKey): the master key that seals
 * now, so they rotate with it — the old key forges nothing once a rewrap has begun. Throws
 * MasterKeyUnavailableError where this node holds it no longer.
 */
export function authenticationRootOf(masterKey: Buffer): Buffer {
  return sealingKeyOf(masterKey);
}
