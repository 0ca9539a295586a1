import type { Kysely } from 'kysely';

/**
 * The authority an initial access token carries (RFC 7591 §5: registration metadata is
 * self-asserted, so whatever confers authority comes from the administrator who issued the token):
 * the firm its registrations belong to, and the grant types and client kinds they may ask for.
 * Tokens issued before this migration name no firm and allow the defaults.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // One column per statement: SQLite's ALTER TABLE adds one column at a time.
  await db.schema.alterTable('initial_access_tokens').addColumn('owner_lei', 'text').execute();
  await db.schema
    .alterTable('initial_access_tokens')
    .addColumn('allowed_grant_types', 'text', (c) => c.notNull().defaultTo('authorization_code client_credentials refresh_token'))
    .execute();
  await db.schema
    .alterTable('initial_access_tokens')
    .addColumn('allowed_kinds', 'text', (c) => c.notNull().defaultTo('service'))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('initial_access_tokens').dropColumn('allowed_kinds').execute();
  await db.schema.alterTable('initial_access_tokens').dropColumn('allowed_grant_types').execute();
  await db.schema.alterTable('initial_access_tokens').dropColumn('owner_lei').execute();
}
