import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { standDown } from '../../src/approvals/break-glass/activations.ts';
import { findApprovalRequest } from '../../src/approvals/requests.ts';
import { breakGlassFixture, type BreakGlassFixture } from '../approvals/break-glass-fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// POST /admin/keys/{kid}/revoke (src/endpoints/admin/key-revocation.ts, docs/keys.md "Token-signing
// keys: compromise"): a compromised key is revoked at once with a break-glass activation's token,
// else after a second person holding `admin` approves (two for a client's own token).

const password = 'a-long-enough-password-1';

async function harness(t: TestContext, dialect: TestDialect): Promise<BreakGlassFixture & { admin: string; kid: string }> {
  const f = await breakGlassFixture(t, { dialect });
  const admin = adminAudience(f.issuer);
  await f.apply({
    users: [
      { username: 'sec-1', password, name: 'sec-1', roles: ['admin'] },
      { username: 'sec-2', password, name: 'sec-2', roles: ['admin'] },
    ],
    clients: [{ client_id: 'bg-keys', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:write' }],
    break_glass: [{ name: 'bg-keys', scopes: ['admin:write'], audience: admin, activation_seconds: 600 }],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  const [key] = await f.ctx.keys.list();
  return Object.assign(f, { admin, kid: key!.kid });
}

const revoke = (f: BreakGlassFixture, token: string, kid: string, body: unknown = { compromised: true, reason: 'the key was in a leaked backup' }) =>
  f.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });

const decide = (f: BreakGlassFixture, token: string, id: string, decision: 'approve' | 'deny' = 'approve') =>
  f.inject({ method: 'POST', url: `/admin/approvals/${id}/decision`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ decision }) });

const published = async (f: BreakGlassFixture) => ((await f.inject({ method: 'GET', url: '/jwks' })).json() as { keys: { kid: string }[] }).keys.map((k) => k.kid);

async function introspect(f: BreakGlassFixture, token: string): Promise<boolean> {
  const response = await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return (response.json() as { active: boolean }).active;
}

const ordersToken = (f: BreakGlassFixture) => f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });

for (const dialect of testDialects()) {
  describe(`revoking a compromised key through the admin API on ${dialect.name}`, () => {
    test('refuses a body without compromised: true (naming the emergency path) or a reason, an unknown kid, and admin:read; nothing changes', async (t) => {
      const f = await harness(t, dialect);
      const token = await f.accessToken('admin-ops', { resource: f.admin, scope: 'admin:write' });
      for (const body of [{}, { compromised: false, reason: 'r' }, { reason: 'r' }]) {
        const error = assertOAuthError(await revoke(f, token, f.kid, body), 400, 'invalid_request', JSON.stringify(body));
        assert.match(String(error.error_description), /^revoke is the emergency path for a compromised signing key: it removes the key from the JWKS on every node at once/);
      }
      assert.match(String(assertOAuthError(await revoke(f, token, f.kid, { compromised: true }), 400, 'invalid_request').error_description), /reason is required/);
      assert.match(String(assertOAuthError(await revoke(f, token, f.kid, { compromised: true, reason: 'r', now: true }), 400, 'invalid_request').error_description), /unknown member now/);
      assert.match(String(assertOAuthError(await revoke(f, token, 'no-such-kid'), 404, 'not_found').error_description), /no signing key with kid .no-such-kid./);
      assertOAuthError(await revoke(f, token, '%E2%80%AE'), 404, 'not_found');
      assertOAuthError(await revoke(f, await f.accessToken('admin-viewer', { resource: f.admin }), f.kid), 403, 'insufficient_scope');
      assert.deepEqual(await published(f), [f.kid]);
      assert.deepEqual(await f.auditEvents('key.compromised'), []);
      assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').selectAll().where('kind', '=', 'key_compromise').execute()).length, 0);
    });

    test('a person holding admin asks; the key stays until a second admin approves — never the requester — and then it is out', async (t) => {
      const f = await harness(t, dialect);
      const business = await ordersToken(f);
      assertOAuthError(await revoke(f, await f.personToken('eng', 'admin:write'), f.kid), 403, 'access_denied', 'a person without admin');

      const requesterToken = await f.personToken('sec-1', 'admin:write approvals:decide');
      const asked = await revoke(f, requesterToken, f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal(asked.headers['cache-control'], 'no-store');
      const { revoke_request: requestId, required_approvals, kid } = asked.json() as { revoke_request: string; required_approvals: number; kid: string };
      assert.equal(kid, f.kid);
      assert.equal(required_approvals, 1);
      assertOAuthError(await revoke(f, requesterToken, f.kid), 409, 'invalid_request', 'one request at a time');

      // Until approved, nothing is revoked.
      assert.deepEqual(await published(f), [f.kid]);
      assert.equal(await introspect(f, business), true);
      assertOAuthError(await decide(f, requesterToken, requestId), 403, 'access_denied', 'the requester never approves');
      assertOAuthError(await decide(f, await f.personToken('eng', 'approvals:decide'), requestId), 403, 'access_denied', 'not a holder of admin');
      assert.deepEqual(await published(f), [f.kid]);

      const approverToken = await f.personToken('sec-2', 'approvals:decide');
      const offered = (await f.inject({ method: 'GET', url: '/admin/approvals', headers: { authorization: `Bearer ${approverToken}` } })).json() as { approvals: { id: string; title: string }[] };
      assert.deepEqual(offered.approvals.map((a) => [a.id, a.title]), [[requestId, `Revocation of compromised signing key ${f.kid}`]]);
      const approved = await decide(f, approverToken, requestId);
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal((approved.json() as { settled: string }).settled, 'approved');

      assert.equal((await published(f)).includes(f.kid), false);
      assert.equal(await introspect(f, business), false);
      assertOAuthError(await revoke(f, requesterToken, f.kid), 401, 'invalid_token', "the requester's own token was signed by the key");
      assert.equal((await findApprovalRequest(f.ctx.storage.db, requestId))!.status, 'consumed');
      const [event, ...more] = await f.auditEvents('key.compromised');
      assert.deepEqual(more, []);
      assert.equal(event!.txn, requestId);
      assert.equal(event!.actor, await f.userId('sec-1'));
      const details = event!.details!;
      assert.equal(details.via, 'approval');
      assert.equal(details.reason, 'the key was in a leaked backup');
      assert.deepEqual(details.approved_by, [await f.userId('sec-2')]);
      assert.equal(details.approval_request_id, requestId);
      assert.equal(details.promoted, 'generated');
      // New tokens carry the promoted key, and work.
      const fresh = await ordersToken(f);
      assert.equal(decodeJwt(fresh).header.kid, details.promoted_kid);
      assert.equal(await introspect(f, fresh), true);
    });

    test("a client's own token needs two approvals", async (t) => {
      const f = await harness(t, dialect);
      const asked = await revoke(f, await f.accessToken('admin-ops', { resource: f.admin, scope: 'admin:write' }), f.kid);
      assert.equal(asked.statusCode, 202, asked.body);
      const { revoke_request: requestId, required_approvals } = asked.json() as { revoke_request: string; required_approvals: number };
      assert.equal(required_approvals, 2);
      const first = await decide(f, await f.personToken('sec-1', 'approvals:decide'), requestId);
      assert.equal(first.statusCode, 200, first.body);
      assert.equal((first.json() as { settled?: string }).settled, undefined);
      assert.deepEqual(await published(f), [f.kid], 'one approval is not enough');
      f.clock.advance(1000);
      const second = await decide(f, await f.personToken('sec-2', 'approvals:decide'), requestId);
      assert.equal((second.json() as { settled?: string }).settled, 'approved');
      assert.equal((await published(f)).includes(f.kid), false);
      const [event] = await f.auditEvents('key.compromised');
      assert.deepEqual(event!.details!.approved_by, [await f.userId('sec-1'), await f.userId('sec-2')]);
      assert.equal(event!.details!.requester_type, 'client');
    });

    test('with a break-glass activation in force the key is revoked at once (200); the event names the activation', async (t) => {
      const f = await harness(t, dialect);
      const activation = await f.activate('bg-keys');
      const issued = await f.emergencyToken('bg-keys', { resource: f.admin });
      assert.equal(issued.statusCode, 200, issued.body);
      const emergency = (issued.json() as { access_token: string }).access_token;
      const response = await revoke(f, emergency, f.kid);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as Record<string, unknown>;
      assert.equal(body.kid, f.kid);
      assert.equal(body.state, 'compromised');
      assert.equal(body.previous_state, 'active');
      assert.equal(body.promoted, 'generated');
      assert.deepEqual(await published(f), [body.promoted_kid]);
      const [event] = await f.auditEvents('key.compromised');
      assert.equal(event!.actor, 'bg-keys');
      assert.equal(event!.txn, activation);
      assert.equal(event!.details!.break_glass, true);
      assert.equal(event!.details!.break_glass_activation, activation);
      assert.equal(event!.details!.via, 'break_glass');

      // The emergency token was signed by the revoked key; a new one works until the activation ends.
      assertOAuthError(await revoke(f, emergency, String(body.promoted_kid)), 401, 'invalid_token');
      const again = ((await f.emergencyToken('bg-keys', { resource: f.admin })).json() as { access_token: string }).access_token;
      assert.ok(await standDown(f.ctx, activation, await f.userId('cust-1')));
      assertOAuthError(await revoke(f, again, String(body.promoted_kid)), 401, 'invalid_token', 'an ended activation allows nothing');
      assert.deepEqual(await published(f), [body.promoted_kid]);
    });
  });
}
