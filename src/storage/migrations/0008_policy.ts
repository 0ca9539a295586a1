import { sql, type Kysely } from 'kysely';

/**
 * The entity model (src/entities: legal entities with their desks and accounts, and the reference
 * lists of regions, venues and instrument classes) and versioned Cedar policy sets (src/policy).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('legal_entities')
    .addColumn('lei', 'text', (c) => c.primaryKey())
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('entity_references')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('entity_references_pk', ['kind', 'id'])
    .execute();

  await db.schema
    .createTable('policy_sets')
    .addColumn('version', 'text', (c) => c.primaryKey())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('change_ref', 'text', (c) => c.notNull())
    .addColumn('author', 'text', (c) => c.notNull())
    .addColumn('approver', 'text')
    .addColumn('active', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('activated_at', 'bigint')
    .addColumn('activated_by', 'text')
    .execute();
  // At most one active policy set, enforced by the database whatever process activates one.
  await db.schema
    .createIndex('policy_sets_one_active')
    .unique()
    .on('policy_sets')
    .column('active')
    .where(sql.ref('active'), '=', 1)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('policy_sets').execute();
  await db.schema.dropTable('entity_references').execute();
  await db.schema.dropTable('legal_entities').execute();
}
