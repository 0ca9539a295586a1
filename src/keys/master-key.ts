import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type Config } from '../config.ts';

export interface MasterKey {
  key: Buffer;
  /** Where it came from, for the startup log. */
  source: 'environment' | 'development-file';
  /** Set when the server should warn at startup. */
  warning?: string;
}

/**
 * The key that encrypts private keys at rest: CLEARANCE_MASTER_KEY, or in development mode a
 * generated file in the data directory. Outside development mode the variable is required.
 */
export function resolveMasterKey(config: Config): MasterKey {
  if (config.masterKey) return { key: config.masterKey, source: 'environment' };
  if (config.mode !== 'development') {
    throw new ConfigError('CLEARANCE_MASTER_KEY (or CLEARANCE_MASTER_KEY_FILE) is required outside development mode');
  }
  const path = join(config.dataDir, 'master.key');
  const warning =
    `using a development master key from ${path}; set CLEARANCE_MASTER_KEY (32 bytes, hex or base64) ` +
    'from a secret store in production';
  try {
    const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
    if (key.length !== 32) throw new ConfigError(`${path} does not hold a 32-byte hex key`);
    return { key, source: 'development-file', warning };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  try {
    // 'wx' fails if another process created it first; then read theirs.
    writeFileSync(path, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return resolveMasterKey(config);
    throw error;
  }
  return { key, source: 'development-file', warning };
}

const derivedKeys = new WeakMap<Buffer, Map<string, Buffer>>();

/**
 * A 32-byte key for one purpose, derived from the master key with HKDF-SHA-256 (RFC 5869; no salt,
 * `info` names the purpose and its version), cached per master key buffer: never stored, the same
 * on every node and across restarts, and a different key for each `info`.
 */
export function derivedKey(masterKey: Buffer, info: string): Buffer {
  let byInfo = derivedKeys.get(masterKey);
  if (!byInfo) derivedKeys.set(masterKey, (byInfo = new Map()));
  let key = byInfo.get(info);
  if (!key) byInfo.set(info, (key = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), info, 32))));
  return key;
}
