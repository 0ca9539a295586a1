import { sql, type Kysely } from 'kysely';

/**
 * Who froze a KYC record besides screening (src/risk/kyc/changes.ts, docs/risk.md "KYC/AML
 * lifecycle"): `kyc_records.frozen_by`, the `updated_by` of the change that froze it — an
 * administrator (`admin:<actor>`), a provider (`provider:<id>`), apply (`apply:<actor>`) — or null
 * when only screening holds the freeze (an open or confirmed match) or the record is not frozen.
 * Compliance clearing the last match lifts the freeze only when it is null: a record has one
 * `frozen` status, and without this the clearing lifted an administrator's or provider's freeze
 * too, made before the hit or after it.
 *
 * The records frozen before this migration: held by whoever last changed them, unless that was
 * screening or compliance (a freeze those made, or touched last, is screening's, as before). A
 * screening freeze a provider changed since (its status kept to return to) is counted the
 * provider's: it then stays frozen after the clearing until an administrator lifts it — the
 * conservative reading, where the log alone cannot tell.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('kyc_records').addColumn('frozen_by', 'text').execute();
  await sql`update kyc_records set frozen_by = updated_by where status = 'frozen' and updated_by <> 'screening' and updated_by not like 'compliance:%'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('kyc_records').dropColumn('frozen_by').execute();
}
