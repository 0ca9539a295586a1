import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { checkPayloads } from '../../src/audit/bundle-appended.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { appendExternalEvidence, ExternalEvidenceRefusal, firmTakesPart, isEvidenceType, readAppendRequest } from '../../src/evidence/external.ts';
import { evidenceStatement, payloadSha256, signEvidenceStatement } from '../../src/guard/evidence.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// External evidence inside (src/evidence/external.ts, src/audit/bundle-appended.ts): the request
// rules, the participation rule, the signed statement, and the bundle's offline checks.

const firmA = '5493001KJTIIGC8Y1R12';
const firmB = '254900EXAMPLEUS0AA64';
const now = Date.parse('2026-11-25T10:00:00Z');

describe('reading an append request', () => {
  const base = { txn: 't-1', event_id: 'E-1', type: 'order.received', payload_sha256: 'a'.repeat(64) };
  const reason = (body: unknown) => {
    try {
      readAppendRequest(body, now);
      return 'accepted';
    } catch (error) {
      assert.ok(error instanceof ExternalEvidenceRefusal);
      assert.equal(error.code, 'invalid_request');
      return error.reason;
    }
  };

  test('accepts the registered and x- namespaced types, a hash in lowercase hex, an RFC 3339 time', () => {
    assert.equal(reason(base), 'accepted');
    assert.equal(reason({ ...base, type: 'x-venue.fill', occurred_at: '2026-11-25T10:04:59+00:00' }), 'accepted');
    for (const type of ['settlement.settled', 'custody.transferred', 'trade.confirmed', 'x-acme-ops.ledger.posted_v2']) assert.ok(isEvidenceType(type), type);
    for (const type of ['order', 'x-acme', 'X-acme.thing', 'x-acme.', 'order.received ', 'token.issued']) assert.ok(!isEvidenceType(type), type);
  });

  test('refuses each broken rule with its reason', () => {
    assert.equal(reason({ ...base, payload_sha256: 'A'.repeat(64) }), 'bad_hash');
    assert.equal(reason({ ...base, payload_sha256: 'a'.repeat(63) }), 'bad_hash');
    assert.equal(reason({ ...base, type: 'order.shipped' }), 'unknown_type');
    assert.equal(reason({ ...base, jws: 7 }), 'jws_invalid');
    assert.equal(reason({ ...base, payload: 'x' }), 'malformed');
    assert.equal(reason({ ...base, occurred_at: '2026-11-25T10:06:00Z' }), 'malformed', 'more than five minutes ahead');
    assert.equal(reason({ ...base, event_id: '' }), 'malformed');
    assert.equal(reason({ ...base, event_id: 'x'.repeat(129) }), 'malformed');
    assert.equal(reason({ ...base, txn: 'new' }), 'malformed');
    assert.equal(reason(null), 'malformed');
  });

  test('the signed statement is one canonical spelling of the fields', () => {
    const fields = { producer: 'oms', txn: 't', event_id: 'e', type: 'order.received', payload_sha256: 'a'.repeat(64) };
    assert.equal(evidenceStatement(fields), canonicalize({ event_id: 'e', format: 'clearance-evidence-statement/1', payload_sha256: 'a'.repeat(64), producer: 'oms', txn: 't', type: 'order.received' }));
    assert.notEqual(evidenceStatement(fields), evidenceStatement({ ...fields, occurred_at: '2026-11-25T10:00:00Z' }));
    assert.equal(payloadSha256('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

async function harness(t: TestContext, dialect?: TestDialect) {
  const f = await protocolFixture(t, { risk: 'off', ...(dialect ? { dialect } : {}) });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const client = (client_id: string, owner: string, scope: string, extra: Record<string, unknown> = {}) => ({ client_id, kind: 'service', owner_lei: owner, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope, ...extra });
  await f.apply({
    regions: [{ id: 'uk' }, { id: 'us' }],
    legal_entities: [
      { lei: firmA, name: 'Firm A', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'], desks: [{ id: 'a-desk' }] },
      { lei: firmB, name: 'Firm B', jurisdiction: 'US', home_region: 'us', roles: ['clearing'] },
    ],
    clients: [
      client('a-algo', firmA, 'order:create'),
      client('a-oms', firmA, 'evidence:append', { jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'oms-1', alg: 'ES256' }] } }),
      client('b-oms', firmB, 'evidence:append'),
    ],
    users: [{ username: 'trader-a', name: 'Trader A', roles: ['trader'], desks: ['a-desk'] }],
  });
  return { f, omsKey: privateKey };
}

async function bundleOf(f: ProtocolFixture, txn: string): Promise<string> {
  const master = resolveMasterKey(f.ctx.config).key;
  await sealNow(f.ctx, master);
  const keys = new AuditKeys(f.ctx.storage.db, master, f.ctx.clock);
  const key = await keys.signingKey(auditOrigin(f.ctx.config.issuer));
  const { text } = await exportBundle(f.ctx.storage.db, { query: { txn }, key, jwksInForce: (a, b) => f.ctx.keys.jwksInForce(a, b), now: f.clock.now() });
  return text;
}

for (const dialect of testDialects()) describe(`participation on ${dialect.name}`, () => {
  test('a firm takes part through its client’s token or its person’s, not through another firm’s or a refusal, sealed or not', async (t) => {
    const { f } = await harness(t, dialect);
    const trader = await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'trader-a').executeTakeFirstOrThrow();
    await f.ctx.audit.record({ type: 'token.issued', client: 'a-algo', txn: 't-client', details: {} });
    await f.ctx.audit.record({ type: 'token.issued', client: 'someone-app', subject: trader.id, txn: 't-person', details: {} });
    await f.ctx.audit.record({ type: 'token.refused', client: 'a-algo', txn: 't-refused', details: { error: 'invalid_request', reason: 'x' } });
    await f.ctx.storage.db.insertInto('transactions').values({ txn: 't-started', client_id: 'a-algo', started_at: f.clock.now() }).execute();
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-client'), 'party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-person'), 'party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-started'), 'party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-refused'), 'not_party', 'naming a txn in a refused request makes no one a party');
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-client'), 'not_party');
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-started'), 'not_party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-never'), 'unknown');
    // Sealed, the events are found through the lookup index instead of the unsealed tail.
    await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-client'), 'party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-person'), 'party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-refused'), 'not_party');
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-client'), 'not_party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-never'), 'unknown');
  });

  test('a firm takes part through a resource server it runs (owner_lei), not through introspection or exchange rights', async (t) => {
    const { f } = await harness(t, dialect);
    const owned = 'https://clearing.firm-b.example';
    const lent = 'https://reports.firm-a.example';
    await f.apply({
      resource_servers: [
        { identifier: owned, scopes: ['settlement:submit'], owner_lei: firmB },
        // Firm A's API, which lets B's producer introspect and exchange its tokens: B runs nothing here.
        { identifier: lent, scopes: ['report:view'], owner_lei: firmA, introspection_clients: ['b-oms'], exchange_clients: ['b-oms'] },
      ],
    });
    assert.equal((await f.ctx.resourceServers.get(owned))?.owner_lei, firmB, 'stored with the resource server');
    await f.ctx.audit.record({ type: 'token.exchanged', client: 'a-algo', subject: 'a-algo', txn: 't-owned', audience: owned, details: {} });
    await f.ctx.audit.record({ type: 'token.issued', client: 'someone-app', subject: 'someone-app', txn: 't-lent', audience: lent, details: {} });
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-owned'), 'party', 'B runs the API that took the token');
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-lent'), 'not_party', 'introspection and exchange rights make no one a party');
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-lent'), 'party', 'A runs that API');
    await sealNow(f.ctx, resolveMasterKey(f.ctx.config).key);
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-owned'), 'party');
    // An API later disabled still took the token: its firm stays in that trade.
    await f.ctx.storage.db.transaction().execute((trx) => f.ctx.resourceServers.disable(trx, owned, f.clock.now()));
    f.ctx.resourceServers.invalidate();
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-owned'), 'party');
  });

  test('a firm’s person counts as the subject of a token under the txn; a subject of no firm makes no one a party', async (t) => {
    const { f } = await harness(t, dialect);
    const trader = await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'trader-a').executeTakeFirstOrThrow();
    await f.ctx.audit.record({ type: 'token.exchanged', client: 'b-oms', subject: trader.id, txn: 't-desk', details: {} });
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-desk'), 'party', 'A’s trader, through a desk of A');
    assert.equal(await firmTakesPart(f.ctx, firmB, 't-desk'), 'party', 'B’s client took the token');
    await f.ctx.audit.record({ type: 'token.issued', client: 'someone-app', subject: 'nobody-known', txn: 't-stranger', details: {} });
    assert.equal(await firmTakesPart(f.ctx, firmA, 't-stranger'), 'not_party');
  });
});

describe('appended evidence in bundles', () => {
  test('the bundle carries each appended event with its proof, and the producer’s JWS verifies offline', async (t) => {
    const { f, omsKey } = await harness(t);
    await f.ctx.audit.record({ type: 'token.issued', client: 'a-algo', txn: 't-1', details: {} });
    const order = Buffer.from('{"order":"ORD-1"}');
    const fields = { producer: 'a-oms', txn: 't-1', event_id: 'ORD-1', type: 'order.received', payload_sha256: payloadSha256(order) };
    const jws = await signEvidenceStatement(fields, { privateKey: omsKey, kid: 'oms-1' });
    const { producer: _producer, ...sent } = fields;
    const signed = await appendExternalEvidence(f.ctx, 'a-oms', { ...sent, jws }, 'req-1');
    assert.equal(signed.signed, true);
    const fill = Buffer.from('fill 100 @ 1.0842');
    await appendExternalEvidence(f.ctx, 'a-oms', { txn: 't-1', event_id: 'FILL-1', type: 'order.executed', payload_sha256: payloadSha256(fill) }, 'req-2');
    const text = await bundleOf(f, 't-1');
    const report = verifyBundle(text);
    assert.ok(report.ok, report.problems.join('\n'));
    assert.deepEqual(
      report.appended?.map((a) => [a.type, a.eventId, a.producer, a.producerLei, a.signed]),
      [
        ['order.received', 'ORD-1', 'a-oms', firmA, true],
        ['order.executed', 'FILL-1', 'a-oms', firmA, false],
      ],
    );
    const bundle = JSON.parse(text);
    assert.equal(bundle.appendedEvidence.length, 1, 'material only for the signed event');
    assert.equal(bundle.appendedEvidence[0].jws, jws);
    assert.ok(!text.includes('"order":"ORD-1"'), 'no payload in the bundle');

    // The payloads the auditor holds: matched by hash; an altered one matches nothing.
    const check = checkPayloads(report.appended!, [
      { file: 'order.json', sha256: payloadSha256(order) },
      { file: 'fill.txt', names: 'FILL-1', sha256: payloadSha256(fill) },
    ]);
    assert.deepEqual(check.problems, []);
    assert.deepEqual(check.matched.map((m) => [m.file, m.evidence.eventId]), [['order.json', 'ORD-1'], ['fill.txt', 'FILL-1']]);
    const altered = checkPayloads(report.appended!, [{ file: 'order.json', sha256: payloadSha256('{"order":"ORD-2"}') }, { file: 'fill.txt', names: 'FILL-1', sha256: payloadSha256(order) }, { file: 'x', names: 'NOPE', sha256: payloadSha256(order) }]);
    assert.equal(altered.problems.length, 3, altered.problems.join('\n'));
    assert.match(altered.problems[0]!, /matches no appended event/);
    assert.match(altered.problems[1]!, /does not match event a-oms:FILL-1/);
    assert.match(altered.problems[2]!, /NOPE, which is no appended event/);
    assert.deepEqual(altered.unsupplied.map((u) => u.eventId), ['ORD-1', 'FILL-1'], 'no payload of either was supplied');
  });

  test('a payload named by a bare event_id two producers used is ambiguous; PRODUCER:EVENT_ID or the evidence id picks one', () => {
    const appended = (producer: string, eventId: string, hash: string, evidenceId: string) => ({ evidenceId, leafIndex: 1, txn: 't', producer, eventId, type: 'order.received', payloadSha256: hash, recordedAt: 0, signed: false });
    const oms = appended('broker-oms', 'ORD-1', payloadSha256('the order'), 'ev-1');
    const settlement = appended('clearing-settlement', 'ORD-1', payloadSha256('a forged order'), 'ev-2');
    const unique = appended('clearing-settlement', 'STL-1', payloadSha256('the instruction'), 'ev-3');
    const events = [oms, settlement, unique];
    // The reviewer's probe: a forged file for ORD-1 whose hash is the other producer's ORD-1 was accepted.
    const forged = checkPayloads(events, [{ file: 'forged-order.json', names: 'ORD-1', sha256: payloadSha256('a forged order') }]);
    assert.deepEqual(forged.matched, []);
    assert.equal(forged.problems.length, 1);
    assert.match(forged.problems[0]!, /ORD-1 is ambiguous: it names 2 appended events .*of producer\(s\) broker-oms, clearing-settlement; name one as PRODUCER:EVENT_ID=FILE/);
    // Named by producer, the forged file is a mismatch; the real one matches.
    const byProducer = checkPayloads(events, [
      { file: 'forged-order.json', names: 'broker-oms:ORD-1', sha256: payloadSha256('a forged order') },
      { file: 'order.json', names: 'broker-oms:ORD-1', sha256: payloadSha256('the order') },
      { file: 'other.json', names: 'ev-2', sha256: payloadSha256('a forged order') },
      { file: 'instruction.json', names: 'STL-1', sha256: payloadSha256('the instruction') },
    ]);
    assert.equal(byProducer.problems.length, 1, byProducer.problems.join('\n'));
    assert.match(byProducer.problems[0]!, /forged-order\.json: does not match event broker-oms:ORD-1/);
    assert.deepEqual(byProducer.matched.map((m) => [m.file, m.evidence.evidenceId]), [['order.json', 'ev-1'], ['other.json', 'ev-2'], ['instruction.json', 'ev-3']], 'a bare event_id one producer used still names its event');
    // A name that reads both as PRODUCER:EVENT_ID and as a bare event_id names two events: ambiguous.
    const colon = checkPayloads([appended('a', 'b', 'c'.repeat(64), 'ev-4'), appended('z', 'a:b', 'c'.repeat(64), 'ev-5')], [{ file: 'f', names: 'a:b', sha256: 'c'.repeat(64) }]);
    assert.match(colon.problems[0]!, /a:b is ambiguous/);
  });

  test('a swapped JWS, a swapped key or missing material is caught and named', async (t) => {
    const { f, omsKey } = await harness(t);
    await f.ctx.audit.record({ type: 'token.issued', client: 'a-algo', txn: 't-2', details: {} });
    const fields = { producer: 'a-oms', txn: 't-2', event_id: 'ORD-2', type: 'order.received', payload_sha256: 'd'.repeat(64) };
    await appendExternalEvidence(f.ctx, 'a-oms', { txn: 't-2', event_id: 'ORD-2', type: 'order.received', payload_sha256: 'd'.repeat(64), jws: await signEvidenceStatement(fields, { privateKey: omsKey, kid: 'oms-1' }) }, 'req');
    const text = await bundleOf(f, 't-2');
    // Any change breaks the bundle signature; the appended checks name what changed as well.
    const bundle = JSON.parse(text);
    bundle.appendedEvidence[0].jws = await signEvidenceStatement(fields, { privateKey: omsKey, kid: 'oms-1' });
    const report = verifyBundle(JSON.stringify(bundle));
    assert.equal(report.ok, false);
    assert.ok(report.problems.some((p) => /the JWS is not the one the log recorded/.test(p)), report.problems.join('\n'));
    const other = JSON.parse(text);
    const stranger = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
    other.appendedEvidence[0].key = canonicalize(stranger);
    assert.ok(verifyBundle(JSON.stringify(other)).problems.some((p) => /thumbprint differs/.test(p)));
    const missing = JSON.parse(text);
    delete missing.appendedEvidence;
    assert.ok(verifyBundle(JSON.stringify(missing)).problems.some((p) => /does not carry the producer's JWS/.test(p)));
  });

  test('the recorded hash and the producer are the log’s: another firm cannot append to the trade', async (t) => {
    const { f } = await harness(t);
    await f.ctx.audit.record({ type: 'token.issued', client: 'a-algo', txn: 't-3', details: {} });
    await assert.rejects(appendExternalEvidence(f.ctx, 'b-oms', { txn: 't-3', event_id: 'X', type: 'settlement.settled', payload_sha256: createHash('sha256').update('x').digest('hex') }, 'req'), (error) => error instanceof ExternalEvidenceRefusal && error.reason === 'txn_not_party');
    const rows = await f.ctx.storage.db.selectFrom('external_evidence').select('id').execute();
    assert.equal(rows.length, 0);
  });
});
