import type { Context } from '../context.ts';
import type { Kysely, Transaction } from 'kysely';
import { Flight, rowsOf } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';

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
 * Uses found known, remembered a while per database: a known use stays known (only pruning, after
 * the retention, forgets it), so a trader's familiar classes are not read again for every order.
 * What is new is always read: it becomes known when a token is issued, on any node.
 */
const remembered = new WeakMap<object, Map<string, number>>();
const rememberMs = 10 * 60_000;
const rememberLimit = 10_000;

/**
 * Which of `uses` the person has made within the retention (the rest are new to them). One
 * statement for those not remembered as known; with `flight`, sent with the flight's other statements.
 */
export async function knownUses(ctx: Pick<Context, 'storage' | 'clock'>, userId: string, uses: readonly Use[], flight?: Flight): Promise<Set<string>> {
  const now = ctx.clock.now();
  let memory = remembered.get(ctx.storage);
  if (!memory) remembered.set(ctx.storage, (memory = new Map()));
  const known = new Set<string>();
  const ask: Use[] = [];
  for (const use of uses) {
    const until = memory.get(`${userId}\n${key(use)}`);
    if (until !== undefined && until > now) known.add(key(use));
    else ask.push(use);
  }
  if (ask.length === 0) return known;
  const since = now - retentionMs;
  const rows = await rowsOf(
    ctx.storage.db
      .selectFrom('first_uses')
      .select(['kind', 'value'])
      .where('user_id', '=', userId)
      .where('value', 'in', [...new Set(ask.map((u) => u.value))])
      // A row past its retention that was not pruned yet counts as forgotten all the same.
      .where('last_used_at', '>=', since),
    flight,
  );
  const wanted = new Set(ask.map(key));
  for (const row of rows) {
    const k = key(row as Use);
    if (!wanted.has(k)) continue;
    known.add(k);
    if (memory.size >= rememberLimit) memory.clear();
    memory.set(`${userId}\n${k}`, now + rememberMs);
  }
  return known;
}

/** Whether `use` is among `known` (as knownUses returned them). */
export function isKnown(known: ReadonlySet<string>, use: Use): boolean {
  return known.has(key(use));
}

/**
 * Records the person's uses with an issuance: a new row, or the last use moved to now. Added to
 * `db` — the issuance's flight (it commits with the token's audit event) or its transaction.
 */
export async function recordUses(db: Flight | Transaction<Database>, ctx: Pick<Context, 'storage' | 'clock'>, userId: string, uses: readonly Use[]): Promise<void> {
  const unique = [...new Map(uses.map((u) => [key(u), u])).values()];
  if (unique.length === 0) return;
  const now = ctx.clock.now();
  const upsert = (on: Kysely<Database>) =>
    on
      .insertInto('first_uses')
      .values(unique.map((u) => ({ user_id: userId, kind: u.kind, value: u.value, first_used_at: now, last_used_at: now })))
      .onConflict((oc) => oc.columns(['user_id', 'kind', 'value']).doUpdateSet({ last_used_at: now }));
  if (db instanceof Flight) void db.run(upsert(ctx.storage.db));
  else await upsert(db).execute();
}

/** Deletes the uses last made before the retention (ms `now`); returns how many. */
export async function pruneFirstUses(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  const result = await ctx.storage.db.deleteFrom('first_uses').where('last_used_at', '<', now - retentionMs).executeTakeFirst();
  return Number(result.numDeletedRows);
}
