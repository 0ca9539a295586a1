import type { Kysely } from 'kysely';

/**
 * CIBA authentication requests (OpenID CIBA Core 1.0; src/ciba, docs/approvals.md "CIBA"): the
 * kind's own state beside its row in `approval_requests` (migration 0021), which holds what is
 * approved, by whom, and where it stands.
 * - `id_hash`: SHA-256 (base64url) of the auth_req_id. The auth_req_id is a bearer credential
 *   (§7.3: whoever holds it and authenticates as the client gets the tokens), so it is never
 *   stored in clear;
 * - `request_id`: the approval request (the `txn` of every event and token of the request);
 * - `mode`: 'poll' | 'ping' (§5), with, in ping mode, the client's notification endpoint and its
 *   `client_notification_token` and the auth_req_id itself (the ping must name it, §10.2) sealed
 *   with a key derived from the master key (AES-256-GCM, bound to the row); in poll mode neither;
 * - `interval_seconds` and `last_polled_at`: the polling rule of §7.3 and §11 (slow_down adds
 *   5 s for this and every later request);
 * - `payload`: JSON of what the token will carry (audience, scopes, authorization_details, act);
 * - `grant_id`: the consent grant the subject's approval extended (set when the request settles
 *   approved), so the issued tokens die with the grant or the person;
 * - `consumed_at`: set once, by the one redemption that wins (with the approval request's
 *   approved → consumed, in the same transaction).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('ciba_requests')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('request_id', 'text', (c) => c.notNull().unique())
    .addColumn('client_id', 'text', (c) => c.notNull())
    .addColumn('mode', 'text', (c) => c.notNull())
    .addColumn('notification_endpoint', 'text')
    .addColumn('notification_token', 'text')
    .addColumn('sealed_auth_req_id', 'text')
    .addColumn('interval_seconds', 'integer', (c) => c.notNull())
    .addColumn('last_polled_at', 'bigint')
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('grant_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('consumed_at', 'bigint')
    .execute();
  await db.schema.createIndex('ciba_requests_expires').on('ciba_requests').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('ciba_requests').execute();
}
