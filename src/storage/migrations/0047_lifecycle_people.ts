import type { Kysely } from 'kysely';

/**
 * Joiners, movers, leavers (issue 23, src/lifecycle/leaver.ts and mover.ts, docs/lifecycle.md):
 * - `users.offboarded_at`: when the person was offboarded (null: never, or re-joined since). An
 *   offboarded person is `disabled`; making them active again is a deliberate joiner step.
 * - `mandate_versions.granted_by`: the person (user id) who signed the mandate for the grantor,
 *   when the mandate names one; `reassign_by`: the deadline (epoch ms) set when that person left,
 *   after which the version is no longer in force unless a new signatory amended it before.
 * - `agents.flagged_at`, `agents.flag_reason`: an agent whose model owner (the person who
 *   validated its model) left; flagged for a new owner, not disabled.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').addColumn('offboarded_at', 'bigint').execute();
  await db.schema.alterTable('mandate_versions').addColumn('granted_by', 'text').execute();
  await db.schema.alterTable('mandate_versions').addColumn('reassign_by', 'bigint').execute();
  await db.schema.createIndex('mandate_versions_granted_by').on('mandate_versions').column('granted_by').execute();
  await db.schema.alterTable('agents').addColumn('flagged_at', 'bigint').execute();
  await db.schema.alterTable('agents').addColumn('flag_reason', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('agents').dropColumn('flag_reason').execute();
  await db.schema.alterTable('agents').dropColumn('flagged_at').execute();
  await db.schema.dropIndex('mandate_versions_granted_by').execute();
  await db.schema.alterTable('mandate_versions').dropColumn('reassign_by').execute();
  await db.schema.alterTable('mandate_versions').dropColumn('granted_by').execute();
  await db.schema.alterTable('users').dropColumn('offboarded_at').execute();
}
