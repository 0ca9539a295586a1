import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import { Pkcs11Custody } from '../pki/custody/pkcs11.ts';
import type { Database } from '../storage/schema.ts';
import { masterKeyId } from './keyring.ts';
import { MasterKeyError } from './master-key.ts';

/**
 * The master key from a PKCS#11 token (CLEARANCE_MASTER_KEY_PKCS11_LABEL, docs/keys.md "The master
 * key"): envelope encryption through the PKI work's custody (src/pki/custody/pkcs11.ts). The token
 * holds an AES-256 key, `label`, that never leaves it; the master key proper is a 32-byte data key,
 * made at random on first use, stored in `master_key_wraps` only as the token's encryption of it,
 * and unwrapped by the token at each start. A copy of the database and of the configuration is
 * then not enough to open anything: the token (and its PIN) is needed too. The data key is in the
 * process's memory while it runs, as an environment key is.
 *
 * What the token decrypts is checked against the stored key id (a SHA-256 fingerprint of the data
 * key): AES-CBC has no integrity of its own, so a wrong key or an altered row fails here, closed.
 */
export async function unwrapMasterKey(config: Pick<Config, 'pkcs11'>, db: Kysely<Database>, label: string, options: { create: boolean }): Promise<Buffer> {
  if (!config.pkcs11) throw new MasterKeyError(`the master key labelled "${label}" is in a PKCS#11 token: set CLEARANCE_PKCS11_MODULE, CLEARANCE_PKCS11_TOKEN and its PIN`);
  const token = new Pkcs11Custody(config.pkcs11);
  const where = { token: config.pkcs11.tokenLabel, label };
  let row = await wrapRow(db, where);
  if (!row) {
    if (!options.create) throw new MasterKeyError(`no master key is wrapped by the PKCS#11 key "${label}" in this database`);
    const key = randomBytes(32);
    let wrapped: Buffer;
    try {
      wrapped = await token.encryptWithSecretKey(label, key);
    } catch (error) {
      throw new MasterKeyError(`the master key cannot be made with the PKCS#11 key "${label}": ${(error as Error).message}`);
    }
    // Two nodes starting at once: the first row written is the key; the other's is dropped unused.
    await db
      .insertInto('master_key_wraps')
      .values({ ...where, wrapped: wrapped.toString('base64'), key_id: masterKeyId(key), created_at: Date.now() })
      .onConflict((oc) => oc.columns(['token', 'label']).doNothing())
      .execute();
    row = (await wrapRow(db, where))!;
  }
  let key: Buffer;
  try {
    key = await token.decryptWithSecretKey(label, Buffer.from(row.wrapped, 'base64'));
  } catch (error) {
    throw new MasterKeyError(`the PKCS#11 key "${label}" does not unwrap this database's master key: ${(error as Error).message}`);
  }
  if (key.length !== 32 || masterKeyId(key) !== row.key_id) throw new MasterKeyError(`the PKCS#11 key "${label}" does not unwrap this database's master key ${row.key_id}`);
  return key;
}

async function wrapRow(db: Kysely<Database>, where: { token: string; label: string }): Promise<Database['master_key_wraps'] | undefined> {
  return db.selectFrom('master_key_wraps').selectAll().where('token', '=', where.token).where('label', '=', where.label).executeTakeFirst();
}
