import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../../src/cli/main.ts';
import { startTestServer } from '../../helpers/server.ts';
import { basicAuthorization } from '../../endpoints/fixture.ts';

const api = 'https://orders.example.com/api';

test('an initial access token from `clearance clients token` registers one client with a listening server, which then gets a token', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-registration-'));
  const env = { CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };
  const server = await startTestServer({ t, env });
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  await server.apply({ resource_servers: [{ identifier: api, scopes: ['order:create', 'order:cancel'] }] });

  // The CLI works on the same database as the running server, as an operator's shell would.
  const out: string[] = [];
  const err: string[] = [];
  const cliEnv = { ...env, CLEARANCE_ISSUER: server.issuer };
  const code = await main(['clients', 'token', '--scope', 'order:create', '--uses', '1', '--ttl', '600'], cliEnv, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
  });
  assert.equal(code, 0, err.join('\n'));
  const token = /initial access token .*: (\S+)$/m.exec(out.join('\n'))?.[1];
  assert.ok(token, out.join('\n'));

  // A scope the CLI was not asked for is refused before anything is issued.
  const refused = await main(['clients', 'token', '--scope', 'order:explode'], cliEnv, { out: () => {}, err: () => {} });
  assert.equal(refused, 1);

  const register = (body: unknown) =>
    fetch(`${server.issuer}/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const metadata = { client_name: 'Algo desk 9', grant_types: ['client_credentials'], scope: 'order:create' };
  const response = await register(metadata);
  assert.equal(response.status, 201, await response.clone().text());
  assert.equal(response.headers.get('cache-control'), 'no-store');
  const client = (await response.json()) as { client_id: string; client_secret: string; registration_client_uri: string };
  assert.equal(client.registration_client_uri, `${server.issuer}/register/${client.client_id}`);

  const again = await register(metadata);
  assert.equal(again.status, 401, 'the token had one use');
  assert.equal(((await again.json()) as { error: string }).error, 'invalid_token');

  const issued = await fetch(`${server.issuer}/token`, {
    method: 'POST',
    headers: { authorization: basicAuthorization(client.client_id, client.client_secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: api }),
  });
  assert.equal(issued.status, 200, await issued.clone().text());
  assert.equal(((await issued.json()) as { scope: string }).scope, 'order:create');
});

test('`clearance clients token --owner-lei --grant-types --kinds` issues a token whose registrations get that firm and stay within those values', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-registration-'));
  const env = { CLEARANCE_DATA_DIR: dataDir, CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex') };
  const server = await startTestServer({ t, env });
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  await server.apply({ resource_servers: [{ identifier: api, scopes: ['order:create', 'order:cancel'] }] });
  const brokerLei = '5493001KJTIIGC8Y1R12';
  const cliEnv = { ...env, CLEARANCE_ISSUER: server.issuer };
  const run = async (...argv: string[]) => {
    const lines: string[] = [];
    const code = await main(argv, cliEnv, { out: (line) => lines.push(line), err: (line) => lines.push(line) });
    return { code, text: lines.join('\n') };
  };

  const issued = await run('clients', 'token', '--scope', 'order:create', '--owner-lei', brokerLei, '--grant-types', 'client_credentials', '--kinds', 'agent', '--uses', '3');
  assert.equal(issued.code, 0, issued.text);
  assert.match(issued.text, new RegExp(`firm ${brokerLei}; scopes at most order:create; grant types at most client_credentials; kinds agent`));
  // The firm is not in this server's entity model: the CLI says so rather than stay silent.
  assert.match(issued.text, /not in the entity model/);
  const token = /initial access token .*: (\S+)$/m.exec(issued.text)?.[1];
  assert.ok(token, issued.text);

  const register = (body: unknown) =>
    fetch(`${server.issuer}/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const metadata = { grant_types: ['client_credentials'], scope: 'order:create' };
  const created = await register(metadata);
  assert.equal(created.status, 201, await created.clone().text());
  const client = (await created.json()) as { owner_lei?: string; kind: string };
  assert.equal(client.owner_lei, brokerLei);
  assert.equal(client.kind, 'agent');
  for (const body of [
    { ...metadata, owner_lei: '254900EXAMPLEUS0AA64' },
    { ...metadata, grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'] },
    { ...metadata, kind: 'service' },
  ]) {
    const refused = await register(body);
    assert.equal(refused.status, 400, JSON.stringify(body));
    assert.equal(((await refused.json()) as { error: string }).error, 'invalid_client_metadata');
  }

  // The administrator's mistakes are refused before anything is issued.
  for (const argv of [
    ['--owner-lei', 'NOT-A-LEI'],
    ['--owner-lei', '5493001KJTIIGC8Y1R13'],
    ['--grant-types', 'password'],
    ['--grant-types', ''],
    ['--kinds', 'robot'],
  ]) {
    const refused = await run('clients', 'token', '--scope', 'order:create', ...argv);
    assert.equal(refused.code, 2, `${argv.join(' ')}: ${refused.text}`);
    assert.doesNotMatch(refused.text, /initial access token \(/);
  }
  const help = await run('clients', '--help');
  assert.match(help.text, /--owner-lei/);
  assert.match(help.text, /--grant-types/);
  assert.match(help.text, /--kinds/);
});
