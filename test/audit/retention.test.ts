import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { leafHash, verifyInclusion } from '../../src/audit/merkle.ts';
import { proveEvent } from '../../src/audit/proofs.ts';
import { parseRetention, planPrune, prune, RetentionError } from '../../src/audit/retention.ts';
import { testDialects } from '../helpers/storage.ts';
import { asAttacker, auditFixture, origin } from './helpers.ts';

const day = 86_400_000;

test('parses retention periods per type with * for the rest', () => {
  assert.deepEqual(parseRetention('token.introspected=90d, *=7y'), { types: { 'token.introspected': 90 * day }, default: 7 * 365 * day });
  assert.deepEqual(parseRetention('policy.denied=12h'), { types: { 'policy.denied': 12 * 3_600_000 } });
  assert.throws(() => parseRetention('token.minted=1d'), RetentionError);
  assert.throws(() => parseRetention('token.issued=forever'), RetentionError);
  assert.throws(() => parseRetention(''), RetentionError);
});

for (const dialect of testDialects()) {
  describe(`audit retention on ${dialect.name}`, () => {
    test('prunes only a whole sealed prefix past every type\'s retention, and what remains still verifies and proves', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      f.clock.advance(100 * day);
      await f.fill(600);
      const key = await f.keys.signingKey(origin);

      // policy.denied events are kept forever unless listed: nothing can go.
      assert.equal((await planPrune(f.db, parseRetention('token.issued=30d'), f.clock.now())).pruneBefore, 0);

      const policy = parseRetention('token.issued=30d,policy.denied=30d');
      const result = await prune(f.db, policy, key, f.clock.now());
      assert.equal(result.pruneBefore, 512); // 600 expired, rounded down to a tile
      assert.equal(result.events, 512);
      assert.equal((await f.db.selectFrom('audit_leaves').select(({ fn }) => fn.min('leaf_index').as('m')).executeTakeFirst())?.m, 512);
      assert.equal((await f.db.selectFrom('audit_events').selectAll().execute()).length, 688);

      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.prunedBefore, 512);
      assert.equal(report.leaves, 688);

      // Proofs of the remaining leaves use the tiles that cover the removed ones.
      const event = await f.db.selectFrom('audit_leaves as l').innerJoin('audit_events as e', 'e.seq', 'l.event_seq').select(['e.id', 'e.txn']).where('l.leaf_index', '=', 600).executeTakeFirstOrThrow();
      const proof = await proveEvent(f.db, event.id);
      assert.ok(verifyInclusion(600, 1200, leafHash(Buffer.from(proof.event)), proof.inclusionProof.map((h) => Buffer.from(h, 'base64')), Buffer.from(proof.checkpoint.rootHash, 'base64')));
      const { text } = await exportBundle(f.db, { query: { txn: event.txn! }, key, jwksInForce: async () => ({ keys: [] }), now: f.clock.now() });
      assert.equal(verifyBundle(text).ok, true);

      // Pruning again changes nothing; a later pruning continues from the record.
      assert.equal((await prune(f.db, policy, key, f.clock.now())).events, 0);
      await f.fill(300);
      f.clock.advance(100 * day);
      const again = await prune(f.db, policy, key, f.clock.now());
      assert.equal(again.pruneBefore, 1280);
      const after = await f.verify();
      assert.equal(after.ok, true, after.problem?.message);
      assert.equal(after.prunedBefore, 1280);
    });

    test('fails verification when rows are deleted under a forged pruning record', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      await asAttacker(f.storage, async (db) => {
        await db.insertInto('audit_prunings').values({ tree_size: 256, origin, root_hash: 'AAAA', frontier: '', time: 0, policy: '{}', key_id: 'x', signature: 'AAAA' }).execute();
        await db.deleteFrom('audit_leaves').where('leaf_index', '<', 256).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.match(report.problem!.message, /pruning record/);
    });

    test('rejects updates and deletes of the log tables that no pruning record covers', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      await assert.rejects(f.db.updateTable('audit_events').set({ subject: 'x' }).execute(), /append-only/);
      await assert.rejects(f.db.deleteFrom('audit_events').execute(), /append-only/);
      await assert.rejects(f.db.updateTable('audit_leaves').set({ leaf_index: 9999 }).where('leaf_index', '=', 0).execute(), /append-only/);
      await assert.rejects(f.db.deleteFrom('audit_leaves').execute(), /append-only/);
      await assert.rejects(f.db.deleteFrom('audit_checkpoints').execute(), /append-only/);
      await assert.rejects(f.db.updateTable('audit_checkpoints').set({ root_hash: 'x' }).execute(), /append-only/);
      await assert.rejects(f.db.deleteFrom('audit_keys').execute(), /append-only/);
      await assert.rejects(f.db.deleteFrom('audit_nodes').execute(), /append-only/);
      if (dialect.name === 'postgres') {
        await assert.rejects(sql`truncate audit_events`.execute(f.db), /append-only/);
        await assert.rejects(sql`truncate audit_checkpoints`.execute(f.db), /append-only/);
      }
      assert.equal((await f.verify()).ok, true);
    });
  });
}
