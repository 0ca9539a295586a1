import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import * as client from 'openid-client';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { ClientKeySets } from '../../../src/clients/authentication/remote-keys.ts';
import { ManualClock } from '../../../src/clock.ts';
import { readClientMetadata } from '../../../src/clients/metadata.ts';
import type { Client } from '../../../src/clients/store.ts';
import { Validator } from '../../../src/validation.ts';
import { assertOAuthError, protocolFixture, ordersApi } from '../../endpoints/fixture.ts';
import { keyServer } from '../../helpers/key-server.ts';
import { startTestServer } from '../../helpers/server.ts';

const insecure = { execute: [client.allowInsecureRequests] }; // the test issuer is http on loopback

async function es256(kid: string): Promise<{ privateKey: CryptoKey; jwk: Record<string, unknown> }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256' } };
}

function jwksClient(uri: string): Client {
  return {
    metadata: { client_id: 'remote-1', kind: 'service', token_endpoint_auth_method: 'private_key_jwt', jwks_uri: uri, grant_types: ['client_credentials'] },
    secretHash: null,
    disabledAt: null,
    tokensValidAfter: null,
  };
}

describe('jwks_uri: a client publishes its keys and rotates them without a change at Clearance', () => {
  test('a private_key_jwt client (openid-client) rotates its key at its jwks_uri and keeps authenticating', async (t) => {
    const first = await es256('k1');
    const second = await es256('k2');
    let published = [first.jwk];
    const keys = await keyServer(t, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=3600' });
      response.end(JSON.stringify({ keys: published }));
    });
    const server = await startTestServer({ t });
    const ctx = server.running.ctx;
    // Development mode: a jwks_uri on loopback over http is allowed, as partners' allow_private_network.
    // The refresh limit is shortened from 60 s so the test need not wait a minute between the two keys.
    ctx.clientAuthentication.clientKeys = new ClientKeySets(ctx.clock, { allowPrivateNetwork: true, minRefreshMs: 300 });
    await server.apply({
      resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
      clients: [{ client_id: 'algo-remote', kind: 'agent', token_endpoint_auth_method: 'private_key_jwt', jwks_uri: keys.url, grant_types: ['client_credentials'], scope: 'order:create' }],
    });

    const before = await client.discovery(new URL(server.issuer), 'algo-remote', undefined, client.PrivateKeyJwt({ key: first.privateKey, kid: 'k1' }), insecure);
    assert.ok((await client.clientCredentialsGrant(before, { scope: 'order:create', resource: ordersApi })).access_token);
    assert.ok((await client.clientCredentialsGrant(before, { scope: 'order:create', resource: ordersApi })).access_token);
    assert.equal(keys.requests.length, 1, 'the set is fetched once and cached (max-age=3600)');

    // The client rotates: it publishes the new key (and, later, withdraws the old one). Nothing changes at Clearance.
    published = [first.jwk, second.jwk];
    await new Promise((resolve) => setTimeout(resolve, 350));
    const after = await client.discovery(new URL(server.issuer), 'algo-remote', undefined, client.PrivateKeyJwt({ key: second.privateKey, kid: 'k2' }), insecure);
    assert.ok((await client.clientCredentialsGrant(after, { scope: 'order:create', resource: ordersApi })).access_token, 'the unknown kid fetched the set again');
    assert.equal(keys.requests.length, 2);
    published = [second.jwk];
    assert.ok((await client.clientCredentialsGrant(after, { scope: 'order:create', resource: ordersApi })).access_token);
  });

  test('an unknown kid fetches the set at most once per minute per client, and a refusal is invalid_client', async (t) => {
    const first = await es256('k1');
    const keys = await keyServer(t, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ keys: [first.jwk] }));
    });
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply({ clients: [{ client_id: 'remote-2', kind: 'service', token_endpoint_auth_method: 'private_key_jwt', jwks_uri: keys.url, grant_types: ['client_credentials'], scope: 'order:create' }] });
    const assertion = (key: CryptoKey, kid: string) => {
      const now = Math.floor(f.clock.now() / 1000);
      return new SignJWT({ iss: 'remote-2', sub: 'remote-2', aud: f.issuer, iat: now, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
    };
    const token = async (jwt: string) =>
      f.token({ form: { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt, resource: ordersApi } });

    assert.equal((await token(await assertion(first.privateKey, 'k1'))).statusCode, 200);
    assert.equal(keys.requests.length, 1);
    const stranger = await es256('invented');
    f.clock.advance(61_000);
    for (let i = 0; i < 5; i++) assertOAuthError(await token(await assertion(stranger.privateKey, `invented-${i}`)), 401, 'invalid_client');
    assert.equal(keys.requests.length, 2, 'five unknown kids in a minute: one fetch');
    assert.match((await f.auditEvents('client.auth_failed')).at(-1)!.decision!.reasons[0]!, /is not among client remote-2's keys/);
    f.clock.advance(61_000);
    assertOAuthError(await token(await assertion(stranger.privateKey, 'invented-again')), 401, 'invalid_client');
    assert.equal(keys.requests.length, 3, 'a minute later, one more');
    assert.equal((await token(await assertion(first.privateKey, 'k1'))).statusCode, 200, 'the real key still works');
  });

  test('an oversized, slow, non-JSON or private-key set is refused with invalid_client, never a 5xx', async (t) => {
    let mode: 'huge' | 'slow' | 'html' | 'private' = 'huge';
    const keys = await keyServer(t, (_request, response) => {
      if (mode === 'slow') return void setTimeout(() => response.end('{"keys":[]}'), 4000).unref();
      if (mode === 'html') return void response.end('<html>');
      if (mode === 'private') return void response.end(JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' }] }));
      response.end(JSON.stringify({ keys: [], padding: 'x'.repeat(70 * 1024) }));
    });
    const f = await protocolFixture(t, { risk: 'off' });
    await f.apply({ clients: [{ client_id: 'remote-3', kind: 'service', token_endpoint_auth_method: 'private_key_jwt', jwks_uri: keys.url, grant_types: ['client_credentials'], scope: 'order:create' }] });
    f.ctx.clientAuthentication.clientKeys = new ClientKeySets(f.clock, { allowPrivateNetwork: true, timeoutMs: 500 });
    const { privateKey } = await es256('k1');
    for (const each of ['huge', 'slow', 'html', 'private'] as const) {
      mode = each;
      f.clock.advance(61_000);
      const now = Math.floor(f.clock.now() / 1000);
      const jwt = await new SignJWT({ iss: 'remote-3', sub: 'remote-3', aud: f.issuer, iat: now, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);
      const response = await f.token({ form: { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt, resource: ordersApi } });
      assertOAuthError(response, 401, 'invalid_client', each);
      const reason = (await f.auditEvents('client.auth_failed')).at(-1)!.decision!.reasons[0]!;
      assert.match(reason, { huge: /more than 65536 bytes/, slow: /did not answer within 500 ms/, html: /did not return JSON/, private: /private member "d"/ }[each], each);
    }
  });
});

describe('ClientKeySets', () => {
  test('honours max-age within bounds and revalidates with If-None-Match (a 304 keeps the keys)', async (t) => {
    const { jwk } = await es256('k1');
    const keys = await keyServer(t, (request, response) => {
      if (request.headers['if-none-match'] === '"v1"') return void response.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=120' }).end();
      response.writeHead(200, { etag: '"v1"', 'cache-control': 'public, max-age=120' });
      response.end(JSON.stringify({ keys: [jwk] }));
    });
    const clock = new ManualClock();
    const sets = new ClientKeySets(clock, { allowPrivateNetwork: true });
    const c = jwksClient(keys.url);
    const one = await sets.get(c);
    assert.ok('keys' in one && one.keys.length === 1 && one.fetched);
    clock.advance(119_000);
    assert.ok('keys' in (await sets.get(c)));
    assert.equal(keys.requests.length, 1, 'fresh for max-age');
    clock.advance(2000);
    const revalidated = await sets.get(c);
    assert.ok('keys' in revalidated && revalidated.keys[0] === (one as { keys: unknown[] }).keys[0], 'the same imported key object');
    assert.equal(keys.requests.length, 2);
    assert.equal(keys.requests[1]!.headers['if-none-match'], '"v1"');
  });

  test('max-age is bounded: no-store waits at least a minute, a year at most a day', async (t) => {
    const { jwk } = await es256('k1');
    let cacheControl = 'no-store';
    const keys = await keyServer(t, (_request, response) => response.writeHead(200, { 'cache-control': cacheControl }).end(JSON.stringify({ keys: [jwk] })));
    const clock = new ManualClock();
    const sets = new ClientKeySets(clock, { allowPrivateNetwork: true });
    const c = jwksClient(keys.url);
    await sets.get(c);
    clock.advance(59_000);
    await sets.get(c);
    assert.equal(keys.requests.length, 1);
    clock.advance(2000);
    cacheControl = 'max-age=31536000';
    await sets.get(c);
    assert.equal(keys.requests.length, 2);
    clock.advance(86_400_000 - 1000);
    await sets.get(c);
    assert.equal(keys.requests.length, 2);
    clock.advance(2000);
    await sets.get(c);
    assert.equal(keys.requests.length, 3);
  });

  test('a private address is refused unless the private network is allowed (production default)', async (t) => {
    const { jwk } = await es256('k1');
    const keys = await keyServer(t, (_request, response) => response.end(JSON.stringify({ keys: [jwk] })));
    const sets = new ClientKeySets(new ManualClock(), { allowPrivateNetwork: false });
    const result = await sets.get(jwksClient(keys.url));
    assert.ok('error' in result);
    assert.match(result.error, /http is allowed only|allow_private_network|loopback/);
    const resolved = new ClientKeySets(new ManualClock(), { allowPrivateNetwork: false, resolve: async () => [{ address: '10.1.2.3', family: 4 }] });
    const internal = await resolved.get(jwksClient('https://keys.client.example/jwks'));
    assert.ok('error' in internal);
    assert.match(internal.error, /10\.1\.2\.3, a private network/);
  });

  test('metadata: a client with only jwks_uri is valid; http on loopback only in development mode', () => {
    const input = { client_id: 'remote', kind: 'service', token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'http://127.0.0.1:9999/jwks', grant_types: ['client_credentials'] };
    assert.ok(readClientMetadata(new Validator(), 'c', input, { mode: 'development' }));
    const v = new Validator();
    assert.equal(readClientMetadata(v, 'c', input, { mode: 'production' }), undefined);
    assert.deepEqual(v.problems.map((p) => p.path), ['c.jwks_uri']);
    assert.ok(readClientMetadata(new Validator(), 'c', { ...input, jwks_uri: 'https://keys.client.example/jwks' }, { mode: 'production' }));
  });
});
