import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * The check behind a flight's expectations on PostgreSQL (src/storage/flight.ts): a statement
 * sent in a pipelined transaction cannot be checked by the client before COMMIT is already on its
 * way, so the database checks it — `clearance_expect_rows(changed, expected, reason)` raises
 * SQLSTATE CLR01 unless the two counts agree, which aborts the transaction (its COMMIT then rolls
 * back). SQLite flights check between statements and need nothing here.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql
    .raw(
      `create function clearance_expect_rows(changed bigint, expected bigint, reason text) returns bigint language plpgsql as $$
  begin
    if changed is distinct from expected then
      raise exception 'expected % changed row(s), not %: %', expected, changed, reason using errcode = 'CLR01';
    end if;
    return changed;
  end $$`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql.raw('drop function clearance_expect_rows(bigint, bigint, text)').execute(db);
}
