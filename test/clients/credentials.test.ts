import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { warnExpiringClientCredentials } from '../../src/clients/expiry.ts';
import { rotateClientSecret } from '../../src/clients/credentials.ts';
import { adminAudience } from '../../src/admin/authorize.ts';
import { renderMetrics } from '../../src/metrics.ts';
import { Validator } from '../../src/validation.ts';
import { readClientMetadata } from '../../src/clients/metadata.ts';
import { assertOAuthError, ordersApi, protocolFixture, secretClient, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';

const day = 86_400_000;

function cc(f: ProtocolFixture, clientId: string, secret?: string) {
  return f.token({ auth: f.basic(clientId, secret), form: { grant_type: 'client_credentials', resource: ordersApi } });
}

async function adminToken(f: ProtocolFixture): Promise<string> {
  return f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
}

for (const dialect of testDialects()) {
  describe(`client secrets (${dialect.name})`, () => {
    test('a new secret expires after the maximum age, and an expired secret is invalid_client (401, no-store) with an audited reason', async (t) => {
      const f = await protocolFixture(t, { dialect, env: { CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS: '30' }, risk: 'off' });
      await f.apply({ clients: [secretClient('aging-1', 'order:create')] });
      const client = await f.ctx.clients.get('aging-1');
      assert.equal(client?.secretExpiresAt, f.clock.now() + 30 * day);
      assert.equal((await cc(f, 'aging-1')).statusCode, 200);

      f.clock.advance(30 * day);
      const refused = await cc(f, 'aging-1');
      const body = assertOAuthError(refused, 401, 'invalid_client');
      assert.match(String(body.error_description), /expired/);
      const failures = await f.auditEvents('client.auth_failed');
      assert.match(failures.at(-1)!.decision!.reasons[0]!, /secret of aging-1 expired at .*secret_expired/);
      assert.ok(!(await f.auditText()).includes(f.secrets['aging-1']!), 'the secret is never in the audit log');
    });

    test('the admin API and dynamic registration show client_secret_expires_at (RFC 7591 §3.2.1)', async (t) => {
      const f = await protocolFixture(t, { dialect, env: { CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS: '10' }, risk: 'off' });
      const authorization = `Bearer ${await adminToken(f)}`;
      const created = await f.inject({ method: 'PUT', url: '/admin/clients/dated-1', headers: { authorization }, payload: secretClient('dated-1', 'order:create') });
      assert.equal(created.statusCode, 200, created.body);
      const expected = Math.floor((f.clock.now() + 10 * day) / 1000);
      assert.equal(created.json().client_secret_expires_at, expected);
      const read = await f.inject({ method: 'GET', url: '/admin/clients/dated-1', headers: { authorization } });
      assert.equal(read.json().client_secret_expires_at, expected);
      // A GET body can be PUT back unchanged: the dates are read-only members.
      const again = await f.inject({ method: 'PUT', url: '/admin/clients/dated-1', headers: { authorization }, payload: read.json() });
      assert.equal(again.statusCode, 200, again.body);
      assert.equal(again.json().outcome, 'unchanged');

      const iat = await f.initialAccessToken({ scope: 'order:create', grantTypes: ['client_credentials'] });
      const registered = await f.inject({
        method: 'POST',
        url: '/register',
        headers: { authorization: `Bearer ${iat}` },
        payload: { grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'order:create' },
      });
      assert.equal(registered.statusCode, 201, registered.body);
      assert.equal(registered.json().client_secret_expires_at, expected);
    });

    test('with a maximum age of 0 a secret never expires: client_secret_expires_at is 0', async (t) => {
      const f = await protocolFixture(t, { dialect, env: { CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS: '0' }, risk: 'off' });
      const authorization = `Bearer ${await adminToken(f)}`;
      const read = await f.inject({ method: 'GET', url: '/admin/clients/broker-3', headers: { authorization } });
      assert.equal(read.json().client_secret_expires_at, 0);
      f.clock.advance(5000 * day);
      assert.equal((await cc(f, 'broker-3')).statusCode, 200);
    });

    test('rotation keeps both secrets valid during the overlap, and the old one fails after it; stragglers are audited', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      const old = f.secrets['broker-3']!;
      const authorization = `Bearer ${await adminToken(f)}`;
      const rotated = await f.inject({ method: 'POST', url: '/admin/clients/broker-3/rotate-secret', headers: { authorization }, payload: { overlap_seconds: 3600 } });
      assert.equal(rotated.statusCode, 200, rotated.body);
      const fresh = rotated.json().client_secret as string;
      assert.notEqual(fresh, old);
      assert.equal(rotated.json().previous_client_secret_valid_until, Math.floor((f.clock.now() + 3600_000) / 1000));

      assert.equal((await cc(f, 'broker-3', fresh)).statusCode, 200, 'the new secret works at once');
      assert.equal((await cc(f, 'broker-3', old)).statusCode, 200, 'the old secret works during the overlap');
      assert.equal((await cc(f, 'broker-3', old)).statusCode, 200);
      const stragglers = await f.auditEvents('client.previous_secret_used');
      assert.equal(stragglers.length, 1, 'one event per client per minute, not one per request');
      assert.equal(stragglers[0]!.client, 'broker-3');

      f.clock.advance(3600_000);
      const refused = await cc(f, 'broker-3', old);
      assertOAuthError(refused, 401, 'invalid_client');
      assert.match((await f.auditEvents('client.auth_failed')).at(-1)!.decision!.reasons[0]!, /rollover window ended/);
      assert.equal((await cc(f, 'broker-3', fresh)).statusCode, 200);

      const events = await f.auditEvents('client.secret_rotated');
      assert.equal(events.length, 1);
      assert.equal(events[0]!.details!.overlap_seconds, 3600);
      const text = await f.auditText();
      assert.ok(!text.includes(fresh) && !text.includes(old), 'no secret in the audit log');
    });

    test('rotating with no overlap ends the old secret at once; a client without a secret has nothing to rotate', async (t) => {
      const f = await protocolFixture(t, { dialect, risk: 'off' });
      const old = f.secrets['broker-2']!;
      const rotation = await rotateClientSecret(f.ctx, 'broker-2', { overlapSeconds: 0, actor: 'test', via: 'cli' });
      assert.equal(rotation.previousValidUntil, null);
      const refused = await f.token({ form: { grant_type: 'client_credentials', client_id: 'broker-2', client_secret: old, resource: ordersApi } });
      assertOAuthError(refused, 401, 'invalid_client');
      const authorization = `Bearer ${await adminToken(f)}`;
      const none = await f.inject({ method: 'POST', url: '/admin/clients/oms-service/rotate-secret', headers: { authorization }, payload: {} });
      assertOAuthError(none, 400, 'invalid_request');
      const unknown = await f.inject({ method: 'POST', url: '/admin/clients/nobody/rotate-secret', headers: { authorization }, payload: {} });
      assert.equal(unknown.statusCode, 404);
      const tooLong = await f.inject({ method: 'POST', url: '/admin/clients/broker-2/rotate-secret', headers: { authorization }, payload: { overlap_seconds: -1 } });
      assertOAuthError(tooLong, 400, 'invalid_request');
    });

    test('expiry warnings are given once per threshold (30, 7, 1 days), audited, and the gauge shows seconds to expiry', async (t) => {
      const f = await protocolFixture(t, { dialect, env: { CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS: '40' }, risk: 'off' });
      await f.apply({ clients: [secretClient('aging-2', 'order:create')] });
      const warnings = async () => (await f.auditEvents('client.secret_expiring')).filter((e) => e.client === 'aging-2');

      assert.equal(await warnExpiringClientCredentials(f.ctx), 0, 'nothing is due 40 days ahead');
      f.clock.advance(11 * day); // 29 days left
      await warnExpiringClientCredentials(f.ctx);
      await warnExpiringClientCredentials(f.ctx);
      assert.deepEqual((await warnings()).map((e) => e.details!.threshold_days), [30]);
      f.clock.advance(20 * day); // 9 days left: still the 30-day threshold, given already
      await warnExpiringClientCredentials(f.ctx);
      assert.equal((await warnings()).length, 1);
      f.clock.advance(3 * day); // 6 days left
      await Promise.all([warnExpiringClientCredentials(f.ctx), warnExpiringClientCredentials(f.ctx)]);
      f.clock.advance(5.5 * day); // half a day left
      await warnExpiringClientCredentials(f.ctx);
      await warnExpiringClientCredentials(f.ctx);
      assert.deepEqual((await warnings()).map((e) => e.details!.threshold_days), [30, 7, 1]);

      const metrics = (await renderMetrics(f.ctx)).body;
      assert.match(metrics, /clearance_client_credential_expiry_seconds\{client_id="aging-2",credential="secret"\} 43200/);

      // A rotated secret is a new credential: warned of afresh when its time comes.
      await rotateClientSecret(f.ctx, 'aging-2', { overlapSeconds: 0, actor: 'test', via: 'cli' });
      f.clock.advance(39 * day);
      await warnExpiringClientCredentials(f.ctx);
      assert.equal((await warnings()).length, 4);
    });
  });
}

describe('owner_lei under the institutional profile', () => {
  const lei = '5493001KJTIIGC8Y1R12';

  test('a confidential client without owner_lei is a problem at its path; a public client is not', () => {
    const v = new Validator();
    const confidential = readClientMetadata(v, 'clients[0]', secretClient('no-owner', 'order:create'), { institutional: true });
    assert.equal(confidential, undefined);
    assert.deepEqual(v.problems.map((p) => p.path), ['clients[0].owner_lei']);
    const owned = readClientMetadata(new Validator(), 'clients[0]', secretClient('owned', 'order:create', { owner_lei: lei }), { institutional: true });
    assert.equal(owned?.owner_lei, lei);
    const ui = readClientMetadata(new Validator(), 'c', { client_id: 'ui', kind: 'app', token_endpoint_auth_method: 'none', redirect_uris: ['https://ui.example/cb'] }, { institutional: true });
    assert.ok(ui, 'a public client acts for the person signed in, not a firm');
    assert.ok(readClientMetadata(new Validator(), 'c', secretClient('no-owner', 'order:create')), 'outside the profile owner_lei stays optional');
  });

  test('the admin API refuses it with the path, and registration takes the firm from the initial access token', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    // The fixture's clients were applied without the profile; switch it on for what follows.
    f.ctx.config.institutional = true;
    const authorization = `Bearer ${await adminToken(f)}`;
    const refused = await f.inject({ method: 'PUT', url: '/admin/clients/firmless', headers: { authorization }, payload: secretClient('firmless', 'order:create') });
    const body = assertOAuthError(refused, 400, 'invalid_request');
    assert.match(String(body.error_description), /clients\[0\]\.owner_lei.*institutional/);
    const ok = await f.inject({ method: 'PUT', url: '/admin/clients/firmed', headers: { authorization }, payload: secretClient('firmed', 'order:create', { owner_lei: lei }) });
    assert.equal(ok.statusCode, 200, ok.body);

    const payload = { grant_types: ['client_credentials'], scope: 'order:create' };
    const withFirm = await f.initialAccessToken({ scope: 'order:create', grantTypes: ['client_credentials'], ownerLei: lei });
    const registered = await f.inject({ method: 'POST', url: '/register', headers: { authorization: `Bearer ${withFirm}` }, payload });
    assert.equal(registered.statusCode, 201, registered.body);
    assert.equal(registered.json().owner_lei, lei);
    const withoutFirm = await f.initialAccessToken({ scope: 'order:create', grantTypes: ['client_credentials'] });
    const firmless = await f.inject({ method: 'POST', url: '/register', headers: { authorization: `Bearer ${withoutFirm}` }, payload });
    assertOAuthError(firmless, 400, 'invalid_client_metadata');
  });
});
