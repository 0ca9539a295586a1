import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { decryptEventsUnaudited } from '../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { cliWorkspace } from '../helpers/cli.ts';

// `clearance keys revoke KID --compromised` (src/cli/commands/keys-revoke.ts, docs/keys.md).

const kidsIn = (listing: string) => listing.split('\n').map((line) => line.split(/\s+/));

describe('clearance keys revoke', () => {
  test('refuses without --compromised, saying it is the emergency path and what it does; the key stays', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-revoke-');
    const [[kid]] = kidsIn((await w.run('keys', 'list')).out) as [[string]];
    const refused = await w.run('keys', 'revoke', kid);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /^clearance keys revoke is the emergency path for a signing key that is, or may be, compromised\./);
    assert.match(refused.err, /takes the key out of the JWKS on every node at once/);
    assert.match(refused.err, /clearance keys revoke KID --compromised/);
    assert.match(refused.err, /clearance keys retire KID/);
    assert.equal((await w.run('keys', 'revoke')).code, 2, 'no kid');
    assert.match((await w.run('keys', 'list')).out, new RegExp(`^${kid}  ES256  active `));
  });

  test('with --compromised: the key is compromised for good, a new key signs, and one event says so', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-revoke-');
    const [[kid]] = kidsIn((await w.run('keys', 'list')).out) as [[string]];
    const done = await w.run('keys', 'revoke', kid, '--compromised', '--reason', 'found in a public repository');
    assert.equal(done.code, 0, done.err);
    assert.match(done.out, new RegExp(`^revoked ${kid} as compromised: out of the JWKS, every token it signed is inactive$`, 'm'));
    assert.match(done.out, /^\S{43} signs from now on \(a new key\)$/m);
    assert.match(done.out, /^revoked 0 refresh tokens in 0 families; at most 0 access tokens it signed were still unexpired$/m);

    const listed = (await w.run('keys', 'list')).out;
    assert.match(listed, new RegExp(`^${kid}  ES256  compromised  revoked as compromised \\d{4}-`, 'm'));
    assert.match(listed, /^\S{43} {2}ES256 {2}active /m);
    const again = await w.run('keys', 'revoke', kid, '--compromised');
    assert.equal(again.code, 1);
    assert.match(again.err, /was already revoked as compromised/);
    const retire = await w.run('keys', 'retire', kid);
    assert.equal(retire.code, 1);
    assert.match(retire.err, /out of the JWKS for good/);
    const unknown = await w.run('keys', 'revoke', 'no-such-kid', '--compromised');
    assert.equal(unknown.code, 1);
    assert.equal(unknown.err, 'no signing key with kid "no-such-kid"');

    const config = loadConfig(w.env);
    const ctx = await openContext(config, { log: createLogger('silent') });
    t.after(() => ctx.storage.close());
    const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'key.compromised').execute();
    const events = await decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(config).key, rows.map((r) => JSON.parse(r.event) as StoredAuditEvent));
    assert.equal(events.length, 1);
    assert.equal(events[0]!.subject, kid);
    assert.match(String(events[0]!.actor), /^cli:/);
    assert.equal(events[0]!.details!.reason, 'found in a public repository');
  });

  test('refuses a reason holding a token, a PEM block, a reference handle or control characters with the usage code, before anything is written', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-revoke-');
    const [[kid]] = kidsIn((await w.run('keys', 'list')).out) as [[string]];
    const b64 = (json: unknown) => Buffer.from(JSON.stringify(json)).toString('base64url');
    const jwt = `${b64({ alg: 'ES256', kid, typ: 'at+jwt' })}.${b64({ sub: 'broker-1' })}.c2lnbmF0dXJl`;
    const refused: [string, string][] = [
      [`pasted by mistake: ${jwt}`, 'the reason holds a JWT'],
      ['-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----', 'the reason holds a PEM block'],
      ['clr_at_0f3e9a was in the proxy log', 'the reason holds a reference token'],
      ['colour \u001b[31mred', 'the reason must not contain control characters'],
      ['   ', 'the reason must be 1 to 500 characters'],
      ['x'.repeat(501), 'the reason must be 1 to 500 characters'],
    ];
    for (const [reason, message] of refused) {
      // --reason=… : a PEM block begins with dashes, which a separate argument would read as an option.
      const run = await w.run('keys', 'revoke', kid, '--compromised', `--reason=${reason}`);
      assert.equal(run.code, 2, JSON.stringify(reason));
      assert.ok(run.err.startsWith(message), run.err);
      assert.match(run.err, / \(--reason\)$/);
      assert.equal(run.out, '');
    }
    assert.match((await w.run('keys', 'list')).out, new RegExp(`^${kid}  ES256  active `));

    const config = loadConfig(w.env);
    const ctx = await openContext(config, { log: createLogger('silent') });
    t.after(() => ctx.storage.close());
    const rows = await ctx.storage.db.selectFrom('audit_events').select('type').where('type', 'in', ['key.compromised', 'key.created']).execute();
    assert.deepEqual(rows.map((r) => r.type), ['key.created'], 'no key.compromised event, and no new key');

    // A reason over several lines, naming where it leaked, is taken.
    const done = await w.run('keys', 'revoke', kid, '--compromised', '--reason', 'found in build log 4411\nposted at 02:10');
    assert.equal(done.code, 0, done.err);
  });

  test('the help names revoke and the compromised state', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-revoke-');
    const help = await w.run('keys', '--help');
    assert.equal(help.code, 0);
    assert.match(help.out, /clearance keys revoke KID --compromised \[--reason TEXT\]/);
    assert.match(help.out, /compromised revoked as compromised/);
    assert.match(help.out, /^revoke {3}the emergency path for a compromised key/m);
  });
});
