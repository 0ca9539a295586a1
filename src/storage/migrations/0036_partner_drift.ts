import type { Kysely } from 'kysely';

/**
 * Partner drift (src/federation/drift, docs/federation.md "Drift"): one row per partner with the
 * last-known baseline of its live keys and metadata and when to look again.
 * - `status`: `active` or `suspended` (by a drift under `on_drift: suspend`, until an operator
 *   re-approves); read with the partner profiles (src/federation/store.ts), never on its own.
 * - `keys` (JSON: `[{thumbprint, kid, algorithms}]`), `issuer` (the metadata's, null when the
 *   partner publishes none), `metadata_digest`, `profile_digest` (the profile the baseline was
 *   taken under: a profile changed by apply is baselined again), `last_success_at`.
 * - `unreachable_since` / `unreachable_reported_at`: the outage in progress, and whether its
 *   `partner.unreachable` (once past the grace) was raised.
 * - `next_check_at` and `version`: a node claims a due check with one conditional update (the
 *   version it read), so several nodes never check one partner twice.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('partner_baselines')
    .addColumn('partner_id', 'text', (c) => c.primaryKey())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('keys', 'text')
    .addColumn('issuer', 'text')
    .addColumn('metadata_digest', 'text')
    .addColumn('profile_digest', 'text')
    .addColumn('last_success_at', 'bigint')
    .addColumn('unreachable_since', 'bigint')
    .addColumn('unreachable_reported_at', 'bigint')
    .addColumn('suspended_at', 'bigint')
    .addColumn('suspended_reason', 'text')
    .addColumn('next_check_at', 'bigint', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('partner_baselines_due').on('partner_baselines').column('next_check_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('partner_baselines').execute();
}
