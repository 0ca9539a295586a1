import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { cliWorkspace, runCli } from '../helpers/cli.ts';

function workspace(t: TestContext) {
  const { dir, env, run } = cliWorkspace(t, 'clearance-cli-audit-');
  /** Records events as the server would, then closes. */
  const record = async (count: number) => {
    const ctx = await openContext(loadConfig(env), { log: createLogger('silent') });
    for (let i = 0; i < count; i++) await ctx.audit.record({ type: 'token.issued', txn: `trade-${i % 5}`, subject: `user-${i}`, client: 'broker-1', details: { i } });
    await ctx.storage.close();
  };
  /** Runs `change` with the append-only triggers dropped, as an attacker with the file would. */
  const tamper = async (change: string) => {
    const ctx = await openContext(loadConfig(env), { log: createLogger('silent') });
    for (const table of ['audit_events', 'audit_leaves', 'audit_checkpoints']) {
      await sql.raw(`drop trigger ${table}_no_update`).execute(ctx.storage.db);
      await sql.raw(`drop trigger ${table}_no_delete`).execute(ctx.storage.db);
    }
    await sql.raw(change).execute(ctx.storage.db);
    await ctx.storage.close();
  };
  return { dir, env, run, record, tamper };
}

describe('clearance audit', () => {
  test('documents every subcommand in its help', async (t) => {
    const w = workspace(t);
    const help = await w.run('audit', '--help');
    assert.equal(help.code, 0);
    for (const word of ['verify ', 'export', 'verify-bundle', 'proof', 'prune', 'key', 'seal', '--txn', '--since', '--retention']) assert.ok(help.out.includes(word), word);
    assert.match((await w.run('help')).out, /audit verify\|export\|verify-bundle/);
    assert.equal((await w.run('audit', 'frobnicate')).code, 2);
  });

  test('verify exits 0 for an intact log and 1 naming the first bad leaf index after an edit', async (t) => {
    const w = workspace(t);
    await w.record(40);
    assert.match((await w.run('audit', 'seal')).out, /sealed 4\d event/); // 40 plus the signing key's key.created
    const intact = await w.run('audit', 'verify');
    assert.equal(intact.code, 0, intact.err);
    assert.match(intact.out, /audit log intact: 4\d leaves/);
    const json = JSON.parse((await w.run('audit', 'verify', '--json')).out);
    assert.equal(json.ok, true);

    await w.tamper(`update audit_events set event = replace(event, '"user-17"', '"user-71"') where subject = 'user-17'`);
    const broken = await w.run('audit', 'verify');
    assert.equal(broken.code, 1);
    assert.match(broken.err, /first bad leaf index 18\b/); // leaf 0 is key.created

    // Each full verification is on the record, for the log's status (GET /admin/audit/status).
    const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    try {
      const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.verified').orderBy('seq').execute();
      const verifications = rows.map((row) => JSON.parse(row.event) as { actor: string; details: Record<string, unknown> });
      assert.deepEqual(verifications.map((v) => v.details.ok), [true, true, false]);
      assert.match(verifications[0]!.actor, /^cli:/);
      assert.equal(verifications[0]!.details.tree_size, verifications[0]!.details.leaves);
      assert.deepEqual(verifications[2]!.details.problem, { message: (verifications[2]!.details.problem as { message: string }).message, leaf_index: 18 });
    } finally {
      await ctx.storage.close();
    }
  });

  test('verify pins the audit key given with --key', async (t) => {
    const w = workspace(t);
    await w.record(3);
    await w.run('audit', 'seal');
    const key = await w.run('audit', 'key');
    const pem = join(w.dir, 'audit.pem');
    writeFileSync(pem, key.out.slice(0, key.out.indexOf('-----END PUBLIC KEY-----') + 24));
    assert.match((await w.run('audit', 'verify', '--key', pem)).out, /pinned/);
    const other = join(w.dir, 'other.pem');
    const { generateKeyPairSync } = await import('node:crypto');
    writeFileSync(other, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }));
    assert.equal((await w.run('audit', 'verify', '--key', other)).code, 1);
  });

  test('a --key or --checkpoint file that is missing or not what it should be is said in one line, never thrown', async (t) => {
    const w = workspace(t);
    await w.record(3);
    await w.run('audit', 'seal');
    const missing = join(w.dir, 'missing.pem');
    const key = await w.run('audit', 'verify', '--key', missing);
    assert.equal(key.code, 1);
    assert.match(key.err, /^ENOENT: no such file or directory, open '.*missing\.pem'$/);
    const noCheckpoint = await w.run('audit', 'verify', '--checkpoint', join(w.dir, 'missing.json'));
    assert.equal(noCheckpoint.code, 2);
    assert.match(noCheckpoint.err, /^cannot read a checkpoint from .*missing\.json: ENOENT/);
    const notJson = join(w.dir, 'not.json');
    writeFileSync(notJson, 'a checkpoint, honest\n');
    const garbled = await w.run('audit', 'verify', '--checkpoint', notJson);
    assert.equal(garbled.code, 2);
    assert.match(garbled.err, /^cannot read a checkpoint from .*not\.json: Unexpected token/);
    const other = join(w.dir, 'other.json');
    writeFileSync(other, JSON.stringify({ treeSize: '3', rootHash: 'x' }));
    const notCheckpoint = await w.run('audit', 'verify', '--checkpoint', other);
    assert.equal(notCheckpoint.code, 2, 'a usage error, not a failed verification');
    assert.match(notCheckpoint.err, /other\.json holds no signed checkpoint/);
    const bundle = await w.run('audit', 'verify-bundle', notJson, '--key', missing);
    assert.notEqual(bundle.code, 0);
    assert.doesNotMatch(bundle.err, /\n\s+at /);
    const exported = await w.run('audit', 'export', '--txn', 'trade-0', '-o', join(w.dir, 'missing', 'bundle.json'));
    assert.equal(exported.code, 1);
    assert.match(exported.err, /^ENOENT: no such file or directory, open '.*bundle\.json'$/);
  });

  test('export writes a bundle that verify-bundle checks without the database, and one changed byte fails it', async (t) => {
    const w = workspace(t);
    await w.record(20);
    const file = join(w.dir, 'trade-3.json');
    const exported = await w.run('audit', 'export', '--txn', 'trade-3', '-o', file);
    assert.equal(exported.code, 0, exported.err);
    assert.match(exported.out, /exported 4 event/);
    const bundle = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(bundle.events.map((e: { event: { details: { i: number } } }) => e.event.details.i), [3, 8, 13, 18]);
    assert.ok(bundle.jwks.keys.length >= 1);

    // Offline: another environment whose data directory does not exist.
    const offlineEnv = { CLEARANCE_DATA_DIR: join(w.dir, 'nowhere') };
    const verify = (path: string) => runCli(['audit', 'verify-bundle', path], offlineEnv);
    const ok = await verify(file);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /bundle verified: 4 event/);
    assert.equal(existsSync(join(w.dir, 'nowhere')), false);

    const text = readFileSync(file);
    const middle = Math.floor(text.length / 2);
    text[middle] = text[middle]! ^ 0x01;
    writeFileSync(file, text);
    const bad = await verify(file);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /FAILED/);

    assert.equal((await w.run('audit', 'export')).code, 2);
    assert.equal((await w.run('audit', 'export', '--txn', 'trade-3', '--decision', 'perhaps')).code, 2);
  });

  test('proof prints inclusion and consistency proofs; prune --dry-run reports what it would remove', async (t) => {
    const w = workspace(t);
    await w.record(10);
    await w.run('audit', 'seal');
    await w.record(10);
    await w.run('audit', 'seal');
    const list = JSON.parse((await w.run('audit', 'verify', '--json')).out);
    const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    const id = (await ctx.storage.db.selectFrom('audit_events').select('id').where('subject', '=', 'user-5').executeTakeFirstOrThrow()).id;
    const sizes = (await ctx.storage.db.selectFrom('audit_checkpoints').select('tree_size').orderBy('tree_size').execute()).map((r) => r.tree_size);
    await ctx.storage.close();
    const inclusion = JSON.parse((await w.run('audit', 'proof', '--event', id)).out);
    assert.equal(inclusion.checkpoint.treeSize, list.latest.treeSize);
    const consistency = JSON.parse((await w.run('audit', 'proof', '--from', String(sizes[0]))).out);
    assert.equal(consistency.first.treeSize, sizes[0]);
    assert.equal((await w.run('audit', 'proof', '--event', 'missing')).code, 1);
    const dry = await w.run('audit', 'prune', '--retention', '*=1d', '--dry-run');
    assert.equal(dry.code, 0);
    assert.match(dry.out, /nothing to prune/); // the events are younger than a day, and fewer than 256
    assert.equal((await w.run('audit', 'prune', '--retention', 'nonsense')).code, 2);
  });

  test('hold place puts a legal hold under a matter reference, audited; hold list shows it; a hold without a matter or scope is refused', async (t) => {
    const w = workspace(t);
    await w.record(5);
    const placed = await w.run('audit', 'hold', 'place', '--txn', 'trade-3', '--matter', 'SEC-2026-114');
    assert.equal(placed.code, 0, placed.err);
    assert.match(placed.out, /placed legal hold hold-[0-9a-f-]+ \(matter SEC-2026-114\)/);
    const listed = await w.run('audit', 'hold', 'list');
    assert.match(listed.out, /"kind":"txn","value":"trade-3","matter_ref":"SEC-2026-114"/);
    assert.equal((await w.run('audit', 'hold', 'place', '--txn', 'trade-3')).code, 2, 'no matter reference');
    const both = await w.run('audit', 'hold', 'place', '--txn', 'trade-3', '--client', 'broker-1', '--matter', 'M');
    assert.equal(both.code, 2);
    assert.match(both.err, /exactly one/);
    const inverted = await w.run('audit', 'hold', 'place', '--since', '2026-02-01T00:00:00Z', '--until', '2026-01-01T00:00:00Z', '--matter', 'M');
    assert.match(inverted.err, /inverted/);
    const garbled = await w.run('audit', 'hold', 'place', '--since', 'notadate', '--until', '2026-01-01T00:00:00Z', '--matter', 'M');
    assert.equal(garbled.code, 2);
    assert.equal(garbled.err, '--since must be epoch milliseconds or an ISO 8601 time', 'says which end is wrong');
    assert.equal((await w.run('audit', 'hold', 'release')).code, 2, 'no hold named');
    assert.equal((await w.run('audit', 'hold', 'unknown')).code, 2);
    assert.match((await w.run('audit', '--help')).out, /hold place/);
  });

  test('hold release asks for a two-person release: two compliance approvals, the hold in force meanwhile; unknown holds and a missing reason are refused', async (t) => {
    const w = workspace(t);
    await w.record(5);
    const id = /placed legal hold (hold-[0-9a-f-]+)/.exec((await w.run('audit', 'hold', 'place', '--client', 'broker-1', '--matter', 'M-1')).out)![1]!;
    const noReason = await w.run('audit', 'hold', 'release', id);
    assert.equal(noReason.code, 2);
    assert.match(noReason.err, /needs its reason/);
    assert.match((await w.run('audit', 'hold', 'release', 'hold-nope', '--reason', 'r')).err, /no legal hold hold-nope/);
    const asked = await w.run('audit', 'hold', 'release', id, '--reason', 'matter closed');
    assert.equal(asked.code, 0, asked.err);
    assert.match(asked.out, new RegExp(`asked for the release of legal hold ${id} \\(matter M-1\\): approval request [0-9a-f-]+ waits for 2 people holding compliance`));
    const again = await w.run('audit', 'hold', 'release', id, '--reason', 'matter closed');
    assert.equal(again.code, 2);
    assert.match(again.err, /already waits for approval/);
    assert.match((await w.run('audit', 'hold', 'list')).out, /"release_request":"[0-9a-f-]+"/);
    assert.doesNotMatch((await w.run('audit', 'hold', 'list')).out, /released_at/, 'still in force');
  });
});
