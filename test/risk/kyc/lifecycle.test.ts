import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { adminAudience } from '../../../src/admin/authorize.ts';
import { expireKycRecords } from '../../../src/risk/kyc/expiry.ts';
import { decideScreeningMatch } from '../../../src/risk/screening/decisions.ts';
import type { ScreeningHit } from '../../../src/risk/screening/matcher.ts';
import { recordScreeningHit } from '../../../src/risk/screening/matches.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from '../../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';

const hmacSecret = `whsec_${randomBytes(32).toString('base64')}`;
const day = 24 * 3600_000;

interface KycFixture extends ProtocolFixture {
  admin: string;
  viewer: string;
  jwsKey: CryptoKey;
  userId(username: string): Promise<string>;
  call(method: 'GET' | 'PUT' | 'PATCH', url: string, token: string, body?: unknown): Promise<LightMyRequestResponse>;
  /** POST /kyc/webhooks/idv-example, signed as Standard Webhooks sign (override any header). */
  hmacWebhook(event: Record<string, unknown>, options?: { id?: string; timestamp?: number; secret?: string; signature?: string }): Promise<LightMyRequestResponse>;
  jwsWebhook(payload: Record<string, unknown>, key?: CryptoKey): Promise<LightMyRequestResponse>;
}

/** Alice with a verified KYC record due for review in 30 days, two providers, admin tokens. */
async function kycFixture(t: Pick<TestContext, 'after'>, dialect?: TestDialect): Promise<KycFixture> {
  const f = await protocolFixture(t, dialect ? { dialect } : {});
  const jws = await generateKeyPair('ES256', { extractable: true });
  const reviewDue = new Date(f.clock.now() + 30 * day).toISOString().slice(0, 10);
  await f.apply({
    users: [{ username: 'alice', name: 'Alice Trader', desks: ['fx-spot'], kyc: { status: 'verified', level: 'standard', provider: 'idv-example', review_due: reviewDue, evidence_ref: 'IDV-CASE-1042' } }],
    kyc: {
      providers: [
        { id: 'idv-example', signing: 'hmac', secret: hmacSecret },
        { id: 'kyb-example', signing: 'jws', jwks: { keys: [{ ...(await exportJWK(jws.publicKey)), kid: 'kyb-1', alg: 'ES256', use: 'sig' }] } },
      ],
    },
  });
  const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
  const viewer = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
  const fixture: KycFixture = {
    ...f,
    admin,
    viewer,
    jwsKey: jws.privateKey,
    async userId(username) {
      return (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirstOrThrow()).id;
    },
    call(method, url, token, body) {
      return f.inject({
        method,
        url,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }) },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    },
    hmacWebhook(event, options = {}) {
      const id = options.id ?? `msg_${randomUUID()}`;
      const timestamp = String(options.timestamp ?? Math.floor(f.clock.now() / 1000));
      const body = JSON.stringify(event);
      const key = Buffer.from((options.secret ?? hmacSecret).slice('whsec_'.length), 'base64');
      const signature = options.signature ?? `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
      return f.inject({
        method: 'POST',
        url: '/kyc/webhooks/idv-example',
        headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature },
        payload: body,
      });
    },
    async jwsWebhook(payload, key = jws.privateKey) {
      const jwsText = await new CompactSign(Buffer.from(JSON.stringify(payload))).setProtectedHeader({ alg: 'ES256', kid: 'kyb-1', typ: 'kyc-event+jwt' }).sign(key);
      return f.inject({ method: 'POST', url: '/kyc/webhooks/kyb-example', headers: { 'content-type': 'application/jose' }, payload: jwsText });
    },
  };
  return fixture;
}

async function record(f: KycFixture, username = 'alice'): Promise<Record<string, unknown>> {
  const response = await f.call('GET', `/admin/kyc/users/${username}`, f.viewer);
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}

for (const dialect of testDialects()) {
  describe(`the KYC lifecycle over HTTP on ${dialect.name}`, () => {
    test('an administrator reads and replaces a record; admin:read may not change it; each change is audited with before and after', async (t) => {
      const f = await kycFixture(t, dialect);
      const alice = await record(f);
      assert.equal(alice.status, 'verified');
      assert.equal(alice.level, 'standard');
      assert.equal(alice.provider, 'idv-example');
      assert.equal(alice.evidence_ref, 'IDV-CASE-1042');
      assert.equal(alice.version, 1);
      assert.deepEqual(alice.principal, { type: 'user', id: await f.userId('alice'), username: 'alice' });

      const change = { status: 'rejected', level: 'standard', provider: 'manual-review', review_due: alice.review_due, evidence_ref: 'CASE-7', reason: 'documents forged' };
      assertOAuthError(await f.call('PUT', '/admin/kyc/users/alice', f.viewer, change), 403, 'insufficient_scope');
      const missing = assertOAuthError(await f.call('PUT', '/admin/kyc/users/alice', f.admin, { status: 'rejected' }), 400, 'invalid_request');
      assert.match(String(missing.error_description), /missing members: level, provider, review_due, evidence_ref/);
      assertOAuthError(await f.call('PUT', '/admin/kyc/users/alice', f.admin, { ...change, status: 'done' }), 400, 'invalid_request');
      assertOAuthError(await f.call('PUT', '/admin/kyc/users/nobody', f.admin, change), 404, 'not_found');

      const changed = await f.call('PUT', '/admin/kyc/users/alice', f.admin, change);
      assert.equal(changed.statusCode, 200, changed.body);
      assert.equal(changed.json().status, 'rejected');
      assert.equal(changed.json().outcome, 'updated');
      // A change against the version read before is a conflict, and changes nothing.
      assertOAuthError(await f.call('PUT', '/admin/kyc/users/alice', f.admin, { ...change, status: 'verified', version: 1 }), 409, 'invalid_request');
      assert.equal((await record(f)).status, 'rejected');

      const [updated] = (await f.auditEvents('kyc.updated')).filter((e) => e.details!.via === 'admin');
      assert.equal(updated!.actor, 'admin-ops');
      assert.equal(updated!.subject, await f.userId('alice'));
      assert.equal(updated!.details!.reason, 'documents forged');
      assert.deepEqual((updated!.details!.before as Record<string, unknown>).status, 'verified');
      assert.deepEqual(updated!.details!.after, { status: 'rejected', level: 'standard', provider: 'manual-review', review_due: alice.review_due, evidence_ref: 'CASE-7', version: 2 });
    });

    test('an administrator freezes with a merge patch naming only the status: the rest stays, the version read is compared, an unknown record is 404', async (t) => {
      const f = await kycFixture(t, dialect);
      const alice = await record(f);
      assertOAuthError(await f.call('PATCH', '/admin/kyc/users/alice', f.viewer, { status: 'frozen' }), 403, 'insufficient_scope');
      assertOAuthError(await f.call('PATCH', '/admin/kyc/users/alice', f.admin, { status: 'thawed' }), 400, 'invalid_request');
      assertOAuthError(await f.call('PATCH', '/admin/kyc/users/alice', f.admin, { status: 'frozen', version: 7 }), 409, 'invalid_request');
      const frozen = await f.call('PATCH', '/admin/kyc/users/alice', f.admin, { status: 'frozen', reason: 'adverse media' });
      assert.equal(frozen.statusCode, 200, frozen.body);
      assert.deepEqual(
        { ...(frozen.json() as Record<string, unknown>), updated_at: undefined },
        { ...alice, status: 'frozen', previous_status: 'verified', frozen_by: 'admin:admin-ops', version: (alice.version as number) + 1, updated_at: undefined, updated_by: 'admin:admin-ops', outcome: 'updated' },
      );
      const [updated] = (await f.auditEvents('kyc.updated')).filter((e) => e.details!.via === 'admin');
      assert.equal(updated!.details!.reason, 'adverse media');
      await f.apply({ users: [{ username: 'bob', name: 'Bob Without KYC', desks: ['fx-spot'] }] });
      assert.equal((await record(f, 'bob')).status, 'none');
      assertOAuthError(await f.call('PATCH', '/admin/kyc/users/bob', f.admin, { status: 'frozen' }), 404, 'not_found');
    });

    test("a provider's HMAC-signed webhook changes the record; a bad signature, a replay and a stale timestamp change nothing", async (t) => {
      const f = await kycFixture(t, dialect);
      const event = { username: 'alice', status: 'verified', level: 'enhanced', review_due: '2031-01-31', evidence_ref: 'IDV-CASE-2001' };
      const id = `msg_${randomUUID()}`;
      const good = await f.hmacWebhook(event, { id });
      assert.equal(good.statusCode, 200, good.body);
      assert.deepEqual(good.json(), { status: 'verified', version: 2, changed: true });
      const after = await record(f);
      assert.equal(after.level, 'enhanced');
      assert.equal(after.review_due, '2031-01-31');
      assert.equal(after.updated_by, 'provider:idv-example');
      const [updated] = (await f.auditEvents('kyc.updated')).filter((e) => e.details!.via === 'provider');
      assert.equal(updated!.details!.provider, 'idv-example');
      assert.equal(updated!.details!.webhook_id, id);

      // The same delivery again: a replay, refused whatever it says.
      assertOAuthError(await f.hmacWebhook({ ...event, status: 'rejected' }, { id }), 409, 'invalid_request');
      // Signed with another secret, or a signature for other bytes.
      assertOAuthError(await f.hmacWebhook({ ...event, status: 'rejected' }, { secret: `whsec_${randomBytes(32).toString('base64')}` }), 401, 'invalid_request');
      assertOAuthError(await f.hmacWebhook({ ...event, status: 'rejected' }, { signature: 'v1,' + Buffer.alloc(32).toString('base64') }), 401, 'invalid_request');
      // Six minutes old, or from the future: outside the five-minute tolerance.
      const now = Math.floor(f.clock.now() / 1000);
      assertOAuthError(await f.hmacWebhook({ ...event, status: 'rejected' }, { timestamp: now - 360 }), 401, 'invalid_request');
      assertOAuthError(await f.hmacWebhook({ ...event, status: 'rejected' }, { timestamp: now + 360 }), 401, 'invalid_request');
      // An unknown provider reads exactly as a bad signature.
      const unknown = await f.inject({ method: 'POST', url: '/kyc/webhooks/nobody', headers: { 'content-type': 'application/json', 'webhook-id': 'x', 'webhook-timestamp': String(now), 'webhook-signature': 'v1,AAAA' }, payload: '{}' });
      assert.deepEqual(assertOAuthError(unknown, 401, 'invalid_request'), assertOAuthError(await f.hmacWebhook(event, { signature: 'v1,AAAA' }), 401, 'invalid_request'));
      // Signed but invalid, or naming nobody.
      assertOAuthError(await f.hmacWebhook({ username: 'alice', status: 'great' }), 400, 'invalid_request');
      assertOAuthError(await f.hmacWebhook({ username: 'alice', lei: '5493001KJTIIGC8Y1R12', status: 'verified' }), 400, 'invalid_request');
      assertOAuthError(await f.hmacWebhook({ username: 'nobody', status: 'verified' }), 404, 'not_found');

      const unchanged = await record(f);
      assert.equal(unchanged.status, 'verified');
      assert.equal(unchanged.version, 2);
      assert.equal((await f.auditEvents('kyc.updated')).filter((e) => e.details!.via === 'provider').length, 1);
      // The secret is nowhere in the database but sealed, nor in the audit log.
      assert.doesNotMatch(await f.auditText(), new RegExp(hmacSecret.slice(6, 30).replace(/[+/]/g, '.')));
      const stored = await f.ctx.storage.db.selectFrom('kyc_providers').select('secret_sealed').where('id', '=', 'idv-example').executeTakeFirstOrThrow();
      assert.ok(stored.secret_sealed!.startsWith('v2.') && !stored.secret_sealed!.includes(hmacSecret));
    });

    test("a provider's freeze stays when compliance clears a screening match, whether the match came before it or after", async (t) => {
      const f = await kycFixture(t, dialect);
      const alice = { type: 'User' as const, id: await f.userId('alice') };
      const entry = (id: string): ScreeningHit => ({ entry: { id, type: 'person', name: 'Alice Trader', aliases: [], list: 'pep', digest: `digest-${id}` }, matchedOn: ['name'] });
      // The provider's freeze first, then the hit; compliance clears it.
      assert.equal((await f.hmacWebhook({ username: 'alice', status: 'frozen' })).statusCode, 200);
      const first = (await recordScreeningHit(f.ctx, alice, entry('PEP-1'), 'list-1', 'sign_in'))!;
      await decideScreeningMatch(f.ctx, first.id, 'clear', 'namesake', { actor: 'compliance-1' });
      assert.equal((await record(f)).status, 'frozen', "the provider's freeze stays");
      // The provider says verified: frozen it stays (a provider lifts no freeze), until an administrator lifts it.
      assert.equal((await f.hmacWebhook({ username: 'alice', status: 'verified' })).json().status, 'frozen');
      const lifted = await f.call('PATCH', '/admin/kyc/users/alice', f.admin, { status: 'verified' });
      assert.equal(lifted.statusCode, 200, lifted.body);
      // The hit first, then the provider's freeze; compliance clears the hit.
      const second = (await recordScreeningHit(f.ctx, alice, entry('PEP-2'), 'list-1', 'sign_in'))!;
      assert.equal((await f.hmacWebhook({ username: 'alice', status: 'frozen' })).statusCode, 200);
      await decideScreeningMatch(f.ctx, second.id, 'clear', 'namesake', { actor: 'compliance-1' });
      assert.equal((await record(f)).status, 'frozen', "the provider's freeze stays");
      // With no freeze but screening's, clearing lifts it.
      assert.equal((await f.call('PATCH', '/admin/kyc/users/alice', f.admin, { status: 'verified' })).statusCode, 200);
      const third = (await recordScreeningHit(f.ctx, alice, entry('PEP-3'), 'list-1', 'sign_in'))!;
      assert.equal((await record(f)).status, 'frozen');
      await decideScreeningMatch(f.ctx, third.id, 'clear', 'namesake', { actor: 'compliance-1' });
      assert.equal((await record(f)).status, 'verified');
    });

    test('a record past its review date reads expired at once; the sweep writes it expired once, with one kyc.expired event, however many nodes sweep', async (t) => {
      const f = await kycFixture(t, dialect);
      f.clock.advance(31 * day);
      f.viewer = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      // No sweep yet: every read already sees it expired.
      assert.equal((await record(f)).status, 'expired');
      assert.equal((await f.ctx.risk.kyc.get({ type: 'User', id: await f.userId('alice') }))?.status, 'expired');
      const stored = await f.ctx.storage.db.selectFrom('kyc_records').select('status').executeTakeFirstOrThrow();
      assert.equal(stored.status, 'verified');
      // Two sweeps at once, as two nodes would: one expiry, one event.
      const swept = await Promise.all([expireKycRecords(f.ctx), expireKycRecords(f.ctx)]);
      assert.equal(swept[0] + swept[1], 1);
      assert.equal(await expireKycRecords(f.ctx), 0);
      const expired = await f.auditEvents('kyc.expired');
      assert.equal(expired.length, 1);
      assert.equal(expired[0]!.subject, await f.userId('alice'));
      assert.deepEqual({ ...expired[0]!.details, review_due: undefined }, { principal_type: 'User', review_due: undefined, before: 'verified', after: 'expired', version: 2 });
      assert.equal((await f.ctx.storage.db.selectFrom('kyc_records').select('status').executeTakeFirstOrThrow()).status, 'expired');
    });
  });
}

describe('the KYC lifecycle: the rest', () => {
  test("a provider's JWS webhook is verified with its JWKS, carries its id and time in jti and iat, and is single use", async (t) => {
    const f = await kycFixture(t);
    const now = Math.floor(f.clock.now() / 1000);
    const event = { jti: 'kyb-evt-1', iat: now, aud: `${f.issuer}/kyc/webhooks/kyb-example`, lei: '5493001KJTIIGC8Y1R12', status: 'verified', level: 'kyb-standard', evidence_ref: 'KYB-99' };
    await f.apply({ legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] }], regions: [{ id: 'uk' }] });
    const good = await f.jwsWebhook(event);
    assert.equal(good.statusCode, 200, good.body);
    assert.deepEqual(good.json(), { status: 'verified', version: 1, changed: true });
    const entity = await f.call('GET', '/admin/kyc/legal-entities/5493001KJTIIGC8Y1R12', f.viewer);
    assert.equal(entity.json().provider, 'kyb-example');
    assertOAuthError(await f.jwsWebhook(event), 409, 'invalid_request');
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-2' }, (await generateKeyPair('ES256')).privateKey), 401, 'invalid_request');
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-3', iat: now - 3600 }), 401, 'invalid_request');
    assertOAuthError(await f.jwsWebhook({ ...event, jti: undefined }), 400, 'invalid_request');
    // Signed for another deployment (the same provider key), or for none: not for us.
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-4', aud: 'https://staging.example/kyc/webhooks/kyb-example' }), 401, 'invalid_request');
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-5', aud: undefined }), 401, 'invalid_request');
    // A principal that is not a string is an invalid event, never a 5xx.
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-6', lei: { toString: 1 } }), 400, 'invalid_request');
    assertOAuthError(await f.jwsWebhook({ ...event, jti: 'kyb-evt-7', lei: undefined, username: 42 }), 400, 'invalid_request');
    // An HMAC-style delivery to a JWS provider is no JWS.
    assertOAuthError(await f.inject({ method: 'POST', url: '/kyc/webhooks/kyb-example', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(event) }), 401, 'invalid_request');
  });

  test('a freeze by an administrator or a provider raises the kyc.frozen alert; a provider cannot lift it, an administrator can', async (t) => {
    const f = await kycFixture(t);
    const alice = await record(f);
    const frozen = await f.call('PUT', '/admin/kyc/users/alice', f.admin, { status: 'frozen', level: alice.level, provider: alice.provider, review_due: alice.review_due, evidence_ref: alice.evidence_ref, reason: 'adverse media' });
    assert.equal(frozen.statusCode, 200, frozen.body);
    assert.equal(frozen.json().previous_status, 'verified');
    const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'kyc.frozen').execute();
    assert.equal(alerts.length, 1);
    assert.deepEqual(JSON.parse(alerts[0]!.data), { principal_type: 'User', principal_id: await f.userId('alice'), previous_status: 'verified', by: 'admin' });
    // The provider says verified: the record stays frozen, and returns to what the provider said.
    const webhook = await f.hmacWebhook({ username: 'alice', status: 'rejected' });
    assert.equal(webhook.statusCode, 200, webhook.body);
    assert.equal(webhook.json().status, 'frozen');
    const held = await record(f);
    assert.equal(held.status, 'frozen');
    assert.equal(held.previous_status, 'rejected');
    // Re-applying an unchanged document lifts nothing either.
    const lifted = await f.call('PUT', '/admin/kyc/users/alice', f.admin, { status: 'verified', level: 'standard', provider: 'idv-example', review_due: null, evidence_ref: null });
    assert.equal(lifted.statusCode, 200, lifted.body);
    assert.equal(lifted.json().status, 'verified');
    assert.equal(lifted.json().previous_status, undefined);
  });

  test('apply declares a record once: re-applying the same document keeps what a provider changed since; an older attributes.kyc_status still works', async (t) => {
    const f = await kycFixture(t);
    const document = { users: [{ username: 'alice', name: 'Alice Trader', desks: ['fx-spot'], kyc: { status: 'verified', level: 'standard', provider: 'idv-example', review_due: (await record(f)).review_due, evidence_ref: 'IDV-CASE-1042' } }] };
    assert.equal((await f.hmacWebhook({ username: 'alice', status: 'rejected' })).statusCode, 200);
    await f.apply(document);
    assert.equal((await record(f)).status, 'rejected');
    await f.apply({ users: [{ ...document.users[0]!, kyc: { ...document.users[0]!.kyc, review_due: '2032-01-01' } }] });
    assert.equal((await record(f)).status, 'verified');
    await f.apply({ users: [{ username: 'bob', name: 'Bob Example', attributes: { kyc_status: 'pending', suitability: ['fx'] } }] });
    const bob = await record(f, 'bob');
    assert.equal(bob.status, 'pending');
    const { problems } = await (await import('../../../src/apply/index.ts')).planApply(f.ctx, { users: [{ username: 'carl', kyc: { status: 'verified' }, attributes: { kyc_status: 'verified' } }] });
    assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), ['users[0].attributes.kyc_status: give kyc.status or attributes.kyc_status, not both']);
  });
});
