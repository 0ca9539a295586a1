import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { cliWorkspace, runCli } from '../helpers/cli.ts';

function workspace(t: TestContext, extra: NodeJS.ProcessEnv = {}) {
  const w = cliWorkspace(t, 'clearance-cli-keys-');
  const env = { ...w.env, ...extra };
  /** Records events as the server would, then closes. */
  const record = async (subjects: string[]) => {
    const ctx = await openContext(loadConfig(env), { log: createLogger('silent') });
    for (const subject of subjects) await ctx.audit.record({ type: 'token.issued', txn: 'trade-1', subject, client: 'broker-1' });
    await ctx.storage.close();
  };
  return { ...w, env, record, run: (...argv: string[]) => runCli(argv, env) };
}

describe('clearance keys', () => {
  test('status shows every key with its age and state, the schedule, and the audit keys; --json too', async (t) => {
    const w = workspace(t, { CLEARANCE_KEY_ROTATION_DAYS: '30', CLEARANCE_AUDIT_KEY_ROTATION_DAYS: '365' });
    await w.record(['a']);
    assert.equal((await w.run('audit', 'seal')).code, 0);
    for (const loose of ['', '1e3', '0x10', '2592001']) {
      const refused = await w.run('keys', 'rotate', '--overlap', loose);
      assert.equal(refused.code, 2, `--overlap ${JSON.stringify(loose)}`);
      assert.match(refused.err, /--overlap must be a whole number of seconds, 0 to 2592000/);
    }
    assert.equal((await w.run('keys', 'rotate', '--overlap', '600')).code, 0);

    const text = await w.run('keys', 'status');
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^token-signing keys: rotate every 30 days, published 600 s before signing \(JWKS max-age 300 s\)$/m);
    assert.match(text.out, /^ {2}next rotation: {3}\d{4}-\d\d-\d\dT/m);
    assert.match(text.out, /^ {2}\S+ {2}ES256 {2}active .* age 0m$/m);
    assert.match(text.out, /^ {2}\S+ {2}ES256 {2}next .*signs from .* age 0m$/m);
    assert.match(text.out, /^audit checkpoint keys: rotate every 365 days$/m);
    assert.match(text.out, /^ {2}[0-9a-f]{64} {2}software {2}signing /m);
    assert.match(text.out, /^last step: none yet$/m);

    const json = await w.run('keys', 'status', '--json');
    assert.equal(json.code, 0);
    const status = JSON.parse(json.out);
    assert.equal(status.tokenKeys.rotationDays, 30);
    assert.equal(status.tokenKeys.activationLeadSeconds, 600);
    assert.deepEqual(status.tokenKeys.keys.map((k: { state: string }) => k.state), ['active', 'next']);
    assert.equal(typeof status.tokenKeys.keys[0].ageSeconds, 'number');
    const active = status.tokenKeys.keys[0];
    // A next key is pending: the following rotation is due an interval after it was made.
    assert.equal(status.tokenKeys.nextRotationAt, status.tokenKeys.keys[1].createdAt + 30 * 86_400_000);
    assert.ok(active.createdAt <= status.now);
    assert.equal(status.auditKeys.keys.length, 1);
    assert.equal(status.auditKeys.nextRotationAt, status.auditKeys.keys[0].createdAt + 365 * 86_400_000);
  });

  test('status says when the schedule is off', async (t) => {
    const w = workspace(t, { CLEARANCE_KEY_ROTATION_DAYS: '0' });
    const text = await w.run('keys', 'status');
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /token-signing keys: no scheduled rotation \(CLEARANCE_KEY_ROTATION_DAYS=0\)/);
    assert.match(text.out, /next rotation: {3}never \(schedule off\)/);
    assert.match(text.out, /audit checkpoint keys: no scheduled rotation \(CLEARANCE_AUDIT_KEY_ROTATION_DAYS=0\)/);
  });

  test('rotate --audit makes a new checkpoint key; checkpoints before and after verify, and a bundle spanning the rotation verifies offline', async (t) => {
    const w = workspace(t);
    await w.record(['before-1', 'before-2']);
    assert.equal((await w.run('audit', 'seal')).code, 0);
    const printed = (await w.run('audit', 'key')).out;
    const before = printed.match(/fingerprint: ([0-9a-f]{64})/)![1]!;
    const beforePem = printed.slice(0, printed.indexOf('fingerprint:'));

    assert.equal((await w.run('keys', 'rotate', '--audit', '--alg', 'EdDSA')).code, 2, '--audit takes no --alg');
    const rotated = await w.run('keys', 'rotate', '--audit');
    assert.equal(rotated.code, 0, rotated.err);
    const printedAfter = (await w.run('audit', 'key')).out;
    const after = printedAfter.match(/fingerprint: ([0-9a-f]{64})/)![1]!;
    const afterPem = printedAfter.slice(0, printedAfter.indexOf('fingerprint:'));
    assert.notEqual(after, before);
    assert.match(rotated.out, new RegExp(`audit key ${after} signs from the sealer's next round; ${before} is kept for verification`));

    await w.record(['after-1']);
    assert.equal((await w.run('audit', 'seal')).code, 0);

    const verified = await w.run('audit', 'verify', '--json');
    assert.equal(verified.code, 0, verified.err);
    const report = JSON.parse(verified.out);
    assert.equal(report.ok, true);
    assert.deepEqual(new Set(report.keyIds ?? report.key_ids), new Set([before, after]));

    // An auditor who pinned only the old key follows its signed handover to the new one; pinning
    // both passes too; a key that never handed over to it does not.
    const oldPin = join(w.dir, 'old.pem');
    writeFileSync(oldPin, beforePem);
    const bothPins = join(w.dir, 'both.pem');
    writeFileSync(bothPins, beforePem + afterPem);
    const strangerPin = join(w.dir, 'stranger.pem');
    writeFileSync(strangerPin, generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const oldPinned = await w.run('audit', 'verify', '--key', oldPin);
    assert.equal(oldPinned.code, 0, oldPinned.err);
    const pinned = await w.run('audit', 'verify', '--key', bothPins);
    assert.equal(pinned.code, 0, pinned.err);
    assert.equal((await w.run('audit', 'verify', '--key', strangerPin)).code, 1);

    const file = join(w.dir, 'bundle.json');
    const exported = await w.run('audit', 'export', '--txn', 'trade-1', '-o', file);
    assert.equal(exported.code, 0, exported.err);
    const bundle = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(bundle.events.map((e: { event: { subject: string } }) => e.event.subject), ['before-1', 'before-2', 'after-1']);
    assert.equal(bundle.auditKey.keyId, after);
    const offline = await w.run('audit', 'verify-bundle', file, '--key', bothPins);
    assert.equal(offline.code, 0, offline.err);
    const offlineOld = await w.run('audit', 'verify-bundle', file, '--key', oldPin);
    assert.equal(offlineOld.code, 0, offlineOld.err);
    assert.match(offlineOld.out, new RegExp(`handed over from ${before}`));
    assert.equal((await w.run('audit', 'verify-bundle', file, '--key', strangerPin)).code, 1);

    // The rotation is on the record, with who did it.
    const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    try {
      const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.key_rotated').execute();
      assert.equal(rows.length, 1);
      const event = JSON.parse(rows[0]!.event);
      assert.deepEqual(event.details, { previous_key_id: before, key_id: after, scheduled: false });
      assert.match(event.actor, /^cli:/);
    } finally {
      await ctx.storage.close();
    }
  });

  test('documents status and rotate --audit in its help', async (t) => {
    const w = workspace(t);
    const help = await w.run('keys', '--help');
    for (const word of ['keys status', 'rotate --audit', 'CLEARANCE_KEY_ROTATION_DAYS', 'CLEARANCE_AUDIT_KEY_ROTATION_DAYS']) assert.ok(help.out.includes(word) || help.err.includes(word), word);
  });
});
