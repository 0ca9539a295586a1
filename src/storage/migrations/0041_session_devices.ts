import type { Kysely } from 'kysely';

/**
 * The managed device a session was started from (issue 18 item 5, docs/pki.md "Managed devices"):
 * the holder of the `device` profile certificate of Clearance's CA the browser presented over
 * mTLS at sign-in. It identifies the device, never the person: it adds no authentication method.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('device_id', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('device_id').execute();
}
