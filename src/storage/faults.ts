/**
 * What a database fault looks like, in one place: the HTTP error serializer turns these into a 503
 * `temporarily_unavailable` instead of a 500, the group commit stops retrying a batch it cannot
 * write anyway, and the audit sealer reconnects (docs/operations.md, "Failure model").
 */

/** The database did not answer in time, or this process gave up a connection it could not trust. */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
}

/**
 * PostgreSQL SQLSTATEs that say "the database, or this connection to it, is not available now"
 * (PostgreSQL Appendix A): retrying later, usually on another connection, can succeed.
 */
const unavailableStates = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, a restart, a failover
  '57P02', // crash_shutdown: another backend crashed and the server is resetting
  '57P03', // cannot_connect_now: starting up, shutting down, in recovery
  '57P05', // idle_session_timeout
  '25P03', // idle_in_transaction_session_timeout
  '57014', // query_canceled: the statement timeout (Clearance never cancels a query otherwise)
  '55P03', // lock_not_available: a lock timeout
  '53300', // too_many_connections
  '53400', // configuration_limit_exceeded
]);

/** Socket-level failures on the way to the database server. */
const unavailableSystemCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND', // a failover may move the name for a moment
  'EAI_AGAIN',
]);

/** node-postgres and pg-pool report a lost or refused connection with a message, not a code. */
const unavailableMessages =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Query read timeout|timeout expired)/;

/** SQLite primary result codes: SQLITE_BUSY (5) after busy_timeout, SQLITE_LOCKED (6). */
const sqliteBusyCodes = new Set([5, 6]);

/**
 * True when `error` (or its cause) is the database being unreachable, slow past a timeout,
 * restarting or locked: a transient fault, not a bug and not the caller's mistake.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let depth = 0; depth < 5 && error instanceof Error; depth++) {
    if (error instanceof DatabaseUnavailableError) return true;
    const { code, errcode } = error as { code?: unknown; errcode?: unknown };
    if (typeof code === 'string') {
      if (/^08[0-9A-Z]{3}$/.test(code)) return true; // class 08: connection exception
      if (unavailableStates.has(code) || unavailableSystemCodes.has(code)) return true;
      // node:sqlite; extended result codes keep the primary code in their low byte.
      if (code === 'ERR_SQLITE_ERROR' && typeof errcode === 'number' && sqliteBusyCodes.has(errcode & 0xff)) return true;
    }
    if (unavailableMessages.test(error.message)) return true;
    // A connect to several addresses (IPv4 and IPv6) fails with all of their errors at once.
    if (error instanceof AggregateError && error.errors.some((e) => isDatabaseUnavailable(e))) return true;
    error = error.cause;
  }
  return false;
}

/**
 * A unique or primary-key constraint refused a write (PostgreSQL 23505 unique_violation; SQLite
 * SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY): not a fault, an outcome — another writer got there
 * first, and the caller decides (retry, or answer a conflict).
 */
export function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null | undefined;
  return e?.code === '23505' || /UNIQUE constraint failed/i.test(String(e?.message ?? ''));
}
