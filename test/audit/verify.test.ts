import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { leafHash } from '../../src/audit/merkle.ts';
import { testDialects } from '../helpers/storage.ts';
import { asAttacker, auditFixture, sampleEvent, seqOfLeaf } from './helpers.ts';

for (const dialect of testDialects()) {
  describe(`audit verification on ${dialect.name}`, () => {
    test('passes for an intact log and reports its size, checkpoints and key', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(2500);
      await f.recorder.record({ type: 'token.revoked', subject: 'user-1' });
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 2500);
      assert.equal(report.unsealed, 1);
      assert.equal(report.latest?.treeSize, 2500);
      // A checkpoint at every 1000 leaves and at the end of every sealing round.
      assert.ok(report.checkpoints >= 3);
      assert.deepEqual(report.keyIds, [(await f.keys.currentPublicKey())!.keyId]);
    });

    test('names the leaf whose event was edited', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1500);
      const seq = await seqOfLeaf(f.db, 1234);
      await asAttacker(f.storage, async (db) => {
        await sql`update audit_events set event = replace(event, '"jti-1234"', '"jti-9999"') where seq = ${seq}`.execute(db);
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 1234);
    });

    test('hashes exactly the bytes stored: events holding U+FFFD and other non-ASCII verify, and a byte that is not UTF-8 put in its place is found', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(40, (i) => ({ ...sampleEvent(i), details: { jti: `jti-${i}`, note: i === 17 ? 'caf\u00e9 \uFFFD 東京 😀' : `n-${i}` } }));
      const intact = await f.verify();
      assert.equal(intact.ok, true, intact.problem?.message);
      if (dialect.name !== 'sqlite') return; // PostgreSQL stores only valid UTF-8 text
      const seq = await seqOfLeaf(f.db, 17);
      await asAttacker(f.storage, async (db) => {
        // Decoded as text, the invalid byte reads as U+FFFD again: only the bytes tell the change.
        await sql`update audit_events set event = cast(replace(cast(event as blob), X'EFBFBD', X'FF') as text) where seq = ${seq}`.execute(db);
      });
      const stored = await sql<{ n: number }>`select length(cast(event as blob)) as n from audit_events where seq = ${seq}`.execute(f.db);
      assert.ok(stored.rows[0]!.n > 0);
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 17);
      assert.match(report.problem!.message, /altered/);
    });

    test('hashes the stored bytes also when it is not given the SQLite file (a handle of its own, :memory:)', { skip: dialect.name !== 'sqlite' && 'PostgreSQL stores only valid UTF-8 text' }, async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(40, (i) => ({ ...sampleEvent(i), details: { jti: `jti-${i}`, note: i === 17 ? 'caf\u00e9 \uFFFD' : `n-${i}` } }));
      assert.equal((await f.verify({ sqliteFile: undefined })).ok, true);
      const seq = await seqOfLeaf(f.db, 17);
      await asAttacker(f.storage, async (db) => {
        await sql`update audit_events set event = cast(replace(cast(event as blob), X'EFBFBD', X'FF') as text) where seq = ${seq}`.execute(db);
      });
      const report = await f.verify({ sqliteFile: undefined });
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 17);
    });

    test("names the leaf whose event's own copy of its leaf hash was altered", async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const seq = await seqOfLeaf(f.db, 10);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_events').set({ leaf_hash: Buffer.alloc(32, 7) }).where('seq', '=', seq).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 10);
      assert.match(report.problem!.message, /copy of its leaf hash/);
    });

    test('rejects a checkpoint whose sealer cursor or frontier was altered, as a restarted sealer would resume from them', async (t) => {
      for (const alter of ['cursor on', 'cursor back', 'frontier'] as const) {
        const f = await auditFixture(dialect, t);
        await f.fill(1500);
        await asAttacker(f.storage, async (db) => {
          if (alter === 'frontier') {
            const other = (await db.selectFrom('audit_checkpoints').select('frontier').where('tree_size', '=', 1500).executeTakeFirstOrThrow()).frontier;
            await db.updateTable('audit_checkpoints').set({ frontier: other }).where('tree_size', '=', 1000).execute();
          } else {
            await sql`update audit_checkpoints set last_seq = last_seq + ${alter === 'cursor on' ? 50 : -1} where tree_size = 1500`.execute(db);
          }
        });
        const report = await f.verify();
        assert.equal(report.ok, false, alter);
        assert.equal(report.problem?.checkpoint, alter === 'frontier' ? 1000 : 1500, alter);
        assert.match(report.problem!.message, /sealer cursor or tree frontier/, alter);
      }
    });

    test('names the first leaf under a tile that was altered, removed or inserted', async (t) => {
      for (const alter of ['altered', 'removed', 'inserted'] as const) {
        const f = await auditFixture(dialect, t);
        await f.fill(600);
        assert.equal((await f.db.selectFrom('audit_nodes').select('idx').where('level', '=', 8).execute()).length, 2);
        await asAttacker(f.storage, async (db) => {
          if (alter === 'altered') await db.updateTable('audit_nodes').set({ hash: Buffer.alloc(32, 7) }).where('level', '=', 8).where('idx', '=', 1).execute();
          if (alter === 'removed') await db.deleteFrom('audit_nodes').where('level', '=', 8).where('idx', '=', 1).execute();
          if (alter === 'inserted') await db.insertInto('audit_nodes').values({ level: 8, idx: 2, hash: Buffer.alloc(32, 7) }).execute();
        });
        const report = await f.verify();
        assert.equal(report.ok, false, alter);
        assert.equal(report.problem?.leafIndex, alter === 'inserted' ? 512 : 256, alter);
        assert.match(report.problem!.message, /tile at level 8/, alter);
      }
    });

    test('names the leaf whose indexed column was edited while its event was left alone', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      const seq = await seqOfLeaf(f.db, 321);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_events').set({ subject: 'someone-else' }).where('seq', '=', seq).execute();
      });
      const report = await f.verify();
      assert.equal(report.problem?.leafIndex, 321);
      assert.match(report.problem!.message, /subject/);
    });

    test('verifies events whose values JSON can write in more than one way (quotes, backslashes, control characters, non-ASCII)', async (t) => {
      const f = await auditFixture(dialect, t);
      const odd = ['quote " and \\ backslash', 'tab\t newline\n unit\u001f', 'caf\u00e9 東京 😀 \u2028', '</script>'];
      await f.fill(40, (i) => ({ ...sampleEvent(i), txn: `txn ${odd[i % 4]}`, subject: odd[(i + 1) % 4], client: `client-${i % 7}` }));
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 40);
    });

    test('names the leaf whose indexed column holds the right value as a BLOB (JSONB) instead of text', { skip: dialect.name !== 'sqlite' && 'PostgreSQL columns are typed' }, async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const seq = await seqOfLeaf(f.db, 222);
      await asAttacker(f.storage, async (db) => {
        // The event id: a column the query index does not hold, so only the column check can see it.
        await sql`update audit_events set id = jsonb(json_quote(id)) where seq = ${seq}`.execute(db);
      });
      const stored = await sql<{ kind: string }>`select typeof(id) as kind from audit_events where seq = ${seq}`.execute(f.db);
      assert.equal(stored.rows[0]!.kind, 'blob');
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 222);
    });

    test('names the leaf whose decision column says neither allow nor deny for an event without a decision', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(300);
      const seq = await seqOfLeaf(f.db, 131); // 131 % 3 !== 0: a token.issued event, no decision
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_events').set({ decision: 'maybe' }).where('seq', '=', seq).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 131);
    });

    test('names the leaf whose event row was deleted', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(800);
      const seq = await seqOfLeaf(f.db, 77);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_events').where('seq', '=', seq).execute();
      });
      assert.equal((await f.verify()).problem?.leafIndex, 77);
    });

    test('names the first missing leaf when an event and its leaf were deleted', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(800);
      const seq = await seqOfLeaf(f.db, 500);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_leaves').where('leaf_index', '=', 500).execute();
        await db.deleteFrom('audit_events').where('seq', '=', seq).execute();
      });
      assert.equal((await f.verify()).problem?.leafIndex, 500);
    });

    test('names the first of two swapped rows', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(800);
      const a = await seqOfLeaf(f.db, 100);
      const b = await seqOfLeaf(f.db, 200);
      await asAttacker(f.storage, async (db) => {
        const rowA = await db.selectFrom('audit_events').selectAll().where('seq', '=', a).executeTakeFirstOrThrow();
        const rowB = await db.selectFrom('audit_events').selectAll().where('seq', '=', b).executeTakeFirstOrThrow();
        const content = ({ seq: _s, id: _i, ...rest }: typeof rowA) => rest;
        await db.updateTable('audit_events').set({ ...content(rowB), id: 'swap-tmp' }).where('seq', '=', a).execute();
        await db.updateTable('audit_events').set({ ...content(rowA), id: rowB.id }).where('seq', '=', b).execute();
        await db.updateTable('audit_events').set({ id: rowA.id }).where('seq', '=', a).execute();
      });
      assert.equal((await f.verify()).problem?.leafIndex, 100);
    });

    test('names the first leaf of a truncated tail', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(2500);
      const seq = await seqOfLeaf(f.db, 2000);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_leaves').where('leaf_index', '>=', 2000).execute();
        await db.deleteFrom('audit_events').where('seq', '>=', seq).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 2000);
    });

    test('rejects a checkpoint whose root was forged', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(2500);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_checkpoints').set({ root_hash: leafHash(Buffer.from('forged')).toString('base64') }).where('tree_size', '=', 2000).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.checkpoint, 2000);
      assert.equal(report.problem?.leafIndex, 1500);
    });

    test('rejects checkpoints re-signed with a key other than the pinned one, or swapped in behind the master key', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1200);
      const genuine = (await f.keys.currentPublicKey())!;
      // The attacker replaces the stored public key with theirs and re-signs a rewritten log.
      const attacker = generateKeyPairSync('ed25519');
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_keys').set({ public_key: attacker.publicKey.export({ format: 'der', type: 'spki' }).toString('base64') }).execute();
        for (const cp of await db.selectFrom('audit_checkpoints').selectAll().execute()) {
          const body = { origin: cp.origin, treeSize: cp.tree_size, rootHash: cp.root_hash, time: cp.time };
          await db.updateTable('audit_checkpoints').set({ signature: signCheckpoint(body, attacker.privateKey) }).where('tree_size', '=', cp.tree_size).execute();
        }
      });
      assert.equal((await f.verify({ pinnedKey: genuine.publicKey })).ok, false);
      assert.notDeepEqual(await f.keys.checkStoredKeys(), []);
    });

    test('reports a key inserted as held in a PKCS#11 token that no token holds, whose re-signed checkpoints verify', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1200);
      const genuine = (await f.keys.currentPublicKey())!;
      const attacker = generateKeyPairSync('ed25519');
      const spki = attacker.publicKey.export({ format: 'der', type: 'spki' });
      const keyId = createHash('sha256').update(spki).digest('hex');
      await asAttacker(f.storage, async (db) => {
        // Older than the genuine key, so the sealer would not pick it; "in a token", so no sealed part to open.
        await db.insertInto('audit_keys').values({ key_id: keyId, origin: genuine.origin, public_key: spki.toString('base64'), private_key: '', master_key_id: '', created_at: 0, key_ref: 'pkcs11:token=clearance;object=forged' }).execute();
        for (const cp of await db.selectFrom('audit_checkpoints').selectAll().execute()) {
          const body = { origin: cp.origin, treeSize: cp.tree_size, rootHash: cp.root_hash, time: cp.time };
          await db.updateTable('audit_checkpoints').set({ key_id: keyId, signature: signCheckpoint(body, attacker.privateKey) }).where('tree_size', '=', cp.tree_size).execute();
        }
      });
      assert.equal((await f.verify()).ok, true, 'the database vouches for its own keys');
      assert.equal((await f.verify({ pinnedKey: genuine.publicKey })).ok, false);
      const problems = await f.keys.checkStoredKeys();
      assert.equal(problems.length, 1);
      assert.match(problems[0]!, new RegExp(`audit key ${keyId} \\(pkcs11:`));
    });

    test('localizes a consistent rewrite of an event and its hashes to the interval its checkpoint signs', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(2500);
      const seq = await seqOfLeaf(f.db, 1500);
      await asAttacker(f.storage, async (db) => {
        const row = await db.selectFrom('audit_events').select('event').where('seq', '=', seq).executeTakeFirstOrThrow();
        const forged = row.event.replace('"jti-1500"', '"jti-0000"');
        const hash = leafHash(Buffer.from(forged));
        await db.updateTable('audit_events').set({ event: forged, leaf_hash: hash }).where('seq', '=', seq).execute();
        await db.updateTable('audit_leaves').set({ leaf_hash: hash }).where('leaf_index', '=', 1500).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.checkpoint, 2000);
      assert.ok(report.problem!.leafIndex! <= 1500 && report.problem!.leafIndex! >= 1000);
    });

    test('rejects leaves that no signed checkpoint covers', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(1500);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_checkpoints').where('tree_size', '=', 1500).execute();
      });
      const report = await f.verify();
      assert.equal(report.ok, false);
      assert.equal(report.problem?.leafIndex, 1000);
    });

    test('names the event whose query-index row was altered or removed', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(400);
      const seq = await seqOfLeaf(f.db, 250);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_index').set({ key: 'txn:elsewhere' }).where('seq', '=', seq).where('key', 'like', 'txn:%').execute();
      });
      const altered = await f.verify();
      assert.equal(altered.problem?.leafIndex, 250);
      assert.match(altered.problem!.message, /query index/);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_index').where('seq', '=', seq).execute();
      });
      const removed = await f.verify();
      assert.equal(removed.problem?.leafIndex, 250);
      assert.match(removed.problem!.message, /lacks/);
      await asAttacker(f.storage, async (db) => {
        const event = await db.selectFrom('audit_events').select(['txn', 'subject', 'client']).where('seq', '=', seq).executeTakeFirstOrThrow();
        const rows = [`txn:${event.txn}`, `sub:${event.subject}`, `cli:${event.client}`, 'sub:intruder'].map((key) => ({ key, seq }));
        await db.insertInto('audit_index').values(rows).execute();
      });
      const extra = await f.verify();
      assert.equal(extra.problem?.leafIndex, 250);
      assert.match(extra.problem!.message, /does not match/);
    });

    test('names the earlier of an edited column and an altered query-index row, whichever check finds it', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      const editColumn = (leaf: number) =>
        asAttacker(f.storage, async (db) => {
          // A column the query index does not hold: only the column check can see it.
          await db.updateTable('audit_events').set({ type: 'token.revoked' }).where('seq', '=', await seqOfLeaf(db, leaf)).execute();
        });
      const alterLookup = (leaf: number) =>
        asAttacker(f.storage, async (db) => {
          await db.updateTable('audit_index').set({ key: 'txn:elsewhere' }).where('seq', '=', await seqOfLeaf(db, leaf)).where('key', 'like', 'txn:%').execute();
        });
      await editColumn(400);
      await alterLookup(150);
      const lookupFirst = await f.verify();
      assert.equal(lookupFirst.problem?.leafIndex, 150);
      assert.match(lookupFirst.problem!.message, /query index/);
      await editColumn(90);
      const columnFirst = await f.verify();
      assert.equal(columnFirst.problem?.leafIndex, 90);
      assert.match(columnFirst.problem!.message, /indexed column type/);
    });

    test('finds the same problems when the side checks are cut into many small tasks (SQLite: shared by the worker and the verifying thread)', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(900);
      const small = { sideTaskEvents: 37 };
      const intact = await f.verify(small);
      assert.equal(intact.ok, true, intact.problem?.message);
      const seq = await seqOfLeaf(f.db, 700);
      // An extra row alone: only the lookups counted across every task against the index's rows show it.
      await asAttacker(f.storage, async (db) => {
        await db.insertInto('audit_index').values({ key: 'sub:intruder', seq }).execute();
      });
      const extra = await f.verify(small);
      assert.equal(extra.problem?.leafIndex, 700);
      assert.match(extra.problem!.message, /does not match/);
      await asAttacker(f.storage, async (db) => {
        await db.deleteFrom('audit_index').where('key', '=', 'sub:intruder').execute();
        await db.updateTable('audit_events').set({ type: 'token.revoked' }).where('seq', '=', await seqOfLeaf(db, 620)).execute();
        await db.updateTable('audit_index').set({ key: 'txn:elsewhere' }).where('seq', '=', await seqOfLeaf(db, 480)).where('key', 'like', 'txn:%').execute();
      });
      // Problems in tasks of both checks: the earliest is named, whichever thread found it.
      const lookupFirst = await f.verify(small);
      assert.equal(lookupFirst.problem?.leafIndex, 480);
      assert.match(lookupFirst.problem!.message, /query index/);
      await asAttacker(f.storage, async (db) => {
        await db.updateTable('audit_events').set({ type: 'token.revoked' }).where('seq', '=', await seqOfLeaf(db, 75)).execute();
      });
      const columnFirst = await f.verify(small);
      assert.equal(columnFirst.problem?.leafIndex, 75);
      assert.match(columnFirst.problem!.message, /indexed column type/);
    });

    test('stays intact across many rounds and checkpoints of odd sizes', async (t) => {
      const f = await auditFixture(dialect, t);
      for (const n of [1, 2, 255, 256, 257, 1000, 3]) await f.fill(n);
      const report = await f.verify({ pageSize: 97 });
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.leaves, 1774);
    });
  });
}
