import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../clock.ts';
import type { SharedStore } from '../risk/limits/redis.ts';
import type { Storage } from '../storage/database.ts';
import type { Database } from '../storage/schema.ts';
import { assetKey } from './detail.ts';
import { DatabaseTotals, pruneTransferLedger } from './totals-database.ts';
import { RedisTotals } from './totals-redis.ts';

/**
 * The rolling 24-hour total of transfers per source account and asset (docs/transfers.md "Totals
 * across nodes"), held by the store every node shares, so that the limit holds for the deployment,
 * not per node:
 *
 * - **Redis** when `REDIS_URL` is set (the rate limits' store, src/risk/limits): one Lua script
 *   per reservation over a sorted set per account and asset (./totals-redis.ts) — atomic, so two
 *   nodes reserving at once are serialised by Redis itself;
 * - **the database** otherwise (./totals-database.ts): a ledger table, each reservation one
 *   transaction that first takes a lock per account and asset (PostgreSQL: a transaction-scoped
 *   advisory lock; SQLite: its one writer), then sums the window and inserts.
 *
 * **Fail closed.** With Redis configured, a Redis that does not answer refuses the transfer
 * (`TotalsUnavailable` → 503 temporarily_unavailable): money limits never fall back to a count per
 * node, unlike the rate limits. A database that does not answer is the usual 503.
 *
 * A reservation has an id (the transfer's txn and entry, ./enforce.ts): reserving the same id again
 * (a token refreshed or exchanged for the same transfer, or an identical issuance of the same txn
 * in parallel) counts it once, and answers that it did not create it. Each reservation has its
 * **holders**: every issuance attempt that reserved it (`holder`, a name fresh per attempt), the
 * one that created it and each one that found it counted. An issuance refused after reserving lets
 * go of its own hold only (`release`); the reservation is taken back when no holder is left. An
 * issued token never lets go, so what it counts on stays counted for the window: two identical
 * issuances of one txn in parallel, the creator refused by a policy after both reserved, leave the
 * other's transfer counted. A holder joining later does not stretch the window: the reservation
 * leaves it 24 hours after it was first made.
 *
 * An attempt's hold is a holder only while the attempt is decided: once its token is issued (its
 * events durable), `keep` hands the hold to the reservation's **lasting hold**, one per reservation
 * and shared by every issued token of it. A token refreshed or exchanged N times under its txn so
 * holds the reservation once, not N + 1 times (each issuance attempt would otherwise leave a holder
 * for the rest of the window: a row per refresh in the database, a name per refresh in Redis), and
 * the attempts still deciding remain holders of their own, so a refused one lets go of its own.
 */

/** The window of the rolling total. */
export const totalWindowMs = 24 * 3600 * 1000;

/**
 * How long an issuance attempt may hold a reservation as a holder, from its reservation to its
 * token's events being durable and `keep`: far longer than any issuance takes. A holder older than
 * this was left by a node that died while issuing (or a release that failed), and both stores
 * settle it (./totals-database.ts `settleStaleHolders`, ./totals-redis.ts): kept as the lasting
 * hold when its token was issued, taken back when it was not.
 */
export const holdGraceMs = 5 * 60_000;

/**
 * An issuance attempt's name as a holder: its request id, which the token's event records (so a
 * holder left behind can be told issued or not), and a random part — fresh per attempt, so that
 * no two attempts (even of one HTTP request) ever let go of each other's holds.
 */
export function newHolder(requestId: string): string {
  return `${requestId}:${randomUUID()}`;
}

/** The request id of a holder named by `newHolder` (the random part has no `:`). */
export function requestOfHolder(holder: string): string {
  const end = holder.lastIndexOf(':');
  return end < 0 ? holder : holder.slice(0, end);
}

/** What one reservation asks. `scope`: the account and asset (`totalScope`); amounts in micro-units. */
export interface ReservationRequest {
  scope: string;
  id: string;
  /** Who holds it: the issuance attempt (`newHolder`: its request id and a random part), unique per attempt. */
  holder: string;
  amount: bigint;
  limit: bigint;
  /** Epoch ms. */
  now: number;
}

/**
 * `reserved`: counted (or counted before, under the same id); `created`: this call added the
 * reservation (false when it was counted before under the same id, or refused) — only a
 * reservation the request created is its to release; `total`: the window's total without this
 * reservation.
 */
export interface ReservationResult {
  reserved: boolean;
  created: boolean;
  total: bigint;
}

export interface TransferTotals {
  readonly kind: 'redis' | 'database';
  /** Counts the amount when the window's total stays within the limit; atomic across nodes. */
  reserve(request: ReservationRequest): Promise<ReservationResult>;
  /**
   * Lets go of `holder`'s hold on a reservation (its issuance was refused after reserving): the
   * reservation is taken back when no other holder is left — never while an issued token, or
   * another issuance still deciding, holds it. Letting go twice is letting go once; a reservation
   * made before holders were recorded is kept (counted until its window ends: fail closed).
   */
  release(scope: string, id: string, holder: string): Promise<void>;
  /**
   * `holder`'s issuance was issued: its hold becomes the reservation's lasting hold (never let go;
   * counted until the window ends), which every issued token of the reservation shares — so a
   * reservation keeps one lasting hold however often its token is refreshed or exchanged. Keeping
   * twice is keeping once; a holder no longer there (its window ended) is nothing to keep.
   */
  keep(scope: string, id: string, holder: string): Promise<void>;
  /** The window's total now (for tests and the admin's view). */
  total(scope: string, now: number): Promise<bigint>;
}

/** The shared store is configured but does not answer: the transfer is refused (fail closed). */
export class TotalsUnavailable extends Error {
  constructor(cause: string) {
    super(`the store of transfer totals is unavailable: ${cause}`);
    this.name = 'TotalsUnavailable';
  }
}

/**
 * The key of one rolling total: the account (of its legal entity) and the asset, by its canonical
 * key (./detail.ts `assetKey`), so that two spellings of one ERC-20 contract share one total.
 */
export function totalScope(lei: string, account: string, asset: string): string {
  return `${lei}|${account}|${assetKey(asset)}`;
}

const stores = new WeakMap<object, TransferTotals>();

/**
 * The totals of this deployment: in Redis when the node has a shared store (REDIS_URL), else in
 * the database; one per storage handle.
 */
export function transferTotals(ctx: { storage: Storage; clock: Clock; risk: { limits: { shared: SharedStore | undefined } } }): TransferTotals {
  let store = stores.get(ctx.storage);
  if (!store) {
    const shared = ctx.risk.limits.shared;
    const db = ctx.storage.db as Kysely<Database>;
    // The Redis totals read the audit log, in the database, to settle a holder a dead node left.
    store = shared ? new RedisTotals(shared, db) : new DatabaseTotals(db);
    stores.set(ctx.storage, store);
  }
  return store;
}

/**
 * The pruning of the totals (src/authorization/pruning.ts, every 10 minutes per process): the
 * ledger's reservations out of every window and its stale holders (./totals-database.ts
 * `pruneTransferLedger`), and with Redis the stale holders there (./totals-redis.ts `prune`).
 * Returns how many were deleted or settled.
 */
export async function pruneTransferTotals(ctx: Parameters<typeof transferTotals>[0], now: number): Promise<number> {
  const pruned = await pruneTransferLedger(ctx.storage.db as Kysely<Database>, now);
  const store = transferTotals(ctx);
  return pruned + (store instanceof RedisTotals ? await store.prune(now) : 0);
}
