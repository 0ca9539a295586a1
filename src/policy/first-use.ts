import type { Context } from '../context.ts';
import { rowsOf, type Flight } from '../storage/flight.ts';

/**
 * The "first use" history behind the step-up policies' `new_instrument_class` and
 * `new_settlement_account` context (docs/policy.md): per person, the instrument classes they were
 * issued a token to trade (an `order` authorization_details entry) and the settlement accounts they
 * were issued a token to use (a `settlement_instruction` entry).
 *
 * - It lives in the database (migration 0019_step_up), so every node sees the same history.
 * - A use is recorded when a token carrying the entry is issued to the person (in the issuance's
 *   own transaction, src/grants/person-tokens.ts): a decision asked before it (at the AuthZEN API,
 *   at the authorization endpoint) sees the class or account as new.
 * - Retention: a row is kept for `firstUseRetentionDays` after its LAST use, then pruned (with the
 *   expired authorization state, src/authorization/pruning.ts): a class not traded for that long is
 *   new again. The rows name a person's id, a class or account id and two times: no secrets.
 */

/** The table (migration 0019_step_up). Times are epoch milliseconds. */
export interface FirstUseTables {
  first_uses: {
    user_id: string;
    kind: FirstUseKind;
    /** The instrument class or the account id. */
    value: string;
    first_used_at: number;
    last_used_at: number;
  };
}

export type FirstUseKind = 'instrument_class' | 'settlement_account';

export interface Use {
  kind: FirstUseKind;
  value: string;
}

/** How long a use is remembered after the person's last one (about 13 months: a year's business and a margin). */
export const firstUseRetentionDays = 400;
const retentionMs = firstUseRetentionDays * 24 * 3600 * 1000;

const key = (use: Use) => `${use.kind}\n${use.value}`;

/**
 * Which of `uses` the person has made within the retention (the rest are new to them). One
 * statement; with `flight`, sent with the flight's other statements.
 */
export async function knownUses(ctx: Pick<Context, 'storage' | 'clock'>, userId: string, uses: readonly Use[], flight?: Flight): Promise<Set<string>> {
  if (uses.length === 0) return new Set();
  const since = ctx.clock.now() - retentionMs;
  const rows = await rowsOf(
    ctx.storage.db
      .selectFrom('first_uses')
      .select(['kind', 'value'])
      .where('user_id', '=', userId)
      .where('value', 'in', [...new Set(uses.map((u) => u.value))])
      // A row past its retention that was not pruned yet counts as forgotten all the same.
      .where('last_used_at', '>=', since),
    flight,
  );
  const wanted = new Set(uses.map(key));
  return new Set(rows.map((r) => key(r as Use)).filter((k) => wanted.has(k)));
}

/** Whether `use` is among `known` (as knownUses returned them). */
export function isKnown(known: ReadonlySet<string>, use: Use): boolean {
  return known.has(key(use));
}

/**
 * Records the person's uses in the issuance's flight: a new row, or the last use moved to now.
 * Added to `flight` (it commits with the token's audit event).
 */
export function recordUsesIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, userId: string, uses: readonly Use[]): void {
  const unique = [...new Map(uses.map((u) => [key(u), u])).values()];
  if (unique.length === 0) return;
  const now = ctx.clock.now();
  void flight.run(
    ctx.storage.db
      .insertInto('first_uses')
      .values(unique.map((u) => ({ user_id: userId, kind: u.kind, value: u.value, first_used_at: now, last_used_at: now })))
      .onConflict((oc) => oc.columns(['user_id', 'kind', 'value']).doUpdateSet({ last_used_at: now })),
  );
}

/** Deletes the uses last made before the retention (ms `now`); returns how many. */
export async function pruneFirstUses(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  const result = await ctx.storage.db.deleteFrom('first_uses').where('last_used_at', '<', now - retentionMs).executeTakeFirst();
  return Number(result.numDeletedRows);
}
