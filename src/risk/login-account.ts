import type { Database } from '../storage/schema.ts';
import type { RiskDeps, RiskFacts } from './engine.ts';

/** What the login signals read of the account signing in. */
export interface LoginAccount {
  /** The person's desks, in their record's order (`off_hours` reads their time zones). */
  desks: string[];
  /** Consecutive failed sign-ins since the last success (the lockout counter). */
  failedLogins: number;
  /** When the latest of them happened (epoch ms). */
  lastFailedLoginAt: number | null;
  /** When the automatic lockout last locked the account (epoch ms), kept after an unlock. */
  lastLockoutAt: number | null;
}

type AccountRow = Pick<Database['users'], 'desks' | 'failed_logins' | 'last_failed_login_at' | 'last_lockout_at'>;

/** The account of an assessment's facts, read once for all its signals (the engine hands every signal the same facts). */
const accounts = new WeakMap<RiskFacts, Promise<LoginAccount | undefined>>();

/**
 * Gives the login signals the account row the sign-in already read (no second read): call before
 * `assessRisk` with the facts object passed to it.
 */
export function knowLoginAccount(facts: RiskFacts, row: AccountRow): void {
  accounts.set(facts, Promise.resolve(toAccount(row)));
}

/** The account the facts' principal (a person) names: the row given by `knowLoginAccount`, else read once. */
export function loginAccountOf(deps: RiskDeps, facts: RiskFacts): Promise<LoginAccount | undefined> {
  if (facts.principal.type !== 'User') return Promise.resolve(undefined);
  let account = accounts.get(facts);
  if (!account) {
    account = deps.storage.db
      .selectFrom('users')
      .select(['desks', 'failed_logins', 'last_failed_login_at', 'last_lockout_at'])
      .where('id', '=', facts.principal.id)
      .executeTakeFirst()
      .then((row) => row && toAccount(row));
    accounts.set(facts, account);
  }
  return account;
}

function toAccount(row: AccountRow): LoginAccount {
  return {
    desks: JSON.parse(row.desks) as string[],
    failedLogins: Number(row.failed_logins),
    lastFailedLoginAt: row.last_failed_login_at === null || row.last_failed_login_at === undefined ? null : Number(row.last_failed_login_at),
    lastLockoutAt: row.last_lockout_at === null || row.last_lockout_at === undefined ? null : Number(row.last_lockout_at),
  };
}
