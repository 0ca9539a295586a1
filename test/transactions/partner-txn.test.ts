import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import type { AuditEvent, StoredAuditEvent } from '../../src/audit/events.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { commitPartnerTxn, partnerTxn } from '../../src/transactions/partner-txn.ts';
import { startTxn } from '../../src/transactions/txn.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import {
  aIssuer,
  aProfileAtB,
  aOrdersApi,
  accessTokenType,
  bIssuer,
  bProfileAtA,
  bSettlementApi,
  brokerLei,
  exchangeGrant,
  grantAt,
  grantSignedBy,
  jwtBearerAt,
  jwtBearerGrant,
  jwtType,
  partnerOfA,
  twoDomains,
  type Domain,
} from '../helpers/domains.ts';

// The txn a partner names (docs/federation.md "Identity chaining across domains"; issue 26 item 5
// review): a partner's JWT authorization grant (RFC 7523) or subject token (RFC 8693) may carry a
// `txn`. It is taken only when the trade is shared with that partner — started here through it,
// or sent to it in one of our grants — or new here (then started here through the partner). A
// local trade the partner is no party to is refused, and the refusal is not filed under it: a
// partner never makes itself a party to another firm's trade.

const order = JSON.stringify([{ type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '1000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' }]);

/** The events `domain` filed under `txn`, by id. */
async function filedUnder(domain: Domain, txn: string): Promise<string[]> {
  return (await domain.f.auditEvents()).filter((e) => e.txn === txn).map((e) => e.id);
}

/** The partners `domain` shares `txn` with, and how. */
async function sharedWith(domain: Domain, txn: string): Promise<{ partner_id: string; how: string }[]> {
  const rows = await domain.f.ctx.storage.db.selectFrom('transaction_partners').select(['partner_id', 'how']).where('txn', '=', txn).orderBy('partner_id').execute();
  return rows.map((r) => ({ partner_id: r.partner_id, how: r.how }));
}

/** Who started `txn` at `domain`, if anyone did. */
async function startedBy(domain: Domain, txn: string): Promise<string | undefined> {
  return (await domain.f.ctx.storage.db.selectFrom('transactions').select('client_id').where('txn', '=', txn).executeTakeFirst())?.client_id;
}

/** RFC 8693 at A: `subjectToken` (a partner's access token) exchanged by a-desk-backend for A's order API. */
function exchangeAtA(a: Domain, subjectToken: string) {
  return a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: exchangeGrant, subject_token: subjectToken, subject_token_type: accessTokenType, resource: aOrdersApi } });
}

/** The latest event of a type. */
async function last(domain: Domain, type: 'assertion.refused' | 'exchange.refused' | 'token.issued' | 'token.exchanged'): Promise<StoredAuditEvent> {
  return (await domain.f.auditEvents(type)).at(-1)!;
}

/** Two local trades of A's: one a client started (a `transactions` row), one minted at a first exchange (events only). */
async function localTrades(a: Domain): Promise<{ started: string; minted: string }> {
  const first = await a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: 'client_credentials', resource: aOrdersApi, authorization_details: order, txn: 'trade-a-0001' } });
  assert.equal(first.statusCode, 200, first.body);
  assert.equal(await startedBy(a, 'trade-a-0001'), 'a-desk-backend');
  const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
  assert.equal(decodeJwt(own).txn, undefined);
  const hop = await a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: exchangeGrant, subject_token: own, subject_token_type: accessTokenType, resource: aOrdersApi } });
  assert.equal(hop.statusCode, 200, hop.body);
  const minted = decodeJwt(hop.json().access_token as string).txn as string;
  assert.equal(await startedBy(a, minted), undefined, 'a txn minted at an exchange has no transactions row, only events');
  assert.ok((await filedUnder(a, minted)).length > 0);
  return { started: 'trade-a-0001', minted };
}

/** B's profile at A accepting B's grants for A's order API, presented by a-gateway (A still sends grants to B). */
async function acceptFromB(a: Domain, b: Domain): Promise<void> {
  await a.f.apply({
    partners: [
      {
        ...bProfileAtA({ keys: (await b.f.ctx.keys.jwks()).keys.map((k) => ({ ...k })) }),
        max_assertion_lifetime: 300,
        allowed_audiences: [aOrdersApi],
        allowed_scopes: ['order:create'],
        clients: ['a-gateway'],
      },
    ],
  });
}

describe('a txn a partner names', () => {
  for (const dialect of testDialects()) {
    test(`a partner naming a trade of ours it is no party to is refused at both grants, and nothing is filed under that trade (${dialect.name})`, async (t) => {
      const { a } = await twoDomains(t, { dialect });
      const p = await partnerOfA(a);
      const { started, minted } = await localTrades(a);

      for (const txn of [started, minted]) {
        const before = await filedUnder(a, txn);
        // RFC 7523: P's grant, presented by the client P's profile names.
        const assertion = assertOAuthError(await jwtBearerAt(a, 'a-gateway', await p.assertion({ txn }), aOrdersApi), 400, 'invalid_grant', `assertion naming ${txn}`);
        assert.match(String(assertion.error_description), /txn names a transaction here that is not shared with partner p-bank/);
        const refusedAssertion = await last(a, 'assertion.refused');
        assert.equal(refusedAssertion.details!.reason, 'txn_not_shared');
        assert.equal(refusedAssertion.txn, undefined, 'not filed under the trade');
        // RFC 8693: P's access token as the subject token.
        const exchange = assertOAuthError(await exchangeAtA(a, await p.accessToken({ txn })), 400, 'invalid_request', `subject token naming ${txn}`);
        assert.match(String(exchange.error_description), /subject_token is not acceptable: its txn names a transaction here that is not shared with partner p-bank/);
        const refusedExchange = await last(a, 'exchange.refused');
        assert.equal(refusedExchange.details!.reason, 'txn_not_shared');
        assert.equal(refusedExchange.txn, undefined, 'not filed under the trade');
        assert.equal(refusedExchange.subject, 'p-desk-4', 'filed under the partner\'s subject');

        assert.deepEqual(await filedUnder(a, txn), before, 'the trade\'s record is as it was');
        assert.deepEqual(await sharedWith(a, txn), [], 'nor is it shared with P now');
      }
      assert.equal(await startedBy(a, started), 'a-desk-backend', 'still the trade of the client that started it');
    });

    test(`a partner's new txn is started here through it: it may name it again at either grant, and no other partner may (${dialect.name})`, async (t) => {
      const { a, b } = await twoDomains(t, { dialect });
      const p = await partnerOfA(a);
      await acceptFromB(a, b);
      const txn = 'p-trade-0001';

      const first = await jwtBearerAt(a, 'a-gateway', await p.assertion({ txn }), aOrdersApi);
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(decodeJwt(first.json().access_token as string).txn, txn, 'the trade keeps its id across domains');
      const issued = await last(a, 'token.issued');
      assert.equal(issued.txn, txn);
      assert.equal(issued.details!.partner, 'p-bank');
      assert.equal(await startedBy(a, txn), 'a-gateway', 'started here by the client that presented it');
      assert.deepEqual(await sharedWith(a, txn), [{ partner_id: 'p-bank', how: 'started' }]);

      // Named again: by another grant of P's, and by P's subject token.
      const again = await jwtBearerAt(a, 'a-gateway', await p.assertion({ txn }), aOrdersApi);
      assert.equal(again.statusCode, 200, again.body);
      assert.equal(decodeJwt(again.json().access_token as string).txn, txn);
      const exchanged = await exchangeAtA(a, await p.accessToken({ txn }));
      assert.equal(exchanged.statusCode, 200, exchanged.body);
      assert.equal(decodeJwt(exchanged.json().access_token as string).txn, txn);
      assert.equal((await last(a, 'token.exchanged')).txn, txn);
      assert.equal(await startedBy(a, txn), 'a-gateway', 'continued, not started again');

      // A new txn in P's subject token starts it too, by the exchanging client.
      const viaExchange = await exchangeAtA(a, await p.accessToken({ txn: 'p-trade-0002' }));
      assert.equal(viaExchange.statusCode, 200, viaExchange.body);
      assert.equal(decodeJwt(viaExchange.json().access_token as string).txn, 'p-trade-0002');
      assert.equal(await startedBy(a, 'p-trade-0002'), 'a-desk-backend');
      assert.deepEqual(await sharedWith(a, 'p-trade-0002'), [{ partner_id: 'p-bank', how: 'started' }]);

      // B is no party to P's trade.
      const before = await filedUnder(a, txn);
      const fromB = assertOAuthError(await jwtBearerAt(a, 'a-gateway', await grantSignedBy(b, { txn }, aIssuer), aOrdersApi), 400, 'invalid_grant', 'B naming P\'s trade');
      assert.match(String(fromB.error_description), /not shared with partner clearance-b/);
      assert.deepEqual(await filedUnder(a, txn), before);
      assert.deepEqual(await sharedWith(a, txn), [{ partner_id: 'p-bank', how: 'started' }]);
      // B's own new trade is its own.
      const bTrade = await jwtBearerAt(a, 'a-gateway', await grantSignedBy(b, { txn: 'b-trade-0001' }, aIssuer), aOrdersApi);
      assert.equal(bTrade.statusCode, 200, bTrade.body);
      assert.deepEqual(await sharedWith(a, 'b-trade-0001'), [{ partner_id: 'clearance-b', how: 'started' }]);
    });
  }

  test('a txn sent to partner B in our grant comes back with B\'s own grant for us, and no other partner may name it', async (t) => {
    const { a, b } = await twoDomains(t);
    const p = await partnerOfA(a);
    await acceptFromB(a, b);
    // B: A's authorization server registered as a resource server there, and a chaining section for
    // it in B's profile of A, so domain-a-desk can ask B for a grant back to A.
    const aKeys = await a.f.ctx.keys.jwks();
    await b.f.apply({
      resource_servers: [{ identifier: aIssuer, name: 'Domain A', scopes: ['order:create'] }],
      clients: [{ client_id: 'domain-a-desk', kind: 'service', grant_types: [jwtBearerGrant, exchangeGrant], scope: 'order:create settlement:submit' }],
      partners: [aProfileAtB(aKeys, { allowed_audiences: [bSettlementApi, aIssuer], chaining: { clients: ['domain-a-desk'], scopes: ['order:create'], claims: ['act', 'txn'] } })],
    });

    // A → B: the grant carries a txn minted at A, now shared with B.
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const sent = await grantAt(a, 'a-desk-backend', own);
    assert.equal(sent.statusCode, 200, sent.body);
    const txn = decodeJwt(sent.json().access_token as string).txn as string;
    assert.equal(typeof txn, 'string');
    assert.deepEqual(await sharedWith(a, txn), [{ partner_id: 'clearance-b', how: 'sent' }]);
    assert.equal(await startedBy(a, txn), undefined);

    // At B: the grant becomes B's token (the txn new at B, started there through A), then a grant back to A.
    const atB = await jwtBearerAt(b, 'domain-a-desk', sent.json().access_token as string, bSettlementApi);
    assert.equal(atB.statusCode, 200, atB.body);
    assert.equal(decodeJwt(atB.json().access_token as string).txn, txn);
    assert.deepEqual(await sharedWith(b, txn), [{ partner_id: 'clearance-a', how: 'started' }]);
    const back = await b.f.post('/token', {
      auth: b.f.basic('domain-a-desk'),
      form: { grant_type: exchangeGrant, subject_token: atB.json().access_token as string, subject_token_type: accessTokenType, requested_token_type: jwtType, audience: aIssuer },
    });
    assert.equal(back.statusCode, 200, back.body);
    const grantBack = back.json().access_token as string;
    const claims = decodeJwt(grantBack);
    assert.equal(claims.iss, bIssuer);
    assert.equal(claims.aud, aIssuer);
    assert.equal(claims.txn, txn);
    assert.equal(claims.sub, 'a-desk-backend', 'A\'s own subject, back to A');

    // At A: B names the trade A sent it — taken, under the same txn, not started again.
    const home = await jwtBearerAt(a, 'a-gateway', grantBack, aOrdersApi);
    assert.equal(home.statusCode, 200, home.body);
    const token = decodeJwt(home.json().access_token as string);
    assert.equal(token.txn, txn, 'one txn A → B → A');
    assert.equal(token.origin_iss, bIssuer);
    assert.deepEqual(token.act, { sub: 'a-gateway', act: { sub: 'domain-a-desk', iss: bIssuer, act: { sub: 'domain-a-desk', iss: bIssuer } } }, 'only B\'s actors: B does not vouch for A\'s');
    const accepted = await last(a, 'token.issued');
    assert.equal(accepted.txn, txn);
    assert.equal(accepted.details!.partner_jti, claims.jti);
    assert.equal(await startedBy(a, txn), undefined, 'continued, not started');
    assert.deepEqual(await sharedWith(a, txn), [{ partner_id: 'clearance-b', how: 'sent' }]);

    // P was sent nothing: it may not name the trade, at either grant.
    const before = await filedUnder(a, txn);
    assertOAuthError(await jwtBearerAt(a, 'a-gateway', await p.assertion({ txn }), aOrdersApi), 400, 'invalid_grant', 'P naming the trade A sent to B');
    assertOAuthError(await exchangeAtA(a, await p.accessToken({ txn })), 400, 'invalid_request', 'P\'s subject token naming it');
    assert.deepEqual(await filedUnder(a, txn), before, 'nothing filed under the trade');
    assert.deepEqual(await sharedWith(a, txn), [{ partner_id: 'clearance-b', how: 'sent' }]);
  });
});

describe('partnerTxn and commitPartnerTxn', () => {
  /** A token.issued for `txn`, as an issuance would hand it to the commit. */
  const issuedUnder = (txn: string): { response: { access_token: string; token_type: 'Bearer'; expires_in: number }; events: AuditEvent[] } => ({
    response: { access_token: 'x', token_type: 'Bearer', expires_in: 60 },
    events: [{ type: 'token.issued', requestId: randomUUID(), txn, actor: 'gateway', client: 'gateway', subject: 'p-desk-4', details: { jti: randomUUID() } }],
  });
  const refusal = () => new OAuthError('invalid_grant', 'not shared', { detail: 'txn_not_shared' });
  const eventsUnder = async (db: Awaited<ReturnType<typeof testContext>>['ctx']['storage']['db'], txn: string) =>
    (await db.selectFrom('audit_events').select('event').execute()).filter((r) => (JSON.parse(r.event) as StoredAuditEvent).txn === txn).length;

  for (const dialect of testDialects()) {
    test(`a txn is the partner's to name when shared with it or unknown here; a local one, or another partner's, is not (${dialect.name})`, async (t) => {
      const { ctx } = await testContext({ t, dialect, risk: 'off' });
      assert.deepEqual(await partnerTxn(ctx, 'p-bank', 'new-0001'), { txn: 'new-0001', start: true }, 'never seen: started through the partner');

      const started = await commitPartnerTxn(ctx, { txn: 'new-0001', clientId: 'gateway', partnerId: 'p-bank' }, issuedUnder('new-0001'), refusal);
      assert.equal(started.events, undefined, 'committed with the start: nothing left for the endpoint to record');
      assert.equal(await eventsUnder(ctx.storage.db, 'new-0001'), 1);
      assert.deepEqual(await partnerTxn(ctx, 'p-bank', 'new-0001'), { txn: 'new-0001', start: false }, 'shared now');
      assert.equal(await partnerTxn(ctx, 'q-bank', 'new-0001'), 'not_shared', 'another partner\'s trade');

      await startTxn(ctx, 'local-0001', 'desk-app');
      assert.equal(await partnerTxn(ctx, 'p-bank', 'local-0001'), 'not_shared', 'a trade a client of ours started');
      await ctx.audit.record({ type: 'token.exchanged', txn: 'minted-0001', client: 'desk-app', actor: 'desk-app' });
      assert.equal(await partnerTxn(ctx, 'p-bank', 'minted-0001'), 'not_shared', 'a trade known only by its events');
    });

    test(`a partner's new txn whose first use was refused is still new: refusals filed under it show no trade (${dialect.name})`, async (t) => {
      const { ctx } = await testContext({ t, dialect, risk: 'off' });
      // A policy refused the partner's first grant: policy.denied and the grant's refusal under its txn.
      await ctx.audit.record({ type: 'policy.denied', txn: 'retry-0001', client: 'gateway', actor: 'gateway', decision: { allow: false, reasons: ['forbid-partner'], policyVersion: 'v1' } });
      await ctx.audit.record({ type: 'token.refused', txn: 'retry-0001', client: 'gateway', actor: 'gateway', details: { error: 'invalid_scope' } });
      assert.deepEqual(await partnerTxn(ctx, 'p-bank', 'retry-0001'), { txn: 'retry-0001', start: true }, 'the retry starts the trade');
      // Anything else under it is a trade under way, which the partner does not get to pick.
      await ctx.audit.record({ type: 'token.issued', txn: 'retry-0001', client: 'desk-app', actor: 'desk-app' });
      assert.equal(await partnerTxn(ctx, 'p-bank', 'retry-0001'), 'not_shared');
    });
  }

  test('a txn started meanwhile by a client of ours refuses the partner\'s issuance, and nothing of it is written', async (t) => {
    const { ctx } = await testContext({ t, risk: 'off' });
    // The partner's request read the txn as new; a local client started it before the commit.
    await startTxn(ctx, 'race-0001', 'desk-app');
    await assert.rejects(
      commitPartnerTxn(ctx, { txn: 'race-0001', clientId: 'gateway', partnerId: 'p-bank' }, issuedUnder('race-0001'), refusal),
      (error: OAuthError) => error.detail === 'txn_not_shared',
    );
    assert.equal(await eventsUnder(ctx.storage.db, 'race-0001'), 0, 'its token.issued was not written');
    assert.deepEqual(await ctx.storage.db.selectFrom('transaction_partners').selectAll().where('txn', '=', 'race-0001').execute(), [], 'nor is the trade shared');
    assert.equal((await ctx.storage.db.selectFrom('transactions').select('client_id').where('txn', '=', 'race-0001').executeTakeFirst())?.client_id, 'desk-app');
  });

  test('a txn started meanwhile through the same partner (two of its hops raced) is continued: the events are left for the endpoint', async (t) => {
    const { ctx } = await testContext({ t, risk: 'off' });
    await commitPartnerTxn(ctx, { txn: 'race-0002', clientId: 'gateway', partnerId: 'p-bank' }, issuedUnder('race-0002'), refusal);
    const second = issuedUnder('race-0002');
    const continued = await commitPartnerTxn(ctx, { txn: 'race-0002', clientId: 'gateway', partnerId: 'p-bank' }, second, refusal);
    assert.deepEqual(continued.events, second.events, 'for the endpoint to record, as any continuing issuance');
    assert.equal(await eventsUnder(ctx.storage.db, 'race-0002'), 1, 'not written by the refused start');
    // Through another partner: refused.
    await assert.rejects(commitPartnerTxn(ctx, { txn: 'race-0002', clientId: 'gateway', partnerId: 'q-bank' }, issuedUnder('race-0002'), refusal), (error: OAuthError) => error.detail === 'txn_not_shared');
  });
});
