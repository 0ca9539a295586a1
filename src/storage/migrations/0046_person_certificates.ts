import type { Kysely } from 'kysely';

/**
 * Certificate sign-in for people (issue 22 item 6, docs/certificate-sign-in.md): the certificate
 * authorities trusted to sign people in with a smart card or a software certificate — each one's
 * CA certificates (or a profile of Clearance's own CA), hardware policy OIDs, revocation checking
 * and the rules that map a certificate to a person — as apply's `person_certificates` declares them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('person_certificate_authorities')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('person_certificate_authorities').execute();
}
