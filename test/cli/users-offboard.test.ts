import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliWorkspace } from '../helpers/cli.ts';

test('clearance users offboard disables a person, prints what it ended, and refuses a second time', async (t) => {
  const { dir, run } = cliWorkspace(t);
  writeFileSync(join(dir, 'people.json'), JSON.stringify({ users: [{ username: 'alice', name: 'Alice Trader' }] }));
  const applied = await run('apply', '-f', join(dir, 'people.json'));
  assert.equal(applied.code, 0, applied.err);

  const done = await run('users', 'offboard', 'alice', '--deadline', '2099-01-01T00:00:00Z', '--reason', 'left the firm');
  assert.equal(done.code, 0, done.err);
  assert.match(done.out, /^offboarded alice \([0-9a-f-]{36}\): disabled/);
  assert.match(done.out, /sessions ended: 0, refresh tokens revoked: 0/);
  assert.match(done.out, /mandates they granted, in force until 2099-01-01T00:00:00.000Z: none/);

  const again = await run('users', 'offboard', 'alice');
  assert.notEqual(again.code, 0);
  assert.match(again.err, /already offboarded/);
  const unknown = await run('users', 'offboard', 'nobody');
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /no user nobody/);
  const bad = await run('users', 'offboard', 'alice', '--deadline', 'soon');
  assert.notEqual(bad.code, 0);
  const help = await run('users', '--help');
  assert.match(help.out + help.err, /users offboard USERNAME \[--deadline ISO-8601\] \[--reason TEXT\]/);
});
