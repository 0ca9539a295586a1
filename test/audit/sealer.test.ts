import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql, type KyselyPlugin } from 'kysely';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { AuditIntegrityError, AuditSealer, sqliteChunk } from '../../src/audit/sealer.ts';
import { CompactMerkleTree, leafHash, rootFromLeafHashes } from '../../src/audit/merkle.ts';
import { completedTiles, perfectRoot } from '../../src/audit/tiles.ts';
import { testDialects } from '../helpers/storage.ts';
import { asAttacker, auditFixture, origin, sampleEvent, type AuditFixture } from './helpers.ts';

/** Records events `from` ... `from + count - 1` without sealing them. */
async function record(f: AuditFixture, from: number, count: number): Promise<void> {
  for (let i = 0; i < count; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, count - i) }, (_, j) => f.recorder.record(sampleEvent(from + i + j))));
  }
}

test('derives the tile nodes of levels 8 and 16 from the frontier as the tree grows', () => {
  const tree = new CompactMerkleTree();
  const leaves = Array.from({ length: 65_536 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
  const nodes: { level: number; idx: number; hash: Uint8Array }[] = [];
  for (const leaf of leaves) {
    if ((tree.size + 1) % 256 === 0) completedTiles(tree, leaf, nodes);
    tree.append(leaf);
  }
  const level8 = nodes.filter((n) => n.level === 8);
  assert.equal(level8.length, 256);
  for (const node of [level8[0]!, level8[37]!, level8[255]!]) {
    assert.deepEqual(Buffer.from(node.hash), perfectRoot(leaves.slice(node.idx * 256, node.idx * 256 + 256)));
  }
  assert.deepEqual(nodes.filter((n) => n.level === 16).map((n) => [n.idx, Buffer.from(n.hash)]), [[0, rootFromLeafHashes(leaves)]]);
});

for (const dialect of testDialects()) {
  describe(`the audit sealer on ${dialect.name}`, () => {
    test('gives contiguous leaf indexes in seq order and signs a checkpoint at every 1000 leaves and at the end of each round', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(2300);
      const leaves = await f.db.selectFrom('audit_leaves').selectAll().orderBy('leaf_index').execute();
      assert.deepEqual(leaves.map((l) => l.leaf_index), Array.from({ length: 2300 }, (_, i) => i));
      assert.ok(leaves.every((l, i) => i === 0 || l.event_seq > leaves[i - 1]!.event_seq));
      const sizes = (await f.db.selectFrom('audit_checkpoints').select('tree_size').orderBy('tree_size').execute()).map((r) => r.tree_size);
      assert.deepEqual(sizes, [500, 1000, 1500, 2000, 2300]);
      const events = await f.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
      const hashes = events.map((e) => leafHash(Buffer.from(e.event)));
      for (const size of sizes) {
        const cp = await f.db.selectFrom('audit_checkpoints').selectAll().where('tree_size', '=', size).executeTakeFirstOrThrow();
        assert.equal(cp.root_hash, rootFromLeafHashes(hashes.slice(0, size)).toString('base64'));
      }
      const tiles = await f.db.selectFrom('audit_nodes').selectAll().orderBy('idx').execute();
      assert.equal(tiles.length, 8);
      assert.deepEqual(Buffer.from(tiles[3]!.hash), perfectRoot(hashes.slice(768, 1024)));
    });

    test('signs the checkpoints one transaction would when a round spans several: at every 1000 leaves and at its end', async (t) => {
      const f = await auditFixture(dialect, t);
      await record(f, 0, 2750);
      assert.equal(await f.sealer.sealAll(), 2750);
      const leaves = await f.db.selectFrom('audit_leaves').select(['leaf_index', 'event_seq']).orderBy('leaf_index').execute();
      assert.deepEqual(leaves.map((l) => l.leaf_index), Array.from({ length: 2750 }, (_, i) => i));
      assert.ok(leaves.every((l, i) => i === 0 || l.event_seq > leaves[i - 1]!.event_seq));
      const checkpoints = await f.db.selectFrom('audit_checkpoints').selectAll().orderBy('tree_size').execute();
      assert.deepEqual(checkpoints.map((c) => c.tree_size), [1000, 2000, 2750]);
      const hashes = (await f.db.selectFrom('audit_events').select('event').orderBy('seq').execute()).map((e) => leafHash(Buffer.from(e.event)));
      for (const cp of checkpoints) assert.equal(cp.root_hash, rootFromLeafHashes(hashes.slice(0, cp.tree_size)).toString('base64'));
      assert.deepEqual(checkpoints.map((c) => c.last_seq), [1000, 2000, 2750].map((n) => leaves[n - 1]!.event_seq));
      assert.equal((await f.db.selectFrom('audit_nodes').selectAll().where('level', '=', 8).execute()).length, 10);
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.unsealed, 0);
    });

    /** Turns of the event loop while `work` runs (node:sqlite answers synchronously: work that never yields runs in one turn). */
    async function turnsDuring(work: () => Promise<unknown>): Promise<number> {
      let turns = 0;
      let running = true;
      const spin = () => {
        if (!running) return;
        turns++;
        setImmediate(spin);
      };
      setImmediate(spin);
      try {
        await work();
      } finally {
        running = false;
      }
      return turns;
    }

    test('lets the event loop turn while it reads and hashes a round, once each piece has run its time', async (t) => {
      const f = await auditFixture(dialect, t, { pieceMs: 0 });
      await record(f, 0, 2000);
      // With no time for a piece it yields at every check: every 32 events hashed, every 250 read.
      const turns = await turnsDuring(async () => assert.equal(await f.sealer.sealAll(), 2000));
      assert.ok(turns >= 2000 / 32, `only ${turns} turns of the event loop during the round`);
      assert.equal((await f.verify()).ok, true);
    });

    if (dialect.name === 'sqlite') {
      test('reads and hashes a round in one piece while its time lasts, and yields between its transactions and inside each', async (t) => {
        const f = await auditFixture(dialect, t, { pieceMs: 60_000 });
        await record(f, 0, 2000);
        // Two checkpoints (1000 and 2000), so two transactions and the one turn between them; in
        // each, a turn before every chunk of leaves but the first, and one before the checkpoint.
        const expected = 1 + 2 * Math.ceil(1000 / sqliteChunk);
        const turns = await turnsDuring(async () => assert.equal(await f.sealer.sealAll(), 2000));
        assert.ok(Math.abs(turns - expected) <= 1, `${turns} turns of the event loop during the round, expected ${expected}`);
        assert.equal((await f.verify()).ok, true);
      });

      test('lets events be recorded while a segment is written between its turns: they wait for its commit and are sealed by the next round', async (t) => {
        const f = await auditFixture(dialect, t, { pieceMs: 60_000 });
        await record(f, 0, 1000);
        let during: Promise<void> | undefined;
        const turns = await turnsDuring(async () => {
          const sealing = f.sealer.sealAll();
          // Once the round is inside its transaction (a few turns in), 200 more events arrive.
          for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
          during = record(f, 1000, 200);
          assert.equal(await sealing, 1000);
        });
        assert.ok(turns > 5);
        await during;
        assert.equal(await f.sealer.sealAll(), 200);
        const report = await f.verify();
        assert.equal(report.ok, true, report.problem?.message);
        assert.equal(report.leaves, 1200);
        assert.equal(report.unsealed, 0);
      });
    }

    test('goes on from what another sealer stored while it was hashing, sealing nothing twice', async (t) => {
      const f = await auditFixture(dialect, t);
      await record(f, 0, 600);
      // Sealer A reads its first slice; meanwhile 100 more events arrive and sealer B seals all 700.
      let interfered = false;
      const meanwhile: KyselyPlugin = {
        transformQuery: (args) => args.node,
        async transformResult(args) {
          if (!interfered && args.result.rows.length > 0 && 'leaf_hash' in (args.result.rows[0] as object)) {
            interfered = true;
            await record(f, 600, 100);
            assert.equal(await f.sealer.sealAll(), 700);
          }
          return args.result;
        },
      };
      const other = f.database.connect();
      const a = new AuditSealer(other.db.withPlugin(meanwhile), { clock: f.clock, keys: new AuditKeys(other.db, f.masterKey, f.clock), origin });
      assert.equal(await a.sealAll(), 0);
      assert.ok(interfered);
      const sizes = (await f.db.selectFrom('audit_checkpoints').select('tree_size').orderBy('tree_size').execute()).map((r) => r.tree_size);
      assert.deepEqual(sizes, [700]);
      await record(f, 700, 50);
      assert.equal(await a.sealAll(), 50);
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 750);
    });

    test('continues the same tree after a restart, from the stored frontier', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(700);
      // A new process: new sealer, new keys object, another connection.
      const storage = f.database.connect();
      const keys = new AuditKeys(storage.db, f.masterKey, f.clock);
      const restarted = new AuditSealer(storage.db, { clock: f.clock, keys, origin });
      await Promise.all(Array.from({ length: 600 }, (_, i) => f.recorder.record(sampleEvent(700 + i))));
      assert.equal(await restarted.sealAll(), 600);
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 1300);
    });

    test('leaves no gap and no index twice when a round fails half-way', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      let fail = true;
      const failOnce: KyselyPlugin = {
        transformQuery(args) {
          if (fail && args.node.kind === 'InsertQueryNode' && JSON.stringify(args.node).includes('audit_checkpoints')) {
            fail = false;
            throw new Error('simulated crash before the checkpoint is written');
          }
          return args.node;
        },
        async transformResult(args) {
          return args.result;
        },
      };
      const crashing = new AuditSealer(f.db.withPlugin(failOnce), { clock: f.clock, keys: f.keys, origin });
      await crashing.sealAll(); // loads its state from the store
      await Promise.all(Array.from({ length: 400 }, (_, i) => f.recorder.record(sampleEvent(300 + i))));
      await assert.rejects(crashing.sealOnce(), /simulated crash/);
      assert.equal((await f.db.selectFrom('audit_leaves').selectAll().execute()).length, 300, 'the failed round left nothing');
      assert.equal(await crashing.sealAll(), 400);
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 700);
    });

    test('refuses to extend a tree whose latest checkpoint does not verify', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_checkpoints').set({ frontier: leafHash(Buffer.from('x')).toString('base64') }).execute();
      });
      await f.recorder.record(sampleEvent(10));
      const fresh = new AuditSealer(f.db, { clock: f.clock, keys: f.keys, origin });
      await assert.rejects(fresh.sealOnce(), AuditIntegrityError);
    });

    test('seals on its own timer and leaves nothing unsealed after stop', async (t) => {
      const f = await auditFixture(dialect, t, { intervalMs: 20 });
      f.sealer.start();
      for (let i = 0; i < 5; i++) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => f.recorder.record(sampleEvent(i * 100 + j))));
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
      await f.sealer.stop();
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 500);
      assert.equal(report.unsealed, 0);
    });

    if (dialect.name === 'postgres') {
      test('lets exactly one node seal, and another take over when it stops', async (t) => {
        const f = await auditFixture(dialect, t);
        const nodes = [0, 1].map(() => {
          const storage = f.database.connect();
          return {
            recorder: new AuditRecorder(storage.db, { clock: f.clock, node: 'n' }),
            sealer: new AuditSealer(storage.db, { clock: f.clock, keys: new AuditKeys(storage.db, f.masterKey, f.clock), origin, intervalMs: 20 }),
          };
        });
        for (const node of nodes) node.sealer.start();
        const holders = async () => {
          const { rows } = await sql<{ n: string }>`select count(*) as n from pg_locks where locktype = 'advisory' and granted and objid = (hashtextextended('clearance.audit.sealer:' || current_schema(), 0) & 4294967295)::oid`.execute(f.db);
          return Number(rows[0]!.n);
        };
        // Both record concurrently while one seals.
        await Promise.all(nodes.flatMap((node, k) => Array.from({ length: 300 }, (_, i) => node.recorder.record(sampleEvent(k * 1000 + i)))));
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(await holders(), 1);
        const leader = (await f.verify()).leaves === 600 ? undefined : 'not sealed';
        assert.equal(leader, undefined);
        // Stop both in turn; whichever held the lock, the other takes over within its retry delay.
        await nodes[0]!.sealer.stop();
        await Promise.all(Array.from({ length: 100 }, (_, i) => nodes[1]!.recorder.record(sampleEvent(5000 + i))));
        const deadline = Date.now() + 5000;
        while ((await f.verify()).leaves < 700 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        await nodes[1]!.sealer.stop();
        for (const node of nodes) await node.recorder.close();
        const report = await f.verify();
        assert.equal(report.ok, true, report.problem?.message);
        assert.equal(report.leaves, 700);
      });

      test('never gives an index twice when two sealers race without the lock', async (t) => {
        const f = await auditFixture(dialect, t);
        const sealers = [0, 1, 2].map(() => {
          const storage = f.database.connect();
          return new AuditSealer(storage.db, { clock: f.clock, keys: new AuditKeys(storage.db, f.masterKey, f.clock), origin, maxLeavesPerRound: 37 });
        });
        const writing = (async () => {
          for (let i = 0; i < 20; i++) await Promise.all(Array.from({ length: 50 }, (_, j) => f.recorder.record(sampleEvent(i * 50 + j))));
        })();
        const racing = sealers.map(async (sealer) => {
          for (let i = 0; i < 40; i++) await sealer.sealOnce().catch(() => 0);
        });
        await Promise.all([writing, ...racing]);
        await sealers[0]!.sealAll();
        const report = await f.verify();
        assert.equal(report.ok, true, report.problem?.message);
        assert.equal(report.leaves, 1000);
      });
    }
  });
}
