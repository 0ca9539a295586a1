import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { ResourceServer } from './definition.ts';
import { cutOffAt } from '../storage/cut-off.ts';

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

/** A stored resource server with its service state (apply's prune disables, never deletes). */
export interface StoredResourceServer {
  server: ResourceServer;
  /** When prune disabled it; null while in service. A disabled resource server is no audience. */
  disabledAt: number | null;
  /** Tokens for it issued at or before this instant (epoch ms) are dead (src/tokens/liveness.ts). */
  tokensValidAfter: number | null;
}

/** Resource servers by identifier, cached in memory and reloaded when any process changes them. */
export class ResourceServerStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Map<string, StoredResourceServer>>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#cache = new GenerationCache(db, 'resource_servers', () => this.#loadAll(), clock);
  }

  /** The resource server in service with this identifier (a disabled one is no audience). */
  async get(identifier: string): Promise<ResourceServer | undefined> {
    const stored = (await this.#cache.get()).get(identifier);
    return stored && stored.disabledAt === null ? stored.server : undefined;
  }

  /** The resource servers in service. */
  async list(): Promise<ResourceServer[]> {
    return [...(await this.#cache.get()).values()].flatMap((s) => (s.disabledAt === null ? [s.server] : []));
  }

  /** Every stored resource server, disabled ones included (apply's plan, the admin API, token liveness). */
  async listStored(): Promise<StoredResourceServer[]> {
    return [...(await this.#cache.get()).values()];
  }

  /** One stored resource server, disabled or not. */
  async getStored(identifier: string): Promise<StoredResourceServer | undefined> {
    return (await this.#cache.get()).get(identifier);
  }

  /** Creates or updates, inside the caller's transaction; 'unchanged' when the stored one is identical. */
  async upsert(trx: Transaction<Database>, server: ResourceServer): Promise<UpsertOutcome> {
    const definition = JSON.stringify(server);
    const existing = await trx
      .selectFrom('resource_servers')
      .select(['definition', 'disabled_at'])
      .where('identifier', '=', server.identifier)
      .executeTakeFirst();
    // A disabled resource server declared again is back in service (its older tokens stay dead).
    if (existing?.definition === definition && existing.disabled_at === null) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx
        .updateTable('resource_servers')
        .set({ definition, disabled_at: null, updated_at: now })
        .where('identifier', '=', server.identifier)
        .execute();
    } else {
      await trx
        .insertInto('resource_servers')
        .values({ identifier: server.identifier, definition, created_at: now, updated_at: now })
        .execute();
    }
    await bumpGeneration(trx, 'resource_servers');
    return existing ? 'updated' : 'created';
  }

  /**
   * Disables a resource server inside the caller's transaction (apply's prune): no token is issued
   * for it any more, and every token issued for it so far is dead (the cut-off). False when there is
   * no such resource server or it is already disabled.
   */
  async disable(trx: Transaction<Database>, identifier: string, now: number): Promise<boolean> {
    const updated = await trx
      .updateTable('resource_servers')
      .set({ disabled_at: now, tokens_valid_after: cutOffAt(now), updated_at: now })
      .where('identifier', '=', identifier)
      .where('disabled_at', 'is', null)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) return false;
    await bumpGeneration(trx, 'resource_servers');
    return true;
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadAll(): Promise<Map<string, StoredResourceServer>> {
    const rows = await this.#db.selectFrom('resource_servers').select(['identifier', 'definition', 'disabled_at', 'tokens_valid_after']).execute();
    return new Map(
      rows.map((row) => [
        row.identifier,
        {
          server: JSON.parse(row.definition) as ResourceServer,
          disabledAt: row.disabled_at === null ? null : Number(row.disabled_at),
          tokensValidAfter: row.tokens_valid_after === null ? null : Number(row.tokens_valid_after),
        },
      ]),
    );
  }
}
