import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import { auditKeyFingerprint, handoverBody } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { checkAuditKeyChain, trustedByHandover } from '../../src/audit/bundle-keys.ts';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { Custodies } from '../../src/pki/custody/custodies.ts';
import { Pkcs11Custody } from '../../src/pki/custody/pkcs11.ts';
import { SoftwareCustody } from '../../src/pki/custody/software.ts';
import { softhsmToken } from '../pki/custody/softhsm.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture, origin } from './helpers.ts';

const jwks = { keys: [] };

for (const dialect of testDialects()) {
  describe(`audit key handovers on ${dialect.name}`, () => {
    test('a bundle signed two rotations later verifies for an auditor who pinned the first key, through the handovers it carries', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(100);
      const first = await f.keys.signingKey(origin);
      const second = (await f.keys.rotate({ expected: first.keyId }))!.current;
      await f.fill(100, (i) => ({ type: 'token.issued', txn: 'txn-10', subject: `middle-${i}` }));
      const third = (await f.keys.rotate({ expected: second.keyId }))!.current;
      await f.fill(100, (i) => ({ type: 'token.issued', txn: 'txn-10', subject: `last-${i}` }));

      const key = await f.keys.signingKey(origin);
      assert.equal(key.keyId, third.keyId);
      const { bundle, text } = await exportBundle(f.db, { query: { txn: 'txn-10' }, key, jwksInForce: async () => jwks, now: f.clock.now() });
      assert.deepEqual(bundle.auditKeyChain!.map((link) => [link.keyId, link.next]), [[second.keyId, third.keyId], [first.keyId, second.keyId]]);
      assert.ok(bundle.events.some((e) => e.leafIndex < 100) && bundle.events.some((e) => e.leafIndex >= 200), 'events from before and after both rotations');

      for (const pinned of [first, second, third]) {
        const report = verifyBundle(text, { pinnedKey: pinned.publicKey });
        assert.deepEqual(report.problems, [], `pinned ${pinned.keyId}`);
      }
      assert.deepEqual(verifyBundle(text).keyChain, [third.keyId, second.keyId, first.keyId]);
      const stranger = generateKeyPairSync('ed25519').publicKey;
      assert.match(verifyBundle(text, { pinnedKey: stranger }).problems.join('\n'), /another audit key than the pinned one, and no pinned key handed over to it/);

      // The stored log: pinning the first key verifies every checkpoint, signed by any of the three.
      const store = await f.verify({ pinnedKey: first.publicKey });
      assert.equal(store.ok, true, store.problem?.message);
      assert.equal((await f.verify({ pinnedKey: stranger })).ok, false);
    });

    test('a handover not signed by the key it names, or leading elsewhere, breaks the chain', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      const first = await f.keys.signingKey(origin);
      const second = (await f.keys.rotate({ expected: first.keyId }))!.current;
      await f.fill(10);
      const { bundle } = await exportBundle(f.db, { query: {}, key: await f.keys.signingKey(origin), jwksInForce: async () => jwks, now: f.clock.now() });
      const pinned = new Set([first.keyId]);
      assert.deepEqual(checkAuditKeyChain(bundle.auditKeyChain, second.keyId, origin, pinned), { problems: [], keyIds: [second.keyId, first.keyId], pinnedReached: true });

      // An impostor key that "hands over" to the bundle's key: its own signature, but not the pinned key.
      const impostor = generateKeyPairSync('ed25519');
      const impostorId = auditKeyFingerprint(impostor.publicKey);
      const forged = [{ keyId: impostorId, publicKey: impostor.publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), next: second.keyId, handover: sign(null, Buffer.from(handoverBody(origin, impostorId, second.keyId)), impostor.privateKey).toString('base64') }];
      assert.equal(checkAuditKeyChain(forged, second.keyId, origin, pinned).pinnedReached, false);
      // The first key's real public key with the impostor's signature; a link to another key; another log's origin.
      const link = bundle.auditKeyChain![0]!;
      assert.match(checkAuditKeyChain([{ ...link, handover: forged[0]!.handover }], second.keyId, origin, pinned).problems[0]!, /not a valid handover/);
      assert.match(checkAuditKeyChain([link], first.keyId, origin, pinned).problems[0]!, /not a valid handover/);
      assert.match(checkAuditKeyChain([link], second.keyId, 'other.example/audit', pinned).problems[0]!, /not a valid handover/);
    });
  });
}

test('an audit key in a PKCS#11 token signs the handover to its successor in the token too', async (t) => {
  const [sqlite] = testDialects();
  const f = await auditFixture(sqlite!, t);
  const token = softhsmToken(t);
  const custody = { kind: 'pkcs11' as const, custodies: new Custodies(new SoftwareCustody(f.db, f.masterKey, f.clock), new Pkcs11Custody(token)) };
  const keys = new AuditKeys(f.db, f.masterKey, f.clock, custody);
  const first = await keys.signingKey(origin);
  f.clock.advance(1000); // token keys are labelled by their creation time
  const second = (await keys.rotate({ expected: first.keyId }))!.current;
  const stored = (await keys.publicKeys()).get(second.keyId)!;
  assert.equal(stored.handover?.from, first.keyId);
  assert.deepEqual([...trustedByHandover(new Set([first.keyId]), await keys.publicKeys())].sort(), [first.keyId, second.keyId].sort());
});
