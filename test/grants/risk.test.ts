/**
 * The risk assessment at token issuance (issue 16, src/policy/issuance.ts), over HTTP: the request's
 * address (after trusted proxies) reaches the signals, the assessment is in the token event, and the
 * stricter of the risk outcome and the policies wins — a risk deny refuses what Cedar permits, a
 * forbid is not lifted by a low score, a person is asked to step up, a policy reads context.risk.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

const home = '198.51.100.7';
const elsewhere = '203.0.113.5';

/** A policy set of these rules, active. */
const policies = (text: string) => ({ policies: [{ version: 'v1', text, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
const permitAll = '@id("all") permit (principal, action, resource);';

/** broker-1's client_credentials token for the orders API, from `address`. */
const m2m = (f: ProtocolFixture, address: string, scope = 'order:create', headers: Record<string, string> = {}) =>
  f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope }, remoteAddress: address, headers });

/** The `details.risk` of the latest token event. */
async function lastRisk(f: ProtocolFixture, type: 'token.issued' | 'token.exchanged' = 'token.issued'): Promise<Record<string, unknown>> {
  return (await f.auditEvents(type)).at(-1)!.details!.risk as Record<string, unknown>;
}

async function alerts(f: ProtocolFixture): Promise<{ type: string; subject: string | null; data: Record<string, unknown> }[]> {
  const rows = await f.ctx.storage.db.selectFrom('alerts').select(['type', 'subject', 'data']).orderBy('created_at').execute();
  return rows.map((r) => ({ type: r.type, subject: r.subject, data: JSON.parse(r.data) as Record<string, unknown> }));
}

describe('the risk assessment at token issuance', () => {
  for (const dialect of testDialects()) {
    test(`a client_credentials token from a new network, then from a known one, with the assessment in token.issued (${dialect.name})`, async (t) => {
      const f = await protocolFixture(t, { dialect, env: { CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' } });
      assert.equal((await m2m(f, home)).statusCode, 200);
      assert.deepEqual(await lastRisk(f), { score: 0, level: 'low', outcome: 'allow', signals: [] }, 'the first network sets the baseline');
      assert.equal((await m2m(f, elsewhere)).statusCode, 200);
      assert.deepEqual(await lastRisk(f), {
        score: 15,
        level: 'low',
        outcome: 'allow',
        signals: [{ signal: 'new_network', points: 15, detail: 'network 203.0.113.0/24 never seen for this client' }],
      });
      assert.equal((await m2m(f, '198.51.100.200')).statusCode, 200);
      assert.deepEqual((await lastRisk(f)).signals, [], 'a known network');
      // Behind a trusted proxy, the address is the one it forwards (X-Forwarded-For).
      assert.equal((await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }, headers: { 'x-forwarded-for': '192.0.2.44' } })).statusCode, 200);
      assert.deepEqual(((await lastRisk(f)).signals as { detail: string }[]).map((s) => s.detail), ['network 192.0.2.0/24 never seen for this client']);
    });

    test(`a risk deny is refused even when Cedar permits, with the evidence, risk.denied and its alert (${dialect.name})`, async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ ...policies(permitAll), risk: { weights: { new_network: 90 } } });
      assert.equal((await m2m(f, home)).statusCode, 200);
      const before = (await f.auditEvents('token.issued')).length;
      const body = assertOAuthError(await m2m(f, elsewhere), 400, 'invalid_grant');
      assert.equal(body.error_description, 'refused by the risk assessment');
      assert.equal((await f.auditEvents('token.issued')).length, before, 'no token');
      const risk = { score: 90, level: 'high', outcome: 'deny', signals: [{ signal: 'new_network', points: 90, detail: 'network 203.0.113.0/24 never seen for this client' }] };
      const allowed = (await f.auditEvents('policy.allowed')).at(-1)!;
      assert.deepEqual([allowed.decision!.reasons, allowed.details!.risk], [['all'], risk], 'what Cedar said, kept as evidence');
      const refusal = (await f.auditEvents('policy.denied')).at(-1)!;
      assert.deepEqual([refusal.decision!.reasons, refusal.details!.risk], [['risk'], risk]);
      const denied = (await f.auditEvents('risk.denied')).at(-1)!;
      assert.deepEqual([denied.client, denied.subject, denied.decision!.reasons, denied.details], ['broker-1', 'broker-1', ['new_network'], { moment: 'issuance', via: 'client_credentials', risk }]);
      assert.equal(denied.requestId, refusal.requestId);
      assert.deepEqual(await alerts(f), [{ type: 'risk.denied', subject: null, data: { moment: 'issuance', subject: 'broker-1', client: 'broker-1', audience: ordersApi, via: 'client_credentials', request_id: denied.requestId, score: 90, signals: ['new_network'] } }]);
      assert.equal((await m2m(f, home)).statusCode, 200, 'from its known network it still gets tokens');
    });
  }

  test("a stranger's failed authentications as a client do not make the client's tokens risky; failures from the client's own address do (review M3)", async (t) => {
    const f = await protocolFixture(t);
    const signals = async () => ((await lastRisk(f)).signals as { signal: string; detail?: string }[]).filter((s) => s.signal === 'recent_failures');
    const wrongSecret = (address: string) => f.token({ auth: f.basic('broker-1', 'wrong-secret-by-attacker-000000000'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }, remoteAddress: address });
    assert.equal((await m2m(f, home)).statusCode, 200);
    for (let i = 0; i < 3; i++) assert.equal((await wrongSecret(elsewhere)).statusCode, 401);
    assert.equal((await m2m(f, home)).statusCode, 200);
    assert.deepEqual(await signals(), [], 'three wrong secrets from a stranger add nothing to the genuine client');
    for (let i = 0; i < 3; i++) assert.equal((await wrongSecret('198.51.100.8')).statusCode, 401);
    assert.equal((await m2m(f, '198.51.100.8')).statusCode, 200);
    assert.deepEqual(await signals(), [{ signal: 'recent_failures', points: 20, detail: 'failed client authentications in the last 900 s from this address: 3, 3 naming this client' }]);
  });

  test('the baseline (no policy set active) is assessed too: a risk deny refuses', async (t) => {
    const f = await protocolFixture(t);
    await f.apply({ risk: { weights: { new_network: 80 } } });
    assert.equal((await m2m(f, home)).statusCode, 200);
    assertOAuthError(await m2m(f, elsewhere), 400, 'invalid_grant');
    const refusal = (await f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual(refusal.decision!.reasons, ['risk']);
    assert.equal((await f.auditEvents('policy.allowed')).at(-1)!.decision!.policyVersion, 'baseline');
  });

  test('a Cedar forbid is not lifted by a low score, and a policy reading context.risk.level decides', async (t) => {
    const f = await protocolFixture(t);
    await f.apply({
      ...policies(`${permitAll}
@id("no-cancel") forbid (principal, action == Action::"order:cancel", resource);
@id("calm-only") forbid (principal, action, resource) when { context has risk && context.risk.level != "low" };`),
      risk: { weights: { new_network: 30 } },
    });
    const refused = assertOAuthError(await m2m(f, home, 'order:cancel'), 400, 'invalid_scope', 'score 0');
    assert.match(String(refused.error_description), /no-cancel/);
    assert.equal((await m2m(f, home)).statusCode, 200, 'low: allowed');
    const medium = assertOAuthError(await m2m(f, elsewhere), 400, 'invalid_scope', 'a new network is medium now');
    assert.match(String(medium.error_description), /calm-only/);
    const denied = (await f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual((denied.details!.risk as { level: string }).level, 'medium');
    assert.deepEqual((denied.details!.request as { context: { risk: unknown } }).context.risk, { score: 30, level: 'medium', signals: ['new_network'] }, 'Cedar saw it as context.risk');
  });

  test("a person's step_up outcome is insufficient_user_authentication unless they signed in with a second factor (the level a risky sign-in asks, so a person who met it there gets their tokens)", async (t) => {
    const f = await codeFlowFixture(t);
    const tokensFor = async (username: string, level: string) => {
      const person = await f.signIn(username, { acr: level, amr: level === acr.password ? ['pwd'] : ['pwd', 'otp', 'mfa'] });
      const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
      const redeemed = await f.redeem('web-app', code, pkce.verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      return { person, refreshToken: redeemed.json().refresh_token as string };
    };
    const refreshFrom = (refreshToken: string, address: string) => f.token({ auth: f.basic('web-app'), form: { grant_type: 'refresh_token', refresh_token: refreshToken }, remoteAddress: address });
    const alice = await tokensFor('alice', acr.password);
    const bob = await tokensFor('bob', acr.multiFactor);
    await f.apply({ risk: { weights: { new_network: 60 } } });

    const body = assertOAuthError(await refreshFrom(alice.refreshToken, elsewhere), 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.multiFactor);
    assert.match(String(body.error_description), /the risk assessment requires/);
    const requested = (await f.auditEvents('step_up.requested')).at(-1)!;
    assert.equal(requested.subject, alice.person.userId);
    assert.deepEqual(requested.details!.trigger, ['risk']);
    assert.deepEqual((requested.details!.risk as { outcome: string; signals: { signal: string }[] }).signals.map((s) => s.signal), ['new_network']);
    assert.equal((await refreshFrom(alice.refreshToken, '127.0.0.1')).statusCode, 200, 'the refresh token was not used: from a known network it works');

    assert.equal((await refreshFrom(bob.refreshToken, '192.0.2.77')).statusCode, 200, 'a sign-in with a second factor already meets the step-up');
    assert.equal((await lastRisk(f)).outcome, 'step_up');
  });
});

/** The exchange chain of a trade, with the trading agent's own token as the subject. */
async function exchangeFixture(t: TestContext, dialect?: TestDialect) {
  const f = await protocolFixture(t, dialect ? { dialect } : {});
  const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
  const arranger = 'https://arranger.example.com/orders';
  const broker = 'https://broker.example.com/execution';
  const clearing = 'https://clearing.example.com/settlement';
  const exchanger = (client_id: string) => ({ client_id, kind: 'service', grant_types: [exchange], scope: 'order:create' });
  await f.apply({
    resource_servers: [
      { identifier: arranger, scopes: ['order:create'], exchange_clients: ['arranger-backend'], introspection_clients: ['arranger-backend'] },
      { identifier: broker, scopes: ['order:create'], exchange_clients: ['broker-backend'] },
      { identifier: clearing, scopes: ['order:create'] },
    ],
    clients: [{ client_id: 'trader-app', kind: 'agent', grant_types: ['client_credentials'], scope: 'order:create' }, exchanger('arranger-backend'), exchanger('broker-backend')],
  });
  const ok = (response: Awaited<ReturnType<typeof f.token>>) => {
    assert.equal(response.statusCode, 200, response.body);
    return (response.json() as { access_token: string }).access_token;
  };
  const orderToken = async (address = home) => ok(await f.token({ auth: f.basic('trader-app'), form: { grant_type: 'client_credentials', resource: arranger }, remoteAddress: address }));
  const exchangeFor = (client: string, token: string, target: string) =>
    f.token({ auth: f.basic(client), form: { grant_type: exchange, subject_token: token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: target }, remoteAddress: '192.0.2.10' });
  const signals = async () => (((await lastRisk(f, 'token.exchanged')).signals as { signal: string }[]) ?? []).map((s) => s.signal);
  return { f, broker, clearing, ok, orderToken, exchangeFor, signals };
}

describe('the delegation signals at token exchange', () => {
  for (const dialect of testDialects()) {
    test(`a new actor and a deeper chain for the subject, then quiet once seen (${dialect.name})`, async (t) => {
      const { orderToken, exchangeFor, ok, broker, clearing, signals } = await exchangeFixture(t, dialect);
      const hop1 = ok(await exchangeFor('arranger-backend', await orderToken(), broker));
      assert.deepEqual(await signals(), [], "the subject's first chain sets the baseline");
      ok(await exchangeFor('broker-backend', hop1, clearing));
      assert.deepEqual(await signals(), ['new_actor', 'deep_chain']);
      const again = ok(await exchangeFor('arranger-backend', await orderToken(), broker));
      assert.deepEqual(await signals(), []);
      ok(await exchangeFor('broker-backend', again, clearing));
      assert.deepEqual(await signals(), [], 'seen now');
    });
  }

  test('an exchange burst for one subject fires, and refuses when it weighs enough', async (t) => {
    const { f, orderToken, exchangeFor, ok, broker, signals } = await exchangeFixture(t);
    await f.apply({ risk: { exchange_burst_count: 3, exchange_burst_window: 60 } });
    const token = await orderToken();
    ok(await exchangeFor('arranger-backend', token, broker));
    ok(await exchangeFor('arranger-backend', token, broker));
    assert.deepEqual(await signals(), []);
    ok(await exchangeFor('arranger-backend', token, broker));
    assert.deepEqual(await signals(), ['exchange_burst']);
    await f.apply({ risk: { weights: { exchange_burst: 80 } } });
    assertOAuthError(await exchangeFor('arranger-backend', token, broker), 400, 'invalid_grant');
    assert.deepEqual((await f.auditEvents('risk.denied')).at(-1)!.decision!.reasons, ['exchange_burst']);
    f.clock.advance(61_000);
    ok(await exchangeFor('arranger-backend', await orderToken(), broker));
  });

  test('a token its holder got on one network, presented from another (introspection), is concurrent_networks when exchanged', async (t) => {
    const { f, orderToken, exchangeFor, ok, broker, signals } = await exchangeFixture(t);
    const introspect = (token: string, clientAddress: string) =>
      f.post('/introspect', { auth: f.basic('arranger-backend'), form: { token, client_address: clientAddress } });
    const calm = await orderToken();
    assert.equal((await introspect(calm, '198.51.100.99')).json().active, true);
    ok(await exchangeFor('arranger-backend', calm, broker));
    assert.deepEqual(await signals(), [], 'presented from where it was issued');

    const copied = await orderToken();
    assert.equal((await introspect(copied, '2001:db8:77::1')).json().active, true);
    ok(await exchangeFor('arranger-backend', copied, broker));
    assert.deepEqual(await signals(), ['concurrent_networks']);
    assertOAuthError(await introspect(copied, 'not-an-address'), 400, 'invalid_request');
  });
});

describe('the hot path', () => {
  test('a warm, known client costs no query of the risk tables; what is new is written once', async (t) => {
    const f = await protocolFixture(t);
    const queries: string[] = [];
    const db = f.ctx.storage.db;
    // Kysely's executor is shared by every query built from `db`: count what reaches it.
    const executor = db.getExecutor() as unknown as { executeQuery: (q: { sql: string }, ...rest: unknown[]) => Promise<unknown> };
    const execute = executor.executeQuery.bind(executor);
    executor.executeQuery = (query, ...rest) => {
      queries.push(query.sql);
      return execute(query, ...rest);
    };
    const risky = () => queries.filter((q) => /risk_|generations/.test(q));
    assert.equal((await m2m(f, home)).statusCode, 200);
    assert.ok(risky().some((q) => /insert into "risk_sightings"/.test(q)), `the first token writes what it saw: ${risky().join('\n')}`);
    assert.equal((await m2m(f, home)).statusCode, 200);
    queries.length = 0;
    assert.equal((await m2m(f, home)).statusCode, 200);
    assert.deepEqual(risky(), [], 'warm: the settings and sightings come from the caches');
  });
});
