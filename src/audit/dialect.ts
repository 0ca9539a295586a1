import { PostgresAdapter, sql, type Kysely } from 'kysely';

/** True when `db` talks to PostgreSQL (the audit log differs in sealing order and locking). */
export function isPostgres<T>(db: Kysely<T>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

// PostgreSQL advisory lock keys, derived from the schema so that logs in different schemas of
// one database (tests, tenants) never contend.

/** Held (session level) by the one node that seals. */
export const sealerLockKey = sql`hashtextextended('clearance.audit.sealer:' || current_schema(), 0)`;

/**
 * Held shared by every transaction that inserts audit events, and taken exclusively for an
 * instant by the sealer: once it has it, every event with a lower seq has committed or is gone.
 */
export const writersLockText = "hashtextextended('clearance.audit.writers:' || current_schema(), 0)";
export const writersLockKey = sql.raw(writersLockText);
