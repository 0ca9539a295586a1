import { sql, type Kysely, type Transaction } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import type { Database } from '../storage/schema.ts';
import { holdGraceMs, requestOfHolder, totalWindowMs, type ReservationRequest, type ReservationResult, type TransferTotals } from './totals.ts';

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
    /**
     * When the holder took its hold (epoch ms; migration 0067): on a holder's row only — null on
     * the lasting row `<id>`, and on a holder written before the migration (never settled).
     */
    held_at: number | null;
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
 * change for these: the ids were opaque text already.
 *
 * A holder's row also records when it was taken (`held_at`). A node that dies while issuing leaves
 * its attempt's row behind: before its token was issued (no token: the row alone would count the
 * transfer until the window ends) or after, before `keep` (a live token: the row must go on
 * counting). Once older than `holdGraceMs` it is settled (`settleStaleHolders`) by the next
 * reservation of the account and asset, under its lock, and by the pruning: kept as the lasting
 * hold when its request's token event is in the audit log (committed with the token), taken back
 * when it is not.
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
      const select = () => trx.selectFrom('transfer_ledger').select(['scope', 'id', 'amount', 'reserved_at', 'held_at']).where('scope', '=', request.scope).execute();
      let rows = await select();
      // Holds left behind by a node that died while issuing are settled before they are counted.
      if ((await settleStaleHolders(trx, rows, request.now)) > 0) rows = await select();
      const total = sumOnce(rows);
      const same = rows.find((row) => reservationOf(row.id) === request.id);
      const held = { scope: request.scope, id: holderRow(request.id, request.holder) };
      // Reserved before under this id: counted once, the total answered is the others'; this
      // attempt becomes one more holder (from the reservation's own time: the window is not stretched).
      if (same) {
        await trx.insertInto('transfer_ledger').values({ ...held, amount: String(same.amount), reserved_at: Number(same.reserved_at), held_at: request.now }).onConflict((oc) => oc.columns(['scope', 'id']).doNothing()).execute();
        return { reserved: true, created: false, total: total - BigInt(same.amount) };
      }
      if (total + request.amount > request.limit) return { reserved: false, created: false, total };
      await trx.insertInto('transfer_ledger').values({ ...held, amount: request.amount.toString(), reserved_at: request.now, held_at: request.now }).execute();
      return { reserved: true, created: true, total };
    });
  }

  async release(scope: string, id: string, holder: string): Promise<void> {
    await this.#db.deleteFrom('transfer_ledger').where('scope', '=', scope).where('id', '=', holderRow(id, holder)).execute();
  }

  async keep(scope: string, id: string, holder: string): Promise<void> {
    await this.#db.transaction().execute((trx) => keepHolderRow(trx, scope, holderRow(id, holder)));
  }

  async total(scope: string, now: number): Promise<bigint> {
    const rows = await this.#db.selectFrom('transfer_ledger').select(['id', 'amount']).where('scope', '=', scope).where('reserved_at', '>', now - totalWindowMs).execute();
    return sumOnce(rows);
  }
}

/**
 * The holder's row becomes the lasting row `<id>` (its amount and first time copied; there already
 * when an earlier token of the reservation was issued), in the caller's transaction: the id is
 * counted throughout, by one row or the other.
 */
async function keepHolderRow(trx: Transaction<Database>, scope: string, held: string): Promise<void> {
  await trx
    .insertInto('transfer_ledger')
    .columns(['scope', 'id', 'amount', 'reserved_at'])
    .expression((eb) => eb.selectFrom('transfer_ledger').select(['scope', eb.val(reservationOf(held)).as('id'), 'amount', 'reserved_at']).where('scope', '=', scope).where('id', '=', held))
    .onConflict((oc) => oc.columns(['scope', 'id']).doNothing())
    .execute();
  await trx.deleteFrom('transfer_ledger').where('scope', '=', scope).where('id', '=', held).execute();
}

/** A holder's row of a reservation. Reservation ids are base64url: the first `/` ends one. */
const holderRow = (id: string, holder: string) => `${id}/${holder}`;
const reservationOf = (row: string) => (row.includes('/') ? row.slice(0, row.indexOf('/')) : row);
const holderOf = (row: string) => row.slice(row.indexOf('/') + 1);

type LedgerRow = { scope: string; id: string; held_at: number | string | bigint | null };

/**
 * Settles the holders among `rows` older than the grace an issuance may take (./totals.ts
 * `holdGraceMs`): each was left by an attempt that is no longer deciding — its node died, or its
 * release failed. One whose reservation has its lasting row is redundant either way (the lasting
 * row counts the reservation): deleted. Otherwise the audit log decides: a token event of its
 * request, committed with the token, means a live token counts on it — it becomes the lasting
 * hold; none, and nothing was issued — it is taken back. Returns how many were settled. Rare (a
 * crash), so the audit lookup costs nothing on the usual path: a holder is young, or gone.
 */
async function settleStaleHolders(trx: Transaction<Database>, rows: readonly LedgerRow[], now: number): Promise<number> {
  const stale = rows.filter((row) => row.id.includes('/') && row.held_at !== null && Number(row.held_at) <= now - holdGraceMs);
  for (const row of stale) {
    const lasting = rows.some((other) => other.scope === row.scope && other.id === reservationOf(row.id));
    if (!lasting && (await tokenIssuedFor(trx, requestOfHolder(holderOf(row.id)), Number(row.held_at)))) await keepHolderRow(trx, row.scope, row.id);
    else await trx.deleteFrom('transfer_ledger').where('scope', '=', row.scope).where('id', '=', row.id).execute();
  }
  return stale.length;
}

/**
 * Whether the request issued its token: its `token.issued` or `token.exchanged` event — committed
 * in the transaction that made the token durable (src/tokens/issue.ts `settleIssuance`) — recorded
 * within the grace after the hold was taken (a minute either side for a clock that stepped). The event's stored
 * JSON is canonical (RFC 8785), so its request id reads `"requestId":"<id>"`. The Redis totals ask
 * it too (./totals-redis.ts): the audit log is in the database whichever store counts.
 */
export async function tokenIssuedFor(trx: Kysely<Database>, requestId: string, heldAt: number): Promise<boolean> {
  const needle = `"requestId":${JSON.stringify(requestId)}`;
  const found = isPostgres(trx) ? sql<boolean>`strpos(event, ${needle}) > 0` : sql<boolean>`instr(event, ${needle}) > 0`;
  const event = await trx
    .selectFrom('audit_events')
    .select('seq')
    .where('type', 'in', ['token.issued', 'token.exchanged'])
    .where('time', '>=', heldAt - 60_000)
    // An issuance longer than the grace has its hold taken back anyway (docs/transfers.md): the
    // scan reads the grace's events, not every event since.
    .where('time', '<=', heldAt + holdGraceMs + 60_000)
    .where(found)
    .limit(1)
    .executeTakeFirst();
  return event !== undefined;
}

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

/**
 * Deletes the reservations that left every window (an account that stopped transferring keeps
 * none), and settles the holders left behind older than the grace (`settleStaleHolders`), each
 * account and asset under its lock as a reservation would; returns how many rows were deleted or settled.
 */
export async function pruneTransferLedger(db: Kysely<Database>, now: number): Promise<number> {
  const result = await db.deleteFrom('transfer_ledger').where('reserved_at', '<=', now - totalWindowMs).executeTakeFirst();
  const stale = await db.selectFrom('transfer_ledger').select('scope').distinct().where('held_at', '<=', now - holdGraceMs).execute();
  let settled = 0;
  for (const { scope } of stale) {
    settled += await db.transaction().execute(async (trx) => {
      await lockScope(trx, scope);
      const rows = await trx.selectFrom('transfer_ledger').select(['scope', 'id', 'held_at']).where('scope', '=', scope).execute();
      return settleStaleHolders(trx, rows, now);
    });
  }
  return Number(result.numDeletedRows) + settled;
}
