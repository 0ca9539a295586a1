import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type Config } from '../config.ts';
import { authenticationRootOf, derivationRootOf } from './keyring.ts';

export interface MasterKey {
  key: Buffer;
  /** Where it came from, for the startup log. */
  source: 'environment' | 'development-file' | 'pkcs11';
  /** Set when the server should warn at startup. */
  warning?: string;
}

/**
 * A master key that cannot serve this database: a configuration problem, named with the key ids
 * (public, keyring.ts masterKeyId) and what to set.
 */
export class MasterKeyError extends ConfigError {
  override name = 'MasterKeyError';
}

/** Master keys unwrapped by the PKCS#11 token (master-key-pkcs11.ts), by token and label, once the database was opened. */
const unwrapped = new Map<string, MasterKey>();
/** Development keys by file: one Buffer per file, so the keyring attached to it (keyring.ts) is found again. */
const developmentKeys = new Map<string, MasterKey>();

/** Where the token's unwrapped master key is remembered (master-key-state.ts stores it, resolveMasterKey finds it). */
export function pkcs11MasterKeySlot(config: Pick<Config, 'pkcs11'>, label: string): string {
  return `${config.pkcs11?.module}\n${config.pkcs11?.tokenLabel}\n${label}`;
}

export function rememberUnwrappedMasterKey(slot: string, key: Buffer): MasterKey {
  const known = unwrapped.get(slot);
  if (known?.key.equals(key)) return known;
  const master: MasterKey = { key, source: 'pkcs11' };
  unwrapped.set(slot, master);
  return master;
}

/**
 * The key that encrypts private keys and secrets at rest (docs/keys.md "The master key"):
 * CLEARANCE_MASTER_KEY (or _FILE); a data key wrapped by an AES key of the PKCS#11 token
 * (CLEARANCE_MASTER_KEY_PKCS11_LABEL), unwrapped when the database is opened
 * (master-key-state.ts loadMasterKeyring); or in development mode a generated file in the data
 * directory. Outside development mode one of the first two is required. The same Buffer every time
 * for one configuration: its keyring (keyring.ts) is attached to it.
 */
export function resolveMasterKey(config: Config): MasterKey {
  if (config.masterKey) return { key: config.masterKey, source: 'environment' };
  if (config.masterKeyPkcs11Label) {
    const master = unwrapped.get(pkcs11MasterKeySlot(config, config.masterKeyPkcs11Label));
    if (!master) throw new ConfigError('the master key in the PKCS#11 token is unwrapped when the database is opened, and it was not opened yet');
    return master;
  }
  if (config.mode !== 'development') {
    throw new ConfigError('CLEARANCE_MASTER_KEY (or CLEARANCE_MASTER_KEY_FILE, or CLEARANCE_MASTER_KEY_PKCS11_LABEL) is required outside development mode');
  }
  const path = join(config.dataDir, 'master.key');
  const known = developmentKeys.get(path);
  if (known) return known;
  const master: MasterKey = {
    key: readOrCreateDevelopmentKey(path, config.dataDir),
    source: 'development-file',
    warning: `using a development master key from ${path}; set CLEARANCE_MASTER_KEY (32 bytes, hex or base64) from a secret store in production`,
  };
  developmentKeys.set(path, master);
  return master;
}

function readOrCreateDevelopmentKey(path: string, dataDir: string): Buffer {
  try {
    const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
    if (key.length !== 32) throw new ConfigError(`${path} does not hold a 32-byte hex key`);
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  try {
    // 'wx' fails if another process created it first; then read theirs.
    writeFileSync(path, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readOrCreateDevelopmentKey(path, dataDir);
    throw error;
  }
  return key;
}

const derivedKeys = new WeakMap<Buffer, Map<string, Buffer>>();

/** HKDF-SHA-256 (RFC 5869; no salt, `info` names the purpose and its version), 32 bytes, cached per input key. */
function hkdf(input: Buffer, info: string): Buffer {
  let byInfo = derivedKeys.get(input);
  if (!byInfo) derivedKeys.set(input, (byInfo = new Map()));
  let key = byInfo.get(info);
  if (!key) byInfo.set(info, (key = Buffer.from(hkdfSync('sha256', input, Buffer.alloc(0), info, 32))));
  return key;
}

/**
 * A key for an IDENTIFIER or a DIGEST — what is stored, or shared outside as a name: pairwise
 * subjects, audit pseudonyms, recovery-code and beneficiary-name digests, rate-limit names,
 * passkey decoys. Derived from the database's derivation root, not from the master key, so
 * rotating the master key changes none of them (keyring.ts; for a deployment older than the root,
 * the root is its first master key's bytes — which therefore computes these forever: docs/keys.md).
 * Never for what authenticates: see `authenticationKey`. Never stored, the same on every node and
 * across restarts, a different key for each `info`. Given a bare key with no keyring attached (a
 * unit test's), it derives from that key.
 */
export function derivedKey(masterKey: Buffer, info: string): Buffer {
  return hkdf(derivationRootOf(masterKey), info);
}

/**
 * A key for what AUTHENTICATES — a MAC, a signature, a cookie: the console client's key and
 * cookies, device cookies, DPoP nonces, upstream sign-in state and the sign-out continuation.
 * Derived from the master key that seals now (keyring.ts authenticationRootOf), so it rotates with
 * it: once `clearance keys rewrap` has begun, the old master key produces nothing valid (and what
 * it produced before stops being accepted: docs/keys.md "What a rotation ends"). Until a first
 * rotation it is what the root derived for a database older than the root, so the upgrade ends no
 * session. Read it at each use, never once at start: it changes while the process runs. Throws
 * MasterKeyUnavailableError on a node that holds the sealing key no longer (fail closed).
 */
export function authenticationKey(masterKey: Buffer, info: string): Buffer {
  return hkdf(authenticationRootOf(masterKey), info);
}
