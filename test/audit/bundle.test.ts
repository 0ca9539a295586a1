import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture, origin, type AuditFixture } from './helpers.ts';

const jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k1', alg: 'ES256', use: 'sig' }] };

async function bundleOf(f: AuditFixture, txn: string) {
  const key = await f.keys.signingKey(origin);
  return exportBundle(f.db, { query: { txn }, key, jwksInForce: async () => jwks, now: f.clock.now() });
}

for (const dialect of testDialects()) {
  describe(`evidence bundles on ${dialect.name}`, () => {
    test('holds every event of the transaction with a proof into the latest checkpoint, and verifies offline', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1100);
      const { bundle, text, unsealed } = await bundleOf(f, 'txn-100');
      assert.equal(unsealed, 0);
      assert.deepEqual(bundle.events.map((e) => e.event.txn), ['txn-100', 'txn-100', 'txn-100', 'txn-100']);
      assert.deepEqual(bundle.events.map((e) => e.leafIndex), [400, 401, 402, 403]);
      assert.equal(bundle.checkpoint.treeSize, 1100);
      assert.deepEqual(bundle.jwks, jwks);
      assert.equal(text, canonicalize(bundle) + '\n');
      const report = verifyBundle(text);
      assert.deepEqual(report.problems, []);
      assert.equal(report.ok, true);
      assert.equal(report.events, 4);
      assert.equal(report.keyId, (await f.keys.currentPublicKey())!.keyId);
      assert.equal(verifyBundle(text, { pinnedKey: (await f.keys.currentPublicKey())!.publicKey }).ok, true);
    });

    test('across an audit key rotation: signed by its checkpoint\'s key, and every event before and after proven and verified offline', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const before = (await f.keys.signingKey(origin)).keyId;
      f.clock.advance(1000);
      const rotated = await f.keys.rotate({ expected: before });
      assert.ok(rotated);
      assert.equal(await f.keys.rotate({ expected: before }), undefined, 'a second rotation of the same key is refused');
      // Rotated, not sealed yet: the latest checkpoint is still the old key's, and the bundle too.
      const current = await f.keys.signingKey(origin);
      assert.equal(current.keyId, rotated.current.keyId);
      const window = await exportBundle(f.db, { query: { txn: 'txn-10' }, key: current, keyFor: (keyId) => f.keys.signingKeyFor(keyId), jwksInForce: async () => jwks, now: f.clock.now() });
      assert.equal(window.bundle.auditKey.keyId, before);
      assert.equal(verifyBundle(window.text).ok, true);
      await assert.rejects(exportBundle(f.db, { query: { txn: 'txn-10' }, key: current, jwksInForce: async () => jwks, now: f.clock.now() }), /another audit key/);

      await f.fill(300, (i) => ({ type: 'token.issued', txn: 'txn-10', subject: `after-${i}` }));
      const { bundle, text } = await bundleOf(f, 'txn-10');
      assert.equal(bundle.auditKey.keyId, rotated.current.keyId);
      assert.equal(bundle.checkpoint.keyId, rotated.current.keyId);
      assert.ok(bundle.events.some((e) => e.leafIndex < 300) && bundle.events.some((e) => e.leafIndex >= 300), 'events from both sides of the rotation');
      const report = verifyBundle(text, { pinnedKey: rotated.current.publicKey });
      assert.deepEqual(report.problems, []);
      const store = await f.verify();
      assert.equal(store.ok, true, store.problem?.message);
      assert.deepEqual(new Set(store.keyIds), new Set([before, rotated.current.keyId]));
    });

    test('fails when any single byte of the file is changed', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const { text } = await bundleOf(f, 'txn-10');
      const bytes = Buffer.from(text);
      // Every position for the first 600 bytes, then every 7th.
      for (let i = 0; i < bytes.length; i += i < 600 ? 1 : 7) {
        const altered = Buffer.from(bytes);
        altered[i] = altered[i] === 0x41 ? 0x42 : 0x41;
        assert.equal(verifyBundle(altered.toString('latin1')).ok, false, `byte ${i} changed`);
      }
    });

    test('names what is wrong with a tampered or foreign bundle', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const { bundle } = await bundleOf(f, 'txn-10');
      const reserialize = (b: unknown) => canonicalize(b) + '\n';
      const edited = structuredClone(bundle);
      edited.events[1]!.event.subject = 'someone-else';
      assert.match(verifyBundle(reserialize(edited)).problems.join('\n'), /bundle signature[\s\S]*inclusion proof/);
      const other = generateKeyPairSync('ed25519');
      assert.match(verifyBundle(reserialize(bundle), { pinnedKey: other.publicKey }).problems.join('\n'), /pinned/);
      const withPrivate = structuredClone(bundle);
      withPrivate.jwks = { keys: [{ ...jwks.keys[0]!, d: 'secret' }] };
      assert.match(verifyBundle(reserialize(withPrivate)).problems.join('\n'), /public keys only/);
      assert.match(verifyBundle(JSON.stringify(bundle, null, 2)).problems.join('\n'), /canonical/);
      assert.match(verifyBundle('not json').problems.join('\n'), /not a JSON/);
      // Base64 decoding ignores what follows the padding: another spelling of the same signature is still a change.
      const respelled = { ...bundle, signature: bundle.signature.replace(/=$/, 'A') };
      assert.notEqual(respelled.signature, bundle.signature);
      assert.match(verifyBundle(reserialize(respelled)).problems.join('\n'), /bundle signature is not valid/);
    });
  });
}
