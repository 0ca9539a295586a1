import type { Kysely } from 'kysely';

/**
 * Baselines and anomalies (src/risk/anomalies, docs/risk.md "Baselines and anomalies"), shared by
 * every node and kept across restarts:
 * - `risk_activity`: what each node counted for a principal in one evaluation window — tokens
 *   issued, logins made, the distinct audiences (JSON array) — one row per window, principal and
 *   node, written with the node's running totals (an upsert every few seconds and at shutdown), so
 *   a window's count is the sum over its nodes and a repeated write never counts twice. Kept a day.
 * - `risk_windows`: each closed window's evaluation, taken by one node (a conditional insert or
 *   update setting `lease_until`) and marked `evaluated_at` in the transaction that updated the
 *   baselines and raised the anomalies — so each window is judged exactly once across nodes.
 * - `risk_baselines`: per principal and metric (`token_rate`, `login_rate`, `audience_spread`), the
 *   EWMA of the per-window value over the windows the principal was active in, how many such
 *   windows, and the window length it was measured with.
 * - `risk_anomalies`: what was found (class, window, observed value, baseline, reaction), `open`
 *   until an administrator resolves it.
 * - `risk_suspensions`: principals suspended by an anomaly's reaction, until reinstated.
 * - `risk_anomaly_settings`: apply's `anomalies` section, one row per setting (JSON value).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('risk_activity')
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('window_ms', 'integer', (c) => c.notNull())
    // 'User' | 'Client'.
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    // The counting process (host:pid and a random part: two contexts of one process are two nodes).
    .addColumn('node', 'text', (c) => c.notNull())
    .addColumn('tokens', 'integer', (c) => c.notNull())
    .addColumn('logins', 'integer', (c) => c.notNull())
    .addColumn('audiences', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('risk_activity_pk', ['window_start', 'window_ms', 'principal_type', 'principal_id', 'node'])
    .execute();
  await db.schema
    .createTable('risk_windows')
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('window_ms', 'integer', (c) => c.notNull())
    .addColumn('lease_until', 'bigint')
    .addColumn('evaluated_at', 'bigint')
    .addColumn('principals', 'integer')
    .addColumn('anomalies', 'integer')
    .addPrimaryKeyConstraint('risk_windows_pk', ['window_start', 'window_ms'])
    .execute();
  await db.schema
    .createTable('risk_baselines')
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    // 'token_rate' | 'login_rate' | 'audience_spread'.
    .addColumn('metric', 'text', (c) => c.notNull())
    .addColumn('ewma', 'double precision', (c) => c.notNull())
    .addColumn('windows', 'integer', (c) => c.notNull())
    .addColumn('window_ms', 'integer', (c) => c.notNull())
    .addColumn('last_window', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('risk_baselines_pk', ['principal_type', 'principal_id', 'metric'])
    .execute();
  await db.schema
    .createTable('risk_anomalies')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    // 'token_rate' | 'login_rate' | 'audience_spread'.
    .addColumn('class', 'text', (c) => c.notNull())
    .addColumn('window_start', 'bigint', (c) => c.notNull())
    .addColumn('window_ms', 'integer', (c) => c.notNull())
    // The latest window found anomalous while this one was open, and how many were.
    .addColumn('last_window_start', 'bigint', (c) => c.notNull())
    .addColumn('windows', 'integer', (c) => c.notNull())
    .addColumn('observed', 'double precision', (c) => c.notNull())
    .addColumn('baseline', 'double precision', (c) => c.notNull())
    // 'alert' | 'step_up' | 'suspend'.
    .addColumn('reaction', 'text', (c) => c.notNull())
    // 'open' | 'resolved'.
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('resolved_by', 'text')
    .addColumn('resolved_at', 'bigint')
    .addColumn('resolution_note', 'text')
    .execute();
  await db.schema.createIndex('risk_anomalies_listed').on('risk_anomalies').columns(['status', 'created_at']).execute();
  await db.schema.createIndex('risk_anomalies_principal').on('risk_anomalies').columns(['principal_type', 'principal_id', 'status']).execute();
  await db.schema
    .createTable('risk_suspensions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('anomaly_id', 'text', (c) => c.notNull())
    .addColumn('suspended_at', 'bigint', (c) => c.notNull())
    .addColumn('reinstated_at', 'bigint')
    .addColumn('reinstated_by', 'text')
    .addColumn('note', 'text')
    .execute();
  await db.schema.createIndex('risk_suspensions_principal').on('risk_suspensions').columns(['principal_type', 'principal_id', 'reinstated_at']).execute();
  await db.schema
    .createTable('risk_anomaly_settings')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['risk_anomaly_settings', 'risk_suspensions', 'risk_anomalies', 'risk_baselines', 'risk_windows', 'risk_activity']) {
    await db.schema.dropTable(table).execute();
  }
}
