import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import { usesSecret, type ClientMetadata } from './metadata.ts';
import { generateClientSecret, hashClientSecret } from './secret.ts';

export interface Client {
  metadata: ClientMetadata;
  /** Digest of the client secret, for client_secret_* methods. */
  secretHash: string | null;
}

export interface ClientUpsert {
  outcome: 'created' | 'updated' | 'unchanged';
  /** A newly generated secret, present only when one was made now; show it once. */
  secret?: string;
}

/** The client registry, cached in memory and reloaded when any process changes it. */
export class ClientStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Map<string, Client>>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
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
   * existing secret is kept.
   */
  async upsert(trx: Transaction<Database>, metadata: ClientMetadata): Promise<ClientUpsert> {
    const text = JSON.stringify(metadata);
    const existing = await trx
      .selectFrom('clients')
      .select(['metadata', 'secret_hash'])
      .where('client_id', '=', metadata.client_id)
      .executeTakeFirst();
    const needsSecret = usesSecret(metadata.token_endpoint_auth_method);
    const secret = needsSecret && !existing?.secret_hash ? generateClientSecret() : undefined;
    const secretHash = needsSecret ? (secret ? hashClientSecret(secret) : existing!.secret_hash) : null;
    if (existing && existing.metadata === text && existing.secret_hash === secretHash) return { outcome: 'unchanged' };
    const now = this.#clock.now();
    if (existing) {
      await trx
        .updateTable('clients')
        .set({ metadata: text, secret_hash: secretHash, updated_at: now })
        .where('client_id', '=', metadata.client_id)
        .execute();
    } else {
      await trx
        .insertInto('clients')
        .values({ client_id: metadata.client_id, metadata: text, secret_hash: secretHash, created_at: now, updated_at: now })
        .execute();
    }
    await bumpGeneration(trx, 'clients');
    return { outcome: existing ? 'updated' : 'created', ...(secret ? { secret } : {}) };
  }

  /** Deletes a client inside the caller's transaction; false when there was none. */
  async remove(trx: Transaction<Database>, clientId: string): Promise<boolean> {
    const deleted = await trx.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
    if (Number(deleted.numDeletedRows) === 0) return false;
    await bumpGeneration(trx, 'clients');
    return true;
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadAll(): Promise<Map<string, Client>> {
    const rows = await this.#db.selectFrom('clients').select(['client_id', 'metadata', 'secret_hash']).execute();
    return new Map(
      rows.map((row) => [row.client_id, { metadata: JSON.parse(row.metadata) as ClientMetadata, secretHash: row.secret_hash }]),
    );
  }
}
