import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import { auditKeyFingerprint, handoverBody } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { checkAuditKeyChain, trustedByHandover } from '../../src/audit/bundle-keys.ts';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { CompactMerkleTree, leafHash } from '../../src/audit/merkle.ts';
import { encodeFrontier, perfectRoot } from '../../src/audit/tiles.ts';
import { Custodies } from '../../src/pki/custody/custodies.ts';
import { Pkcs11Custody } from '../../src/pki/custody/pkcs11.ts';
import { SoftwareCustody } from '../../src/pki/custody/software.ts';
import { softhsmToken } from '../pki/custody/softhsm.ts';
import { testDialects } from '../helpers/storage.ts';
import { asAttacker, auditFixture, origin, seqOfLeaf } from './helpers.ts';

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

    test('an auditor pinning a key is not fooled by its row swapped for another key that "hands over" to a key of the attacker', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const pinned = await f.keys.signingKey(origin);
      assert.equal((await f.verify({ pinnedKey: pinned.publicKey })).ok, true);

      // With write access to the database: the pinned key's row now holds the attacker's key A0,
      // which signs a handover to the attacker's X; an event is rewritten with its hashes, and every
      // checkpoint re-signed by X over the rewritten tree.
      const a0 = generateKeyPairSync('ed25519');
      const x = generateKeyPairSync('ed25519');
      const xId = auditKeyFingerprint(x.publicKey);
      const spki = (key: typeof x.publicKey) => key.export({ format: 'der', type: 'spki' }).toString('base64');
      const seq = await seqOfLeaf(f.db, 42);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_keys').set({ public_key: spki(a0.publicKey) }).where('key_id', '=', pinned.keyId).execute();
        const handover = sign(null, Buffer.from(handoverBody(origin, pinned.keyId, xId)), a0.privateKey).toString('base64');
        const row = await db.selectFrom('audit_keys').selectAll().where('key_id', '=', pinned.keyId).executeTakeFirstOrThrow();
        await db.insertInto('audit_keys').values({ ...row, key_id: xId, public_key: spki(x.publicKey), created_at: row.created_at + 1, handover_from: pinned.keyId, handover_signature: handover }).execute();
        const event = await db.selectFrom('audit_events').select('event').where('seq', '=', seq).executeTakeFirstOrThrow();
        const forged = event.event.replace('"jti-42"', '"jti-00"');
        const hash = leafHash(Buffer.from(forged));
        await db.updateTable('audit_events').set({ event: forged, leaf_hash: hash }).where('seq', '=', seq).execute();
        await db.updateTable('audit_leaves').set({ leaf_hash: hash }).where('leaf_index', '=', 42).execute();
        const leaves = await db.selectFrom('audit_leaves').select('leaf_hash').orderBy('leaf_index').execute();
        for (const cp of await db.selectFrom('audit_checkpoints').selectAll().execute()) {
          const tree = new CompactMerkleTree();
          for (const leaf of leaves.slice(0, cp.tree_size)) tree.append(leaf.leaf_hash);
          const rootHash = tree.root().toString('base64');
          const signature = signCheckpoint({ origin: cp.origin, treeSize: cp.tree_size, rootHash, time: cp.time }, x.privateKey);
          await db.updateTable('audit_checkpoints').set({ root_hash: rootHash, frontier: encodeFrontier(tree.frontier()), key_id: xId, signature }).where('tree_size', '=', cp.tree_size).execute();
        }
        // And the tile over leaves 0-255, which the rewritten leaf is under.
        await db.updateTable('audit_nodes').set({ hash: perfectRoot(leaves.slice(0, 256).map((l) => l.leaf_hash)) }).where('level', '=', 8).where('idx', '=', 0).execute();
      });
      // Trusting the database's keys, the rewritten log is consistent; pinning the real key, it is not.
      assert.equal((await f.verify()).ok, true, 'the rewrite is consistent for a verifier who trusts the stored keys');
      const report = await f.verify({ pinnedKey: pinned.publicKey });
      assert.equal(report.ok, false);
      assert.match(report.problem!.message, /not validly signed by the audit key/);
      assert.deepEqual([...trustedByHandover([pinned.publicKey], await f.keys.publicKeys()).keys()], [pinned.keyId], 'X is not trusted');
    });

    test('trust starts from the auditor’s own copy of the pinned key, whatever the database holds under its id, and passes only to a stored key that is its id’s fingerprint', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      const first = await f.keys.signingKey(origin);
      const second = (await f.keys.rotate({ expected: first.keyId }))!.current;
      await f.fill(10);
      const spki = (key: typeof first.publicKey) => key.export({ format: 'der', type: 'spki' }).toString('base64');
      const genuine = trustedByHandover([first.publicKey], await f.keys.publicKeys());
      assert.deepEqual([...genuine.keys()].sort(), [first.keyId, second.keyId].sort());
      assert.equal(genuine.get(first.keyId), first.publicKey, 'the pinned key is the auditor’s object');

      // A forged database copy under the pinned id: trust still starts from the auditor's copy, so
      // the genuine handover to the second key still verifies, and the log with it.
      const forgedCopy = generateKeyPairSync('ed25519');
      await asAttacker(f.storage, (db) => db.updateTable('audit_keys').set({ public_key: spki(forgedCopy.publicKey) }).where('key_id', '=', first.keyId).execute().then(() => undefined));
      const withForgedCopy = trustedByHandover([first.publicKey], await f.keys.publicKeys());
      assert.equal(withForgedCopy.get(first.keyId), first.publicKey, 'never the database’s copy');
      assert.deepEqual([...withForgedCopy.keys()].sort(), [first.keyId, second.keyId].sort());
      const verified = await f.verify({ pinnedKey: first.publicKey });
      assert.equal(verified.ok, true, verified.problem?.message);

      // The successor's stored public key swapped for the attacker's X, its genuine handover kept,
      // and the checkpoints it signed re-signed by X: the handover vouches for the key whose
      // fingerprint is the id, not for X.
      const x = generateKeyPairSync('ed25519');
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_keys').set({ public_key: spki(x.publicKey) }).where('key_id', '=', second.keyId).execute();
        for (const cp of await db.selectFrom('audit_checkpoints').selectAll().where('key_id', '=', second.keyId).execute()) {
          const signature = signCheckpoint({ origin: cp.origin, treeSize: cp.tree_size, rootHash: cp.root_hash, time: cp.time }, x.privateKey);
          await db.updateTable('audit_checkpoints').set({ signature }).where('tree_size', '=', cp.tree_size).execute();
        }
      });
      const stored = await f.keys.publicKeys();
      assert.equal(stored.get(second.keyId)!.handover?.from, first.keyId, 'the genuine handover is still stored');
      assert.deepEqual([...trustedByHandover([first.publicKey], stored).keys()], [first.keyId], 'X is not trusted under the second key’s id');
      assert.equal((await f.verify({ pinnedKey: first.publicKey })).ok, false);
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
  assert.deepEqual([...trustedByHandover([first.publicKey], await keys.publicKeys()).keys()].sort(), [first.keyId, second.keyId].sort());
});
