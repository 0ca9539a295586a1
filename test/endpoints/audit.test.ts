import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { assertOAuthError, protocolFixture, type ProtocolFixture } from './fixture.ts';

async function withAuditor(f: ProtocolFixture): Promise<string> {
  await f.apply({
    clients: [
      { client_id: 'auditor', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:read' },
    ],
  });
  return f.accessToken('auditor', { resource: adminAudience(f.issuer), scope: 'audit:read' });
}

async function seal(f: ProtocolFixture): Promise<void> {
  const masterKey = resolveMasterKey(f.ctx.config).key;
  await createSealer(f.ctx, masterKey).sealAll();
}

const get = (f: ProtocolFixture, url: string, token?: string) => f.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });

describe('the audit API', () => {
  test('admits only admin tokens with the audit:read scope', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await get(f, '/admin/audit/events'), 401, 'invalid_token');
    const adminOnly = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const response = await get(f, '/admin/audit/events', adminOnly);
    assertOAuthError(response, 403, 'insufficient_scope');
    assert.match(String(response.headers['www-authenticate']), /scope="audit:read"/);
  });

  test('queries events by transaction and client, in pages, without caching', async (t) => {
    const f = await protocolFixture(t);
    const token = await withAuditor(f);
    for (let i = 0; i < 5; i++) await f.ctx.audit.record({ type: 'policy.denied', txn: 'trade-42', client: 'broker-1', decision: { allow: false, reasons: ['limit'] }, details: { i } });
    const first = await get(f, '/admin/audit/events?txn=trade-42&decision=deny&limit=3', token);
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['cache-control'], 'no-store');
    const page = first.json() as { events: { event: { details: { i: number } } }[]; next: string };
    assert.deepEqual(page.events.map((e) => e.event.details.i), [0, 1, 2]);
    const second = (await get(f, `/admin/audit/events?txn=trade-42&limit=3&after=${page.next}`, token)).json() as { events: unknown[]; next?: string };
    assert.equal(second.events.length, 2);
    assert.equal(second.next, undefined);
    assertOAuthError(await get(f, '/admin/audit/events?type=token.minted', token), 400, 'invalid_request');
    assertOAuthError(await get(f, '/admin/audit/events?limit=-1', token), 400, 'invalid_request');
  });

  test('serves inclusion and consistency proofs that verify against the signed checkpoints', async (t) => {
    const f = await protocolFixture(t);
    const token = await withAuditor(f);
    await f.ctx.audit.record({ type: 'token.revoked', txn: 'trade-7', subject: 'user-1' });
    await seal(f);
    const firstSize = ((await get(f, '/admin/audit/checkpoints/latest', token)).json() as { treeSize: number }).treeSize;
    for (let i = 0; i < 10; i++) await f.ctx.audit.record({ type: 'token.revoked', details: { i } });
    await seal(f);

    const listed = (await get(f, '/admin/audit/events?txn=trade-7', token)).json() as { events: { event: { id: string } }[] };
    const proof = (await get(f, `/admin/audit/events/${listed.events[0]!.event.id}/proof`, token)).json() as {
      leafIndex: number;
      event: string;
      checkpoint: { treeSize: number; rootHash: string };
      inclusionProof: string[];
    };
    const b64 = (h: string) => Buffer.from(h, 'base64');
    assert.ok(verifyInclusion(proof.leafIndex, proof.checkpoint.treeSize, leafHash(Buffer.from(proof.event)), proof.inclusionProof.map(b64), b64(proof.checkpoint.rootHash)));

    const consistency = (await get(f, `/admin/audit/consistency?first=${firstSize}`, token)).json() as {
      first: { treeSize: number; rootHash: string };
      second: { treeSize: number; rootHash: string };
      consistencyProof: string[];
    };
    assert.ok(consistency.second.treeSize > firstSize);
    assert.ok(verifyConsistency(firstSize, consistency.second.treeSize, b64(consistency.first.rootHash), b64(consistency.second.rootHash), consistency.consistencyProof.map(b64)));

    const key = (await get(f, '/admin/audit/key', token)).json() as { key_id: string; origin: string };
    const stored = await new AuditKeys(f.ctx.storage.db, undefined, f.ctx.clock).currentPublicKey();
    assert.deepEqual([key.key_id, key.origin], [stored!.keyId, auditOrigin(f.issuer)]);

    assertOAuthError(await get(f, '/admin/audit/events/nope/proof', token), 404, 'not_found');
    assertOAuthError(await get(f, '/admin/audit/consistency?first=99999', token), 404, 'not_found');
    assertOAuthError(await get(f, '/admin/audit/consistency', token), 400, 'invalid_request');
  });
  test('exports the signed bundle of a selection that verifies offline, audited with who exported it, and refuses one without a selection', async (t) => {
    const f = await protocolFixture(t);
    const token = await withAuditor(f);
    assertOAuthError(await get(f, '/admin/audit/bundle?txn=trade-9', token), 400, 'invalid_request');
    for (let i = 0; i < 3; i++) await f.ctx.audit.record({ type: 'token.revoked', txn: 'trade-9', details: { i } });
    await seal(f);
    await f.ctx.audit.record({ type: 'token.revoked', txn: 'trade-9', details: { i: 3 } });
    const response = await get(f, '/admin/audit/bundle?txn=trade-9', token);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    assert.equal(response.headers['clearance-unsealed-events'], '1', 'the event not sealed yet is counted, not included');
    assert.match(String(response.headers['content-disposition']), /^attachment; filename="evidence-trade-9\.json"$/);
    const report = verifyBundle(response.body);
    assert.equal(report.ok, true, JSON.stringify(report));
    assert.equal(report.events, 3);
    const exported = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.exported').execute();
    assert.equal(exported.length, 1);
    assert.equal(JSON.parse(exported[0]!.event).actor, 'auditor');
    assertOAuthError(await get(f, '/admin/audit/bundle', token), 400, 'invalid_request');
    assertOAuthError(await get(f, '/admin/audit/bundle?txn=', token), 400, 'invalid_request');
    assertOAuthError(await get(f, '/admin/audit/bundle?txn=trade-9'), 401, 'invalid_token');
  });
  test('puts every read of events on the record: who, what they asked, how many they got — never the events', async (t) => {
    const f = await protocolFixture(t);
    const token = await withAuditor(f);
    await f.ctx.audit.record({ type: 'token.revoked', txn: 'trade-3', subject: 'user-9' });
    await seal(f);
    const page = await get(f, '/admin/audit/events?txn=trade-3', token);
    assert.equal(page.statusCode, 200);
    const id = (page.json() as { events: { event: { id: string } }[] }).events[0]!.event.id;
    assert.equal((await get(f, `/admin/audit/events/${id}/proof`, token)).statusCode, 200);
    const jwtShaped = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    assert.equal((await get(f, `/admin/audit/events?subject=${jwtShaped}`, token)).statusCode, 200, 'a query the log will not quote is still answered');
    const reads = (await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.read').orderBy('seq').execute()).map((r) => JSON.parse(r.event) as { actor: string; details: Record<string, unknown> });
    assert.deepEqual(
      reads.map((r) => [r.actor, r.details]),
      [
        ['auditor', { query: { txn: 'trade-3' }, events: 1 }],
        ['auditor', { event: id, events: 1 }],
        ['auditor', { query: 'withheld: not auditable', events: 0 }],
      ],
    );
  });
});
