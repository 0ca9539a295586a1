import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { checkPayloads } from '../../src/audit/bundle-appended.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { createEvidenceRecorder, EvidenceRecordError, payloadSha256, recordEvidence } from '../../src/guard/index.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { startTestServer } from '../helpers/server.ts';

// The guard's one-call helper (docs/guard.md "Recording evidence"), against a running Clearance:
// it hashes the payload, signs the statement with the producer's key, gets its token and posts.

const broker = '5493001KJTIIGC8Y1R12';
const other = '254900EXAMPLEUS0AA64';

test('recordEvidence appends a signed event with a private_key_jwt client, idempotently, and the bundle checks the payload', async (t) => {
  const server = await startTestServer({ t });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  await server.apply({
    regions: [{ id: 'uk' }, { id: 'us' }],
    legal_entities: [
      { lei: broker, name: 'Broker', jurisdiction: 'GB', home_region: 'uk', roles: ['broker'] },
      { lei: other, name: 'Other', jurisdiction: 'US', home_region: 'us', roles: ['broker'] },
    ],
    resource_servers: [{ identifier: 'https://orders.example.com', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'broker-oms',
        kind: 'service',
        owner_lei: broker,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'oms-1', alg: 'ES256', use: 'sig' }] },
        grant_types: ['client_credentials'],
        scope: 'evidence:append',
      },
      { client_id: 'other-oms', kind: 'service', owner_lei: other, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'evidence:append' },
    ],
  });
  const ctx = server.running.ctx;
  await ctx.audit.record({ type: 'token.issued', client: 'broker-oms', txn: 'trade-1', details: {} });
  const order = JSON.stringify({ order_id: 'ORD-1', side: 'buy', notional: '1000000' });
  const clientAuth = { clientId: 'broker-oms', privateKey, kid: 'oms-1' };

  const recorded = await recordEvidence({ issuer: server.issuer, clientAuth, txn: 'trade-1', type: 'order.received', eventId: 'ORD-1', payload: order, occurredAt: new Date('2026-11-25T09:00:00Z') });
  assert.equal(recorded.created, true);
  assert.equal(recorded.signed, true, 'signed with the client key by default');
  assert.equal(recorded.payload_sha256, payloadSha256(order));
  assert.equal(recorded.occurred_at, '2026-11-25T09:00:00.000Z');
  const again = await recordEvidence({ issuer: server.issuer, clientAuth, txn: 'trade-1', type: 'order.received', eventId: 'ORD-1', payload: order, occurredAt: new Date('2026-11-25T09:00:00Z') });
  assert.equal(again.created, false, 'a retry is answered with the first record');
  assert.equal(again.evidence_id, recorded.evidence_id);
  await assert.rejects(
    recordEvidence({ issuer: server.issuer, clientAuth, txn: 'trade-1', type: 'order.received', eventId: 'ORD-1', payload: 'another order' }),
    (error) => error instanceof EvidenceRecordError && error.status === 409 && error.error === 'invalid_request',
  );

  // A recorder reuses its token; another firm's producer is refused the trade.
  let tokenRequests = 0;
  const counting: typeof fetch = (input, init) => {
    if (String(input).endsWith('/token')) tokenRequests++;
    return fetch(input, init);
  };
  const recorder = createEvidenceRecorder({ issuer: server.issuer, clientAuth, fetch: counting, signingKey: false });
  const fill = 'fill 1000000 @ 1.0842';
  const executed = await recorder.record({ txn: 'trade-1', type: 'order.executed', eventId: 'FILL-1', payload: fill });
  await recorder.record({ txn: 'trade-1', type: 'trade.confirmed', eventId: 'CONF-1', payload: 'confirmed' });
  assert.equal(executed.signed, false);
  assert.equal(tokenRequests, 1);
  await assert.rejects(
    recordEvidence({ issuer: server.issuer, clientAuth: { clientId: 'other-oms', clientSecret: server.secrets['other-oms']! }, txn: 'trade-1', type: 'order.received', eventId: 'X-1', payload: order }),
    (error) => error instanceof EvidenceRecordError && error.status === 403 && error.error === 'access_denied',
  );

  // The trade's bundle: every appended event with its proof, the signed one's JWS verified, the payloads matched.
  const master = resolveMasterKey(ctx.config).key;
  await sealNow(ctx, master);
  const key = await new AuditKeys(ctx.storage.db, master, ctx.clock).signingKey(auditOrigin(ctx.config.issuer));
  const { text } = await exportBundle(ctx.storage.db, { query: { txn: 'trade-1' }, key, jwksInForce: (a, b) => ctx.keys.jwksInForce(a, b), now: Date.now() });
  const report = verifyBundle(text);
  assert.ok(report.ok, report.problems.join('\n'));
  assert.deepEqual(report.appended?.map((a) => [a.eventId, a.signed]), [['ORD-1', true], ['FILL-1', false], ['CONF-1', false]]);
  const payloads = checkPayloads(report.appended!, [{ file: 'order.json', sha256: payloadSha256(order) }, { file: 'fill.txt', sha256: payloadSha256(fill) }]);
  assert.deepEqual(payloads.problems, []);
  assert.deepEqual(payloads.unsupplied.map((u) => u.eventId), ['CONF-1']);
});
