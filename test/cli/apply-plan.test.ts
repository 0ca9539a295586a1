import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openStorage } from '../../src/storage/database.ts';
import { cliWorkspace } from '../helpers/cli.ts';

/**
 * `clearance apply --plan` and `--prune` (issue 23 item 1, docs/lifecycle.md "Plan and prune"), as
 * a GitOps pipeline runs them: the plan on a pull request, the prune on merge.
 */

const baseline = `resource_servers:
  - identifier: https://orders.example.com
    scopes: [order:create, order:cancel]
clients:
  - client_id: broker-1
    grant_types: [client_credentials]
    scope: order:create
  - client_id: broker-2
    grant_types: [client_credentials]
    scope: order:create
  - client_id: broker-3
    grant_types: [client_credentials]
    scope: order:create
  - client_id: broker-4
    grant_types: [client_credentials]
    scope: order:create
users:
  - username: alice
    name: Alice Trader
  - username: bob
    name: Bob Trader
`;

/** The baseline without broker-4 and alice, and broker-1 allowed one more scope. */
const next = baseline
  .replace(/  - client_id: broker-4\n(    .*\n){2}/, '')
  .replace(/  - username: alice\n    name: Alice Trader\n/, '')
  .replace('client_id: broker-1\n    grant_types: [client_credentials]\n    scope: order:create', 'client_id: broker-1\n    grant_types: [client_credentials]\n    scope: order:create order:cancel');

async function disabledClients(env: NodeJS.ProcessEnv): Promise<string[]> {
  const storage = openStorage({ dataDir: env.CLEARANCE_DATA_DIR! });
  try {
    return (await storage.db.selectFrom('clients').select('client_id').where('disabled_at', 'is not', null).orderBy('client_id').execute()).map((r) => r.client_id);
  } finally {
    await storage.close();
  }
}

describe('clearance apply --plan and --prune', () => {
  test('--plan FILE prints additions, field-by-field changes and, with --prune, the disables; writes nothing; exits 0', async (t) => {
    const { run, env, dir } = cliWorkspace(t);
    writeFileSync(join(dir, 'baseline.yaml'), baseline);
    writeFileSync(join(dir, 'next.yaml'), next);
    assert.equal((await run('apply', '-f', join(dir, 'baseline.yaml'))).code, 0);

    const plain = await run('apply', '--plan', join(dir, 'next.yaml'));
    assert.equal(plain.code, 0, plain.err);
    const lines = plain.out.split('\n');
    assert.match(lines[0]!, /^plan for .*next\.yaml \(sha256:[0-9a-f]{64}\)$/);
    assert.deepEqual(lines.slice(1), ['~ client broker-1', '    scope: "order:create" → "order:create order:cancel"', '0 to add, 1 to change, 0 to disable or remove, 4 unchanged', 'nothing was written (plan)']);

    const pruning = await run('apply', '--plan', '--prune', join(dir, 'next.yaml'));
    assert.equal(pruning.code, 0, pruning.err);
    assert.deepEqual(pruning.out.split('\n').slice(1), [
      '~ client broker-1',
      '    scope: "order:create" → "order:create order:cancel"',
      '- client broker-4 (disable)',
      '- user alice (disable)',
      '0 to add, 1 to change, 2 to disable or remove, 4 unchanged',
      'nothing was written (plan)',
    ]);
    assert.deepEqual(await disabledClients(env), []);
  });

  test('--plan exits 2 on an invalid document, printing every problem', async (t) => {
    const { run, dir } = cliWorkspace(t);
    writeFileSync(join(dir, 'bad.yaml'), 'clients:\n  - client_id: web\n    redirect_uris: [http://web.example.com/cb]\n');
    const result = await run('apply', '--plan', join(dir, 'bad.yaml'));
    assert.equal(result.code, 2);
    assert.match(result.err, /problem.*nothing was applied/);
    assert.match(result.err, /clients\[0\]/);
  });

  test('--prune prints the plan, then disables what the file no longer declares', async (t) => {
    const { run, env, dir } = cliWorkspace(t);
    writeFileSync(join(dir, 'baseline.yaml'), baseline);
    writeFileSync(join(dir, 'next.yaml'), next);
    assert.equal((await run('apply', '-f', join(dir, 'baseline.yaml'))).code, 0);
    const result = await run('apply', '--prune', join(dir, 'next.yaml'));
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /^plan for .*authoritative for: clients, resource_servers, users\n/);
    assert.match(result.out, /\ndisabled  client broker-4\n/);
    assert.match(result.out, /\ndisabled  user alice\n/);
    assert.match(result.out, /\n3 change\(s\) applied$/);
    assert.deepEqual(await disabledClients(env), ['broker-4']);
    // Applied again: nothing left to prune.
    const again = await run('apply', '--prune', join(dir, 'next.yaml'));
    assert.match(again.out, /\nno changes$/);
  });

  test('--prune refuses to disable more than the safety rule allows without --force, and writes nothing', async (t) => {
    const { run, env, dir } = cliWorkspace(t);
    writeFileSync(join(dir, 'baseline.yaml'), baseline);
    writeFileSync(join(dir, 'one.yaml'), 'clients:\n  - client_id: broker-1\n    grant_types: [client_credentials]\n    scope: order:create\n');
    assert.equal((await run('apply', '-f', join(dir, 'baseline.yaml'))).code, 0);
    const refused = await run('apply', '--prune', join(dir, 'one.yaml'));
    assert.equal(refused.code, 1);
    assert.match(refused.out, /! prune would disable 3 of 4 client\(s\) in service; the safety rule allows 1 without --force/);
    assert.match(refused.err, /prune refused: 3 of 4 client\(s\).*nothing was applied/);
    assert.deepEqual(await disabledClients(env), []);
    const forced = await run('apply', '--prune', '--force', join(dir, 'one.yaml'));
    assert.equal(forced.code, 0, forced.err);
    assert.deepEqual(await disabledClients(env), ['broker-2', 'broker-3', 'broker-4']);
  });

  test('--force without --prune, and --plan with --dry-run, are usage errors (exit 2)', async (t) => {
    const { run, dir } = cliWorkspace(t);
    writeFileSync(join(dir, 'baseline.yaml'), baseline);
    assert.equal((await run('apply', '--force', join(dir, 'baseline.yaml'))).code, 2);
    assert.equal((await run('apply', '--plan', '--dry-run', join(dir, 'baseline.yaml'))).code, 2);
  });
});
