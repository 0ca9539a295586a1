import assert from 'node:assert/strict';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { describe, test } from 'node:test';
import { compactVerify, createLocalJWKSet } from 'jose';
import { planApply } from '../../src/apply/index.ts';
import { adminAudience } from '../../src/admin/authorize.ts';
import { alertInsert } from '../../src/signals/alerts.ts';
import { claimDue, deliverAlerts, fanOut } from '../../src/signals/delivery.ts';
import { listWebhooks } from '../../src/signals/webhooks.ts';
import { startCallbackServer } from '../helpers/callback-server.ts';
import { testDialects } from '../helpers/storage.ts';
import { protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

const secret = 'an-hmac-secret-of-at-least-32-characters';

/** What a receiver does with an hmac delivery (Standard Webhooks): recompute and compare in constant time. */
function hmacVerifies(headers: Record<string, string | string[] | undefined>, body: string, key: string): boolean {
  const expected = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  const [version, mac] = String(headers['webhook-signature']).split(',');
  const given = Buffer.from(mac ?? '', 'base64');
  return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
}

/** What a receiver does with a jws delivery: put base64url(body) back between the dots, verify with the issuer's JWKS. */
async function jwsVerifies(f: ProtocolFixture, header: string, body: string): Promise<Record<string, unknown>> {
  const [protectedHeader, empty, signature] = header.split('.');
  assert.equal(empty, '', 'the payload is detached');
  const jwks = createLocalJWKSet((await f.inject({ method: 'GET', url: '/jwks' })).json());
  const { payload } = await compactVerify(`${protectedHeader}.${Buffer.from(body).toString('base64url')}.${signature}`, jwks);
  return JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
}

async function raise(f: ProtocolFixture, type: 'factor.removed' | 'break_glass.activated' | 'approval.denied', subject = 'user-1') {
  const id = crypto.randomUUID();
  await alertInsert(f.ctx.storage.db, f.clock, { type, subject, data: { factor: 'passkey', user: subject } }, id).execute();
  return id;
}

for (const dialect of testDialects()) {
  describe(`alert webhooks on ${dialect.name}`, () => {
    test('deliver each alert to the endpoints that want it as a signed CloudEvent, retried with back-off until the receiver answers 2xx', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const receiver = await startCallbackServer(t, { status: (n) => (n < 2 ? 503 : 204) });
      await f.apply({
        alerts: {
          webhooks: [
            { id: 'siem', url: `${receiver.origin}/siem`, types: ['factor.removed'], signing: 'hmac', secret, allow_private_network: true },
            { id: 'pager', url: `${receiver.origin}/pager`, types: ['*'], signing: 'jws', allow_private_network: true },
          ],
        },
      });
      const factorAlert = await raise(f, 'factor.removed');
      const deniedAlert = await raise(f, 'approval.denied');

      const first = await deliverAlerts(f.ctx, { baseDelayMs: 1000 });
      assert.equal(first.length, 3, 'siem wants one alert, pager both');
      assert.equal(receiver.requests.length, 3);
      const failed = first.filter((r) => r.status === 'pending');
      assert.equal(failed.length, 2, 'the first two answers were 503');
      assert.ok(failed.every((r) => r.attempts === 1 && r.lastStatus === 503 && r.nextAttemptAt === f.clock.now() + 1000));
      assert.deepEqual(await deliverAlerts(f.ctx, { baseDelayMs: 1000 }), [], 'nothing is due before the back-off');
      f.clock.advance(1000);
      const second = await deliverAlerts(f.ctx, { baseDelayMs: 1000 });
      assert.deepEqual(second.map((r) => [r.status, r.attempts, r.lastStatus]), [['delivered', 2, 204], ['delivered', 2, 204]]);

      for (const request of receiver.requests) {
        assert.equal(request.method, 'POST');
        assert.equal(request.headers['content-type'], 'application/cloudevents+json');
        const event = JSON.parse(request.body) as Record<string, unknown>;
        assert.equal(event.specversion, '1.0');
        assert.equal(event.source, f.issuer);
        assert.equal(event.datacontenttype, 'application/json');
        assert.equal(event.id, request.headers['webhook-id']);
        assert.match(String(event.time), /^\d{4}-\d\d-\d\dT/);
        if (request.url.pathname === '/siem') {
          assert.equal(event.type, 'clearance.factor.removed');
          assert.ok(hmacVerifies(request.headers, request.body, secret), 'the HMAC verifies');
          assert.equal(hmacVerifies(request.headers, request.body, 'another-secret-of-at-least-32-chars!!'), false);
          assert.equal(hmacVerifies(request.headers, request.body.replace('passkey', 'totp'), secret), false, 'a changed body fails');
        } else {
          assert.deepEqual(await jwsVerifies(f, String(request.headers['clearance-signature']), request.body), event);
          await assert.rejects(jwsVerifies(f, String(request.headers['clearance-signature']), request.body.replace('passkey', 'totp')));
        }
      }
      const siem = receiver.requests.filter((r) => r.url.pathname === '/siem');
      assert.equal(new Set(siem.map((r) => r.headers['webhook-id'])).size, 1, 'a retry carries the same event id');

      // The admin API lists the alerts newest first, with each delivery's outcome.
      const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      const listed = await f.inject({ method: 'GET', url: '/admin/alerts', headers: { authorization: `Bearer ${token}` } });
      assert.equal(listed.statusCode, 200, listed.body);
      const alerts = listed.json().alerts as { id: string; deliveries: { webhook: string; status: string; attempts: number }[] }[];
      assert.deepEqual(new Set(alerts.map((a) => a.id)), new Set([factorAlert, deniedAlert]));
      const factor = alerts.find((a) => a.id === factorAlert)!;
      assert.deepEqual(factor.deliveries.map((d) => [d.webhook, d.status]).sort(), [['pager', 'delivered'], ['siem', 'delivered']]);
      assert.equal((await f.inject({ method: 'GET', url: '/admin/alerts' })).statusCode, 401);
      assert.equal((await f.inject({ method: 'GET', url: '/admin/alerts?limit=0', headers: { authorization: `Bearer ${token}` } })).statusCode, 400);
    });

    test('give up after the last attempt and record why', async (t) => {
      const f = await protocolFixture(t, { dialect });
      const receiver = await startCallbackServer(t, { status: () => 500 });
      await f.apply({ alerts: { webhooks: [{ id: 'siem', url: `${receiver.origin}/x`, types: ['*'], signing: 'jws', allow_private_network: true }] } });
      await raise(f, 'factor.removed');
      assert.equal((await deliverAlerts(f.ctx, { baseDelayMs: 10, maxAttempts: 2 }))[0]!.status, 'pending');
      f.clock.advance(10);
      const last = await deliverAlerts(f.ctx, { baseDelayMs: 10, maxAttempts: 2 });
      assert.deepEqual(last.map((r) => [r.status, r.attempts, r.lastStatus, r.lastError]), [['failed', 2, 500, 'HTTP 500']]);
      f.clock.advance(60_000);
      assert.deepEqual(await deliverAlerts(f.ctx, { baseDelayMs: 10, maxAttempts: 2 }), []);
      assert.equal(receiver.requests.length, 2);
    });

    test('a delivery is taken by one worker when several claim it at once', async (t) => {
      const f = await protocolFixture(t, { dialect });
      await f.apply({ alerts: { webhooks: [{ id: 'siem', url: 'https://siem.example.com/in', types: ['*'], signing: 'jws' }] } });
      for (let i = 0; i < 5; i++) await raise(f, 'factor.removed');
      const webhooks = await listWebhooks(f.ctx.storage.db);
      await Promise.all([fanOut(f.ctx, webhooks), fanOut(f.ctx, webhooks)]);
      const claims = await Promise.all([claimDue(f.ctx), claimDue(f.ctx), claimDue(f.ctx)]);
      const all = claims.flat().map((c) => c.alertId);
      assert.equal(all.length, 5);
      assert.equal(new Set(all).size, 5, 'no delivery claimed twice');
    });
  });
}

describe('alert webhooks in production mode', () => {
  const env = { CLEARANCE_MODE: 'production', CLEARANCE_ISSUER: 'https://as.example.com', CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };

  test('refuse http endpoints at apply and private addresses at delivery, recording the refusal', async (t) => {
    const f = await protocolFixture(t, { env });
    const refused = await planApply(f.ctx, { alerts: { webhooks: [{ id: 'local', url: 'http://127.0.0.1:9/x', types: ['*'], signing: 'jws', allow_private_network: true }] } });
    assert.deepEqual(refused.problems, [{ path: 'alerts.webhooks[0].url', message: 'must be https in production' }]);
    await f.apply({ alerts: { webhooks: [{ id: 'inside', url: 'https://hooks.internal.example/in', types: ['*'], signing: 'jws' }] } });
    await raise(f, 'break_glass.activated', 'bg-orders');
    const [record] = await deliverAlerts(f.ctx, { resolve: async () => [{ address: '10.0.0.7', family: 4 }] });
    assert.equal(record!.status, 'pending');
    assert.equal(record!.lastStatus, undefined, 'no connection was made');
    assert.match(record!.lastError!, /10\.0\.0\.7, a private network .*allow_private_network/);
  });

  test('keep an hmac secret write-only: sealed at rest, never audited, kept when an apply omits it, required for a new endpoint', async (t) => {
    const f = await protocolFixture(t, { env });
    await f.apply({ alerts: { webhooks: [{ id: 'siem', url: 'https://siem.example.com/in', types: ['*'], signing: 'hmac', secret }] } });
    const [stored] = await f.ctx.storage.db.selectFrom('alert_webhooks').selectAll().execute();
    assert.ok(stored!.secret_sealed?.startsWith('v2.'));
    assert.ok(!JSON.stringify(stored).includes(secret));
    assert.ok(!(await f.auditText()).includes(secret));
    await f.apply({ alerts: { webhooks: [{ id: 'siem', url: 'https://siem.example.com/in', types: ['*'], signing: 'hmac' }] } });
    assert.equal((await f.ctx.storage.db.selectFrom('alert_webhooks').select('secret_sealed').executeTakeFirstOrThrow()).secret_sealed, stored!.secret_sealed);
    const missing = await planApply(f.ctx, { alerts: { webhooks: [{ id: 'new', url: 'https://siem.example.com/in', types: ['*'], signing: 'hmac' }] } });
    assert.deepEqual(missing.problems, [{ path: 'alerts.webhooks[0].secret', message: 'is required for hmac signing (none is stored for this endpoint)' }]);
    const short = await planApply(f.ctx, { alerts: { webhooks: [{ id: 'new', url: 'https://siem.example.com/in', types: ['*'], signing: 'hmac', secret: 'short-secret-value' }] } });
    assert.ok(!JSON.stringify(short.problems).includes('short-secret-value'), 'the value is never quoted');
  });
});
