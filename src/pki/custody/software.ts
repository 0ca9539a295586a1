import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import { open, seal } from '../../keys/sealed-box.ts';
import { masterKeyId, opensKeyId, sealingKeyId } from '../../keys/keyring.ts';
import type { Database } from '../../storage/schema.ts';
import { CustodyError, type CustodyKey, type CustodyKeyType, type KeyCustody } from './custody.ts';

/**
 * Software custody, the default: a key is generated in this process, its PKCS#8 encoding sealed
 * with the master key (AES-256-GCM bound to its `ref`, src/keys/sealed-box.ts) in `custody_keys`,
 * and opened in memory when loaded. A row copied onto another ref does not open.
 */
export class SoftwareCustody implements KeyCustody {
  readonly kind = 'software';
  readonly #db: Kysely<Database>;
  readonly #masterKey: Buffer;
  readonly #clock: Clock;
  readonly #loaded = new Map<string, CustodyKey>();

  constructor(db: Kysely<Database>, masterKey: Buffer, clock: Clock) {
    this.#db = db;
    this.#masterKey = masterKey;
    this.#clock = clock;
  }

  async generate(label: string, type: CustodyKeyType): Promise<CustodyKey> {
    const existing = await this.#db.selectFrom('custody_keys').select('ref').where('label', '=', label).executeTakeFirst();
    if (existing) throw new CustodyError(`a custody key labelled "${label}" exists already (${existing.ref})`);
    const { privateKey, publicKey } = generatePair(type);
    const ref = `software:${randomUUID()}`;
    await this.#db
      .insertInto('custody_keys')
      .values({
        ref,
        label,
        key_type: type,
        public_key: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
        private_key: seal(this.#masterKey, privateKey.export({ format: 'der', type: 'pkcs8' }), `custody_keys:${ref}`),
        master_key_id: sealingKeyId(this.#masterKey),
        created_at: this.#clock.now(),
      })
      .execute();
    return this.#remember(softwareKey(ref, type, privateKey));
  }

  async load(ref: string, executor: Kysely<Database> | Transaction<Database> = this.#db): Promise<CustodyKey> {
    const cached = this.#loaded.get(ref);
    if (cached) return cached;
    const row = await executor.selectFrom('custody_keys').selectAll().where('ref', '=', ref).executeTakeFirst();
    if (!row) throw new CustodyError(`no software custody key ${ref}`);
    if (!opensKeyId(this.#masterKey, row.master_key_id)) {
      throw new CustodyError(`custody key ${ref} was sealed with master key ${row.master_key_id}, not the configured ${masterKeyId(this.#masterKey)}`);
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: open(this.#masterKey, row.private_key, `custody_keys:${ref}`), format: 'der', type: 'pkcs8' });
    } catch (error) {
      throw new CustodyError(`custody key ${ref} does not open: ${(error as Error).message}`);
    }
    const key = softwareKey(ref, row.key_type as CustodyKeyType, privateKey);
    // A public key swapped in the row would not match the sealed private part: refuse it.
    const stored = createPublicKey({ key: Buffer.from(row.public_key, 'base64'), format: 'der', type: 'spki' });
    if (!stored.equals(key.publicKey)) throw new CustodyError(`custody key ${ref}'s stored public key does not match its private key`);
    return this.#remember(key);
  }

  #remember(key: CustodyKey): CustodyKey {
    this.#loaded.set(key.ref, key);
    return key;
  }
}

function generatePair(type: CustodyKeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (type) {
    case 'EC-P256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'Ed25519':
      return generateKeyPairSync('ed25519');
    case 'RSA-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
  }
}

/** A custody key over an in-memory private key (software custody; also the tests' keys). */
export function softwareKey(ref: string, type: CustodyKeyType, privateKey: KeyObject): CustodyKey {
  const publicKey = createPublicKey(privateKey);
  return {
    ref,
    type,
    publicKey,
    async sign(data) {
      switch (type) {
        case 'EC-P256':
          return sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        case 'Ed25519':
          return sign(null, data, privateKey);
        case 'RSA-3072':
          return sign('sha256', data, privateKey);
      }
    },
  };
}

/** Whether `signature` (in the custody form) over `data` verifies with `key`'s public key. */
export function verifyCustodySignature(key: Pick<CustodyKey, 'type' | 'publicKey'>, data: Uint8Array, signature: Uint8Array): boolean {
  switch (key.type) {
    case 'EC-P256':
      return verify('sha256', data, { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, signature);
    case 'Ed25519':
      return verify(null, data, key.publicKey, signature);
    case 'RSA-3072':
      return verify('sha256', data, key.publicKey, signature);
  }
}
