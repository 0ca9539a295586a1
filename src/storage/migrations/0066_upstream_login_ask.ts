import type { Kysely } from 'kysely';

/**
 * What Clearance asked an upstream identity provider when it sent the person there
 * (src/federation/upstream/upstream-logins.ts, docs/identity-brokering.md "Sign-in"):
 * `upstream_logins.asked`, JSON `{ maxAge?, login?, because? }` — the relying party's max_age and
 * prompt=login, a step-up policy's max age (the stricter), and a renewal Clearance asked of its own
 * for a step-up (`because`: `step_up`, `risk_step_up`). The answer is checked against it: an
 * upstream that was asked to authenticate the person again and answered from its own earlier
 * session is refused. Null for a sign-in that asked nothing, and for those opened before this
 * migration (a node of the release before writes none): their answer is checked against the
 * relying party's request, as before.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('upstream_logins').addColumn('asked', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('upstream_logins').dropColumn('asked').execute();
}
