import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FetchError, pinnedRequest } from '../../src/federation/fetch.ts';

// The SSRF rules of every request to an upstream identity provider (openid-client's fetch):
// addresses checked before connecting, the checked one connected to, no redirect followed, bounded.

test('a host that resolves to a private address is refused unless the declaration allows the private network', async () => {
  const rules = { allowPrivateNetwork: false, resolve: async () => [{ address: '10.1.2.3', family: 4 as const }] };
  await assert.rejects(pinnedRequest('https://idp.fund-a.example/token', { method: 'POST', headers: {} }, rules), (error: Error) => error instanceof FetchError && /private/.test(error.message));
});

test('the connection goes to the address that was checked, whatever the name resolves to later; a redirect is returned, not followed; a large answer is cut off', async (t) => {
  const server = createServer((request, response) => {
    if (request.url === '/redirect') return response.writeHead(302, { location: 'http://169.254.169.254/' }).end();
    if (request.url === '/large') return response.end(Buffer.alloc(4096, 'x'));
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk));
    request.on('end', () => response.writeHead(200, { 'content-type': 'text/plain' }).end(`${request.method} ${body}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  let lookups = 0;
  // The first lookup answers loopback; any later one would answer an address that is never fetched.
  const rules = { allowPrivateNetwork: true, maxBytes: 1024, resolve: async () => (lookups++ === 0 ? [{ address: '127.0.0.1', family: 4 as const }] : [{ address: '169.254.169.254', family: 4 as const }]) };
  const answer = await pinnedRequest(`http://localhost:${port}/token`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: Buffer.from('code=1') }, rules);
  assert.deepEqual([answer.status, answer.body.toString()], [200, 'POST code=1']);
  assert.equal(lookups, 1, 'resolved once: the socket went to the checked address');
  const redirect = await pinnedRequest(`http://localhost:${port}/redirect`, { method: 'GET', headers: {} }, { ...rules, resolve: async () => [{ address: '127.0.0.1', family: 4 as const }] });
  assert.equal(redirect.status, 302);
  await assert.rejects(pinnedRequest(`http://localhost:${port}/large`, { method: 'GET', headers: {} }, { ...rules, resolve: async () => [{ address: '127.0.0.1', family: 4 as const }] }), /more than 1024 bytes/);
});
