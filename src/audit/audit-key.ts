import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Clock } from '../clock.ts';
import { open, seal } from '../keys/sealed-box.ts';
import { masterKeyId, masterKeyUnavailable, MasterKeyUnavailableError, opensKeyId, sealingKeyId } from '../keys/keyring.ts';
import type { Database } from '../storage/schema.ts';
import { isPostgres } from './dialect.ts';
import type { CustodyKey } from '../pki/custody/custody.ts';
import { softwareKey } from '../pki/custody/software.ts';
import type { Custodies } from '../pki/custody/custodies.ts';

/** Where audit keys are made and found (docs/pki.md "Key custody"). */
export interface AuditKeyCustody {
  kind: 'software' | 'pkcs11';
  custodies: Custodies;
}

/** An audit signing key: Ed25519, identified by the SHA-256 fingerprint of its SPKI encoding. */
export interface AuditPublicKey {
  keyId: string;
  /** The log identity (checkpoint origin) fixed when the first key was created. */
  origin: string;
  publicKey: KeyObject;
  /** The key it replaced and that key's signature of the handover (`handoverBody`); absent for the first key and for keys rotated in before handovers. */
  handover?: { from: string; signature: string };
}

/**
 * What the key being replaced signs when an audit key rotates: that `next` succeeds `previous` in
 * the log `origin`. A verifier who pinned an older key follows these signatures to a newer one
 * (bundle-keys.ts, verify.ts), so a rotation does not make it re-pin. One line each, like a
 * checkpoint body.
 */
export function handoverBody(origin: string, previous: string, next: string): string {
  return `clearance audit key handover v1\n${origin}\n${previous}\n${next}\n`;
}

/**
 * The key that signs now, through key custody (src/pki/custody): a software key sealed in
 * `audit_keys` opened in memory, or a key in a PKCS#11 token (`audit_keys.key_ref`) that never
 * leaves it. Either way the audit log signs through `signer.sign`.
 */
export interface AuditSigningKey extends AuditPublicKey {
  signer: CustodyKey;
}

export class AuditKeyError extends Error {
  override name = 'AuditKeyError';
}

/** Hex SHA-256 of the SPKI DER encoding: the key id, and what auditors pin. */
export function auditKeyFingerprint(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest('hex');
}

/** The checkpoint origin for an issuer: its host and path, then `/audit` (one line, no scheme). */
export function auditOrigin(issuer: string): string {
  const url = new URL(issuer);
  return `${url.host}${url.pathname.replace(/\/+$/, '')}/audit`;
}

/** Parses a PEM or base64 SPKI Ed25519 public key. */
export function parseAuditPublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  const key = trimmed.startsWith('-----')
    ? createPublicKey(trimmed)
    : createPublicKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ed25519') throw new AuditKeyError('the audit key must be an Ed25519 public key');
  return key;
}

/**
 * Every audit public key in a pin file: PEM blocks one after another (the keys an auditor pinned,
 * old and new across rotations), or one base64 SPKI key.
 */
export function parseAuditPublicKeys(text: string): KeyObject[] {
  const blocks = text.match(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g);
  return blocks ? blocks.map(parseAuditPublicKey) : [parseAuditPublicKey(text)];
}

/**
 * The Ed25519 keys that sign checkpoints, pruning records and evidence bundles. The first is
 * created on first use; its private part is sealed with the master key (keys/sealed-box.ts),
 * bound to its row. Keys are never deleted, so every old checkpoint stays verifiable.
 */
export class AuditKeys {
  readonly #db: Kysely<Database>;
  readonly #masterKey: Buffer | undefined;
  readonly #clock: Clock;
  #signing: AuditSigningKey | undefined;

  readonly #custody: AuditKeyCustody | undefined;

  /**
   * `custody`: where a new key is made (`kind`, CLEARANCE_AUDIT_KEY_CUSTODY) and how a key kept in
   * the PKCS#11 token is loaded; without it every key is a sealed software key.
   */
  constructor(db: Kysely<Database>, masterKey: Buffer | undefined, clock: Clock, custody?: AuditKeyCustody) {
    this.#db = db;
    this.#masterKey = masterKey;
    this.#clock = clock;
    this.#custody = custody;
  }

  /** Why this node may sign no checkpoint now (it holds the master key the database seals with no longer), or undefined. */
  unavailable(): string | undefined {
    return this.#masterKey ? masterKeyUnavailable(this.#masterKey) : undefined;
  }

  /**
   * The key that signs now — the newest — created (for log `origin`) if there is none yet. Each
   * call asks which key is newest (one indexed row), so a long-running sealer signs with a key
   * rotated in by another process or node from its next round on.
   */
  async signingKey(origin: string): Promise<AuditSigningKey> {
    // A node that no longer holds the master key the database seals with signs nothing, not even
    // with a key it opened before (src/keys/master-key-state.ts): fail closed.
    const moved = this.unavailable();
    if (moved) throw new MasterKeyUnavailableError(moved);
    if (this.#signing) {
      const latest = await this.#db.selectFrom('audit_keys').select('key_id').orderBy('created_at', 'desc').orderBy('key_id').limit(1).executeTakeFirst();
      if (latest?.key_id === this.#signing.keyId) return this.#signing;
      this.#signing = undefined;
    }
    const masterKey = this.#masterKey;
    if (!masterKey) throw new AuditKeyError('signing audit records needs the master key');
    let row = await this.#latestRow();
    if (!row && this.#custody?.kind === 'pkcs11') {
      await this.#createInToken(origin, this.#custody);
      row = await this.#latestRow();
    }
    if (!row) {
      await this.#db.transaction().execute(async (trx) => {
        // Two processes starting at once must not create two keys: serialize the creation.
        if (isPostgres(trx)) {
          await sql`lock table audit_keys in exclusive mode`.execute(trx);
        }
        const existing = await trx.selectFrom('audit_keys').select('key_id').limit(1).executeTakeFirst();
        if (existing) return;
        await trx.insertInto('audit_keys').values(this.#newSoftwareRow(masterKey, origin)).execute();
      });
      row = await this.#latestRow();
      if (!row) throw new AuditKeyError('the audit key was not stored');
    }
    this.#signing = { ...toPublic(row), signer: await this.#signerOf(masterKey, row) };
    return this.#signing;
  }

  /**
   * A key that signed before (or signs now), by key id, with its signer: an evidence bundle is
   * signed by the key of the checkpoint it proves its events into, which for a moment after a
   * rotation is the previous key.
   */
  async signingKeyFor(keyId: string): Promise<AuditSigningKey> {
    if (this.#signing?.keyId === keyId) return this.#signing;
    if (!this.#masterKey) throw new AuditKeyError('signing audit records needs the master key');
    const row = await this.#db.selectFrom('audit_keys').selectAll().where('key_id', '=', keyId).executeTakeFirst();
    if (!row) throw new AuditKeyError(`no audit key ${keyId}`);
    return { ...toPublic(row), signer: await this.#signerOf(this.#masterKey, row) };
  }

  /**
   * Makes a new audit key the signing key (docs/lifecycle.md "Signing keys on a schedule"). The old
   * keys stay, so every checkpoint, pruning record and bundle they signed still verifies; the
   * sealer signs with the new key from its next round. `expected`: rotate only while this key is
   * the newest — two schedulers (or a scheduler and an operator) asking at once rotate once; the
   * other gets `undefined`. The new key is made where CLEARANCE_AUDIT_KEY_CUSTODY says: sealed
   * with the master key, or generated in the PKCS#11 token.
   */
  async rotate(options: { expected?: string } = {}): Promise<{ previous: AuditPublicKey; current: AuditPublicKey } | undefined> {
    const masterKey = this.#masterKey;
    if (!masterKey) throw new AuditKeyError('rotating the audit key needs the master key');
    const previousRow = await this.#latestRow();
    if (!previousRow) throw new AuditKeyError('there is no audit key yet: the server creates the first at its start');
    if (options.expected !== undefined && previousRow.key_id !== options.expected) return undefined;
    // A key in the token is made before the transaction (the token is slow; the lock is short).
    const made =
      this.#custody?.kind === 'pkcs11'
        ? await this.#newTokenRow(previousRow.origin, this.#custody)
        : this.#newSoftwareRow(masterKey, previousRow.origin);
    // The key being replaced vouches for its successor (handoverBody), before the transaction.
    const previousSigner = await this.#signerOf(masterKey, previousRow);
    const handover = await previousSigner.sign(Buffer.from(handoverBody(previousRow.origin, previousRow.key_id, made.key_id), 'utf8'));
    const row = { ...made, handover_from: previousRow.key_id, handover_signature: handover.toString('base64') };
    const rotated = await this.#db.transaction().execute(async (trx) => {
      if (isPostgres(trx)) await sql`lock table audit_keys in exclusive mode`.execute(trx);
      const latest = await trx.selectFrom('audit_keys').select('key_id').orderBy('created_at', 'desc').orderBy('key_id').limit(1).executeTakeFirst();
      if (latest?.key_id !== previousRow.key_id) return false;
      // Strictly newer than every key, so "the newest signs" never ties.
      await trx.insertInto('audit_keys').values({ ...row, created_at: Math.max(row.created_at, previousRow.created_at + 1) }).execute();
      return true;
    });
    if (!rotated) return undefined;
    this.#signing = undefined;
    return { previous: toPublic(previousRow), current: toPublic(row) };
  }

  /** Every audit key, oldest first, with when it was made and where its private part is kept. */
  async list(): Promise<{ keyId: string; origin: string; createdAt: number; custody: 'software' | 'pkcs11' }[]> {
    const rows = await this.#db.selectFrom('audit_keys').select(['key_id', 'origin', 'created_at', 'key_ref']).orderBy('created_at').orderBy('key_id').execute();
    return rows.map((row) => ({ keyId: row.key_id, origin: row.origin, createdAt: Number(row.created_at), custody: row.key_ref ? 'pkcs11' : 'software' }));
  }

  #newSoftwareRow(masterKey: Buffer, origin: string): Database['audit_keys'] {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const keyId = auditKeyFingerprint(publicKey);
    return {
      key_id: keyId,
      origin,
      public_key: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
      private_key: seal(masterKey, privateKey.export({ format: 'der', type: 'pkcs8' }), `audit_keys:${keyId}`),
      master_key_id: sealingKeyId(masterKey),
      key_ref: null,
      created_at: this.#clock.now(),
      handover_from: null,
      handover_signature: null,
    };
  }

  async #newTokenRow(origin: string, custody: AuditKeyCustody): Promise<Database['audit_keys']> {
    const key = await custody.custodies.of('pkcs11').generate(`clearance-audit-${this.#clock.now()}`, 'Ed25519');
    const keyId = auditKeyFingerprint(key.publicKey);
    return { key_id: keyId, origin, public_key: key.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), private_key: '', master_key_id: '', key_ref: key.ref, created_at: this.#clock.now(), handover_from: null, handover_signature: null };
  }

  async #signerOf(masterKey: Buffer, row: Database['audit_keys']): Promise<CustodyKey> {
    return row.key_ref ? this.#tokenKey(row) : softwareKey(`audit:${row.key_id}`, 'Ed25519', openPrivate(masterKey, row));
  }

  /** The first audit key, generated in the PKCS#11 token; the row keeps its public key and reference only. */
  async #createInToken(origin: string, custody: AuditKeyCustody): Promise<void> {
    const row = await this.#newTokenRow(origin, custody);
    await this.#db.transaction().execute(async (trx) => {
      if (isPostgres(trx)) await sql`lock table audit_keys in exclusive mode`.execute(trx);
      // Another process made the first key meanwhile: the token's new key is left unused.
      if (await trx.selectFrom('audit_keys').select('key_id').limit(1).executeTakeFirst()) return;
      await trx.insertInto('audit_keys').values(row).execute();
    });
  }

  async #tokenKey(row: Database['audit_keys']): Promise<CustodyKey> {
    if (!this.#custody) throw new AuditKeyError(`audit key ${row.key_id} is in a PKCS#11 token, and none is configured (CLEARANCE_PKCS11_*)`);
    const key = await this.#custody.custodies.load(row.key_ref!);
    if (auditKeyFingerprint(key.publicKey) !== row.key_id) throw new AuditKeyError(`the token's key ${row.key_ref} is not audit key ${row.key_id}`);
    return key;
  }

  /** Every audit public key by key id (verification needs no master key). */
  async publicKeys(): Promise<Map<string, AuditPublicKey>> {
    const rows = await this.#db.selectFrom('audit_keys').selectAll().orderBy('created_at').execute();
    return new Map(rows.map((row) => [row.key_id, toPublic(row)]));
  }

  /** The newest public key, or undefined before the first checkpoint. */
  async currentPublicKey(): Promise<AuditPublicKey | undefined> {
    const row = await this.#latestRow();
    return row && toPublic(row);
  }

  /**
   * Problems with the stored keys that only their custody reveals: a public key swapped for
   * another, or one inserted. A software key's sealed private part cannot be forged without the
   * master key, and must match its public key; a key said to be in a PKCS#11 token must be there,
   * with that public key — one the token does not hold (or a token this process is not configured
   * for) is a problem too, else a key row an attacker inserted with any `key_ref` would vouch for
   * checkpoints it re-signed. Empty when every key checks out, or when no master key is configured.
   */
  async checkStoredKeys(): Promise<string[]> {
    if (!this.#masterKey) return [];
    const problems: string[] = [];
    for (const row of await this.#db.selectFrom('audit_keys').selectAll().execute()) {
      if (row.key_ref) {
        try {
          await this.#tokenKey(row);
          if (auditKeyFingerprint(toPublic(row).publicKey) !== row.key_id) problems.push(`audit key ${row.key_id} is not the public key stored with it`);
        } catch (error) {
          problems.push(`audit key ${row.key_id} (${row.key_ref}): ${(error as Error).message}`);
        }
        continue;
      }
      try {
        const derived = createPublicKey(openPrivate(this.#masterKey, row));
        if (auditKeyFingerprint(derived) !== row.key_id || auditKeyFingerprint(toPublic(row).publicKey) !== row.key_id) {
          problems.push(`audit key ${row.key_id} does not match its sealed private key`);
        }
      } catch (error) {
        problems.push(`audit key ${row.key_id}: ${(error as Error).message}`);
      }
    }
    return problems;
  }

  async #latestRow(): Promise<Database['audit_keys'] | undefined> {
    return this.#db.selectFrom('audit_keys').selectAll().orderBy('created_at', 'desc').orderBy('key_id').limit(1).executeTakeFirst();
  }
}

function toPublic(row: Database['audit_keys']): AuditPublicKey {
  const publicKey = createPublicKey({ key: Buffer.from(row.public_key, 'base64'), format: 'der', type: 'spki' });
  const handover = row.handover_from && row.handover_signature ? { handover: { from: row.handover_from, signature: row.handover_signature } } : {};
  return { keyId: row.key_id, origin: row.origin, publicKey, ...handover };
}

function openPrivate(masterKey: Buffer, row: Database['audit_keys']): KeyObject {
  if (!opensKeyId(masterKey, row.master_key_id)) {
    throw new AuditKeyError(
      `audit key ${row.key_id} was sealed with master key ${row.master_key_id}, not the configured ${masterKeyId(masterKey)}`,
    );
  }
  const der = open(masterKey, row.private_key, `audit_keys:${row.key_id}`);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}
