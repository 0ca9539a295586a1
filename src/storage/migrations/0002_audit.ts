import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * The tamper-evident audit log (src/audit/tables.ts, docs/audit.md). Every audit table is
 * append-only: triggers reject UPDATE and TRUNCATE, and DELETE except of rows a pruning record
 * covers (retention removes whole sealed prefixes and leaves a signed record first).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  const hash = postgres ? 'bytea' : 'blob';

  let events = db.schema.createTable('audit_events');
  events = postgres
    ? events.addColumn('seq', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    : events.addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement());
  await events
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('txn', 'text')
    .addColumn('subject', 'text')
    .addColumn('client', 'text')
    .addColumn('decision', 'text')
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('leaf_hash', hash, (c) => c.notNull())
    .execute();
  // txn, subject and client are looked up through audit_index, which the sealer fills a round at
  // a time: indexing their scattered values at every commit halved the append rate.
  await db.schema.createIndex('audit_events_type').on('audit_events').columns(['type', 'seq']).execute();
  await db.schema.createIndex('audit_events_time').on('audit_events').columns(['time', 'seq']).execute();

  await db.schema
    .createTable('audit_leaves')
    .addColumn('leaf_index', 'bigint', (c) => c.primaryKey())
    .addColumn('event_seq', 'bigint', (c) => c.notNull().unique())
    .addColumn('leaf_hash', hash, (c) => c.notNull())
    .execute();

  let index = db.schema
    .createTable('audit_index')
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_index_pk', ['key', 'seq']);
  if (!postgres) index = index.modifyEnd(sql`without rowid`);
  await index.execute();

  await db.schema
    .createTable('audit_nodes')
    .addColumn('level', 'integer', (c) => c.notNull())
    .addColumn('idx', 'bigint', (c) => c.notNull())
    .addColumn('hash', hash, (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_nodes_pk', ['level', 'idx'])
    .execute();

  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('tree_size', 'bigint', (c) => c.primaryKey())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('frontier', 'text', (c) => c.notNull())
    .addColumn('last_seq', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_prunings')
    .addColumn('tree_size', 'bigint', (c) => c.primaryKey())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('frontier', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('policy', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('audit_keys')
    .addColumn('key_id', 'text', (c) => c.primaryKey())
    .addColumn('origin', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('private_key', 'text', (c) => c.notNull())
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  if (postgres) await postgresTriggers(db);
  else await sqliteTriggers(db);
}

const pruned = '(select coalesce(max(tree_size), 0) from audit_prunings)';

/** Rows a pruning record covers may be deleted; nothing may be updated. */
const deletable: Record<string, string> = {
  audit_events: `exists (select 1 from audit_leaves l where l.event_seq = old.seq and l.leaf_index < ${pruned})`,
  audit_leaves: `old.leaf_index < ${pruned}`,
  audit_checkpoints: `old.tree_size < ${pruned}`,
  // Lookup rows go with their (pruned) event.
  audit_index: 'not exists (select 1 from audit_events e where e.seq = old.seq)',
};
const tables = ['audit_events', 'audit_leaves', 'audit_index', 'audit_nodes', 'audit_checkpoints', 'audit_prunings', 'audit_keys'];

async function postgresTriggers(db: Kysely<unknown>): Promise<void> {
  // One function per table: PL/pgSQL plans a condition with the trigger's row type, so a
  // condition naming another table's column cannot even sit in a branch not taken.
  for (const table of tables) {
    const condition = deletable[table];
    const allow = condition ? `if tg_op = 'DELETE' and ${condition} then return old; end if;` : '';
    await sql
      .raw(
        `create function ${table}_append_only() returns trigger language plpgsql as $$
  begin
    ${allow}
    raise exception 'the audit log is append-only: % on % is not allowed', tg_op, tg_table_name using errcode = '42501';
  end $$`,
      )
      .execute(db);
    await sql.raw(`create trigger ${table}_append_only before update or delete on ${table} for each row execute function ${table}_append_only()`).execute(db);
    await sql.raw(`create trigger ${table}_no_truncate before truncate on ${table} for each statement execute function ${table}_append_only()`).execute(db);
  }
}

async function sqliteTriggers(db: Kysely<unknown>): Promise<void> {
  for (const table of tables) {
    const refuse = `begin select raise(abort, 'the audit log is append-only: ${table}'); end`;
    await sql.raw(`create trigger ${table}_no_update before update on ${table} ${refuse}`).execute(db);
    const condition = deletable[table];
    const when = condition ? ` when not (${condition})` : '';
    await sql.raw(`create trigger ${table}_no_delete before delete on ${table}${when} ${refuse}`).execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [...tables].reverse()) await db.schema.dropTable(table).execute();
  if (db.getExecutor().adapter instanceof PostgresAdapter) {
    for (const table of tables) await sql.raw(`drop function ${table}_append_only()`).execute(db);
  }
}
