import type { Kysely } from 'kysely';

/**
 * Alerts as signed webhooks (src/signals, docs/recovery.md "Alerts"):
 * - `alert_webhooks`: the endpoints apply declares (`alerts.webhooks`): where (`url`), which alert
 *   types (JSON array), how each delivery is signed (`hmac`: HMAC-SHA256 with a secret stored only
 *   sealed with the master key, `secret_sealed`; `jws`: Clearance's signing key), whether the
 *   private network may be reached. `created_at`: alerts raised before an endpoint existed are not
 *   sent to it.
 * - `alert_deliveries`: one row per alert and endpoint: `pending` until the endpoint answers 2xx
 *   (`delivered`) or the attempts run out (`failed`); how many attempts, when the next is due, the
 *   last HTTP status or error. A worker takes a delivery with one conditional update that sets
 *   `lease_until` (only a row that is due and not leased is taken), so several workers or nodes
 *   never send one delivery at once; an outcome is written only under the lease that sent it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('alert_webhooks')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('types', 'text', (c) => c.notNull())
    // 'hmac' | 'jws'.
    .addColumn('signing', 'text', (c) => c.notNull())
    .addColumn('secret_sealed', 'text')
    .addColumn('allow_private_network', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('alert_deliveries')
    .addColumn('alert_id', 'text', (c) => c.notNull())
    .addColumn('webhook_id', 'text', (c) => c.notNull())
    // 'pending' | 'delivered' | 'failed'.
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull())
    .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_until', 'bigint')
    .addColumn('last_status', 'integer')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('delivered_at', 'bigint')
    .addPrimaryKeyConstraint('alert_deliveries_pk', ['alert_id', 'webhook_id'])
    .execute();
  await db.schema.createIndex('alert_deliveries_due').on('alert_deliveries').columns(['status', 'next_attempt_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('alert_deliveries').execute();
  await db.schema.dropTable('alert_webhooks').execute();
}
