import type { Kysely } from 'kysely';

/**
 * KYC/AML (src/risk/kyc, src/risk/screening, docs/risk.md "KYC/AML lifecycle" and "Sanctions and
 * PEP screening"):
 * - `kyc_records`: one per person (`User`, by user id) or legal entity (`LegalEntity`, by LEI):
 *   the status (`pending | verified | expired | rejected | frozen`), the status a freeze keeps
 *   (`previous_status`), the verification level, the verifying provider, the review due date
 *   (epoch ms), the evidence reference, what apply last declared (`declared`, JSON: re-applying the
 *   same document changes nothing a provider or compliance changed since), a version counted up by
 *   every change (conditional updates), and who changed it last. The source of truth of every
 *   decision's KYC status; `users.attributes.kyc_status` moves here (below).
 * - `kyc_providers`: the providers apply declares (`kyc.providers`) whose signed webhooks change
 *   records: how they sign (`hmac`: a secret stored only sealed with the master key; `jws`: their
 *   JWKS).
 * - `kyc_webhook_ids`: each provider's webhook ids already received (single use: a replay is
 *   refused); pruned once older than the timestamp tolerance can let through.
 * - `screening_matches`: a screening list entry that matched a principal: which entry (its id and
 *   a digest of its content), which list version, matched on what, and compliance's decision
 *   (`open | confirmed | cleared`). Unique per principal, entry and entry digest: a cleared match
 *   keeps the same entry from matching the principal again until the entry changes.
 * - `screening_lists`: the list versions everyone was screened against, so that one node
 *   re-screens everyone when a new version appears: it takes the version's row (an insert, or a
 *   conditional update of a lease that ran out), screens, then records when.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('kyc_records')
    // 'User' | 'LegalEntity'.
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('previous_status', 'text')
    .addColumn('level', 'text')
    .addColumn('provider', 'text')
    .addColumn('review_due', 'bigint')
    .addColumn('evidence_ref', 'text')
    .addColumn('declared', 'text')
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('kyc_records_pk', ['principal_type', 'principal_id'])
    .execute();
  await db.schema.createIndex('kyc_records_review').on('kyc_records').columns(['status', 'review_due']).execute();
  await db.schema
    .createTable('kyc_providers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    // 'hmac' | 'jws'.
    .addColumn('signing', 'text', (c) => c.notNull())
    .addColumn('secret_sealed', 'text')
    // JSON: a JWK Set (jws).
    .addColumn('jwks', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('kyc_webhook_ids')
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('webhook_id', 'text', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('kyc_webhook_ids_pk', ['provider', 'webhook_id'])
    .execute();
  await db.schema.createIndex('kyc_webhook_ids_received').on('kyc_webhook_ids').column('received_at').execute();
  await db.schema
    .createTable('screening_matches')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('entry_id', 'text', (c) => c.notNull())
    .addColumn('entry_digest', 'text', (c) => c.notNull())
    .addColumn('list_digest', 'text', (c) => c.notNull())
    // The entry's list (sanctions, pep, ...) and programme, for the reviewer.
    .addColumn('list_name', 'text', (c) => c.notNull())
    .addColumn('programme', 'text')
    // JSON array: name, alias, lei, date_of_birth.
    .addColumn('matched_on', 'text', (c) => c.notNull())
    // 'open' | 'confirmed' | 'cleared'.
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .addColumn('decided_by', 'text')
    .addColumn('reason', 'text')
    .execute();
  await db.schema
    .createIndex('screening_matches_once')
    .on('screening_matches')
    .columns(['principal_type', 'principal_id', 'entry_id', 'entry_digest'])
    .unique()
    .execute();
  await db.schema.createIndex('screening_matches_status').on('screening_matches').columns(['status', 'created_at']).execute();
  await db.schema
    .createTable('screening_lists')
    // SHA-256 of a list file's bytes: one row per list version.
    .addColumn('digest', 'text', (c) => c.primaryKey())
    // When everyone was screened against it; null while a node is at it.
    .addColumn('screened_at', 'bigint')
    // The node screening everyone holds the row until then (a node that dies lets it run out).
    .addColumn('lease_until', 'bigint')
    .execute();
  await moveKycAttributes(db as Kysely<MigratingUsers>);
}

interface MigratingUsers {
  users: { id: string; attributes: string; updated_at: number };
  kyc_records: {
    principal_type: string;
    principal_id: string;
    status: string;
    previous_status: string | null;
    level: string | null;
    provider: string | null;
    review_due: number | null;
    evidence_ref: string | null;
    declared: string | null;
    version: number;
    updated_at: number;
    updated_by: string;
  };
}

/**
 * A person's `attributes.kyc_status` becomes their KYC record (declared as apply declared it, so
 * re-applying the old document changes nothing) and leaves the attributes.
 */
async function moveKycAttributes(db: Kysely<MigratingUsers>): Promise<void> {
  const users = await db.selectFrom('users').select(['id', 'attributes', 'updated_at']).execute();
  for (const user of users) {
    const attributes = JSON.parse(user.attributes) as Record<string, unknown>;
    if (typeof attributes.kyc_status !== 'string') continue;
    const status = attributes.kyc_status;
    delete attributes.kyc_status;
    await db
      .insertInto('kyc_records')
      .values({
        principal_type: 'User',
        principal_id: user.id,
        status,
        previous_status: null,
        level: null,
        provider: null,
        review_due: null,
        evidence_ref: null,
        declared: JSON.stringify({ status }),
        version: 1,
        updated_at: Number(user.updated_at),
        updated_by: 'migration',
      })
      .execute();
    await db.updateTable('users').set({ attributes: JSON.stringify(attributes) }).where('id', '=', user.id).execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('screening_lists').execute();
  await db.schema.dropTable('screening_matches').execute();
  await db.schema.dropTable('kyc_webhook_ids').execute();
  await db.schema.dropTable('kyc_providers').execute();
  await db.schema.dropTable('kyc_records').execute();
}
