import { sql, type Kysely, type Transaction } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import type { Database } from '../storage/schema.ts';
import { totalWindowMs, type ReservationRequest, type ReservationResult, type TransferTotals } from './totals.ts';

/** The ledger (migration 0054_transfer_totals): one row per reservation still in its window. */
export interface TransferLedgerTables {
  transfer_ledger: {
    /** The account and asset (./totals.ts `totalScope`). */
    scope: string;
    /**
     * The reservation id (the transfer's txn and entry, hashed: ./enforce.ts) and its holder,
     * `<id>/<holder>`: one row per holder of a reservation, each with its amount and the time the
     * reservation was first made (a reservation made before holders were recorded: `<id>` alone).
     */
    id: string;
    /** Micro-units (./amounts.ts). */
    amount: number | bigint | string;
    /** Epoch ms. */
    reserved_at: number;
  };
}

/**
 * The rolling totals in the database, for a deployment without Redis (./totals.ts). Each
 * reservation is one transaction that takes the scope's lock first — on PostgreSQL a
 * transaction-scoped advisory lock per account and asset (so two nodes reserving for one account
 * queue, and the second sums what the first committed; other accounts are not held up); on SQLite
 * the database's one writer (transactions BEGIN IMMEDIATE) — then drops what left the window,
 * sums it and inserts when the sum stays within the limit. Under READ COMMITTED without the lock,
 * two nodes could each sum the same total and both insert: the lock is what makes the limit hold.
 *
 * A reservation's holders (./totals.ts) are its rows: one per holder, `<id>/<holder>`, counted once
 * per id; a holder joining copies the first row's time, so the reservation leaves the window when
 * it would have. `release` deletes the holder's row only: the amount is counted while any row of
 * the id is left. The lasting hold of the issued tokens is the row `<id>` alone (as a reservation
 * made before holders were recorded, which no release deletes either): `keep` turns a holder's row
 * into it, so a reservation has at most that row and one per attempt still deciding. No schema
 * change: the ids were opaque text already.
 */
export class DatabaseTotals implements TransferTotals {
  readonly kind = 'database' as const;
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async reserve(request: ReservationRequest): Promise<ReservationResult> {
    return this.#db.transaction().execute(async (trx) => {
      await lockScope(trx, request.scope);
      await trx.deleteFrom('transfer_ledger').where('scope', '=', request.scope).where('reserved_at', '<=', request.now - totalWindowMs).execute();
      const rows = await trx.selectFrom('transfer_ledger').select(['id', 'amount', 'reserved_at']).where('scope', '=', request.scope).execute();
      const total = sumOnce(rows);
      const same = rows.find((row) => reservationOf(row.id) === request.id);
      const held = { scope: request.scope, id: holderRow(request.id, request.holder) };
      // Reserved before under this id: counted once, the total answered is the others'; this
      // attempt becomes one more holder (from the reservation's own time: the window is not stretched).
      if (same) {
        await trx.insertInto('transfer_ledger').values({ ...held, amount: String(same.amount), reserved_at: Number(same.reserved_at) }).onConflict((oc) => oc.columns(['scope', 'id']).doNothing()).execute();
        return { reserved: true, created: false, total: total - BigInt(same.amount) };
      }
      if (total + request.amount > request.limit) return { reserved: false, created: false, total };
      await trx.insertInto('transfer_ledger').values({ ...held, amount: request.amount.toString(), reserved_at: request.now }).execute();
      return { reserved: true, created: true, total };
    });
  }

  async release(scope: string, id: string, holder: string): Promise<void> {
    await this.#db.deleteFrom('transfer_ledger').where('scope', '=', scope).where('id', '=', holderRow(id, holder)).execute();
  }

  async keep(scope: string, id: string, holder: string): Promise<void> {
    const held = holderRow(id, holder);
    await this.#db.transaction().execute(async (trx) => {
      // The holder's row becomes the lasting row `<id>` (its amount and first time copied; there
      // already when an earlier token of the reservation was issued), in one transaction: the id
      // is counted throughout, by one row or the other.
      await trx
        .insertInto('transfer_ledger')
        .columns(['scope', 'id', 'amount', 'reserved_at'])
        .expression((eb) => eb.selectFrom('transfer_ledger').select(['scope', eb.val(id).as('id'), 'amount', 'reserved_at']).where('scope', '=', scope).where('id', '=', held))
        .onConflict((oc) => oc.columns(['scope', 'id']).doNothing())
        .execute();
      await trx.deleteFrom('transfer_ledger').where('scope', '=', scope).where('id', '=', held).execute();
    });
  }

  async total(scope: string, now: number): Promise<bigint> {
    const rows = await this.#db.selectFrom('transfer_ledger').select(['id', 'amount']).where('scope', '=', scope).where('reserved_at', '>', now - totalWindowMs).execute();
    return sumOnce(rows);
  }
}

/** A holder's row of a reservation. Reservation ids are base64url: the first `/` ends one. */
const holderRow = (id: string, holder: string) => `${id}/${holder}`;
const reservationOf = (row: string) => (row.includes('/') ? row.slice(0, row.indexOf('/')) : row);

/** The total of some rows, each reservation counted once however many hold it. */
function sumOnce(rows: readonly { id: string; amount: number | bigint | string }[]): bigint {
  const amounts = new Map<string, bigint>();
  for (const row of rows) amounts.set(reservationOf(row.id), BigInt(row.amount));
  let total = 0n;
  for (const amount of amounts.values()) total += amount;
  return total;
}

/** Serialises reservations of one scope across nodes (PostgreSQL); SQLite has one writer at a time. */
async function lockScope(trx: Transaction<Database>, scope: string): Promise<void> {
  if (!isPostgres(trx)) return;
  await sql`select pg_advisory_xact_lock(hashtextextended('clearance.transfer-total:' || current_schema() || ':' || ${scope}, 0))`.execute(trx);
}

/** Deletes the reservations that left every window (an account that stopped transferring keeps none); returns how many. */
export async function pruneTransferLedger(db: Kysely<Database>, now: number): Promise<number> {
  const result = await db.deleteFrom('transfer_ledger').where('reserved_at', '<=', now - totalWindowMs).executeTakeFirst();
  return Number(result.numDeletedRows);
}
