import type { Kysely } from 'kysely';

/**
 * Step-up authentication (issue 14, docs/authentication.md):
 * - `role_minimums`: the least authentication level (src/identity/acr.ts) each role asks of the
 *   people who hold it (apply's `authentication.role_minimums`, src/identity/role-requirements.ts);
 * - `first_uses`: per person, the instrument classes they were issued tokens to trade and the
 *   settlement accounts they were issued tokens to use, with when first and last (the history
 *   behind the "new for this person" policy context, src/policy/first-use.ts), shared by every
 *   node; pruned after its retention by last use;
 * - `interactions.step_up`: the step-up an authorization request is waiting for (JSON), so its
 *   outcome can be audited when the person comes back (src/authorization/step-up.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('role_minimums')
    .addColumn('role', 'text', (c) => c.primaryKey())
    .addColumn('acr', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('first_uses')
    .addColumn('user_id', 'text', (c) => c.notNull())
    // 'instrument_class' or 'settlement_account'.
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('first_used_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('first_uses_pk', ['user_id', 'kind', 'value'])
    .execute();
  await db.schema.createIndex('first_uses_last_used').on('first_uses').column('last_used_at').execute();
  await db.schema.alterTable('interactions').addColumn('step_up', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('interactions').dropColumn('step_up').execute();
  await db.schema.dropTable('first_uses').execute();
  await db.schema.dropTable('role_minimums').execute();
}
