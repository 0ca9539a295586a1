import type { Kysely } from 'kysely';
import type { Clock } from '../clock.ts';
import type { SharedStore } from '../risk/limits/redis.ts';
import type { Storage } from '../storage/database.ts';
import type { Database } from '../storage/schema.ts';
import { assetKey } from './detail.ts';
import { DatabaseTotals } from './totals-database.ts';
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
 * (a token refreshed or exchanged for the same transfer) counts it once, and answers that it did
 * not create it. A reservation the issuance created and did not use (refused after it) is
 * released; one it found already counted is never released by it (it is the earlier token's).
 */

/** The window of the rolling total. */
export const totalWindowMs = 24 * 3600 * 1000;

/** What one reservation asks. `scope`: the account and asset (`totalScope`); amounts in micro-units. */
export interface ReservationRequest {
  scope: string;
  id: string;
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
   * Takes back reservations this request created (`created: true`) when its issuance was refused
   * after them; never one it found already counted, which belongs to the token issued before it.
   */
  release(scope: string, id: string): Promise<void>;
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
    store = shared ? new RedisTotals(shared) : new DatabaseTotals(ctx.storage.db as Kysely<Database>);
    stores.set(ctx.storage, store);
  }
  return store;
}
