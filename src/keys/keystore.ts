import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Logger } from 'pino';
import { maxTokenLifetimeSeconds, type SigningAlg } from '../config.ts';
import type { Clock } from '../clock.ts';
import type { AuditLog } from '../audit/events.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import { open, seal } from './sealed-box.ts';
import { masterKeyId, masterKeyUnavailable, MasterKeyUnavailableError, opensKeyId, sealingKeyId } from './keyring.ts';
import { signCompact } from './jws.ts';

export type KeyState = 'next' | 'active' | 'superseded' | 'retirable' | 'retired' | 'compromised';

export interface KeyInfo {
  kid: string;
  alg: SigningAlg;
  state: KeyState;
  createdAt: number;
  activatesAt: number;
  /** When a newer key took over signing (ms), for superseded keys. */
  supersededAt?: number;
  /** Earliest time the key may be retired (ms): every token it signed has expired by then. */
  retirableAt?: number;
  retiredAt?: number;
  /** When it was revoked as compromised (ms): retired at that instant, never to return (src/keys/compromise.ts). */
  compromisedAt?: number;
}

export class KeyError extends Error {
  override name = 'KeyError';
}

interface LoadedKey {
  kid: string;
  alg: SigningAlg;
  publicJwk: JWK;
  /**
   * Undefined for a key whose sealed private part does not open here (`#loadAll`): it still counts
   * for every key's state (so this node never signs with another key in its place), but it is
   * neither published, nor used to verify, nor to sign.
   */
  opened: { privateKey: KeyObject; publicKey: KeyObject } | undefined;
  /** Why it did not open (key ids, no secret). */
  unopened?: string;
  createdAt: number;
  activatesAt: number;
  retiredAt: number | null;
  compromisedAt: number | null;
}

/** What a key's state is worked out from (`keyInfos`). */
export type KeyFacts = Pick<LoadedKey, 'kid' | 'alg' | 'createdAt' | 'activatesAt' | 'retiredAt' | 'compromisedAt'>;

/**
 * A `signing_keys` row's facts, read alike by the store's cache (`#loadAll`) and by a compromised
 * key's revocation in its transaction (src/keys/compromise.ts), so both work out the same states.
 * Instants as numbers whatever the driver hands back for a bigint column.
 */
export function keyFactsOf(row: Pick<Selectable<Database['signing_keys']>, 'kid' | 'alg' | 'created_at' | 'activates_at' | 'retired_at' | 'compromised_at'>): KeyFacts {
  return {
    kid: row.kid,
    alg: row.alg as SigningAlg,
    createdAt: Number(row.created_at),
    activatesAt: Number(row.activates_at),
    retiredAt: row.retired_at === null ? null : Number(row.retired_at),
    compromisedAt: row.compromised_at === null ? null : Number(row.compromised_at),
  };
}

/**
 * The state of every key at `now` (ms), in the given order: the newest activated unretired key
 * signs; one not yet activated is next; an older one is superseded until every token it signed has
 * expired, then retirable; a retired one is retired, or compromised when it was revoked as such.
 */
export function keyInfos(keys: readonly KeyFacts[], now: number): KeyInfo[] {
  const signing = signingKeyAt(keys, now);
  return keys.map((key) => {
    const base = { kid: key.kid, alg: key.alg, createdAt: key.createdAt, activatesAt: key.activatesAt };
    if (key.compromisedAt !== null) return { ...base, state: 'compromised', retiredAt: key.retiredAt ?? key.compromisedAt, compromisedAt: key.compromisedAt };
    if (key.retiredAt !== null) return { ...base, state: 'retired', retiredAt: key.retiredAt };
    if (key === signing) return { ...base, state: 'active' };
    if (key.activatesAt > now) return { ...base, state: 'next' };
    const supersededAt = Math.min(
      ...keys.filter((k) => k.activatesAt > key.activatesAt && k.activatesAt <= now).map((k) => k.activatesAt),
    );
    const retirableAt = supersededAt + maxTokenLifetimeSeconds * 1000 + retirementMarginMs;
    return { ...base, state: now >= retirableAt ? 'retirable' : 'superseded', supersededAt, retirableAt };
  });
}

/** The key that signs at `now`: the newest activated one not retired. */
function signingKeyAt<K extends Pick<LoadedKey, 'retiredAt' | 'activatesAt'>>(keys: readonly K[], now: number): K | undefined {
  let best: K | undefined;
  for (const key of keys) {
    if (key.retiredAt !== null || key.activatesAt > now) continue;
    if (!best || key.activatesAt > best.activatesAt) best = key;
  }
  return best;
}

/** Clock skew allowed to verifiers when deciding a key can no longer be needed. */
const retirementMarginMs = 60_000;

/**
 * How long after a rotation the new key may sign, at the least: longer than the slowest way a
 * node learns of the new key — its change notice lost and the listener's ping not yet missed
 * (7 s, src/storage/notices.ts), then its next one-second poll — so no node signs with a key
 * that another node's JWKS does not yet publish.
 */
export const publishMarginMs = 10_000;

/**
 * Signing keys: creation, rotation with overlap, retirement, JWKS, and signing.
 * Private keys are sealed with the master key in the database and opened only in memory.
 */
export class KeyStore {
  readonly #db: Kysely<Database>;
  readonly #masterKey: Buffer;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<LoadedKey[]>;
  readonly #audit: AuditLog | undefined;
  readonly #log: Logger | undefined;

  /** `audit` receives key.created, key.rotated and key.retired events; `log`, the keys that do not open here. */
  constructor(db: Kysely<Database>, masterKey: Buffer, clock: Clock, audit?: AuditLog, options: { log?: Logger } = {}) {
    this.#db = db;
    this.#masterKey = masterKey;
    this.#clock = clock;
    this.#audit = audit;
    this.#log = options.log;
    this.#cache = new GenerationCache(db, 'keys', () => this.#loadAll(), clock);
  }

  /** Creates a signing key active at once if none is published yet (first start). */
  async ensureSigningKey(alg: SigningAlg): Promise<void> {
    const keys = await this.#cache.get();
    if (keys.some((k) => k.retiredAt === null)) return;
    const activatesAt = this.#clock.now();
    const kid = await this.#create(alg, activatesAt);
    await this.#audit?.record({ type: 'key.created', subject: kid, details: { kid, alg, activatesAt } });
  }

  /**
   * Publishes a new key now and makes it the signing key after `overlapSeconds`, so every
   * verifier's JWKS cache has it before the first token it signs — and never sooner than
   * `publishMarginMs`, so every node publishes it before any node signs with it. `auditDetails`
   * are added to the `key.rotated` event (the key schedule's `scheduled` and `node`).
   */
  async rotate(alg: SigningAlg, overlapSeconds: number, auditDetails: Record<string, unknown> = {}): Promise<KeyInfo> {
    // Strictly after every existing key, so "the newest activated key signs" never ties.
    const latest = Math.max(-Infinity, ...(await this.#cache.get()).map((k) => k.activatesAt));
    const activatesAt = Math.max(this.#clock.now() + Math.max(overlapSeconds * 1000, publishMarginMs), latest + 1);
    const kid = await this.#create(alg, activatesAt);
    await this.#audit?.record({ type: 'key.rotated', subject: kid, details: { kid, alg, activatesAt, overlapSeconds, ...auditDetails } });
    const info = (await this.list()).find((k) => k.kid === kid);
    if (!info) throw new KeyError('the new key was not stored');
    return info;
  }

  /**
   * Removes a key from JWKS. Refused while it signs, is yet to sign, or could still verify an
   * unexpired token (the longest token lifetime after it stopped signing). `auditDetails` are
   * added to the `key.retired` event.
   */
  async retire(kid: string, auditDetails: Record<string, unknown> = {}): Promise<KeyInfo> {
    const info = (await this.list()).find((k) => k.kid === kid);
    if (!info) throw new KeyError(`no key with kid "${kid}"`);
    if (info.state === 'retired') throw new KeyError(`key "${kid}" is already retired`);
    if (info.state === 'compromised') throw new KeyError(`key "${kid}" was revoked as compromised: it is out of the JWKS for good`);
    if (info.state !== 'retirable') {
      const why =
        info.state === 'superseded'
          ? `tokens it signed may be valid until ${new Date(info.retirableAt!).toISOString()}`
          : `it is the ${info.state === 'active' ? 'current' : 'next'} signing key`;
      throw new KeyError(`key "${kid}" cannot be retired yet: ${why}`);
    }
    await this.#db.transaction().execute(async (trx) => {
      await trx.updateTable('signing_keys').set({ retired_at: this.#clock.now() }).where('kid', '=', kid).execute();
      await bumpGeneration(trx, 'keys');
    });
    this.#cache.invalidate();
    await this.#audit?.record({ type: 'key.retired', subject: kid, details: { kid, alg: info.alg, ...auditDetails } });
    return { ...info, state: 'retired', retiredAt: this.#clock.now() };
  }

  /** Every key with its state, oldest first. */
  async list(): Promise<KeyInfo[]> {
    return keyInfos(await this.#cache.get(), this.#clock.now());
  }

  /** The JWK Set (RFC 7517 §5) of every published key: public members only. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const keys = (await this.#cache.get()).filter((k) => k.retiredAt === null);
    this.#failClosed(keys);
    return { keys: keys.filter((k) => k.opened).map((k) => k.publicJwk) };
  }

  /**
   * The public JWKs of every key published at some time in [from, to] (ms), retired ones
   * included: what a verifier could have used then (audit evidence bundles carry it).
   */
  async jwksInForce(from: number, to: number): Promise<{ keys: JWK[] }> {
    const keys = (await this.#cache.get()).filter((k) => k.createdAt <= to && (k.retiredAt === null || k.retiredAt >= from));
    this.#failClosed(keys);
    return { keys: keys.filter((k) => k.opened).map((k) => k.publicJwk) };
  }

  /** Signs a JWT with the current signing key; `typ` and other header fields come from the caller. */
  async signJwt(header: { typ: string } & Record<string, unknown>, payload: Record<string, unknown>): Promise<string> {
    // A node that no longer holds the master key the database seals with takes no new work, even
    // with a signing key it opened before (src/keys/master-key-state.ts): fail closed, 503.
    const moved = masterKeyUnavailable(this.#masterKey);
    if (moved) throw new MasterKeyUnavailableError(moved);
    const key = this.#signingKeyOf(await this.#cache.get());
    if (!key) throw new KeyError('no signing key is active');
    if (!key.opened) {
      // Never another key in its place: fail closed, 503 while the master key is the cause.
      const unavailable = masterKeyUnavailable(this.#masterKey);
      throw unavailable ? new MasterKeyUnavailableError(unavailable) : new KeyError(`the signing key ${key.kid} does not open here: ${key.unopened}`);
    }
    return signCompact(key.alg, key.opened.privateKey, { ...header, kid: key.kid }, payload);
  }

  /**
   * The public key for a `kid` this server published and has not retired, with the one algorithm
   * it signs with (RFC 8725 §3.1: the algorithm comes from the key, never from the token).
   */
  async verificationKey(kid: string): Promise<{ alg: SigningAlg; key: KeyObject } | undefined> {
    const found = (await this.#cache.get()).find((k) => k.kid === kid && k.retiredAt === null);
    if (found) this.#failClosed([found]);
    return found?.opened && { alg: found.alg, key: found.opened.publicKey };
  }

  /**
   * On a node that holds the master key the database seals with no longer (a rewrap began), a key
   * that does not open here is one of this database's: 503 (MasterKeyUnavailableError) rather than
   * a JWKS without it or a valid token called invalid. A row that does not open while the master key
   * is available (damaged, or not this database's) is only skipped.
   */
  #failClosed(keys: LoadedKey[]): void {
    if (keys.every((k) => k.opened)) return;
    const unavailable = masterKeyUnavailable(this.#masterKey);
    if (unavailable) throw new MasterKeyUnavailableError(unavailable);
  }

  /** Whether `kid` names a key revoked as compromised (from the cache: no round trip). */
  async isCompromised(kid: string): Promise<boolean> {
    return (await this.#cache.get()).some((k) => k.kid === kid && k.compromisedAt !== null);
  }

  /** Forgets cached keys so the next call reads the database (after a change by another process). */
  invalidate(): void {
    this.#cache.invalidate();
  }

  #signingKeyOf(keys: LoadedKey[]): LoadedKey | undefined {
    return signingKeyAt(keys, this.#clock.now());
  }

  /**
   * In the caller's transaction (a compromised key's revocation, src/keys/compromise.ts): creates a
   * key that signs from `activatesAt` and bumps the `keys` generation. The caller invalidates this
   * store once the transaction committed.
   */
  async createIn(trx: Transaction<Database>, alg: SigningAlg, activatesAt: number): Promise<string> {
    const { publicKey, privateKey } = generate(alg);
    const jwk = publicKey.export({ format: 'jwk' }) as JWK;
    const kid = await calculateJwkThumbprint(jwk, 'sha256');
    const publicJwk: JWK = { ...jwk, kid, alg, use: 'sig' };
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    await trx
      .insertInto('signing_keys')
      .values({
        kid,
        alg,
        public_jwk: JSON.stringify(publicJwk),
        private_key: seal(this.#masterKey, pkcs8, `signing_keys:${kid}`),
        master_key_id: sealingKeyId(this.#masterKey),
        created_at: this.#clock.now(),
        activates_at: activatesAt,
        retired_at: null,
      })
      .execute();
    await bumpGeneration(trx, 'keys');
    return kid;
  }

  async #create(alg: SigningAlg, activatesAt: number): Promise<string> {
    const kid = await this.#db.transaction().execute((trx) => this.createIn(trx, alg, activatesAt));
    this.#cache.invalidate();
    return kid;
  }

  /**
   * Every key, row by row: one whose private part does not open with the configured master keys (it
   * was sealed by a key this node lacks — a rewrap began after it started — or the row is damaged) is
   * logged and kept without its key material, never failing the whole set: the other keys still
   * verify and sign here. Its public part is not taken from the row alone (a row anyone with write
   * access could have made), so it verifies nothing here.
   */
  async #loadAll(): Promise<LoadedKey[]> {
    const rows = await this.#db.selectFrom('signing_keys').selectAll().orderBy('activates_at').orderBy('kid').execute();
    const ourId = masterKeyId(this.#masterKey);
    return rows.map((row) => {
      const facts = { ...keyFactsOf(row), publicJwk: JSON.parse(row.public_jwk) as JWK };
      try {
        if (!opensKeyId(this.#masterKey, row.master_key_id)) {
          throw new KeyError(`it was sealed with master key ${row.master_key_id}, and the configured master key is ${ourId}`);
        }
        const der = open(this.#masterKey, row.private_key, `signing_keys:${row.kid}`);
        const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
        return { ...facts, opened: { privateKey, publicKey: createPublicKey(privateKey) } };
      } catch (error) {
        const unopened = (error as Error).message;
        this.#log?.error({ kid: row.kid, sealedWith: row.master_key_id, masterKeyId: ourId, problem: unopened }, 'a signing key does not open with the configured master key: skipped (it neither signs nor verifies here)');
        return { ...facts, opened: undefined, unopened };
      }
    });
  }
}

function generate(alg: SigningAlg): { publicKey: KeyObject; privateKey: KeyObject } {
  switch (alg) {
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'EdDSA':
      return generateKeyPairSync('ed25519');
    case 'PS256':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
  }
}

