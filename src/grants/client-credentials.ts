import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { selectTarget } from '../tokens/audience.ts';
import { issueAccessToken } from '../tokens/issue.ts';
import { clientParties, resolveIssuingMandate } from '../mandates/issuance.ts';
import { parseAuthorizationDetails } from '../authorization/authorization-details.ts';
import { refusedFor } from '../storage/flight.ts';
import { requestedTxn, startTxn, startTxnIn, txnRefusal, txnTaken } from '../transactions/txn.ts';
import { isTransfer } from '../transfers/detail.ts';
import { defineGrant, settleGrant, type GrantResult } from './grant.ts';

/**
 * RFC 6749 §4.4: a client obtains a token for itself, with its own credentials. The rules, in order:
 * 1. one audience and scopes the client is registered for (src/tokens/audience.ts);
 * 2. with `mandate` (docs/mandates.md): the mandate's current version names the client or its
 *    owner as grantee, is in force, and grants the scopes; the token carries `mandate: {id, v}`;
 * 3. the one issuance path (src/tokens/issue.ts): binding to the request's DPoP key or client
 *    certificate (a bearer token refused for a sender-constrained resource and under FAPI 2.0),
 *    the decision point for each scope and data residency, the claims (`sub` is the client), the
 *    signature; its allows are folded into `token.issued`, durable before the response leaves;
 * 4. `authorization_details` (RFC 9396 §6: also at the token endpoint) of registered types, carried
 *    by the token; with them or a mandate the token is a trade's first, and `txn` (a client's own
 *    id, or `new` for a minted one; src/transactions/txn.ts) starts its transaction: the txn goes
 *    into the token and every event, and its start is written in the issuance's own transaction
 *    (refused, nothing written, when it was started before). Without `txn` nothing of this runs.
 *    A token carrying transfers takes their daily-limit reservations back when this or its events'
 *    commit fails (grant.ts `settleGrant`); with transfers, a txn the client chose is started
 *    first, on its own, and taken back if the issuance fails (so a taken txn refuses the request
 *    before anything is reserved).
 * An emergency account (break-glass, src/approvals/break-glass) got here only with an activation in
 * force (client authentication's gate): its token is for the activation's audience and scopes only,
 * never under a mandate, ends no later than the activation, and carries `break_glass: true`, the
 * activation's id and its txn — as does its `token.issued` event.
 */
export const clientCredentials = defineGrant({
  grantType: 'client_credentials',
  parameters: ['scope', 'resource', 'mandate', 'authorization_details', 'txn'],
  repeatable: ['resource'],

  async handle({ params, client: authenticated, dpop, requestId, address }, ctx) {
    const { client } = authenticated;
    const clientId = client.metadata.client_id;
    const target = await selectTarget(params.all('resource'), params.get('scope'), client, ctx.resourceServers);
    const mandateId = params.get('mandate');
    const mandate =
      mandateId === undefined
        ? undefined
        : await resolveIssuingMandate(ctx, mandateId, { grantees: clientParties(clientId, client.metadata.owner_lei), offeredScopes: target.scopes, scopeRequested: params.get('scope') !== undefined });
    const server = target.resourceServer;
    const breakGlass = authenticated.breakGlass;
    const detailsParameter = params.get('authorization_details');
    const authorizationDetails =
      detailsParameter === undefined ? [] : parseAuthorizationDetails(detailsParameter, { instrumentClasses: (await ctx.entities.snapshot()).instrumentClasses, travelRuleThreshold: ctx.config.travelRuleThreshold });
    const started = requestedTxn(params.get('txn'), ctx.clock.now());
    if (started && authorizationDetails.length === 0 && mandateId === undefined) {
      throw new OAuthError('invalid_request', 'txn starts a trade: send it with authorization_details or a mandate');
    }
    if (breakGlass) {
      if (mandateId !== undefined) throw new OAuthError('invalid_request', 'an emergency account does not act under a mandate');
      if (started) throw new OAuthError('invalid_request', 'an emergency account\'s txn is its activation; it does not start one');
      if (server.identifier !== breakGlass.audience) throw new OAuthError('invalid_target', 'the break-glass activation does not grant this resource');
      const beyond = target.scopes.filter((s) => !breakGlass.scopes.includes(s));
      if (beyond.length > 0) throw new OAuthError('invalid_scope', `the break-glass activation does not grant ${beyond.join(' ')}`);
    }
    // A txn the client chose, for transfers: started first, on its own (one more round trip, for
    // transfer requests only), so that no issuance reserves the transfers' daily totals for a txn
    // it cannot start — and none that did is undone by another's start of it (their reservation ids
    // are the txn's). Taken back when the issuance fails. Minted txns (`new`) are nobody else's.
    const startsFirst = started?.chosen === true && authorizationDetails.some(isTransfer);
    if (startsFirst) await startTxn(ctx, started.txn, clientId);
    const untilIssued = startsFirst ? () => forgetTxnStart(ctx, started.txn, clientId) : undefined;
    const issued = await undoing(untilIssued, () => issueAccessToken(ctx, {
      grantType: 'client_credentials',
      requestId,
      client: authenticated,
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      target: { audience: server.identifier, ttl: server.access_token_ttl, requireSenderConstraint: server.require_sender_constraint, format: server.access_token_format },
      // RFC 9068 §2.2: the client itself is the subject when no resource owner is involved.
      sub: clientId,
      principal: { type: 'Client', id: clientId },
      scopes: mandate?.scopes ?? target.scopes,
      authorizationDetails,
      ...(mandate ? { mandate: mandate.version } : {}),
      ...(started ? { txn: started.txn } : {}),
      ...(address !== undefined ? { address } : {}),
      ...(breakGlass
        ? {
            txn: breakGlass.activation,
            notAfter: Math.floor(breakGlass.endsAt / 1000),
            claims: { break_glass: true as const, break_glass_activation: breakGlass.activation },
            event: { details: { break_glass: true, break_glass_activation: breakGlass.activation } },
          }
        : {}),
    }));
    const events = [...issued.decisions, issued.event];
    // A failed commit (or txn start) takes back the token's transfer reservations.
    return undoing(untilIssued, () =>
      settleGrant(ctx, issued, async () => {
        if (!started || startsFirst) return { response: issued.response, events, observe: issued.observe };
        return startTransaction(ctx, { txn: started.txn, clientId, requestId }, { response: issued.response, events, observe: issued.observe });
      }),
    );
  },
});

/** Runs `step`; when it fails, `undo` (when given) before the error goes on. */
async function undoing<T>(undo: (() => Promise<void>) | undefined, step: () => Promise<T>): Promise<T> {
  if (!undo) return step();
  try {
    return await step();
  } catch (error) {
    await undo();
    throw error;
  }
}

/**
 * Takes back a txn this request started first (its issuance failed): as when the start rides with
 * the events, a refused issuance leaves the txn free. Only this client's start of it is removed; a
 * failure to do so is logged (the txn then stays started, unused: the strict side).
 */
async function forgetTxnStart(ctx: Context, txn: string, clientId: string): Promise<void> {
  try {
    await ctx.storage.db.deleteFrom('transactions').where('txn', '=', txn).where('client_id', '=', clientId).execute();
  } catch (error) {
    ctx.log.warn({ err: error, txn }, 'client_credentials: the start of a txn whose issuance failed could not be taken back');
  }
}

/**
 * The txn's start and the issuance's events in one flight (one round trip): the token leaves only
 * if this client is the first to start the txn; otherwise nothing is written and it is refused.
 */
async function startTransaction(ctx: Context, start: { txn: string; clientId: string; requestId: string }, result: GrantResult & { events: AuditEvent[] }): Promise<GrantResult> {
  const flight = ctx.storage.flight();
  startTxnIn(flight, ctx, start.txn, start.clientId);
  try {
    await ctx.audit.commit(
      flight,
      result.events.map((event) => ({ ...event, requestId: start.requestId })),
    );
  } catch (error) {
    if (refusedFor(error, txnTaken)) throw await txnRefusal(ctx.storage.db, start.txn, start.clientId);
    throw error;
  }
  return { response: result.response, ...(result.observe ? { observe: result.observe } : {}) };
}
