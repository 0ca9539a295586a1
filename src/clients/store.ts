import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import { usesSecret, type ClientMetadata } from './metadata.ts';
import { generateClientSecret, hashClientSecret } from './secret.ts';
import { cutOffAt } from '../storage/cut-off.ts';

export interface Client {
  metadata: ClientMetadata;
  /** Digest of the client secret, for client_secret_* methods. */
  secretHash: string | null;
  /** When apply's prune disabled it (src/lifecycle/prune.ts); null while in service. A disabled client cannot authenticate. */
  disabledAt: number | null;
  /** Its tokens issued at or before this instant (epoch ms) are dead (src/tokens/liveness.ts). */
  tokensValidAfter: number | null;
  /** When the secret expires (epoch ms); absent: it never does. RFC 7591 §3.2.1. */
  secretExpiresAt?: number;
  /** During a rotation's rollover window: the secret it replaced, accepted until `validUntil`. */
  previousSecret?: { hash: string; validUntil: number };
}

export interface ClientUpsert {
  outcome: 'created' | 'updated' | 'unchanged';
  /** A newly generated secret, present only when one was made now; show it once. */
  secret?: string;
}

/** What a rotation made (`ClientStore.rotateSecret`). */
export interface SecretRotation {
  /** The new secret: show it once, it is not kept. */
  secret: string;
  createdAt: number;
  /** When the new secret expires (epoch ms); null: never. */
  expiresAt: number | null;
  /** Until when the replaced secret is still accepted (epoch ms); null: it stopped at once. */
  previousValidUntil: number | null;
}

/** A client's secret as operators see it: dates only, never the digest. */
export interface SecretRecord {
  createdAt: number | null;
  expiresAt: number | null;
  previousValidUntil: number | null;
}

export interface ClientStoreOptions {
  /**
   * How long a new secret of this client lives, in ms (undefined: forever): the profile's maximum
   * secret age (src/clients/credentials.ts `secretMaxAge`). Applied when a secret is made.
   */
  secretMaxAgeMs?: (metadata: ClientMetadata) => number | undefined;
}

/**
 * The client registry, cached in memory and reloaded when any process changes it.
 *
 * One lock order for every writer (below, and `endClientTokens`): the `clients` generation first
 * (its row, locked on PostgreSQL until commit), then the client's row, so the generation
 * serialises the writers and none waits for another's row. Bumped after the row, a writer of
 * several clients (apply; a legal entity's KYC freeze, src/risk/kyc/changes.ts `endFrozenTokens`)
 * held the generation after its first client and waited for the row of one another writer (a
 * secret rotation, a risk suspension, an apply) had just written, which waited for the generation:
 * PostgreSQL aborted one of the two (40P01). A write that then finds no row to change has bumped
 * it all the same: a reload, on a rare event.
 */
export class ClientStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Map<string, Client>>;
  readonly #maxAge: (metadata: ClientMetadata) => number | undefined;

  constructor(db: Kysely<Database>, clock: Clock, options: ClientStoreOptions = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#maxAge = options.secretMaxAgeMs ?? (() => undefined);
    this.#cache = new GenerationCache(db, 'clients', () => this.#loadAll(), clock);
  }

  async get(clientId: string): Promise<Client | undefined> {
    return (await this.#cache.get()).get(clientId);
  }

  async list(): Promise<Client[]> {
    return [...(await this.#cache.get()).values()];
  }

  /**
   * Creates or updates a client inside the caller's transaction. A secret is generated when the
   * client needs one and has none (new client, or a change to a client_secret_* method); an
   * existing secret is kept. A new secret expires after the profile's maximum age.
   */
  async upsert(trx: Transaction<Database>, metadata: ClientMetadata): Promise<ClientUpsert> {
    const text = JSON.stringify(metadata);
    const existing = await trx
      .selectFrom('clients')
      .select(['metadata', 'secret_hash', 'disabled_at'])
      .where('client_id', '=', metadata.client_id)
      .executeTakeFirst();
    const needsSecret = usesSecret(metadata.token_endpoint_auth_method);
    const secret = needsSecret && !existing?.secret_hash ? generateClientSecret() : undefined;
    const secretHash = needsSecret ? (secret ? hashClientSecret(secret) : existing!.secret_hash) : null;
    // A disabled client declared again is back in service (its older tokens stay dead).
    if (existing && existing.metadata === text && existing.secret_hash === secretHash && existing.disabled_at === null) return { outcome: 'unchanged' };
    const now = this.#clock.now();
    // A new secret is dated; a dropped one takes its dates and any rollover with it.
    const dates = secret
      ? { secret_created_at: now, secret_expires_at: this.#expiry(metadata, now), previous_secret_hash: null, previous_secret_valid_until: null }
      : secretHash === null
        ? { secret_created_at: null, secret_expires_at: null, previous_secret_hash: null, previous_secret_valid_until: null }
        : {};
    await bumpGeneration(trx, 'clients'); // before the row: the one lock order (ClientStore)
    if (existing) {
      await trx
        .updateTable('clients')
        .set({ metadata: text, secret_hash: secretHash, disabled_at: null, updated_at: now, ...dates })
        .where('client_id', '=', metadata.client_id)
        .execute();
    } else {
      await trx
        .insertInto('clients')
        .values({ client_id: metadata.client_id, metadata: text, secret_hash: secretHash, created_at: now, updated_at: now, disabled_at: null, tokens_valid_after: null, ...dates })
        .execute();
    }
    return { outcome: existing ? 'updated' : 'created', ...(secret ? { secret } : {}) };
  }

  /**
   * Replaces the secret of a client_secret_* client inside the caller's transaction: the new one
   * is valid at once (for the profile's maximum age), the one it replaces for `overlapMs` more
   * (never beyond its own expiry), so the client's instances can change over one by one. A
   * rotation during another one's window ends that window: only two secrets are ever valid.
   * Undefined when there is no such client, or it has no secret (another method).
   */
  async rotateSecret(trx: Transaction<Database>, clientId: string, overlapMs: number): Promise<SecretRotation | undefined> {
    const row = await trx
      .selectFrom('clients')
      .select(['metadata', 'secret_hash', 'secret_expires_at'])
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    if (!row?.secret_hash) return undefined;
    const metadata = JSON.parse(row.metadata) as ClientMetadata;
    if (!usesSecret(metadata.token_endpoint_auth_method)) return undefined;
    const now = this.#clock.now();
    const secret = generateClientSecret();
    const oldExpiry = row.secret_expires_at === null || row.secret_expires_at === undefined ? Infinity : Number(row.secret_expires_at);
    const until = Math.min(now + overlapMs, oldExpiry);
    const previousValidUntil = overlapMs > 0 && until > now ? until : null;
    const expiresAt = this.#expiry(metadata, now);
    await bumpGeneration(trx, 'clients'); // before the row: the one lock order (ClientStore)
    await trx
      .updateTable('clients')
      .set({
        secret_hash: hashClientSecret(secret),
        secret_created_at: now,
        secret_expires_at: expiresAt,
        previous_secret_hash: previousValidUntil === null ? null : row.secret_hash,
        previous_secret_valid_until: previousValidUntil,
        updated_at: now,
      })
      .where('client_id', '=', clientId)
      .execute();
    return { secret, createdAt: now, expiresAt, previousValidUntil };
  }

  /** The dates of a client's secret (admin views); undefined for an unknown client. */
  async secretRecord(clientId: string): Promise<SecretRecord | undefined> {
    const row = await this.#db
      .selectFrom('clients')
      .select(['secret_hash', 'secret_created_at', 'secret_expires_at', 'previous_secret_valid_until'])
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    if (!row) return undefined;
    const n = (value: number | null | undefined) => (value === null || value === undefined ? null : Number(value));
    const previous = n(row.previous_secret_valid_until);
    return {
      createdAt: n(row.secret_created_at),
      expiresAt: n(row.secret_expires_at),
      previousValidUntil: previous !== null && previous > this.#clock.now() ? previous : null,
    };
  }

  /**
   * Disables a client inside the caller's transaction (apply's prune): it cannot authenticate any
   * more, and every token issued to it so far is dead (the cut-off). False when there is no such
   * client or it is already disabled.
   */
  async disable(trx: Transaction<Database>, clientId: string, now: number): Promise<boolean> {
    await bumpGeneration(trx, 'clients'); // before the row: the one lock order (ClientStore)
    const updated = await trx
      .updateTable('clients')
      .set({ disabled_at: now, tokens_valid_after: cutOffAt(now), updated_at: now })
      .where('client_id', '=', clientId)
      .where('disabled_at', 'is', null)
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) > 0;
  }

  /**
   * Ends every token issued to a client so far, inside the caller's transaction, and leaves it in
   * service (a risk suspension: src/risk/anomalies/store.ts `suspendIn`): `endClientTokens`, which
   * a legal entity's KYC freeze calls for each client it owns (src/risk/kyc/changes.ts). How many
   * refresh tokens it revoked; undefined when there is no such client.
   */
  async endTokens(trx: Transaction<Database>, clientId: string, now: number): Promise<{ refreshTokensRevoked: number } | undefined> {
    return endClientTokens(trx, clientId, now);
  }

  /** Deletes a client inside the caller's transaction; false when there was none. */
  async remove(trx: Transaction<Database>, clientId: string): Promise<boolean> {
    await bumpGeneration(trx, 'clients'); // before the row: the one lock order (ClientStore)
    const deleted = await trx.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
    if (Number(deleted.numDeletedRows) === 0) return false;
    await trx.deleteFrom('client_credential_warnings').where('client_id', '=', clientId).execute();
    return true;
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  #expiry(metadata: ClientMetadata, now: number): number | null {
    const maxAge = this.#maxAge(metadata);
    return maxAge === undefined ? null : now + maxAge;
  }

  async #loadAll(): Promise<Map<string, Client>> {
    const rows = await this.#db
      .selectFrom('clients')
      .select(['client_id', 'metadata', 'secret_hash', 'disabled_at', 'tokens_valid_after', 'secret_expires_at', 'previous_secret_hash', 'previous_secret_valid_until'])
      .execute();
    return new Map(
      rows.map((row) => {
        const client: Client = {
          metadata: JSON.parse(row.metadata) as ClientMetadata,
          secretHash: row.secret_hash,
          disabledAt: row.disabled_at === null ? null : Number(row.disabled_at),
          tokensValidAfter: row.tokens_valid_after === null ? null : Number(row.tokens_valid_after),
        };
        if (row.secret_hash && row.secret_expires_at !== null && row.secret_expires_at !== undefined) client.secretExpiresAt = Number(row.secret_expires_at);
        if (row.secret_hash && row.previous_secret_hash && row.previous_secret_valid_until !== null && row.previous_secret_valid_until !== undefined) {
          client.previousSecret = { hash: row.previous_secret_hash, validUntil: Number(row.previous_secret_valid_until) };
        }
        return [row.client_id, client];
      }),
    );
  }
}

/**
 * Ends every token issued to a client so far, inside the caller's transaction, and leaves it in
 * service (`ClientStore.endTokens`; a legal entity's KYC freeze, for each client it owns, whose
 * writers have no registry at hand): its cut-off moves to `now`, as `disable` moves it, so its
 * access tokens are dead (src/tokens/liveness.ts reads the cut-off from the registry: no statement
 * on the token path; this node's registry sees it at once once the caller invalidates it, every
 * other node's within a second) and stay dead whatever happens to the client later; and its
 * refresh tokens are revoked (`revokeClientRefreshTokens`). How many refresh tokens it revoked;
 * undefined when there is no such client.
 */
export async function endClientTokens(trx: Transaction<Database>, clientId: string, now: number): Promise<{ refreshTokensRevoked: number } | undefined> {
  await bumpGeneration(trx, 'clients'); // before the row: the one lock order (ClientStore)
  const updated = await trx.updateTable('clients').set({ tokens_valid_after: cutOffAt(now) }).where('client_id', '=', clientId).executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) return undefined;
  return { refreshTokensRevoked: await revokeClientRefreshTokens(trx, clientId) };
}

/**
 * Revokes every refresh token issued to a client, inside the caller's transaction
 * (`endClientTokens`; apply's prune of a disabled client, src/lifecycle/prune.ts): RFC 9700
 * §4.14.2. Used and replaced tokens of its families too, so presenting one later is "revoked", not
 * a reuse. Found through the index on (client_id, state) (migration 0069). How many it revoked.
 */
export async function revokeClientRefreshTokens(trx: Transaction<Database>, clientId: string): Promise<number> {
  const revoked = await trx
    .updateTable('refresh_tokens')
    .set({ state: 'revoked' })
    .where('client_id', '=', clientId)
    .where('state', 'in', ['active', 'rotated', 'superseded'])
    .executeTakeFirst();
  return Number(revoked.numUpdatedRows);
}

/**
 * The clients in service that legal entity `lei` owns (`owner_lei`), by client_id, read in the
 * caller's transaction: the firm's KYC freeze ends their tokens (src/risk/kyc/changes.ts). A
 * disabled client's tokens ended when it was disabled.
 */
export async function clientsOwnedBy(trx: Transaction<Database>, lei: string): Promise<string[]> {
  // The metadata is JSON text on both dialects: parsed as the registry parses it (`#loadAll`), on a rare event.
  const rows = await trx.selectFrom('clients').select(['client_id', 'metadata']).where('disabled_at', 'is', null).orderBy('client_id').execute();
  return rows.filter((row) => (JSON.parse(row.metadata) as ClientMetadata).owner_lei === lei).map((row) => row.client_id);
}
