import type { Kysely } from 'kysely';

/**
 * The two-person release of a legal hold (src/audit/hold-release.ts, docs/audit.md "Legal hold"):
 * `release_request` is the approval request (approval_requests, kind `hold_release`) that asks
 * for it while it waits; once approved, `released_at` is set and `released_by` names the people
 * who asked and approved (JSON array of ids). A released hold no longer keeps events from a prune
 * and is still listed, and stated in the bundles of the events it covered.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_holds').addColumn('release_request', 'text').execute();
  await db.schema.alterTable('audit_holds').addColumn('released_by', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_holds').dropColumn('released_by').execute();
  await db.schema.alterTable('audit_holds').dropColumn('release_request').execute();
}
