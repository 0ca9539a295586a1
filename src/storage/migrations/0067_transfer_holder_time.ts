import type { Kysely } from 'kysely';

/**
 * When each holder of a transfer reservation took its hold (src/transfers/totals-database.ts,
 * docs/transfers.md "What is counted"): `transfer_ledger.held_at`, epoch ms, on a holder's row
 * `<id>/<holder>`. A holder older than the grace an issuance may take was left by a node that died
 * while issuing; it is settled (kept as the lasting hold when its token was issued, taken back
 * when it was not) by the next reservation of its account and asset and by the pruning. Null on
 * the lasting rows `<id>`, and on holders written before this migration (or by a node of the
 * release before during the rollout): those are never settled, counted until their window ends as before.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('transfer_ledger').addColumn('held_at', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('transfer_ledger').dropColumn('held_at').execute();
}
