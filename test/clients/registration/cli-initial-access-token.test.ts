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
