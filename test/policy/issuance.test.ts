import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { revokeMandate } from '../../src/mandates/store.ts';
import { authorizeIssuance } from '../../src/policy/issuance.ts';
import { foldedDecisions } from '../../src/policy/issuance-audit.ts';
import { compilePolicySet, type CompiledPolicySet } from '../../src/policy/engine.ts';
import { simulate } from '../../src/policy/simulate.ts';
import { maxDetails } from '../../src/authorization/authorization-details.ts';
import { codeFlowFixture, orderDetail } from '../authorization/fixture.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument, exampleEntities, fxOrder, ordersApi, peopleAndClients, policyContext, userId } from './fixture.ts';

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

/** A candidate policy set, compiled as `policy simulate` compiles it. */
function compileSet(text: string): CompiledPolicySet {
  const compiled = compilePolicySet('candidate', [{ name: 'candidate.cedar', text }]);
  assert.ok(compiled.set, JSON.stringify(compiled.problems));
  return compiled.set;
}

/** The types of every event one request recorded, in order. */
async function requestEvents(ctx: Context, requestId: string): Promise<string[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent).filter((e) => e.requestId === requestId).map((e) => e.type);
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

  test('an algorithm under its mandate gets a token naming the mandate version, and its one token.issued event carries the allow', async (t) => {
    const { token, ctx } = await server(t);
    await applyDocument(ctx, { mandates: [algoMandate] });
    const response = await token('algo-fx-1', { resource: ordersApi, mandate: 'algo-fx-mandate' });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { access_token: string; scope: string };
    assert.equal(body.scope, 'order:create');
    const claims = decodeJwt(body.access_token);
    assert.deepEqual(claims.mandate, { id: 'algo-fx-mandate', v: 1 });
    const [issued] = await events(ctx, ['token.issued']);
    assert.deepEqual(await requestEvents(ctx, issued!.requestId!), ['token.issued'], 'one event per issuance');
    assert.deepEqual(issued!.mandate, { id: 'algo-fx-mandate', v: 1 });
    assert.deepEqual(issued!.decision, { allow: true, reasons: ['tokens-for-active-principals'], policyVersion: 'v1' });
    assert.deepEqual(issued!.details!.decisions, [{ action: 'order:create', resource: `ResourceServer::"${ordersApi}"`, reasons: ['tokens-for-active-principals'], request: 0 }]);
    // The mandate's constraints were the decision's context (replayable by policy simulate).
    const [decided] = foldedDecisions(issued!);
    assert.equal(decided!.principal, 'Agent::"algo-fx-1"');
    assert.deepEqual(decided!.request!.context.mandate, { id: 'algo-fx-mandate', version: 1, scopes: ['order:create'], instrument_classes: ['fx'], max_notional: 1000000, currency: 'USD' });
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
    // The refusal recorded each of its decisions, the allow too.
    const recorded = await events(ctx, ['policy.allowed', 'policy.denied']);
    assert.deepEqual(
      recorded.map((e) => [e.type, e.details!.action, e.decision!.reasons]),
      [
        ['policy.allowed', 'position:view', ['tokens-for-active-principals']],
        ['policy.denied', 'order:create', ['kyc-verified-to-trade']],
      ],
    );
    // A success records nothing itself: the allows go back to the issuance path, to be folded.
    const { allows: allowed } = await authorizeIssuance(ctx, { ...issuance, scopes: ['position:view'] });
    assert.equal(allowed.length, 1);
    assert.equal(allowed[0]!.type, 'policy.allowed');
    assert.equal((await events(ctx, ['policy.allowed', 'policy.denied'])).length, 2);
  });

  test('an order entry in authorization_details is decided on its instrument, limits included', async (t) => {
    const { ctx } = await policyContext(t);
    const alice = await userId(ctx, 'alice');
    const order = (amount: string) => fxOrder(amount, 'GB-FX-001');
    const issuance = { subject: { type: 'User' as const, id: alice }, clientId: 'trading-ui', audience: ordersApi, scopes: ['order:create'], requestId: 'r1', grantType: 'authorization_code' };
    const { allows: allowed } = await authorizeIssuance(ctx, { ...issuance, authorizationDetails: [order('1000000')] });
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

describe('the audit of an issuance under an active policy set', () => {
  const policySet = (version: string, text: string) => ({ policies: [{ version, text, change_ref: 'CHG-9', author: 'alice.author', approver: 'bob.approver', active: true }] });
  const permits = '@id("all") permit (principal, action, resource);\n@id("orders") permit (principal, action == Action::"order:create", resource);';
  const noCancel = '@id("no-cancel") forbid (principal, action == Action::"order:cancel", resource);';
  const scope = 'order:create order:cancel';
  const ust2y = { ...orderDetail, instrument: { class: 'bond', symbol: 'UST 2Y' } };

  for (const dialect of testDialects()) {
    test(`a person's token for several scopes and authorization_details is one token.issued event carrying every decision, which simulate replays (${dialect.name})`, async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      await applyDocument(f.ctx, policySet('p1', permits));
      const details = [{ ...orderDetail, actions: ['create', 'cancel'] }, ust2y];
      const { code, pkce: challenge } = await f.authorizeAndApprove({ query: { scope, authorization_details: JSON.stringify(details) } });
      const response = await f.redeem('web-app', code, challenge.verifier);
      assert.equal(response.statusCode, 200, response.body);

      const [issued] = await events(f.ctx, ['token.issued']);
      assert.deepEqual(await requestEvents(f.ctx, issued!.requestId!), ['code.redeemed', 'token.issued'], 'no policy.allowed beside the issuance');
      assert.equal((await events(f.ctx, ['policy.allowed', 'policy.denied'])).length, 0);
      // The determining policies of all the allows, each once, and the version that decided.
      assert.equal(issued!.decision!.allow, true);
      assert.equal(issued!.decision!.policyVersion, 'p1');
      assert.deepEqual([...issued!.decision!.reasons].sort(), ['all', 'orders']);
      const server = `ResourceServer::"${ordersApi}"`;
      const decisions = issued!.details!.decisions as { action: string; resource: string; reasons: string[]; request: number }[];
      assert.deepEqual(
        decisions.map((d) => [d.action, d.resource, d.request]),
        [
          ['order:create', server, 0],
          ['order:cancel', server, 0],
          ['order:create', 'Instrument::"UST 10Y"', 1],
          ['order:cancel', 'Instrument::"UST 10Y"', 1],
          ['order:create', 'Instrument::"UST 2Y"', 2],
        ],
      );
      assert.deepEqual(decisions[1]!.reasons, ['all']);
      // What the requests share is stored once: three requests, each entity once.
      const requests = issued!.details!.requests as { entities: number[] }[];
      const entities = issued!.details!.entities as unknown[];
      assert.equal(requests.length, 3);
      assert.equal(new Set(entities.map((e) => JSON.stringify(e))).size, entities.length);
      // Each decision reads back as the request it was, and the candidate decides it the same.
      const unchanged = await simulate(f.ctx.storage.db, compileSet(permits), 100);
      assert.deepEqual([unchanged.read, unchanged.replayed, unchanged.flips.length], [5, 5, 0]);

      // Forbidding cancellation would flip both cancel decisions, each named by the token event.
      const simulated = await simulate(f.ctx.storage.db, compileSet(`${permits}\n${noCancel}`), 100);
      assert.deepEqual([simulated.read, simulated.replayed], [5, 5]);
      assert.deepEqual(
        simulated.flips.map((flip) => [flip.event.id, flip.event.type, flip.request.action, flip.request.resource, flip.was.policyVersion, flip.now.reasons]),
        [
          [issued!.id, 'token.issued', 'order:cancel', server, 'p1', ['no-cancel']],
          [issued!.id, 'token.issued', 'order:cancel', 'Instrument::"UST 10Y"', 'p1', ['no-cancel']],
        ],
      );
      assert.match(String(simulated.flips[0]!.request.principal), /^User::"[0-9a-f-]+"$/);
    });
  }

  test('a refused issuance records each of its decisions, the allows included, and no token event', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({ query: { scope } });
    await applyDocument(f.ctx, policySet('p2', `${permits}\n${noCancel}`));
    const body = assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_scope');
    assert.match(String(body.error_description), /order:cancel is refused by policy: no-cancel/);
    const recorded = await events(f.ctx, ['policy.allowed', 'policy.denied', 'token.issued']);
    assert.deepEqual(
      recorded.map((e) => [e.type, e.details!.action, e.decision!.policyVersion]),
      [
        ['policy.allowed', 'order:create', 'p2'],
        ['policy.denied', 'order:cancel', 'p2'],
      ],
    );
    // Recorded with the request as evaluated: simulate replays them as before.
    const simulated = await simulate(f.ctx.storage.db, compileSet(permits), 100);
    assert.deepEqual([simulated.read, simulated.replayed, simulated.flips.length], [2, 2, 1]);
    assert.equal(simulated.flips[0]!.event.type, 'policy.denied');
  });

  test('an issuance whose folded event would be too large records its allows as separate policy.allowed events', async (t) => {
    const f = await codeFlowFixture(t);
    await applyDocument(f.ctx, policySet('p1', '@id("all") permit (principal, action, resource);'));
    // The most entries a request may hold, each with every action: 60 decisions on 20 instruments.
    const details = Array.from({ length: maxDetails }, (_, i) => ({ ...orderDetail, instrument: { class: 'bond', symbol: `UST ${i + 1}Y` }, actions: ['create', 'amend', 'cancel'] }));
    const { code, pkce: challenge } = await f.authorizeAndApprove({ query: { scope: 'order:create', authorization_details: JSON.stringify(details) } });
    const response = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    const [issued] = await events(f.ctx, ['token.issued']);
    assert.equal(issued!.decision, undefined, 'the token event as before issue 13');
    assert.equal(issued!.details!.decisions, undefined);
    const allowed = await events(f.ctx, ['policy.allowed']);
    assert.equal(allowed.length, 1 + 3 * maxDetails);
    assert.ok(allowed.every((e) => e.requestId === issued!.requestId && e.decision!.policyVersion === 'p1' && e.details!.request));
    // Counted once each by simulate: the token event holds no decision.
    const simulated = await simulate(f.ctx.storage.db, compileSet('@id("all") permit (principal, action, resource);'), 1000);
    assert.deepEqual([simulated.read, simulated.replayed, simulated.flips.length], [61, 61, 0]);
  });
});

describe('the baseline before any policy set is activated', () => {
  test('registration decides, and each issuance is one token.issued event whose decision has policy version baseline', async (t) => {
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
    const [issued] = await events(ctx, ['token.issued']);
    assert.deepEqual(await requestEvents(ctx, issued!.requestId!), ['token.issued'], 'one event per issuance');
    assert.deepEqual(issued!.decision, { allow: true, reasons: ['baseline: no policy set is active, registration decides'], policyVersion: 'baseline' });
    assert.deepEqual(issued!.scopes, ['order:create']);
    // Nothing was evaluated, so nothing is there to replay.
    assert.equal(issued!.details!.decisions, undefined);
    assert.deepEqual(foldedDecisions(issued!), [{ reasons: ['baseline: no policy set is active, registration decides'] }]);
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
