import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { ResourceServer } from './definition.ts';

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

/** Resource servers by identifier, cached in memory and reloaded when any process changes them. */
export class ResourceServerStore {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #cache: GenerationCache<Map<string, ResourceServer>>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#cache = new GenerationCache(db, 'resource_servers', () => this.#loadAll(), clock);
  }

  async get(identifier: string): Promise<ResourceServer | undefined> {
    return (await this.#cache.get()).get(identifier);
  }

  async list(): Promise<ResourceServer[]> {
    return [...(await this.#cache.get()).values()];
  }

  /** Creates or updates, inside the caller's transaction; 'unchanged' when the stored one is identical. */
  async upsert(trx: Transaction<Database>, server: ResourceServer): Promise<UpsertOutcome> {
    const definition = JSON.stringify(server);
    const existing = await trx
      .selectFrom('resource_servers')
      .select('definition')
      .where('identifier', '=', server.identifier)
      .executeTakeFirst();
    if (existing?.definition === definition) return 'unchanged';
    const now = this.#clock.now();
    if (existing) {
      await trx
        .updateTable('resource_servers')
        .set({ definition, updated_at: now })
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

  invalidate(): void {
    this.#cache.invalidate();
  }

  async #loadAll(): Promise<Map<string, ResourceServer>> {
    const rows = await this.#db.selectFrom('resource_servers').select(['identifier', 'definition']).execute();
    return new Map(rows.map((row) => [row.identifier, JSON.parse(row.definition) as ResourceServer]));
  }
}
