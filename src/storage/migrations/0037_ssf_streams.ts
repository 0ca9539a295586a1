import type { Kysely } from 'kysely';

/**
 * Shared Signals (src/signals/ssf, docs/signals.md):
 * - `ssf_streams`: a receiver's event stream (SSF 1.0 §8): its owner (`client_id`, also the SETs'
 *   `aud`), delivery (`push` to `endpoint_url` with the sealed `authorization_header`, or `poll`),
 *   the events it asked for (JSON array), its status (`enabled`, `paused`, `disabled`) and why,
 *   and which subjects it gets by default (`ALL` or `NONE`);
 * - `ssf_subjects`: the subjects a receiver added (`included` 1) or removed (0), by a canonical key;
 * - `ssf_outbox`: each Security Event Token made for a stream (`jti`), signed once, until it is
 *   delivered (push: a 202) or acknowledged (poll), or failed; a push lease (`lease_until`) lets
 *   one node send it at a time;
 * - `ssf_cursor`: how far in the sealed audit log the transmitter has read (`last_seq`), one row.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('ssf_streams')
    .addColumn('stream_id', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('delivery_method', 'text', (c) => c.notNull())
    .addColumn('endpoint_url', 'text')
    .addColumn('authorization_header', 'text')
    .addColumn('events_requested', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('status_reason', 'text')
    .addColumn('default_subjects', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('ssf_streams_client').on('ssf_streams').column('client_id').execute();
  await db.schema
    .createTable('ssf_subjects')
    .addColumn('stream_id', 'text', (c) => c.notNull())
    .addColumn('subject_key', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('included', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('ssf_subjects_pk', ['stream_id', 'subject_key'])
    .execute();
  await db.schema
    .createTable('ssf_outbox')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('stream_id', 'text', (c) => c.notNull())
    .addColumn('event_type', 'text', (c) => c.notNull())
    .addColumn('set_jwt', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull())
    .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
    .addColumn('lease_until', 'bigint')
    .addColumn('last_status', 'integer')
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('settled_at', 'bigint')
    .execute();
  await db.schema.createIndex('ssf_outbox_due').on('ssf_outbox').columns(['status', 'next_attempt_at']).execute();
  await db.schema.createIndex('ssf_outbox_stream').on('ssf_outbox').columns(['stream_id', 'status', 'created_at']).execute();
  await db.schema
    .createTable('ssf_cursor')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('last_seq', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['ssf_cursor', 'ssf_outbox', 'ssf_subjects', 'ssf_streams']) await db.schema.dropTable(table).execute();
}
