import type { Kysely } from 'kysely';

/**
 * The mandates a person consented to let a client act under (src/authorization/consent.ts): a
 * request naming a mandate the person's grant does not list shows the consent page again.
 *
 * Existing grants start with none: a code or refresh token issued under a mandate before this
 * migration was issued without the person's consent to that mandate (issue 12 item 2), so its
 * next redemption or refresh fails (`invalid_grant`) until the person consents to the mandate.
 * Failing closed is the point; backfilling from those tokens would ratify what was never consented.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // JSON array of mandate ids, as the grant's other columns are JSON text.
  await db.schema.alterTable('grants').addColumn('mandates', 'text', (c) => c.notNull().defaultTo('[]')).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('grants').dropColumn('mandates').execute();
}
