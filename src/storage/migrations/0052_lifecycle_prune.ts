import type { Kysely } from 'kysely';

/**
 * Apply's prune (issue 23, src/lifecycle/prune.ts, docs/lifecycle.md): a client, resource server or
 * partner that an authoritative document no longer declares is disabled, never deleted — its
 * history and audit events keep naming it.
 * - `disabled_at`: when it was disabled (null: in service). A disabled client cannot authenticate
 *   or start an authorization; a disabled resource server is no audience; a disabled partner's
 *   tokens are refused as from an unknown issuer.
 * - `tokens_valid_after`: the cut-off of the token liveness rule (src/tokens/liveness.ts): a token
 *   issued at or before it (for a partner: exchanged from its tokens, `origin_iss`) is dead, so
 *   declaring the entry again later does not bring tokens issued before it was disabled back.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of ['clients', 'resource_servers']) {
    await db.schema.alterTable(table).addColumn('disabled_at', 'bigint').execute();
    await db.schema.alterTable(table).addColumn('tokens_valid_after', 'bigint').execute();
  }
  await db.schema.alterTable('partners').addColumn('disabled_at', 'bigint').execute();
  await db.schema.alterTable('partners').addColumn('tokens_valid_after', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['clients', 'resource_servers']) {
    await db.schema.alterTable(table).dropColumn('tokens_valid_after').execute();
    await db.schema.alterTable(table).dropColumn('disabled_at').execute();
  }
  await db.schema.alterTable('partners').dropColumn('tokens_valid_after').execute();
  await db.schema.alterTable('partners').dropColumn('disabled_at').execute();
}
