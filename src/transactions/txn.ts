import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { uuidV7 } from '../uuid-v7.ts';

/**
 * A trade's transaction id (`txn`, DESIGN §4): the one home of its format and of who may start one
 * (docs/audit.md "One txn from the first action").
 *
 * - Format: 1 to 64 of `A-Z a-z 0-9 . _ : -` — short, printable, nothing that could smuggle a
 *   separator into a log line or an index key. The same rule for a client's `txn` parameter, a
 *   partner token's `txn` claim and the AuthZEN context's `txn`.
 * - Who starts one: a client, at a grant that carries `authorization_details` or a mandate (the
 *   first token of a trade), by sending `txn=<id>` or `txn=new` (Clearance mints one: `mintTxn`).
 *   `new` is the one reserved value: one parameter, so a request cannot both choose and ask.
 * - Uniqueness: a txn is started once, by one client (table `transactions`, migration 0032,
 *   written in the issuance's own transaction). Another client starting it, or the same client
 *   starting it again for a new first token, is `invalid_request`. Continuing it — a token
 *   exchange of a token that carries it — is not a start and is not checked here.
 */
export const txnPattern = /^[A-Za-z0-9._:-]{1,64}$/;

/** The value a client sends to ask Clearance to mint the txn. */
export const newTxn = 'new';

export function isTxn(value: unknown): value is string {
  return typeof value === 'string' && value !== newTxn && txnPattern.test(value);
}

/**
 * A txn Clearance mints (`txn=new`, or the first hop of a token exchange whose subject token has
 * none): a UUIDv7 made at `nowMs` (src/uuid-v7.ts). Time-ordered, so the audit log's query index
 * (`txn:` keys, written by the sealer) and the `transactions` table take a trade's rows at their
 * right edge; its 74 random bits keep it unguessable, which a txn must be (a txn nobody has started
 * is the first taker's: docs/federation.md).
 */
export function mintTxn(nowMs: number): string {
  return uuidV7(nowMs);
}

/** A txn a client asked for: the one it chose, a minted one for `txn=new`, or undefined. */
export function requestedTxn(value: string | undefined, nowMs: number): { txn: string; chosen: boolean } | undefined {
  if (value === undefined) return undefined;
  if (value === newTxn) return { txn: mintTxn(nowMs), chosen: false };
  if (!isTxn(value)) throw new OAuthError('invalid_request', 'txn must be 1 to 64 letters, digits or . _ : - (or txn=new to have one minted)', { detail: 'txn_malformed' });
  return { txn: value, chosen: true };
}

/**
 * Adds the start of `txn` by `clientId` to the issuance's flight: one row, inserted only if the
 * txn was never started — otherwise the whole issuance is refused (FlightRefused `txn_taken`) and
 * nothing of it is written.
 */
export function startTxnIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, txn: string, clientId: string): void {
  const insert = ctx.storage.db
    .insertInto('transactions')
    .values({ txn, client_id: clientId, started_at: ctx.clock.now() })
    .onConflict((oc) => oc.column('txn').doNothing());
  void flight.run(insert, { rows: 1, otherwise: txnTaken });
}

export const txnTaken = 'txn_taken';

/**
 * Starts `txn` for `clientId` on its own (an authorization request, PAR or /authorize, where the
 * person's order starts: no issuance to ride with), or rejects with the refusal of a taken txn.
 * A request that then goes nowhere leaves its txn started: a txn is never handed out twice.
 */
export async function startTxn(ctx: Pick<Context, 'storage' | 'clock'>, txn: string, clientId: string): Promise<void> {
  const started = await ctx.storage.db
    .insertInto('transactions')
    .values({ txn, client_id: clientId, started_at: ctx.clock.now() })
    .onConflict((oc) => oc.column('txn').doNothing())
    .returning('txn')
    .executeTakeFirst();
  if (!started) throw await txnRefusal(ctx.storage.db, txn, clientId);
}

/** The refusal of a txn already started: this client's own reuse, or another client's txn (not named). */
export async function txnRefusal(db: Kysely<Database>, txn: string, clientId: string): Promise<OAuthError> {
  const row = await db.selectFrom('transactions').select('client_id').where('txn', '=', txn).executeTakeFirst();
  if (row?.client_id === clientId) {
    return new OAuthError('invalid_request', 'this txn already started a transaction of this client; a new first token needs a new txn (exchange continues it)', { detail: 'txn_reused' });
  }
  return new OAuthError('invalid_request', 'this txn is not available to this client; choose another, or send txn=new', { detail: 'txn_of_another_client' });
}

export interface TransactionTables {
  /** Each txn a client started (docs/audit.md): who started it and when (ms). Never pruned with tokens: the audit log outlives them. */
  transactions: { txn: string; client_id: string; started_at: number };
}
