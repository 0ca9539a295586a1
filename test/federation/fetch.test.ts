import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { fetchJson, type Resolver } from '../../src/federation/fetch.ts';

/** A local HTTP server on 127.0.0.1 (the only place these tests ever connect to) that records its requests. */
async function localServer(t: TestContext, handle: (request: IncomingMessage, response: ServerResponse) => void) {
  const requests: { url: string; host: string }[] = [];
  const server = createServer((request, response) => {
    requests.push({ url: request.url ?? '', host: request.headers.host ?? '' });
    handle(request, response);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, requests };
}

const jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' }] };

/** A resolver that answers from a table and counts its look-ups; it never asks the system's DNS. */
function resolver(table: Record<string, string[]>): Resolver & { calls: string[] } {
  const calls: string[] = [];
  const resolve = async (hostname: string) => {
    calls.push(hostname);
    return (table[hostname] ?? []).map((address) => ({ address, family: address.includes(':') ? (6 as const) : (4 as const) }));
  };
  return Object.assign(resolve, { calls });
}

describe('fetching a partner document (SSRF rules)', () => {
  test('refuses a host name that resolves to a private, loopback, link-local or metadata address', async () => {
    const resolve = resolver({
      'rfc1918.partner.example': ['10.20.30.40'],
      'loopback.partner.example': ['127.0.0.1'],
      'linklocal.partner.example': ['169.254.10.1'],
      'metadata.partner.example': ['169.254.169.254'],
      'mapped.partner.example': ['::ffff:192.168.1.10'],
      'ula.partner.example': ['fd00::1'],
      'cgnat.partner.example': ['100.64.0.7'],
      // One private address among public ones is enough to refuse: which one a connection uses is not ours to rely on.
      'mixed.partner.example': ['8.8.8.8', '10.0.0.8'],
    });
    const cases: [string, RegExp][] = [
      ['rfc1918', /rfc1918\.partner\.example resolves to 10\.20\.30\.40, a private network \(RFC 1918\) address; the partner profile does not allow the private network/],
      ['loopback', /resolves to 127\.0\.0\.1, a loopback address/],
      ['linklocal', /resolves to 169\.254\.10\.1, a link-local address/],
      ['metadata', /resolves to 169\.254\.169\.254, a cloud metadata service address, which is never fetched/],
      ['mapped', /resolves to ::ffff:192\.168\.1\.10, a private network \(RFC 1918\) \(IPv4-mapped IPv6\) address/],
      ['ula', /resolves to fd00::1, a unique local/],
      ['cgnat', /resolves to 100\.64\.0\.7, a shared address space/],
      ['mixed', /resolves to 10\.0\.0\.8/],
    ];
    for (const [name, message] of cases) {
      await assert.rejects(fetchJson(`https://${name}.partner.example/jwks`, { allowPrivateNetwork: false, resolve }), message, name);
    }
    assert.equal(resolve.calls.length, cases.length, 'each name resolved once');
  });

  test('refuses private and special address literals, and the metadata service even when the private network is allowed', async () => {
    await assert.rejects(fetchJson('https://10.1.1.1/jwks', { allowPrivateNetwork: false }), /^FetchError: 10\.1\.1\.1, a private network/);
    await assert.rejects(fetchJson('https://[::1]/jwks', { allowPrivateNetwork: false }), /::1, a loopback address/);
    await assert.rejects(fetchJson('https://[fe80::1]/jwks', { allowPrivateNetwork: false }), /fe80::1, a link-local address/);
    await assert.rejects(fetchJson('https://[::ffff:7f00:1]/jwks', { allowPrivateNetwork: false }), /a loopback \(IPv4-mapped IPv6\) address/);
    await assert.rejects(fetchJson('https://169.254.169.254/latest/meta-data', { allowPrivateNetwork: true }), /cloud metadata service address, which is never fetched/);
    await assert.rejects(fetchJson('https://0.0.0.0/jwks', { allowPrivateNetwork: true }), /unspecified/);
  });

  test('refuses http except to a loopback host with the private network allowed, and URLs with credentials', async () => {
    await assert.rejects(fetchJson('http://keys.partner.example/jwks', { allowPrivateNetwork: true }), /is not https \(http is allowed only to a loopback host\)/);
    await assert.rejects(fetchJson('http://127.0.0.1:9/jwks', { allowPrivateNetwork: false }), /http to a loopback host needs allow_private_network/);
    // A name under .localhost is not a loopback host (src/jose/loopback.ts): DNS may answer for it.
    await assert.rejects(fetchJson('http://keys.localhost/jwks', { allowPrivateNetwork: true }), /is not https \(http is allowed only to a loopback host\)/);
    await assert.rejects(fetchJson('ftp://keys.partner.example/jwks', { allowPrivateNetwork: true }), /is not https/);
    await assert.rejects(fetchJson('https://user:pass@keys.partner.example/jwks', { allowPrivateNetwork: false }), /carries credentials/);
  });

  test('a profile pointing at 127.0.0.1 is refused without allow_private_network and works with it', async (t) => {
    const server = await localServer(t, (_request, response) => {
      response.setHeader('content-type', 'application/jwk-set+json');
      response.end(JSON.stringify(jwks));
    });
    const url = `http://127.0.0.1:${server.port}/jwks`;
    await assert.rejects(fetchJson(url, { allowPrivateNetwork: false }), /allow_private_network/);
    assert.equal(server.requests.length, 0, 'refused before connecting');
    assert.deepEqual(await fetchJson(url, { allowPrivateNetwork: true }), jwks);
    assert.equal(server.requests.length, 1);
  });

  test('connects to the address it checked, without a second look-up (DNS rebinding)', async (t) => {
    const server = await localServer(t, (_request, response) => response.end(JSON.stringify(jwks)));
    let connections = 0;
    server.server.on('connection', () => connections++);
    // A name no DNS knows: only our resolver's answer can lead to the server. The URL is https
    // (http goes only to loopback names), so the connection is made and the TLS handshake then
    // fails against this plain HTTP server; what matters is where the connection went.
    const resolve = resolver({ 'keys.partner.test': ['127.0.0.1'] });
    await assert.rejects(
      fetchJson(`https://keys.partner.test:${server.port}/jwks`, { allowPrivateNetwork: true, resolve, timeoutMs: 2000 }),
      (error: Error) => !/ENOTFOUND|EAI_AGAIN/.test(error.message),
    );
    assert.deepEqual(resolve.calls, ['keys.partner.test'], 'resolved once, by us');
    assert.equal(connections, 1, 'connected to the checked address');
  });

  test('does not follow redirects', async (t) => {
    const server = await localServer(t, (request, response) => {
      if (request.url === '/jwks') {
        response.statusCode = 302;
        response.setHeader('location', 'http://169.254.169.254/latest/meta-data');
        response.end();
      } else {
        response.end(JSON.stringify(jwks));
      }
    });
    await assert.rejects(
      fetchJson(`http://127.0.0.1:${server.port}/jwks`, { allowPrivateNetwork: true }),
      /answered 302, a redirect to http:\/\/169\.254\.169\.254\/latest\/meta-data; redirects are not followed/,
    );
    assert.deepEqual(server.requests.map((r) => r.url), ['/jwks']);
  });

  test('refuses a response over the size limit, declared or streamed', async (t) => {
    const big = JSON.stringify({ keys: [], padding: 'x'.repeat(4096) });
    const server = await localServer(t, (request, response) => {
      if (request.url === '/chunked') {
        response.write(big.slice(0, 2000));
        response.end(big.slice(2000));
      } else {
        response.setHeader('content-length', Buffer.byteLength(big));
        response.end(big);
      }
    });
    const rules = { allowPrivateNetwork: true, maxBytes: 1024 };
    await assert.rejects(fetchJson(`http://127.0.0.1:${server.port}/declared`, rules), /sent \d+ bytes \(limit 1024\)/);
    await assert.rejects(fetchJson(`http://127.0.0.1:${server.port}/chunked`, rules), /sent more than 1024 bytes/);
  });

  test('gives up on a server that does not answer in time', async (t) => {
    const server = await localServer(t, () => {
      // never answers
    });
    const started = Date.now();
    await assert.rejects(fetchJson(`http://127.0.0.1:${server.port}/jwks`, { allowPrivateNetwork: true, timeoutMs: 200 }), /did not answer within 200 ms/);
    assert.ok(Date.now() - started < 2000);
  });

  test('refuses an error status and a body that is not JSON', async (t) => {
    const server = await localServer(t, (request, response) => {
      if (request.url === '/missing') response.statusCode = 404;
      response.end('<html>not json</html>');
    });
    await assert.rejects(fetchJson(`http://127.0.0.1:${server.port}/missing`, { allowPrivateNetwork: true }), /answered HTTP 404/);
    await assert.rejects(fetchJson(`http://127.0.0.1:${server.port}/html`, { allowPrivateNetwork: true }), /did not return JSON/);
  });
});
