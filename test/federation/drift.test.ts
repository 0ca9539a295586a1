import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT } from 'jose';
import { adminAudience } from '../../src/admin/authorize.ts';
import { executeApply, planApply } from '../../src/apply/index.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { partnerCommand } from '../../src/cli/commands/partner.ts';
import { ManualClock, epochSeconds } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { checkPartnerDrift } from '../../src/federation/drift/check.ts';
import { driftView } from '../../src/federation/drift/view.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { startSignalService } from '../../src/signals/service.ts';
import { jwtBearerGrantType } from '../../src/tokens/token-types.ts';
import { formatProblem } from '../../src/validation.ts';
import { adminPersonToken } from '../admin/admin-person.ts';
import { assertOAuthError, ordersApi, protocolFixture } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { partnerKey, type PartnerSigningKey } from './fixture.ts';
import { servePartner, type PartnerServer } from './partner-server.ts';

// Partner drift (docs/federation.md "Drift"): the signal service's pass checks each due partner's
// live keys and metadata, served by a real HTTP server on 127.0.0.1, against the baseline.

const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const interval = 60;

function partnerProfile(partner: PartnerServer, profile: Record<string, unknown>) {
  return {
    id: 'acme',
    issuer: partner.issuer,
    jwks_uri: partner.jwksUri,
    allow_private_network: true,
    algorithms: ['ES256'],
    allowed_audiences: [ordersApi],
    allowed_scopes: ['order:create'],
    clients: ['exchanger'],
    drift_check_interval: interval,
    ...profile,
  };
}

/** Our server (HTTP by inject), the partner's server with key k1, the partner applied, the signal service (passes run by the test). */
async function fixture(t: TestContext, dialect: TestDialect, profile: Record<string, unknown> = {}) {
  const f = await protocolFixture(t, { dialect, risk: 'off' });
  const partner = await servePartner(t);
  const k1 = await partnerKey('k1');
  partner.keys = [k1.jwk as Record<string, unknown>];
  await f.apply({
    clients: [{ client_id: 'exchanger', kind: 'service', grant_types: [exchange, jwtBearerGrantType], scope: 'order:create' }],
    partners: [partnerProfile(partner, profile)],
  });
  const service = startSignalService(f.ctx, { intervalMs: 3_600_000 });
  t.after(() => service.stop());
  const pass = () => service.runOnce();
  const later = async (seconds = interval) => {
    f.clock.advance(seconds * 1000);
    await pass();
  };
  const driftEvents = async () => (await f.auditEvents()).filter((e) => e.type.startsWith('partner.'));
  const alerts = async () => (await f.ctx.storage.db.selectFrom('alerts').select(['type', 'data']).orderBy('created_at').execute()).map((a) => ({ type: a.type, data: JSON.parse(a.data) as Record<string, unknown> }));
  const partnerToken = (key: PartnerSigningKey) =>
    new SignJWT({ sub: 'acme-trader-1', scope: 'order:create' })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' })
      .setIssuer(partner.issuer)
      .setAudience(f.issuer)
      .setIssuedAt(epochSeconds(f.clock))
      .setExpirationTime(epochSeconds(f.clock) + 120)
      .setJti(randomUUID())
      .sign(key.privateKey);
  const exchangeWith = async (key: PartnerSigningKey) =>
    f.token({ auth: f.basic('exchanger'), form: { grant_type: exchange, subject_token: await partnerToken(key), subject_token_type: accessTokenType, resource: ordersApi } });
  const assertionWith = async (key: PartnerSigningKey) => {
    const assertion = await new SignJWT({ sub: 'acme-trader-1' })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid })
      .setIssuer(partner.issuer)
      .setAudience(f.issuer)
      .setIssuedAt(epochSeconds(f.clock))
      .setExpirationTime(epochSeconds(f.clock) + 120)
      .setJti(randomUUID())
      .sign(key.privateKey);
    return f.token({ auth: f.basic('exchanger'), form: { grant_type: jwtBearerGrantType, assertion, resource: ordersApi } });
  };
  return { ...f, partner, k1, pass, later, driftEvents, alerts, exchangeWith, assertionWith };
}

const thumbprints = (keys: unknown) => (keys as { thumbprint: string }[]).map((k) => k.thumbprint);

describe('partner drift: the scheduled check', () => {
  for (const dialect of testDialects()) {
    test(`a partner whose keys and metadata do not change raises nothing, and is fetched only when due (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      await f.pass();
      const baseline = (await driftView(f.ctx, 'acme'))!;
      assert.equal(baseline.status, 'active');
      assert.deepEqual(baseline.keys?.map((k) => k.kid), ['k1']);
      assert.equal(baseline.metadata_issuer, f.partner.issuer);
      const fetched = f.partner.requests.length;
      assert.ok(fetched >= 2, 'keys and metadata fetched');
      await f.pass();
      assert.equal(f.partner.requests.length, fetched, 'not due again before its interval');
      await f.later();
      assert.ok(f.partner.requests.length > fetched, 'checked again once its interval passed');
      assert.deepEqual(await f.driftEvents(), []);
      assert.deepEqual(await f.alerts(), []);
    });

    test(`a partner whose JWKS changes is flagged by the scheduled check: a key added, then one removed, each one partner.drifted and an alert (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      await f.pass();
      const k2 = await partnerKey('k2');
      f.partner.keys = [f.k1.jwk as Record<string, unknown>, k2.jwk as Record<string, unknown>];
      await f.later();
      const [added, ...others] = await f.driftEvents();
      assert.equal(others.length, 0);
      assert.equal(added!.type, 'partner.drifted');
      assert.equal(added!.actor, 'clearance');
      const k2Thumbprint = (await driftView(f.ctx, 'acme'))!.keys!.find((k) => k.kid === 'k2')!.thumbprint;
      assert.deepEqual(added!.details, { partner: 'acme', keys_added: [{ thumbprint: k2Thumbprint, kid: 'k2', algorithms: ['ES256'] }], keys_removed: [], algorithms_changed: [], algorithms_without_key: [], metadata_changed: false, action: 'alert' });
      assert.deepEqual((await f.alerts()).map((a) => [a.type, a.data.partner, thumbprints(a.data.keys_added)]), [['partner.drifted', 'acme', [k2Thumbprint]]]);
      assert.equal((await driftView(f.ctx, 'acme'))!.status, 'active', 'on_drift defaults to alert');
      assert.equal((await f.exchangeWith(f.k1)).statusCode, 200, 'an alert refuses nothing');

      await f.later();
      assert.equal((await f.driftEvents()).length, 1, 'each change is raised once: the baseline moved');

      f.partner.keys = [k2.jwk as Record<string, unknown>];
      await f.later();
      const removed = (await f.driftEvents())[1]!;
      assert.equal(removed.type, 'partner.drifted');
      assert.deepEqual(removed.details!.keys_added, []);
      assert.deepEqual((removed.details!.keys_removed as { kid: string }[]).map((k) => k.kid), ['k1']);
      assert.deepEqual(removed.details!.algorithms_without_key, [], 'k2 still verifies ES256');
      assert.equal((await f.alerts()).length, 2);
    });

    test(`a key whose algorithms change (its alg narrowed) is partner.drifted with the old and new algorithms (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect, { algorithms: ['PS256'] });
      const rsa = await partnerKey('r1', 'PS256');
      const { alg: _alg, ...bare } = rsa.jwk as Record<string, unknown>;
      f.partner.keys = [bare];
      await f.pass();
      f.partner.keys = [{ ...bare, alg: 'PS256' }];
      await f.later();
      const [drifted] = await f.driftEvents();
      assert.equal(drifted?.type, 'partner.drifted');
      assert.deepEqual(drifted!.details!.keys_added, []);
      assert.deepEqual(drifted!.details!.keys_removed, []);
      const [changed] = drifted!.details!.algorithms_changed as { kid: string; old: string[]; new: string[] }[];
      assert.equal(changed!.kid, 'r1');
      assert.deepEqual(changed!.new, ['PS256']);
      assert.ok(changed!.old.includes('PS256') && changed!.old.length > 1, `was any RSA algorithm: ${changed!.old.join(' ')}`);
    });

    test(`metadata naming another issuer is partner.drifted with the old and new issuer (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      await f.pass();
      f.partner.metadataIssuer = 'https://impostor.example';
      await f.later();
      const [drifted] = await f.driftEvents();
      assert.equal(drifted?.type, 'partner.drifted');
      assert.deepEqual(drifted!.details!.issuer, { old: f.partner.issuer, new: 'https://impostor.example' });
      assert.equal(drifted!.details!.metadata_changed, true);
      assert.deepEqual((await f.alerts()).map((a) => a.type), ['partner.drifted']);
    });

    test(`keys and metadata unreachable for less than the grace raise nothing; past it, one partner.unreachable and its alert (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect, { unreachable_grace: 150 });
      await f.pass();
      f.partner.down = true;
      await f.later(); // unreachable since now
      await f.later(); // 60 s
      await f.later(); // 120 s: still within the 150 s grace
      assert.deepEqual(await f.driftEvents(), []);
      assert.ok((await driftView(f.ctx, 'acme'))!.unreachable_since);
      await f.later(); // 180 s
      const [unreachable, ...others] = await f.driftEvents();
      assert.equal(others.length, 0);
      assert.equal(unreachable!.type, 'partner.unreachable');
      assert.equal(unreachable!.details!.grace_seconds, 150);
      assert.match(String(unreachable!.details!.keys_error), /503/);
      assert.match(String(unreachable!.details!.metadata_error), /503/);
      assert.deepEqual((await f.alerts()).map((a) => a.type), ['partner.unreachable']);
      await f.later();
      assert.equal((await f.driftEvents()).length, 1, 'one outage, one event');
      assert.equal((await driftView(f.ctx, 'acme'))!.status, 'active', 'on_drift defaults to alert');

      f.partner.down = false;
      await f.later();
      assert.equal((await driftView(f.ctx, 'acme'))!.unreachable_since, null, 'reachable again: the outage is over');
      assert.equal((await f.driftEvents()).length, 1, 'the same keys: no drift');
    });

    test(`on_drift: suspend refuses the partner's tokens (token exchange: invalid_request, RFC 8693 §2.2.2; JWT bearer: invalid_grant, RFC 7523 §3.1; recorded) until an operator re-approves, which records the new baseline (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect, { on_drift: 'suspend' });
      await f.pass();
      assert.equal((await f.exchangeWith(f.k1)).statusCode, 200);

      const k2 = await partnerKey('k2');
      f.partner.keys = [f.k1.jwk as Record<string, unknown>, k2.jwk as Record<string, unknown>];
      await f.later();
      assert.deepEqual((await f.driftEvents()).map((e) => [e.type, e.details!.action ?? e.details!.reason]), [
        ['partner.drifted', 'suspend'],
        ['partner.suspended', 'drift: 1 key(s) added'],
      ]);
      assert.deepEqual((await f.alerts()).map((a) => a.type), ['partner.drifted', 'partner.suspended']);

      const refused = assertOAuthError(await f.exchangeWith(f.k1), 400, 'invalid_request');
      assert.match(String(refused.error_description), /^subject_token is not acceptable: partner acme is suspended since .* until an operator re-approves it$/);
      const assertion = assertOAuthError(await f.assertionWith(f.k1), 400, 'invalid_grant');
      assert.match(String(assertion.error_description), /partner acme is suspended/);
      // Each refusal is on the record like any other (src/audit/refusals.ts), its reason partner_suspended.
      const refusals = [...(await f.auditEvents('exchange.refused')), ...(await f.auditEvents('assertion.refused'))];
      assert.deepEqual(
        refusals.map((e) => [e.type, e.client, e.details!.error, e.details!.reason]),
        [
          ['exchange.refused', 'exchanger', 'invalid_request', 'partner_suspended'],
          ['assertion.refused', 'exchanger', 'invalid_grant', 'partner_suspended'],
        ],
      );
      assert.match(String(refusals[0]!.details!.description), /partner acme is suspended/);
      assert.ok(!JSON.stringify(refusals).includes('eyJ'), 'never the token');
      await f.later();
      assert.equal((await f.auditEvents('partner.suspended')).length, 1, 'suspended once');

      // Re-approval by the admin API: admin:read may not, nor a client's own admin:write token
      // (test/admin/partners.test.ts); a person with admin:write, freshly signed in with a passkey, may.
      const viewer = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      const approveAs = (token: string) => f.inject({ method: 'POST', url: '/admin/partners/acme/approve', headers: { authorization: `Bearer ${token}` } });
      assert.equal((await approveAs(viewer)).statusCode, 403);
      assert.equal((await approveAs(await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) }))).statusCode, 403);
      assert.equal((await f.exchangeWith(f.k1)).statusCode, 400, 'still suspended');
      await f.apply({ users: [{ username: 'olga', password: 'a-long-enough-password-1', name: 'Olga Operator' }] });
      const ops = await adminPersonToken(f, 'olga');
      const approved = await approveAs(ops);
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal(approved.json().previous_status, 'suspended');
      const [reapproved] = await f.auditEvents('partner.reapproved');
      assert.equal(reapproved!.actor, (await findUserByUsername(f.ctx, 'olga'))!.id);
      assert.deepEqual((reapproved!.details!.keys as { kid: string }[]).map((k) => k.kid).sort(), ['k1', 'k2']);
      const drift = await f.inject({ method: 'GET', url: '/admin/partners/acme/drift', headers: { authorization: `Bearer ${viewer}` } });
      assert.equal(drift.statusCode, 200, drift.body);
      assert.equal(drift.json().status, 'active');
      assert.deepEqual((drift.json().keys as { kid: string }[]).map((k) => k.kid).sort(), ['k1', 'k2'], 'the new baseline');

      assert.equal((await f.exchangeWith(f.k1)).statusCode, 200, 'accepted again');
      assert.equal((await f.exchangeWith(k2)).statusCode, 200, 'the new key too');
      await f.later();
      assert.equal((await f.auditEvents('partner.drifted')).length, 1, 'the re-approved keys are the baseline: no drift');
      assertOAuthError(await f.inject({ method: 'POST', url: '/admin/partners/nobody/approve', headers: { authorization: `Bearer ${ops}` } }), 404, 'not_found');
    });
  }

  test('clearance partner approve re-approves a suspended partner and partner status shows the baseline; keys that cannot be read are refused', async (t) => {
    const f = await fixture(t, testDialects()[0]!, { on_drift: 'suspend', unreachable_grace: 0 });
    await f.pass();
    f.partner.down = true;
    await f.later();
    assert.deepEqual((await f.driftEvents()).map((e) => e.type), ['partner.unreachable', 'partner.suspended']);
    for (let i = 0; i < 4; i++) assertOAuthError(await f.exchangeWith(f.k1), 400, 'invalid_request');
    assert.deepEqual((await f.auditEvents('exchange.refused')).map((e) => e.details!.reason), Array(4).fill('partner_suspended'), 'a flood is limited by the one refusal limiter (tested in test/audit/refusals.test.ts)');

    const lines: string[] = [];
    const output = { out: (line: string) => lines.push(line), err: (line: string) => lines.push(`err ${line}`) };
    assert.equal(await partnerCommand(f.ctx, { action: 'approve', id: 'acme' }, output), 1, 'the keys cannot be read: not re-approved');
    assert.match(lines.join('\n'), /^err not re-approved: the partner's keys cannot be read: .*503/m);
    assert.equal((await driftView(f.ctx, 'acme'))!.status, 'suspended');

    f.partner.down = false;
    lines.length = 0;
    assert.equal(await partnerCommand(f.ctx, { action: 'approve', id: 'acme' }, output), 0, lines.join('\n'));
    assert.match(lines[0]!, /^partner acme re-approved \(was suspended\); baseline: k1 [A-Za-z0-9_-]{43}$/);
    assert.match(lines.join('\n'), /^partner acme: active$/m);
    assert.equal((await f.auditEvents('partner.reapproved'))[0]!.actor?.startsWith('cli:'), true);
    assert.equal((await f.exchangeWith(f.k1)).statusCode, 200);
    lines.length = 0;
    assert.equal(await partnerCommand(f.ctx, { action: 'list' }, output), 0);
    assert.match(lines[0]!, /^acme .* active$/);
  });

  test("the signal service's own timer (a 20 ms pass) flags a partner whose JWKS changed, once its interval has passed", async (t) => {
    const f = await fixture(t, testDialects()[0]!);
    const timed = startSignalService(f.ctx, { intervalMs: 20 });
    t.after(() => timed.stop());
    const until = async (what: () => Promise<boolean>) => {
      for (let i = 0; i < 200 && !(await what()); i++) await sleep(10);
      assert.ok(await what());
    };
    await until(async () => (await driftView(f.ctx, 'acme'))!.status === 'active');
    f.partner.keys = [...f.partner.keys, (await partnerKey('k2')).jwk as Record<string, unknown>];
    await sleep(100);
    assert.deepEqual(await f.driftEvents(), [], 'not before its interval');
    f.clock.advance(interval * 1000);
    await until(async () => (await f.driftEvents()).length > 0);
    const [drifted] = await f.driftEvents();
    assert.equal(drifted!.type, 'partner.drifted');
    assert.deepEqual((drifted!.details!.keys_added as { kid: string }[]).map((k) => k.kid), ['k2']);
  });

  test('a partner unreachable at its first check gets its baseline from the first keys read, without a drift', async (t) => {
    const f = await fixture(t, testDialects()[0]!);
    f.partner.down = true;
    await f.pass();
    assert.equal((await driftView(f.ctx, 'acme'))!.status, 'unchecked');
    f.partner.down = false;
    await f.later();
    assert.deepEqual((await driftView(f.ctx, 'acme'))!.keys?.map((k) => k.kid), ['k1']);
    assert.deepEqual(await f.driftEvents(), []);
  });

  test('the check fetches with the SSRF rules: a loopback partner without allow_private_network is never connected to, and is unreachable past its grace', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const partner = await servePartner(t);
    const https = partner.issuer.replace('http:', 'https:');
    await f.apply({ partners: [partnerProfile(partner, { issuer: https, jwks_uri: `${https}/jwks`, allow_private_network: false, unreachable_grace: 0, clients: undefined })] });
    const service = startSignalService(f.ctx, { intervalMs: 3_600_000 });
    t.after(() => service.stop());
    await service.runOnce();
    assert.deepEqual(partner.requests, [], 'no request reached the partner');
    const [unreachable] = await f.auditEvents('partner.unreachable');
    assert.match(String(unreachable?.details?.keys_error), /a loopback address; the partner profile does not allow the private network/);
  });

  test('the profile validates the drift settings: an interval of at least 60 s, a grace, on_drift alert or suspend', async (t) => {
    const f = await protocolFixture(t, { risk: 'off' });
    const partner = await servePartner(t);
    const { problems } = await planApply(f.ctx, {
      partners: [partnerProfile(partner, { drift_check_interval: 59, unreachable_grace: -1, on_drift: 'ignore', clients: undefined })],
    });
    assert.deepEqual(
      problems.map((p) => p.path).sort(),
      ['partners[0].drift_check_interval', 'partners[0].on_drift', 'partners[0].unreachable_grace'],
    );
  });
});

const postgres = testDialects().find((d) => d.name === 'postgres');

describe('partner drift on two nodes (PostgreSQL)', { skip: postgres ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('two nodes running the pass at once check a due partner once and raise one event', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-drift-'));
    const database = await postgres!.create();
    const config = loadConfig({ CLEARANCE_DATA_DIR: dir });
    const clock = new ManualClock();
    const a = await openContext(config, { clock, log: createLogger('silent'), storage: database.storage });
    const b = await openContext(config, { clock, log: createLogger('silent'), storage: database.connect() });
    t.after(async () => {
      for (const ctx of [a, b]) await (ctx.audit as { close?: () => Promise<void> }).close?.();
      await database.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });
    const partner = await servePartner(t);
    const k1 = await partnerKey('k1');
    partner.keys = [k1.jwk as Record<string, unknown>];
    await applyTo(a, {
      resource_servers: [{ identifier: ordersApi, scopes: ['order:create'] }],
      clients: [{ client_id: 'exchanger', kind: 'service', grant_types: [exchange], scope: 'order:create' }],
      partners: [partnerProfile(partner, { on_drift: 'suspend' })],
    });
    // Both nodes load their partners, then read the due rows together: both see the same version, and the claim decides.
    const both = () => {
      let arrived = 0;
      let go!: () => void;
      const barrier = new Promise<void>((resolve) => (go = resolve));
      const together = (ctx: Context): Parameters<typeof checkPartnerDrift>[0] => ({
        ...ctx,
        partners: new Proxy(ctx.partners, {
          get(store, name) {
            if (name !== 'list') {
              const value = Reflect.get(store, name, store) as unknown;
              return typeof value === 'function' ? value.bind(store) : value;
            }
            return async () => {
              const partners = await store.list();
              if (++arrived === 2) go();
              await barrier;
              return partners;
            };
          },
        }),
      });
      return Promise.all([checkPartnerDrift(together(a)), checkPartnerDrift(together(b))]);
    };
    assert.deepEqual((await both()).sort(), [0, 1], 'the first check (the baseline) taken by one node');
    partner.keys.push((await partnerKey('k2')).jwk as Record<string, unknown>);
    clock.advance(interval * 1000);
    const requestsBefore = partner.requests.length;
    assert.deepEqual((await both()).sort(), [0, 1], 'the due check taken by one node');
    assert.ok(partner.requests.length - requestsBefore <= 3, 'the partner fetched by one node only');
    const events = (await a.storage.db.selectFrom('audit_events').select('event').where('type', 'like', 'partner.%').orderBy('seq').execute()).map((r) => (JSON.parse(r.event) as StoredAuditEvent).type);
    assert.deepEqual(events, ['partner.drifted', 'partner.suspended']);
    assert.equal((await a.storage.db.selectFrom('alerts').select('type').where('type', '=', 'partner.drifted').execute()).length, 1);
    // The other node sees the suspension with its profiles (the generation bumped), without a query of its own.
    clock.advance(2000);
    assert.ok(await b.partners.suspension('acme'));
  });
});

async function applyTo(ctx: Context, document: Record<string, unknown>): Promise<void> {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
}
