import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { masterKeyId } from '../../src/keys/keyring.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { cliWorkspace, runCli } from '../helpers/cli.ts';

describe('clearance keys rewrap', () => {
  test('rotates the master key from the command line: the new key alone then serves, the old one alone is refused with what to set', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-rewrap-');
    const oldKey = w.env.CLEARANCE_MASTER_KEY!;
    const newKey = randomBytes(32).toString('hex');
    // A database in use: signing keys, an audit key rotated, events with personal fields sealed.
    const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    await ctx.audit.record({ type: 'token.issued', txn: 'trade-1', subject: 'alice', client: 'broker-1', details: { source_address: '203.0.113.9' } });
    await ctx.storage.close();
    assert.equal((await w.run('audit', 'seal')).code, 0);
    assert.equal((await w.run('keys', 'rotate', '--audit')).code, 0);
    const keysBefore = (await w.run('keys', 'list')).out;

    const rotating = { ...w.env, CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey };
    const rewrapped = await runCli(['keys', 'rewrap'], rotating);
    assert.equal(rewrapped.code, 0, rewrapped.err);
    assert.match(rewrapped.out, new RegExp(`re-sealing every secret with master key ${masterKeyId(Buffer.from(newKey, 'hex'))} from ${masterKeyId(Buffer.from(oldKey, 'hex'))}`));
    assert.match(rewrapped.out, /signing_keys\.private_key: \d+/);
    assert.match(rewrapped.out, /complete: \d+ value\(s\) re-sealed/);
    assert.match(rewrapped.out, /remove CLEARANCE_PREVIOUS_MASTER_KEY from every node/);
    assert.ok(!rewrapped.out.includes(oldKey) && !rewrapped.out.includes(newKey));

    const newOnly = { ...w.env, CLEARANCE_MASTER_KEY: newKey };
    assert.equal((await runCli(['keys', 'list'], newOnly)).out, keysBefore);
    const verified = await runCli(['audit', 'verify'], newOnly);
    assert.equal(verified.code, 0, verified.err);

    const refused = await runCli(['keys', 'list'], w.env);
    assert.equal(refused.code, 2, 'a configuration error');
    assert.match(refused.err, /was replaced by .* set CLEARANCE_MASTER_KEY to the new key/);
    assert.ok(!refused.err.includes(oldKey));
  });

  test('is documented in clearance keys --help', async (t) => {
    const w = cliWorkspace(t);
    const help = await w.run('keys', '--help');
    const text = help.out + help.err;
    for (const word of ['keys rewrap', 'CLEARANCE_PREVIOUS_MASTER_KEY', 'Resumable', 'docs/keys.md']) assert.ok(text.includes(word), word);
  });
});
