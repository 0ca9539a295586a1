import type { Kysely } from 'kysely';

/**
 * External evidence (src/evidence/external.ts, docs/evidence.md): each event a registered producer
 * appended under a txn, keyed by (producer, event_id) so a retry is answered with the first record
 * and a different event under the same id is refused. Only the payload's SHA-256 is kept, never the
 * payload; a producer's detached JWS and the public key that verified it are kept for the bundles
 * (the `evidence.appended` audit event carries their digests, so the log vouches for them).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('external_evidence')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('producer', 'text', (c) => c.notNull())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('txn', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('payload_sha256', 'text', (c) => c.notNull())
    .addColumn('occurred_at', 'text')
    .addColumn('fingerprint', 'text', (c) => c.notNull())
    .addColumn('jws', 'text')
    .addColumn('jws_key', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('external_evidence_producer_event', ['producer', 'event_id'])
    .execute();
  await db.schema.createIndex('external_evidence_txn').on('external_evidence').column('txn').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('external_evidence').execute();
}
