import type { Kysely } from 'kysely';

/**
 * An index on `refresh_tokens (client_id, state)`: revoking a client's refresh tokens
 * (src/clients/store.ts `revokeRefreshTokens`: a legal entity's KYC freeze, a risk suspension,
 * apply's prune of a disabled client) updates `where client_id = ? and state in (...)`, and the
 * table had no index leading with `client_id` (its others lead with grant_id, family_id, parent_id,
 * expires_at), so each revocation read the whole table, inside the transaction that holds the
 * freeze's or the prune's locks. `state` second: a client's revoked and expired rows, kept until
 * pruned, are skipped by the index rather than read. Built in a plain transaction like every
 * migration: on a large table, plan the upgrade for the build (docs/deployment.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('refresh_tokens_client_id_state').on('refresh_tokens').columns(['client_id', 'state']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('refresh_tokens_client_id_state').execute();
}
