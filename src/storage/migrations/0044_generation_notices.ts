import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * Change notices on PostgreSQL (src/storage/notices.ts): each insert or update of a `generations`
 * row — every writer bumps one in the transaction of its change, server, worker or CLI alike —
 * announces `<schema>:<name>` on the channel `clearance_generations`. PostgreSQL delivers a
 * notification at commit and never for a transaction rolled back, so a notice always follows a
 * change that is there to read. The schema is the table's (TG_TABLE_SCHEMA): several schemas of
 * one database share the channel, and each listener keeps only its own. SQLite has no notices;
 * its caches poll.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql
    .raw(
      `create function clearance_generation_notice() returns trigger language plpgsql as $$
  begin
    perform pg_notify('clearance_generations', tg_table_schema || ':' || new.name);
    return null;
  end $$`,
    )
    .execute(db);
  await sql.raw('create trigger generations_notice after insert or update on generations for each row execute function clearance_generation_notice()').execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql.raw('drop trigger generations_notice on generations').execute(db);
  await sql.raw('drop function clearance_generation_notice()').execute(db);
}
