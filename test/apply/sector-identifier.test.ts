import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { test, type TestContext } from 'node:test';
import { planApply } from '../../src/apply/index.ts';
import { formatProblem } from '../../src/validation.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';

// OIDC Registration §5 at apply: a pairwise client's sector_identifier_uri is fetched when the client
// is new or its sector_identifier_uri or redirect_uris changed — not again at every apply or plan
// (docs/privacy.md "Regions": "the document is not fetched again"), so a sector host that is down
// fails no unrelated apply.

/** A loopback sector host: answers `listed` as JSON, or `status` when set; counts its requests. */
async function sectorHost(t: TestContext, listed: string[]): Promise<{ uri: string; requests: () => number; fail: (status: number) => void }> {
  let requests = 0;
  let status = 200;
  const server: Server = createServer((_request, response) => {
    requests += 1;
    if (status !== 200) response.writeHead(status).end();
    else response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(listed));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { uri: `http://127.0.0.1:${(server.address() as { port: number }).port}/sector.json`, requests: () => requests, fail: (s) => (status = s) };
}

const rp = (clientId: string, sectorUri: string, redirectUris: string[]) => ({
  client_id: clientId,
  kind: 'app',
  grant_types: ['authorization_code'],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'openid order:create',
  subject_type: 'pairwise',
  sector_identifier_uri: sectorUri,
  redirect_uris: redirectUris,
});

test('a stored pairwise client applied again unchanged is not fetched again: its sector host answering 500 fails nothing', async (t) => {
  const f = await codeFlowFixture(t);
  const host = await sectorHost(t, ['https://a.example.com/cb', 'https://b.example.com/cb']);
  const client = rp('rp', host.uri, ['https://a.example.com/cb', 'https://b.example.com/cb']);
  await f.apply({ clients: [client] });
  assert.equal(host.requests(), 1, 'fetched once, when the client is registered');

  host.fail(500);
  // The same document again, its redirect_uris in another order: planned (--plan) and applied, no fetch.
  const again = { clients: [{ ...client, redirect_uris: ['https://b.example.com/cb', 'https://a.example.com/cb'] }] };
  const planned = await planApply(f.ctx, again);
  assert.deepEqual(planned.problems.map(formatProblem), []);
  await f.apply(again);
  assert.equal(host.requests(), 1, 'not fetched again');
});

test('a changed redirect_uris, a changed sector_identifier_uri or a new client is fetched again and refused when the host fails', async (t) => {
  const f = await codeFlowFixture(t);
  const host = await sectorHost(t, ['https://a.example.com/cb', 'https://b.example.com/cb']);
  const other = await sectorHost(t, ['https://a.example.com/cb', 'https://b.example.com/cb']);
  await f.apply({ clients: [rp('rp', host.uri, ['https://a.example.com/cb'])] });
  assert.equal(host.requests(), 1);

  host.fail(500);
  const changedRedirects = await planApply(f.ctx, { clients: [rp('rp', host.uri, ['https://a.example.com/cb', 'https://b.example.com/cb'])] });
  assert.equal(changedRedirects.plan, undefined);
  assert.match(changedRedirects.problems.map(formatProblem).join('\n'), /clients\[0\]\.sector_identifier_uri.*could not be used/);
  assert.equal(host.requests(), 2, 'fetched: its redirect_uris changed');

  const newClient = await planApply(f.ctx, { clients: [rp('rp', host.uri, ['https://a.example.com/cb']), rp('rp-2', host.uri, ['https://a.example.com/cb'])] });
  assert.match(newClient.problems.map(formatProblem).join('\n'), /clients\[1\]\.sector_identifier_uri.*could not be used/);
  assert.doesNotMatch(newClient.problems.map(formatProblem).join('\n'), /clients\[0\]/, 'the stored, unchanged client is not fetched');
  assert.equal(host.requests(), 3, 'only the new client was fetched');

  // Moved to another sector document: fetched, and it lists the redirect_uris.
  await f.apply({ clients: [rp('rp', other.uri, ['https://a.example.com/cb'])] });
  assert.equal(other.requests(), 1);
  assert.equal((await f.ctx.clients.get('rp'))?.metadata.sector_identifier_uri, other.uri);
});
