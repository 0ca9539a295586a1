import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { revokeMandate } from '../../src/mandates/store.ts';
import { authorizeIssuance } from '../../src/policy/issuance.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, exampleEntities, ordersApi, peopleAndClients, policyContext, userId } from './fixture.ts';

const brokerLei = '5493001KJTIIGC8Y1R12';

/** A mandate from the broker to its FX algorithm, in force from 2020 on. */
const algoMandate = {
  id: 'algo-fx-mandate',
  grantor: { lei: brokerLei },
  grantee: { client_id: 'algo-fx-1' },
  scopes: ['order:create'],
  constraints: { instrument_classes: ['fx'], max_notional: { amount: '1000000', currency: 'USD' } },
  legal_basis: { reference: 'Algorithm approval AA-7' },
  effective_from: '2020-01-01T00:00:00Z',
  accepted_by: 'head-of-trading',
  accepted_at: '2020-01-01T00:00:00Z',
};

async function server(t: TestContext, dialect?: ReturnType<typeof testDialects>[number]) {
  const base = await policyContext(t, dialect ? { dialect } : {});
  const app = buildApp(base.ctx);
  t.after(() => app.close());
  await app.ready();
  const token = (clientId: string, form: Record<string, string>) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(clientId, base.secrets[clientId]!) },
      payload: formBody({ grant_type: 'client_credentials', ...form }),
    });
  return { ...base, app, token };
}

async function events(ctx: Context, types: string[]): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', types).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

describe('policy enforcement at token issuance', () => {
  for (const dialect of testDialects()) {
    test(`an algorithm gets no trading token without a mandate, and the refusal names the policy (${dialect.name})`, async (t) => {
      const { token, ctx } = await server(t, dialect);
      const response = await token('algo-fx-1', { resource: ordersApi, scope: 'order:create' });
      const body = assertOAuthError(response, 400, 'invalid_scope');
      assert.match(String(body.error_description), /order:create is refused by policy: agents-trade-only-under-mandate/);
      // The policy text never leaves the server.
      assert.doesNotMatch(String(body.error_description), /forbid|permit|context/);
      const [denied] = await events(ctx, ['policy.denied']);
      assert.equal(denied!.client, 'algo-fx-1');
      assert.deepEqual(denied!.decision, { allow: false, reasons: ['agents-trade-only-under-mandate'], policyVersion: 'v1' });
      assert.equal(denied!.details!.via, 'client_credentials');
      assert.equal((await events(ctx, ['token.issued'])).length, 0);
    });
  }

  test('an algorithm under its mandate gets a token naming the mandate version, with the allow recorded beside the issuance', async (t) => {
    const { token, ctx } = await server(t);
    await applyDocument(ctx, { mandates: [algoMandate] });
    const response = await token('algo-fx-1', { resource: ordersApi, mandate: 'algo-fx-mandate' });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { access_token: string; scope: string };
    assert.equal(body.scope, 'order:create');
    const claims = decodeJwt(body.access_token);
    assert.deepEqual(claims.mandate, { id: 'algo-fx-mandate', v: 1 });
    const [allowed] = await events(ctx, ['policy.allowed']);
    assert.deepEqual(allowed!.mandate, { id: 'algo-fx-mandate', v: 1 });
    assert.deepEqual(allowed!.decision, { allow: true, reasons: ['tokens-for-active-principals'], policyVersion: 'v1' });
    // The mandate's constraints were the decision's context (replayable by policy simulate).
    const request = allowed!.details!.request as { context: { mandate: Record<string, unknown> } };
    assert.deepEqual(request.context.mandate, { id: 'algo-fx-mandate', version: 1, scopes: ['order:create'], instrument_classes: ['fx'], max_notional: 1000000, currency: 'USD' });
    const [issued] = await events(ctx, ['token.issued']);
    assert.deepEqual(issued!.mandate, { id: 'algo-fx-mandate', v: 1 });
  });

  test('a revoked mandate, a mandate of another party and an unknown one are refused alike as invalid_grant', async (t) => {
    const { token, ctx } = await server(t);
    await applyDocument(ctx, { mandates: [algoMandate, { ...algoMandate, id: 'risk-mandate', grantee: { client_id: 'risk-engine' } }] });
    const other = assertOAuthError(await token('algo-fx-1', { resource: ordersApi, mandate: 'risk-mandate' }), 400, 'invalid_grant');
    const unknown = assertOAuthError(await token('algo-fx-1', { resource: ordersApi, mandate: 'no-such-mandate' }), 400, 'invalid_grant');
    assert.equal(String(other.error_description).replace('risk-mandate', 'X'), String(unknown.error_description).replace('no-such-mandate', 'X'));
    await revokeMandate(ctx, 'algo-fx-mandate', { by: 'compliance', reason: 'algorithm withdrawn' }, { actor: 'test' });
    const revoked = assertOAuthError(await token('algo-fx-1', { resource: ordersApi, mandate: 'algo-fx-mandate' }), 400, 'invalid_grant');
    assert.match(String(revoked.error_description), /revoked/);
  });

  test('a scope the mandate does not grant is invalid_scope', async (t) => {
    const { token, ctx } = await server(t);
    await applyDocument(ctx, { mandates: [{ ...algoMandate, scopes: ['order:cancel'] }] });
    const body = assertOAuthError(await token('algo-fx-1', { resource: ordersApi, scope: 'order:create', mandate: 'algo-fx-mandate' }), 400, 'invalid_scope');
    assert.match(String(body.error_description), /does not grant order:create/);
  });

  test('a firm service still gets the tokens its registration allows under the active policy set', async (t) => {
    const { token } = await server(t);
    const response = await token('risk-engine', { resource: ordersApi, scope: 'position:view' });
    assert.equal(response.statusCode, 200, response.body);
  });

  test('a person with pending KYC gets no trading token, and the view scope alone passes', async (t) => {
    const { ctx } = await policyContext(t);
    const bob = await userId(ctx, 'bob');
    const issuance = { subject: { type: 'User' as const, id: bob }, clientId: 'trading-ui', audience: ordersApi, authorizationDetails: [], requestId: 'r1', grantType: 'authorization_code' };
    await assert.rejects(authorizeIssuance(ctx, { ...issuance, scopes: ['position:view', 'order:create'] }), (error: OAuthError) => {
      assert.equal(error.error, 'invalid_scope');
      assert.match(error.description!, /order:create is refused by policy: kyc-verified-to-trade/);
      return true;
    });
    const allowed = await authorizeIssuance(ctx, { ...issuance, scopes: ['position:view'] });
    assert.equal(allowed.length, 1);
    assert.equal(allowed[0]!.type, 'policy.allowed');
  });

  test('an order entry in authorization_details is decided on its instrument, limits included', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const order = (amount: string) => ({
      type: 'order',
      instrument: { class: 'fx', symbol: 'EURUSD' },
      side: 'buy',
      max_notional: { amount, currency: 'USD' },
      venue: 'XLON',
      account: 'GB-FX-001',
    });
    const issuance = { subject: { type: 'User' as const, id: alice }, clientId: 'trading-ui', audience: ordersApi, scopes: ['order:create'], requestId: 'r1', grantType: 'authorization_code' };
    const allowed = await authorizeIssuance(ctx, { ...issuance, authorizationDetails: [order('1000000')] });
    assert.deepEqual(allowed.map((e) => e.details!.action), ['order:create', 'order:create']);
    await assert.rejects(authorizeIssuance(ctx, { ...issuance, authorizationDetails: [order('1000000'), order('60000000')] }), (error: OAuthError) => {
      assert.equal(error.error, 'invalid_authorization_details');
      assert.match(error.description!, /authorization_details\[1\] \(order:create on EURUSD\) is refused by policy: limit-fx-spot-desk-fx/);
      return true;
    });
  });

  test('a policy set that errors while evaluating refuses issuance (fail closed)', async (t) => {
    const { ctx } = await policyContext(t);
    await applyDocument(ctx, {
      policies: [
        {
          version: 'v2-erroring',
          // The forbid overflows while evaluating: Cedar skips it and would allow.
          text: '@id("all") permit (principal, action, resource);\n@id("erroring") forbid (principal, action, resource) when { context.time + 9223372036854775807 > 0 };',
          change_ref: 'CHG-2',
          author: 'alice.author',
          approver: 'bob.approver',
          active: true,
        },
      ],
    });
    await assert.rejects(
      authorizeIssuance(ctx, { subject: { type: 'Client', id: 'risk-engine' }, clientId: 'risk-engine', audience: ordersApi, scopes: ['position:view'], authorizationDetails: [], requestId: 'r1', grantType: 'client_credentials' }),
      (error: OAuthError) => error.error === 'invalid_scope' && /could not be evaluated/.test(error.description!),
    );
  });
});

describe('the baseline before any policy set is activated', () => {
  test('registration decides, and each issuance records one allow with policy version baseline', async (t) => {
    const { ctx } = await testContext({ t });
    const secrets = await applyDocument(ctx, { ...exampleEntities(), ...peopleAndClients });
    const app = buildApp(ctx);
    t.after(() => app.close());
    const response = await app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('algo-fx-1', secrets['algo-fx-1']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: ordersApi }),
    });
    assert.equal(response.statusCode, 200, response.body);
    const [allowed] = await events(ctx, ['policy.allowed']);
    assert.deepEqual(allowed!.decision, { allow: true, reasons: ['baseline: no policy set is active, registration decides'], policyVersion: 'baseline' });
    assert.deepEqual(allowed!.scopes, ['order:create']);
  });
});

describe('data residency at issuance', () => {
  const usApi = 'https://us-reporting.example.com';

  test('a token about a subject is refused for a resource server in a region its legal entity does not permit', async (t) => {
    const { ctx } = await testContext({ t });
    const secrets = await applyDocument(ctx, {
      ...exampleEntities(),
      ...peopleAndClients,
      resource_servers: [...peopleAndClients.resource_servers, { identifier: usApi, scopes: ['report:view'], region: 'us' }],
      clients: [...peopleAndClients.clients, { client_id: 'uk-reporter', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'], scope: 'report:view' }, { client_id: 'ownerless', kind: 'service', grant_types: ['client_credentials'], scope: 'report:view' }],
    });
    const app = buildApp(ctx);
    t.after(() => app.close());
    const ask = (clientId: string) =>
      app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(clientId, secrets[clientId]!) },
        payload: formBody({ grant_type: 'client_credentials', resource: usApi }),
      });
    const refused = assertOAuthError(await ask('uk-reporter'), 400, 'invalid_target');
    assert.match(String(refused.error_description), /data residency: legal entity 5493001KJTIIGC8Y1R12 does not permit its data in region us/);
    // No legal entity known: nothing permits the region (fail closed).
    assertOAuthError(await ask('ownerless'), 400, 'invalid_target');
    const [denied] = await events(ctx, ['policy.denied']);
    assert.deepEqual(denied!.decision!.reasons, ['data residency']);

    // The firm permits the region: the same request succeeds.
    const entities = exampleEntities() as { legal_entities: Record<string, unknown>[] };
    const broker = entities.legal_entities.find((e) => e.lei === brokerLei)!;
    await applyDocument(ctx, { legal_entities: [{ ...broker, data_regions: ['us'] }] });
    ctx.entities.invalidate?.();
    assert.equal((await ask('uk-reporter')).statusCode, 200);
  });

  test('apply refuses a resource server region that is not declared', async (t) => {
    const { ctx } = await testContext({ t });
    const { planApply } = await import('../../src/apply/index.ts');
    const { problems } = await planApply(ctx, { resource_servers: [{ identifier: usApi, scopes: ['report:view'], region: 'mars' }] });
    assert.deepEqual(problems.map((p) => p.path), ['resource_servers[0].region']);
  });
});
