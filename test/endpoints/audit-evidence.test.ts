import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { evidenceAudience } from '../../src/resource-servers/builtins.ts';
import { signEvidenceStatement, type EvidenceStatementFields } from '../../src/guard/evidence.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from './fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// POST /audit/evidence over HTTP (docs/evidence.md): registered producers append typed events under
// a txn their firm takes part in; idempotent by (producer, event_id); every refusal on the record.

const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '254900EXAMPLEUS0AA64';
const clearingApi = 'https://clearing.firm-b.example';
const reportsApi = 'https://reports.firm-a.example';

interface Harness extends ProtocolFixture {
  omsKey: CryptoKey;
  /** An evidence:append token of a producer (client_secret_basic). */
  producerToken(clientId: string, scope?: string): Promise<string>;
  append(token: string, body: unknown): ReturnType<ProtocolFixture['inject']>;
}

const payload = Buffer.from('{"order":"ORD-1","side":"buy","qty":100}');
const hash = createHash('sha256').update(payload).digest('hex');

async function harness(t: TestContext, dialect?: TestDialect): Promise<Harness> {
  const f = await protocolFixture(t, { risk: 'off', ...(dialect ? { dialect } : {}) });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const producer = (client_id: string, owner: string | undefined, scope = 'evidence:append', extra: Record<string, unknown> = {}) => ({
    client_id,
    kind: 'service',
    ...(owner ? { owner_lei: owner } : {}),
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    scope,
    ...extra,
  });
  await f.apply({
    regions: [{ id: 'uk' }, { id: 'us' }],
    legal_entities: [
      { lei: firmA, name: 'Firm A', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
      { lei: firmB, name: 'Firm B', jurisdiction: 'US', home_region: 'us', roles: ['clearing'] },
    ],
    resource_servers: [
      { identifier: clearingApi, scopes: ['settlement:submit'], owner_lei: firmB },
      // A's API, which lets B's settlement system introspect its tokens: that makes B no party.
      { identifier: reportsApi, scopes: ['report:view'], introspection_clients: ['b-settlement'], exchange_clients: ['b-settlement'] },
    ],
    clients: [
      producer('a-algo', firmA, 'order:create'),
      producer('b-algo', firmB, 'order:create'),
      // A's OMS signs its statements with a registered key (the JWS is verified against it).
      producer('a-oms', firmA, 'evidence:append', { jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'a-oms-1', alg: 'ES256' }] } }),
      producer('b-settlement', firmB),
      producer('a-guard', firmA, 'evidence:write'),
      producer('nowhere-oms', undefined),
    ],
  });
  // A's algorithm took part in t-a (a token under it); B's in t-b; t-clear: a token for B's API.
  await f.ctx.audit.record({ type: 'token.issued', client: 'a-algo', subject: 'a-algo', txn: 't-a', audience: 'https://orders.example.com/api', details: { jti: 'j1' } });
  await f.ctx.audit.record({ type: 'token.issued', client: 'b-algo', subject: 'b-algo', txn: 't-b', audience: 'https://orders.example.com/api', details: { jti: 'j2' } });
  await f.ctx.audit.record({ type: 'token.exchanged', client: 'a-algo', subject: 'a-algo', txn: 't-clear', audience: clearingApi, details: { jti: 'j3' } });
  await f.ctx.audit.record({ type: 'token.exchanged', client: 'a-algo', subject: 'a-algo', txn: 't-report', audience: reportsApi, details: { jti: 'j4' } });
  const h = f as Harness;
  h.omsKey = privateKey;
  h.producerToken = (clientId, scope = 'evidence:append') => f.accessToken(clientId, { resource: evidenceAudience(f.issuer), scope });
  h.append = (token, body) => f.inject({ method: 'POST', url: '/audit/evidence', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
  return h;
}

const event = (extra: Record<string, unknown> = {}) => ({ txn: 't-a', event_id: 'ORD-1', type: 'order.received', payload_sha256: hash, occurred_at: '2026-11-25T09:00:00Z', ...extra });

for (const dialect of testDialects()) {
  describe(`POST /audit/evidence on ${dialect.name}`, () => {
    test('records a producer’s event with its payload hash only, and answers a retry with the same record', async (t) => {
      const h = await harness(t, dialect);
      const token = await h.producerToken('a-oms');
      const first = await h.append(token, event());
      assert.equal(first.statusCode, 201, first.body);
      assert.equal(first.headers['cache-control'], 'no-store');
      const body = first.json() as Record<string, unknown>;
      assert.match(String(body.evidence_id), /^[0-9a-f-]{36}$/);
      assert.deepEqual({ ...body, evidence_id: 'x', recorded_at: 'x' }, { evidence_id: 'x', recorded_at: 'x', txn: 't-a', event_id: 'ORD-1', type: 'order.received', payload_sha256: hash, occurred_at: '2026-11-25T09:00:00Z', signed: false });
      const again = await h.append(token, event());
      assert.equal(again.statusCode, 200, again.body);
      assert.deepEqual(again.json(), body, 'the same answer');
      const [appended, ...more] = await h.auditEvents('evidence.appended');
      assert.equal(more.length, 0, 'one event for the retried append');
      assert.equal(appended!.txn, 't-a');
      assert.equal(appended!.client, 'a-oms');
      assert.deepEqual(appended!.details, { evidence_id: body.evidence_id, event_id: 'ORD-1', evidence_type: 'order.received', payload_sha256: hash, occurred_at: '2026-11-25T09:00:00Z', producer_lei: firmA, signed: false });
      const rows = await h.ctx.storage.db.selectFrom('external_evidence').selectAll().execute();
      assert.equal(rows.length, 1);
      assert.ok(!JSON.stringify(rows).includes('ORD-1","side'), 'nothing of the payload but its hash');
    });

    test('refuses the same event id for another event with 409, on the record', async (t) => {
      const h = await harness(t, dialect);
      const token = await h.producerToken('a-oms');
      assert.equal((await h.append(token, event())).statusCode, 201);
      const conflict = await h.append(token, event({ payload_sha256: 'a'.repeat(64) }));
      const body = assertOAuthError(conflict, 409, 'invalid_request');
      assert.match(String(body.error_description), /ORD-1 was recorded for another event/);
      assertOAuthError(await h.append(token, event({ type: 'order.executed' })), 409, 'invalid_request');
      const refused = await h.auditEvents('evidence.refused');
      assert.deepEqual(refused.map((e) => e.details?.reason), ['event_id_conflict', 'event_id_conflict']);
      assert.equal(refused[0]!.txn, 't-a');
      // Another producer's event id is its own: the same id from B is another event.
      const b = await h.producerToken('b-settlement');
      assert.equal((await h.append(b, event({ txn: 't-b' }))).statusCode, 201);
    });

    test('records one event when two copies arrive at once, and refuses a different one racing it', async (t) => {
      const h = await harness(t, dialect);
      const token = await h.producerToken('a-oms');
      const same = await Promise.all([h.append(token, event({ event_id: 'R-1' })), h.append(token, event({ event_id: 'R-1' }))]);
      assert.deepEqual(same.map((r) => r.statusCode).sort(), [200, 201], same.map((r) => r.body).join('\n'));
      assert.equal(same[0]!.json().evidence_id, same[1]!.json().evidence_id);
      const racing = await Promise.all([h.append(token, event({ event_id: 'R-2' })), h.append(token, event({ event_id: 'R-2', payload_sha256: 'c'.repeat(64) }))]);
      assert.deepEqual(racing.map((r) => r.statusCode).sort(), [201, 409]);
      assert.equal((await h.auditEvents('evidence.appended')).length, 2);
    });
  });
}

describe('POST /audit/evidence refuses', () => {
  test('a token without evidence:append (insufficient_scope), no token, a token for another audience', async (t) => {
    const h = await harness(t);
    // The signed-request producer's scope is another authority.
    const guardToken = await h.producerToken('a-guard', 'evidence:write');
    assertOAuthError(await h.append(guardToken, event()), 403, 'insufficient_scope');
    const response = await h.inject({ method: 'POST', url: '/audit/evidence', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(event()) });
    assertOAuthError(response, 401, 'invalid_token');
    // A token for another audience.
    const orders = await h.accessToken('a-algo', { resource: 'https://orders.example.com/api' });
    assertOAuthError(await h.append(orders, event()), 401, 'invalid_token');
    assert.equal((await h.auditEvents('evidence.appended')).length, 0);
  });

  test('a txn of another firm and an unknown txn alike (403 access_denied), each audited with its reason', async (t) => {
    const h = await harness(t);
    const token = await h.producerToken('a-oms');
    const other = assertOAuthError(await h.append(token, event({ txn: 't-b' })), 403, 'access_denied');
    const unknown = assertOAuthError(await h.append(token, event({ txn: 't-nothing' })), 403, 'access_denied');
    assert.equal(other.error_description, unknown.error_description, 'the answer does not tell whether the txn exists');
    const refused = await h.auditEvents('evidence.refused');
    assert.deepEqual(
      refused.map((e) => [e.txn, e.client, e.details?.error, e.details?.reason]),
      [
        ['t-b', 'a-oms', 'access_denied', 'txn_not_party'],
        ['t-nothing', 'a-oms', 'access_denied', 'txn_unknown'],
      ],
    );
    // A producer without a firm appends nowhere.
    assertOAuthError(await h.append(await h.producerToken('nowhere-oms'), event()), 403, 'access_denied');
    assert.equal((await h.auditEvents('evidence.appended')).length, 0);
  });

  test('accepts the firm that runs the resource server (owner_lei) that took a token under the txn, and no firm for its introspection rights', async (t) => {
    const h = await harness(t);
    // B's API (owner_lei B) took a token under t-clear; B's settlement system holds evidence:append only.
    const b = await h.producerToken('b-settlement');
    assert.equal((await h.append(b, event({ txn: 't-clear', event_id: 'STL-1', type: 'settlement.instructed' }))).statusCode, 201);
    assertOAuthError(await h.append(b, event({ txn: 't-a', event_id: 'STL-2' })), 403, 'access_denied');
    // An API that lets B introspect and exchange its tokens is not B's: no party through it.
    assertOAuthError(await h.append(b, event({ txn: 't-report', event_id: 'STL-3' })), 403, 'access_denied');
    assert.deepEqual((await h.auditEvents('evidence.refused')).map((e) => [e.txn, e.details?.reason]), [['t-a', 'txn_not_party'], ['t-report', 'txn_not_party']]);
  });

  test('a JWS that does not verify, is not detached, or is of another type; a valid one is recorded', async (t) => {
    const h = await harness(t);
    const token = await h.producerToken('a-oms');
    const fields: EvidenceStatementFields = { producer: 'a-oms', txn: 't-a', event_id: 'ORD-9', type: 'order.received', payload_sha256: hash, occurred_at: '2026-11-25T09:00:00Z' };
    const body = (jws: string) => event({ event_id: 'ORD-9', jws });
    const stranger = (await generateKeyPair('ES256')).privateKey;
    const cases: [string, string][] = [
      ['a stranger’s key', await signEvidenceStatement(fields, { privateKey: stranger, kid: 'a-oms-1' })],
      ['over another event', await signEvidenceStatement({ ...fields, payload_sha256: 'b'.repeat(64) }, { privateKey: h.omsKey, kid: 'a-oms-1' })],
      ['not detached', await new CompactSign(new TextEncoder().encode('{}')).setProtectedHeader({ alg: 'ES256', typ: 'clearance-evidence+jws' }).sign(h.omsKey)],
      ['another typ', (await new CompactSign(new TextEncoder().encode('{}')).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(h.omsKey)).replace(/\.[^.]+\./, '..')],
      ['an unknown kid', await signEvidenceStatement(fields, { privateKey: h.omsKey, kid: 'other' })],
      ['garbage', 'abc'],
    ];
    for (const [what, jws] of cases) {
      const refused = assertOAuthError(await h.append(token, body(jws)), 400, 'invalid_request', what);
      assert.match(String(refused.error_description), /^jws/, what);
    }
    assert.ok((await h.auditEvents('evidence.refused')).every((e) => e.details?.reason === 'jws_invalid'));
    const good = await h.append(token, body(await signEvidenceStatement(fields, { privateKey: h.omsKey, kid: 'a-oms-1' })));
    assert.equal(good.statusCode, 201, good.body);
    assert.equal(good.json().signed, true);
    const [appended] = await h.auditEvents('evidence.appended');
    assert.equal(appended!.details?.signed, true);
    assert.match(String(appended!.details?.jws_sha256), /^[0-9a-f]{64}$/);
    assert.match(String(appended!.details?.key_thumbprint), /^[A-Za-z0-9_-]{43}$/);
    // A retry signs again (ECDSA signatures differ each time): the same event, the same answer.
    const retry = await h.append(token, body(await signEvidenceStatement(fields, { privateKey: h.omsKey, kid: 'a-oms-1' })));
    assert.equal(retry.statusCode, 200, retry.body);
  });

  test('a JWS verified with keys from the producer’s jwks_uri, fetched again after a rotation', async (t) => {
    const h = await harness(t);
    const first = await generateKeyPair('ES256', { extractable: true });
    const second = await generateKeyPair('ES256', { extractable: true });
    let served = [{ ...(await exportJWK(first.publicKey)), kid: 'k1', alg: 'ES256' }];
    let fetches = 0;
    const keys = createServer((_request, response) => {
      fetches++;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: served }));
    });
    await new Promise<void>((resolve) => keys.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => keys.close(() => resolve())));
    await h.apply({ clients: [{ client_id: 'a-venue', kind: 'service', owner_lei: firmA, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:append', jwks_uri: `http://127.0.0.1:${(keys.address() as AddressInfo).port}/jwks` }] });
    let token = await h.producerToken('a-venue');
    const fields = (eventId: string): EvidenceStatementFields => ({ producer: 'a-venue', txn: 't-a', event_id: eventId, type: 'order.executed', payload_sha256: hash });
    const send = async (eventId: string, privateKey: CryptoKey, kid: string) => h.append(token, { txn: 't-a', event_id: eventId, type: 'order.executed', payload_sha256: hash, jws: await signEvidenceStatement(fields(eventId), { privateKey, kid }) });
    assert.equal((await send('FILL-1', first.privateKey, 'k1')).statusCode, 201);
    // The venue rotates to k2: refused while the set was fetched too recently, accepted once it may be fetched again.
    served = [{ ...(await exportJWK(second.publicKey)), kid: 'k2', alg: 'ES256' }];
    assertOAuthError(await send('FILL-2', second.privateKey, 'k2'), 400, 'invalid_request');
    h.clock.advance(11 * 60_000);
    token = await h.producerToken('a-venue');
    assert.equal((await send('FILL-2', second.privateKey, 'k2')).statusCode, 201);
    assert.ok(fetches >= 2, `fetched ${fetches} times`);
  });

  test('a hash in another format, a payload, an unknown type, a bad time — 400, JSON, never a 5xx', async (t) => {
    const h = await harness(t);
    const token = await h.producerToken('a-oms');
    const bad: [string, unknown][] = [
      ['uppercase hex', event({ payload_sha256: hash.toUpperCase() })],
      ['base64url', event({ payload_sha256: createHash('sha256').update(payload).digest('base64url') })],
      ['short', event({ payload_sha256: hash.slice(2) })],
      ['the payload itself', { ...event(), payload: payload.toString() }],
      ['an unknown type', event({ type: 'order.teleported' })],
      ['a malformed namespaced type', event({ type: 'x-.thing' })],
      ['a future time', event({ occurred_at: '2099-01-01T00:00:00Z' })],
      ['a time without offset', event({ occurred_at: '2026-11-25T09:00:00' })],
      ['a bad txn', event({ txn: 'a b' })],
      ['a JWT-shaped event id', event({ event_id: 'eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.sig' })],
      ['an array', [event()]],
      ['a number', 42],
    ];
    for (const [what, body] of bad) assertOAuthError(await h.append(token, body), 400, 'invalid_request', what);
    const form = await h.inject({ method: 'POST', url: '/audit/evidence', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'txn=t-a' });
    assert.ok(form.statusCode >= 400 && form.statusCode < 500, form.body);
    const broken = await h.inject({ method: 'POST', url: '/audit/evidence', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: '{"txn":' });
    assertOAuthError(broken, 400, 'invalid_request', 'malformed JSON');
    // A namespaced type of the producer's own is fine.
    assert.equal((await h.append(token, event({ type: 'x-acme.ledger_posted' }))).statusCode, 201);
  });
});
