import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { consistencyProof, inclusionProof, leafHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.ts';
import { AuditProofError, proveConsistency, proveEvent, StoreHasher } from '../../src/audit/proofs.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture } from './helpers.ts';

for (const dialect of testDialects()) {
  describe(`audit proofs from the store on ${dialect.name}`, () => {
    test('match the reference proofs and verify against the signed roots (RFC 9162 §2.1.3-2.1.4)', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1300);
      const hashes = (await f.db.selectFrom('audit_leaves').select('leaf_hash').orderBy('leaf_index').execute()).map((r) => Buffer.from(r.leaf_hash));
      const hasher = new StoreHasher(f.db);
      const events = await f.db.selectFrom('audit_leaves as l').innerJoin('audit_events as e', 'e.seq', 'l.event_seq').select(['l.leaf_index', 'e.id', 'e.event']).orderBy('l.leaf_index').execute();
      for (const index of [0, 1, 255, 256, 511, 767, 1000, 1023, 1024, 1299]) {
        const proof = await proveEvent(f.db, events[index]!.id, undefined, hasher);
        assert.equal(proof.leafIndex, index);
        assert.equal(proof.checkpoint.treeSize, 1300);
        const decoded = proof.inclusionProof.map((h) => Buffer.from(h, 'base64'));
        assert.deepEqual(decoded, inclusionProof(index, hashes, 1300));
        assert.ok(verifyInclusion(index, 1300, leafHash(Buffer.from(proof.event)), decoded, Buffer.from(proof.checkpoint.rootHash, 'base64')));
      }
      // Against an older checkpoint too.
      const older = await proveEvent(f.db, events[10]!.id, 500);
      assert.ok(verifyInclusion(10, 500, leafHash(Buffer.from(older.event)), older.inclusionProof.map((h) => Buffer.from(h, 'base64')), Buffer.from(older.checkpoint.rootHash, 'base64')));

      for (const [m, n] of [[500, 1300], [1000, 1300], [500, 1000], [1300, 1300]] as const) {
        const evidence = await proveConsistency(f.db, m, n);
        const proof = evidence.consistencyProof.map((h) => Buffer.from(h, 'base64'));
        assert.deepEqual(proof, consistencyProof(m, n, hashes));
        assert.ok(verifyConsistency(m, n, Buffer.from(evidence.first.rootHash, 'base64'), Buffer.from(evidence.second.rootHash, 'base64'), proof));
      }
    });

    test('explains why a proof cannot be given', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      await assert.rejects(proveEvent(f.db, 'no-such-id'), AuditProofError);
      await assert.rejects(proveConsistency(f.db, 123), /no checkpoint at tree size 123/);
      await f.recorder.record({ type: 'token.revoked' });
      const unsealed = await f.db.selectFrom('audit_events').select('id').where('type', '=', 'token.revoked').executeTakeFirstOrThrow();
      await assert.rejects(proveEvent(f.db, unsealed.id), /not sealed yet/);
      const late = await f.db.selectFrom('audit_leaves as l').innerJoin('audit_events as e', 'e.seq', 'l.event_seq').select('e.id').where('l.leaf_index', '=', 550).executeTakeFirstOrThrow();
      await assert.rejects(proveEvent(f.db, late.id, 500), /not in the tree of size 500/);
    });
  });
}
