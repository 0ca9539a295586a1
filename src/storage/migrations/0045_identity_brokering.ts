import type { Kysely } from 'kysely';

/**
 * Identity brokering (issue 22, docs/identity-brokering.md): upstream identity providers, the links
 * of upstream identities to local people, the sign-ins sent upstream and not yet back (with a SAML
 * IdP's verified answer, kept until the browser that left picks it up), Clearance's key pair as a
 * SAML service provider, and what a
 * session records of the upstream that vouched for it (its source of assurance, and the upstream's
 * session id, which its back-channel logout names).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('identity_providers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('secret_sealed', 'text')
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('user_links')
    .addColumn('issuer', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('provider_id', 'text', (c) => c.notNull())
    .addColumn('linked_by', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_login_at', 'bigint')
    .addPrimaryKeyConstraint('user_links_pk', ['issuer', 'subject'])
    .execute();
  await db.schema.createIndex('user_links_user').on('user_links').column('user_id').execute();
  await db.schema
    .createTable('upstream_logins')
    .addColumn('state_hash', 'text', (c) => c.primaryKey())
    .addColumn('interaction_id', 'text', (c) => c.notNull())
    .addColumn('provider_id', 'text', (c) => c.notNull())
    .addColumn('browser_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('consumed_at', 'bigint')
    .addColumn('result', 'text')
    .execute();
  await db.schema
    .createTable('saml_service_provider')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('private_key_sealed', 'text', (c) => c.notNull())
    .addColumn('certificate', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('upstream_logins_expiry').on('upstream_logins').column('expires_at').execute();
  await db.schema.alterTable('sessions').addColumn('assurance_provider', 'text').execute();
  await db.schema.alterTable('sessions').addColumn('assurance_source', 'text').execute();
  await db.schema.alterTable('sessions').addColumn('upstream_sid', 'text').execute();
  await db.schema.createIndex('sessions_assurance_provider').on('sessions').column('assurance_provider').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('sessions_assurance_provider').execute();
  await db.schema.alterTable('sessions').dropColumn('upstream_sid').execute();
  await db.schema.alterTable('sessions').dropColumn('assurance_source').execute();
  await db.schema.alterTable('sessions').dropColumn('assurance_provider').execute();
  await db.schema.dropTable('saml_service_provider').execute();
  await db.schema.dropTable('upstream_logins').execute();
  await db.schema.dropTable('user_links').execute();
  await db.schema.dropTable('identity_providers').execute();
}
