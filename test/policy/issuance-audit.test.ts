import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent, StoredAuditEvent } from '../../src/audit/events.ts';
import { validateEvent } from '../../src/audit/event-format.ts';
import { maxEventBytes } from '../../src/audit/guard.ts';
import { authorizeIssuance, type Issuance } from '../../src/policy/issuance.ts';
import { foldDecisions, foldedDecisions } from '../../src/policy/issuance-audit.ts';
import { testContext } from '../helpers/storage.ts';
import { applyDocument, exampleEntities, ordersApi, peopleAndClients, policyContext, userId } from './fixture.ts';

const tokenEvent: AuditEvent = { type: 'token.issued', requestId: 'r1', actor: 'trading-ui', client: 'trading-ui', audience: ordersApi, scopes: ['order:create', 'position:view'], details: { grant_type: 'authorization_code', jti: 'j1' } };

const order = (symbol: string, actions?: string[]) => ({
  type: 'order',
  instrument: { class: 'fx', symbol },
  side: 'buy',
  max_notional: { amount: '1000000', currency: 'USD' },
  venue: 'XLON',
  account: 'GB-FX-001',
  ...(actions ? { actions } : {}),
});

/** The event as the log stores and returns it. */
function stored(event: AuditEvent): StoredAuditEvent {
  return JSON.parse(JSON.stringify({ ...event, v: 1, id: 'e1', time: 0, node: 'n1' })) as StoredAuditEvent;
}

describe('folding the decisions of an issuance into its token event', () => {
  test('scopes share one request, an entry its actions another, entities are stored once, and each decision reads back exactly as evaluated', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const issuance: Issuance = { subject: { type: 'User', id: alice }, clientId: 'trading-ui', audience: ordersApi, scopes: ['order:create', 'position:view'], authorizationDetails: [order('EURUSD', ['create', 'cancel']), order('GBPUSD')], requestId: 'r1', grantType: 'authorization_code' };
    const { allows } = await authorizeIssuance(ctx, issuance);
    assert.equal(allows.length, 5);

    const { event, separate } = foldDecisions(tokenEvent, allows);
    assert.deepEqual(separate, []);
    validateEvent(event);
    assert.deepEqual(event.decision, { allow: true, reasons: ['tokens-for-active-principals', 'desk-trades-its-product-classes'], policyVersion: 'v1' });
    const details = event.details!;
    assert.equal(details.jti, 'j1', 'the token event keeps its own details');
    assert.deepEqual(
      (details.decisions as { action: string; request: number }[]).map((d) => `${d.action}@${d.request}`),
      ['order:create@0', 'position:view@0', 'order:create@1', 'order:cancel@1', 'order:create@2'],
    );
    // The person, their desks and firm, the resource server and two instruments: seven entities.
    assert.equal((details.entities as unknown[]).length, 7);
    assert.ok(JSON.stringify(event).length < allows.reduce((n, a) => n + JSON.stringify(a).length, 0) / 2, 'less than half the separate events');

    const read = foldedDecisions(stored(event));
    assert.deepEqual(
      read.map((d) => d.request),
      allows.map((a) => JSON.parse(JSON.stringify(a.details!.request))),
    );
    assert.deepEqual(
      read.map((d) => [d.principal, d.action, d.resource, d.reasons]),
      allows.map((a) => [a.details!.principal, a.details!.action, a.details!.resource, a.decision!.reasons]),
    );
  });

  test('the baseline folds to its decision alone: nothing was evaluated', async (t) => {
    const { ctx } = await testContext({ t });
    await applyDocument(ctx, { ...exampleEntities(), ...peopleAndClients });
    const { allows } = await authorizeIssuance(ctx, { subject: { type: 'Client', id: 'risk-engine' }, clientId: 'risk-engine', audience: ordersApi, scopes: ['position:view'], authorizationDetails: [], requestId: 'r1', grantType: 'client_credentials' });
    const { event, separate } = foldDecisions(tokenEvent, allows);
    assert.deepEqual(separate, []);
    assert.deepEqual(event, { ...tokenEvent, decision: { allow: true, reasons: ['baseline: no policy set is active, registration decides'], policyVersion: 'baseline' } });
    assert.deepEqual(foldedDecisions(stored(event)), [{ reasons: ['baseline: no policy set is active, registration decides'] }]);
  });

  test('a token event with no allows (Clearance’s own APIs) is unchanged and holds no decision', () => {
    const { event, separate } = foldDecisions(tokenEvent, []);
    assert.equal(event, tokenEvent);
    assert.deepEqual(separate, []);
    assert.deepEqual(foldedDecisions(stored(event)), []);
  });

  test('allows that would make the event too large, or that name different policy versions, are recorded separately', async (t) => {
    const { ctx } = await policyContext(t);
    const issuance: Issuance = { subject: { type: 'Client', id: 'risk-engine' }, clientId: 'risk-engine', audience: ordersApi, scopes: ['position:view'], authorizationDetails: [], requestId: 'r1', grantType: 'client_credentials' };
    const { allows } = await authorizeIssuance(ctx, issuance);
    const folded = foldDecisions(tokenEvent, allows).event;
    // The log's limit less the 1 KiB left for what is added after folding, less `,"pad":""`.
    const room = maxEventBytes - 1024 - Buffer.byteLength(JSON.stringify(folded)) - ',"pad":""'.length;

    // Just fits: folded. One byte more: the token event unchanged, and the allows beside it.
    const fits = { ...tokenEvent, details: { ...tokenEvent.details, pad: 'x'.repeat(room) } };
    assert.deepEqual(foldDecisions(fits, allows).separate, []);
    const over = { ...tokenEvent, details: { ...tokenEvent.details, pad: 'x'.repeat(room + 1) } };
    const tooLarge = foldDecisions(over, allows);
    assert.equal(tooLarge.event, over);
    assert.deepEqual(tooLarge.separate, allows);

    const otherVersion = { ...allows[0]!, decision: { ...allows[0]!.decision!, policyVersion: 'v2' } };
    const mixed = foldDecisions(tokenEvent, [...allows, otherVersion]);
    assert.equal(mixed.event, tokenEvent);
    assert.equal(mixed.separate.length, 2);
  });
});
