import { isRefusal, type AuditEvent } from '../audit/events.ts';
import { queryEvents } from '../audit/query.ts';
import type { Context } from '../context.ts';
import type { GrantResult } from '../grants/grant.ts';
import type { OAuthError } from '../oauth-error.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import { txnTaken } from './txn.ts';

/**
 * A txn a partner names — its JWT authorization grant's or its subject token's `txn` claim
 * (docs/federation.md "Identity chaining across domains", "The txn a partner names") — is a trade
 * the partner is a party to only if it shares it. A partner must not pick a local trade: its
 * client's token would be filed under another firm's txn and make it a party to that trade's
 * counterparty evidence (src/evidence/counterparty.ts). So a partner's txn is taken:
 * - when it is shared with that partner already (`transaction_partners`, migration 0061): started
 *   here through it, or sent to it in a grant of ours (a trade that comes back keeps its txn);
 * - when it was never seen here (no `transactions` row, no audit event under it but refusals): it is started
 *   here through the partner, with the token issued from it (`commitPartnerTxn`), its
 *   `transactions` row naming the presenting client;
 * and refused otherwise (the grant's refusal: invalid_grant at the JWT bearer grant, invalid_request
 * for a subject token), recorded as every refusal — never filed under that txn. A refusal keeps the
 * honest case intact (a partner's new txn is carried unchanged across domains) where minting a
 * fresh txn would silently split a trade in two.
 */
export interface TransactionPartnerTables {
  /** Each partner a txn is shared with (`how`: started | sent), and since when (ms). Never pruned. */
  transaction_partners: { txn: string; partner_id: string; how: string; at: number };
}

/** How a partner's txn is taken: `start` it here through the partner, or continue a shared one. */
export type PartnerTxn = { txn: string; start: boolean } | 'not_shared';

/** Whether `partnerId` may name `txn` (a well-formed txn: src/transactions/txn.ts isTxn). One or three reads. */
export async function partnerTxn(ctx: Pick<Context, 'storage'>, partnerId: string, txn: string): Promise<PartnerTxn> {
  const db = ctx.storage.db;
  const shared = await db.selectFrom('transaction_partners').select('txn').where('txn', '=', txn).where('partner_id', '=', partnerId).executeTakeFirst();
  if (shared) return { txn, start: false };
  // Known here: started by a client of ours (or through another partner), or under way by
  // exchange (a txn minted at a first hop has no `transactions` row, only events).
  const started = await db.selectFrom('transactions').select('txn').where('txn', '=', txn).executeTakeFirst();
  if (started) return 'not_shared';
  return (await underWay(db, txn)) ? 'not_shared' : { txn, start: true };
}

/**
 * Whether any event under `txn` shows a trade under way here: anything but a refusal. Refusals do
 * not count — a partner's first use of its new txn that a policy refused is filed under that txn,
 * and the partner's retry once the policy allows it is still the start of its trade. Fail closed:
 * a first page of refusals only, with more behind it, counts as under way.
 */
async function underWay(db: Pick<Context, 'storage'>['storage']['db'], txn: string): Promise<boolean> {
  const page = await queryEvents(db, { txn }, { limit: 100 });
  const refusal = (e: (typeof page.events)[number]['event']) => e.decision?.allow === false || isRefusal(e.type);
  return page.events.some((e) => !refusal(e.event)) || page.next !== undefined;
}

/**
 * Commits the issuance's events with the start of `txn` through the partner: its `transactions`
 * row (the presenting client) and its `transaction_partners` row, all or nothing. A txn started
 * meanwhile is refused (`refusal`) unless it was started through the same partner (two of its
 * hops raced): then this one continues it, and its events are left for the endpoint to record.
 */
export async function commitPartnerTxn(
  ctx: Pick<Context, 'storage' | 'clock' | 'audit'>,
  start: { txn: string; clientId: string; partnerId: string },
  result: GrantResult & { events: AuditEvent[] },
  refusal: () => OAuthError,
): Promise<GrantResult> {
  const flight = ctx.storage.flight();
  const now = ctx.clock.now();
  const db = ctx.storage.db;
  void flight.run(db.insertInto('transactions').values({ txn: start.txn, client_id: start.clientId, started_at: now }).onConflict((oc) => oc.column('txn').doNothing()), { rows: 1, otherwise: txnTaken });
  void flight.run(shareRow(ctx, start.txn, start.partnerId, 'started', now));
  try {
    await ctx.audit.commit(flight, result.events);
  } catch (error) {
    if (!refusedFor(error, txnTaken)) throw error;
    const taken = await partnerTxn(ctx, start.partnerId, start.txn);
    if (taken === 'not_shared' || taken.start) throw refusal();
    return result;
  }
  return { response: result.response, ...(result.observe ? { observe: result.observe } : {}) };
}

/**
 * Commits the events of a JWT authorization grant that carries `txn` to a partner with the record
 * that the txn is shared with it (`sent`): the partner may name it back, and only it.
 */
export async function commitSentTxn(ctx: Pick<Context, 'storage' | 'clock' | 'audit'>, txn: string, partnerId: string, result: GrantResult & { events: AuditEvent[] }): Promise<GrantResult> {
  const flight = ctx.storage.flight();
  void flight.run(shareRow(ctx, txn, partnerId, 'sent', ctx.clock.now()));
  await ctx.audit.commit(flight, result.events);
  return { response: result.response, ...(result.observe ? { observe: result.observe } : {}) };
}

function shareRow(ctx: Pick<Context, 'storage'>, txn: string, partnerId: string, how: 'started' | 'sent', at: number) {
  return ctx.storage.db
    .insertInto('transaction_partners')
    .values({ txn, partner_id: partnerId, how, at })
    .onConflict((oc) => oc.columns(['txn', 'partner_id']).doNothing());
}
