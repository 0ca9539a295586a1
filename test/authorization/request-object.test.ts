/**
 * Signed request objects (JAR, RFC 9101) over HTTP at /par, beyond test/endpoints/par.test.ts: keys
 * at a client's jwks_uri (fetched, refreshed on rotation, rate-limited, fail closed), `alg: none`
 * with a signature, the key-confusion and header-key attacks of RFC 8725, malformed serializations,
 * and the error_description of a missing claim. The verifier is src/authorization/request-object.ts.
 */
import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from './fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { keyServer } from '../helpers/key-server.ts';

const typ = 'oauth-authz-req+jwt';

/** A protected header: alg, and whatever else a test puts in it. */
type Header = { alg: string } & Record<string, unknown>;

/** A JWKS answer, cacheable for `maxAge` seconds. */
function serveKeys(response: ServerResponse, keys: Record<string, unknown>[], maxAge = 3600): void {
  response.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': `max-age=${maxAge}` });
  response.end(JSON.stringify({ keys }));
}

async function es256(kid: string): Promise<{ privateKey: CryptoKey; jwk: Record<string, unknown> }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256' } };
}

/** A client that authenticates with a secret and publishes its request-object keys at `jwks_uri` (RFC 7591 §2). */
function jwksUriClient(client_id: string, jwks_uri: string): Record<string, unknown> {
  return {
    client_id,
    kind: 'app',
    token_endpoint_auth_method: 'client_secret_basic',
    jwks_uri,
    grant_types: ['authorization_code'],
    redirect_uris: [webRedirect],
    scope: 'openid order:create',
  };
}

/**
 * A request object with sensible claims (as f.requestObject builds them) for any client, under any
 * protected header: the tests below need headers the fixture's helper does not set (jwk, jku, x5u).
 */
async function sign(f: CodeFlowFixture, client: string, header: Header, key: CryptoKey | Uint8Array, claims: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(f.clock.now() / 1000);
  const payload = { iss: client, aud: f.issuer, nbf: now, iat: now, exp: now + 300, ...f.request(client), ...claims };
  return new SignJWT(payload).setProtectedHeader({ typ, ...header }).sign(key);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function assertPushed(response: LightMyRequestResponse, what = ''): void {
  assert.equal(response.statusCode, 201, `${what}: ${response.body}`);
}

/** A 400 invalid_request_object (RFC 9101 §6.3) whose description matches `description`. */
function assertRefused(response: LightMyRequestResponse, description: RegExp | string, what = ''): void {
  const body = assertOAuthError(response, 400, 'invalid_request_object', what);
  if (typeof description === 'string') assert.equal(body.error_description, description, what);
  else assert.match(String(body.error_description), description, what);
}

describe('request objects of a client registered with jwks_uri', () => {
  test('are verified with the key served at the jwks_uri, and a rotated key is picked up by one refresh', async (t) => {
    const first = await es256('k1');
    const second = await es256('k2');
    let published = [first.jwk];
    const keys = await keyServer(t, (_request, response) => serveKeys(response, published));
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [jwksUriClient('remote-jar', keys.url)] });
    const before = keys.requests.length;

    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1' }, first.privateKey) }), 'k1');
    assert.equal(keys.requests.length - before, 1, 'the set is fetched on first use');
    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1' }, first.privateKey) }), 'k1 again');
    assert.equal(keys.requests.length - before, 1, 'and then held (max-age=3600)');

    // The client rotates: its jwks_uri now serves only k2. Nothing is changed at Clearance; once
    // the refresh limit (60 s per client) has passed, the unknown kid fetches the set once more.
    published = [second.jwk];
    f.clock.advance(61_000);
    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k2' }, second.privateKey) }), 'k2 after rotation');
    assert.equal(keys.requests.length - before, 2, 'exactly one refresh for the new kid');

    // The withdrawn key no longer verifies, and asking for it again within the minute fetches nothing.
    assertRefused(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1' }, first.privateKey) }), /no registered key of the client verifies ES256 with that kid/, 'withdrawn k1');
    assert.equal(keys.requests.length - before, 2);
  });

  test('an unknown kid fetches the set at most once per rate-limit window and is refused with invalid_request_object', async (t) => {
    const known = await es256('k1');
    const stranger = await es256('stranger');
    const keys = await keyServer(t, (_request, response) => serveKeys(response, [known.jwk]));
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [jwksUriClient('remote-jar', keys.url)] });
    const before = keys.requests.length;
    const invented = async (kid: string) => f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid }, stranger.privateKey) });

    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1' }, known.privateKey) }), 'the real key');
    assert.equal(keys.requests.length - before, 1);
    // Within the minute of that fetch, an invented kid costs no fetch at all.
    assertRefused(await invented('invented-0'), /with that kid/, 'invented-0');
    assert.equal(keys.requests.length - before, 1, 'no refresh within the window of the first fetch');

    // After the window: five invented kids in a row, one fetch between them (RFC 8725 §3.10: a
    // header must not make the server fetch at the sender's command, here as often as it likes).
    f.clock.advance(61_000);
    for (let i = 1; i <= 5; i++) assertRefused(await invented(`invented-${i}`), /no registered key of the client verifies ES256 with that kid/, `invented-${i}`);
    assert.equal(keys.requests.length - before, 2, 'five unknown kids in one window: one extra fetch');
    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1' }, known.privateKey) }), 'the real key still works');
    assert.equal(keys.requests.length - before, 2);

    f.clock.advance(61_000);
    assertRefused(await invented('invented-again'), /with that kid/, 'a window later');
    assert.equal(keys.requests.length - before, 3, 'a window later, one more');
  });

  test('a key set that cannot be fetched refuses the request object with invalid_request_object, never a 5xx', async (t) => {
    const known = await es256('k1');
    let up = true;
    const keys = await keyServer(t, (_request, response) => {
      if (up) return serveKeys(response, [known.jwk], 60);
      response.writeHead(503).end();
    });
    // A jwks_uri nothing listens on: a port taken and let go again.
    const gone = await new Promise<string>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(`http://127.0.0.1:${port}/jwks`));
      });
    });
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [jwksUriClient('remote-jar', keys.url), jwksUriClient('gone-jar', gone)] });
    const request = (client: string) => sign(f, client, { alg: 'ES256', kid: 'k1' }, known.privateKey);

    assertPushed(await f.par('remote-jar', { request: await request('remote-jar') }), 'while the set is served');
    // The set goes stale (max-age=60) and its host answers 503: fail closed, not the old keys forever.
    up = false;
    f.clock.advance(61_000);
    assertRefused(await f.par('remote-jar', { request: await request('remote-jar') }), "the client's keys at its jwks_uri are not available", 'a 503 after expiry');
    assertRefused(await f.par('gone-jar', { request: await request('gone-jar') }), "the client's keys at its jwks_uri are not available", 'connection refused');
  });
});

describe('request objects that try to go unsigned or to choose their own key', () => {
  test('alg none in any letter case is refused by the alg check even with a signature segment', async (t) => {
    const f = await codeFlowFixture(t);
    const valid = await f.requestObject({});
    assertPushed(await f.par('par-app', { request: valid }), 'the signed original');
    // The original's payload and (non-empty) signature under a header saying none: the compact
    // decoder lets it through (three canonical segments), so it is the alg check that answers.
    const [, payload, signature] = valid.split('.');
    for (const alg of ['none', 'NONE', 'None', 'nOnE']) {
      const request = `${b64({ alg, typ, kid: 'par-1' })}.${payload}.${signature}`;
      // RFC 8725 §3.1, RFC 9101 §10.1: an unsecured request object MUST NOT be accepted, whatever the case of `none`.
      assertRefused(await f.par('par-app', { request }), 'the request object must be signed (alg none is refused)', alg);
    }
  });

  test("HS256 keyed with the client's public key is refused: an asymmetric key never serves as an HMAC secret", async (t) => {
    const f = await codeFlowFixture(t);
    assertPushed(await f.par('par-app', { request: await sign(f, 'par-app', { alg: 'ES256', kid: 'par-1' }, f.parKey) }), 'ES256 with the registered key');
    // What an attacker can read: par-app's public key, as registered (with kid and alg), as bare JWK, and as PEM.
    const { d: _, ...bare } = await exportJWK(f.parKey);
    const registered = { ...bare, kid: 'par-1', alg: 'ES256' };
    const pem = createPublicKey({ key: bare as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const secrets: [string, Uint8Array][] = [
      ['registered JWK', Buffer.from(JSON.stringify(registered))],
      ['bare JWK', Buffer.from(JSON.stringify(bare))],
      ['PEM', Buffer.from(pem)],
    ];
    for (const [what, secret] of secrets) {
      for (const header of [{ alg: 'HS256', kid: 'par-1' }, { alg: 'HS256' }]) {
        // RFC 8725 §3.1 (key confusion), RFC 9101 §6.1: alg MUST be the client's registered asymmetric one.
        assertRefused(await f.par('par-app', { request: await sign(f, 'par-app', header, secret) }), /request object alg HS256 is not allowed/, `${what} ${JSON.stringify(header)}`);
      }
    }
  });

  test('an embedded jwk header is ignored: only the registered key verifies', async (t) => {
    const f = await codeFlowFixture(t);
    const attacker = await es256('attacker-1');
    // The registered key verifies even with the attacker's jwk alongside: the header is not what is used.
    assertPushed(await f.par('par-app', { request: await sign(f, 'par-app', { alg: 'ES256', kid: 'par-1', jwk: attacker.jwk }, f.parKey) }), 'registered key, foreign jwk header');
    for (const header of [{ alg: 'ES256', jwk: attacker.jwk }, { alg: 'ES256', kid: 'par-1', jwk: attacker.jwk }]) {
      // RFC 8725 §3.10, RFC 9101 §6.1: the signature MUST be validated with the key registered for the client_id.
      assertRefused(
        await f.par('par-app', { request: await sign(f, 'par-app', header, attacker.privateKey) }),
        "the request object signature does not verify with any of the client's registered keys",
        JSON.stringify(Object.keys(header)),
      );
    }
  });

  test('jku and x5u headers are never fetched, for a client with jwks or with jwks_uri', async (t) => {
    const attacker = await es256('attacker-1');
    const evil = await keyServer(t, (_request, response) => serveKeys(response, [attacker.jwk]));
    const clientKey = await es256('k1');
    const own = await keyServer(t, (_request, response) => serveKeys(response, [clientKey.jwk]));
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [jwksUriClient('remote-jar', own.url)] });

    // The registered keys verify with jku and x5u present: the headers are ignored, not a reason to refuse.
    assertPushed(await f.par('par-app', { request: await sign(f, 'par-app', { alg: 'ES256', kid: 'par-1', jku: evil.url, x5u: evil.url }, f.parKey) }), 'par-app, own key');
    assertPushed(await f.par('remote-jar', { request: await sign(f, 'remote-jar', { alg: 'ES256', kid: 'k1', jku: evil.url }, clientKey.privateKey) }), 'remote-jar, own key');

    const attempts: [string, Header][] = [
      ['jku with its kid', { alg: 'ES256', kid: 'attacker-1', jku: evil.url }],
      ['jku without kid', { alg: 'ES256', jku: evil.url }],
      ['x5u with its kid', { alg: 'ES256', kid: 'attacker-1', x5u: evil.url }],
    ];
    for (const client of ['par-app', 'remote-jar']) {
      for (const [what, header] of attempts) {
        // RFC 8725 §3.10, RFC 9101 §6.1: keys come from the client's registration only.
        assertRefused(await f.par(client, { request: await sign(f, client, header, attacker.privateKey) }), /no registered key of the client verifies|does not verify with any of the client's registered keys/, `${client} ${what}`);
      }
    }
    // RFC 8725 §3.10: a URL in a received header is never dereferenced (no SSRF, no attacker-chosen keys).
    assert.equal(evil.requests.length, 0, 'the jku/x5u URL was never fetched');
    assert.ok(own.requests.length >= 1, "the client's own jwks_uri is what was fetched");
  });
});

describe('request objects that are not one compact JWS', () => {
  test('the JSON serialization, a fourth segment and non-base64url characters are refused with invalid_request_object', async (t) => {
    const f = await codeFlowFixture(t);
    // A signature with a '-' or '_' in it (most have one; ECDSA signatures are random), so that
    // '+' and '/' carry the very same bytes a lenient decoder would accept.
    let valid = await f.requestObject({});
    for (let i = 0; i < 50 && !/[-_]/.test(valid.split('.')[2]!); i++) valid = await f.requestObject({});
    const [h, p, s] = valid.split('.') as [string, string, string];
    assert.match(s, /[-_]/);
    assertPushed(await f.par('par-app', { request: valid }), 'the compact original');
    const padded = (segment: string) => segment + '='.repeat((4 - (segment.length % 4)) % 4);
    assert.notEqual(padded(s), s, 'a 64-byte signature has padding in base64');

    const cases: [string, string][] = [
      ['flattened JSON serialization', JSON.stringify({ protected: h, payload: p, signature: s })],
      ['general JSON serialization', JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] })],
      ['a fourth segment', `${valid}.${s}`],
      ['an empty fourth segment', `${valid}.`],
      ["'+' and '/' (base64, not base64url)", `${h}.${p}.${s.replaceAll('-', '+').replaceAll('_', '/')}`],
      ["'=' padding", `${padded(h)}.${padded(p)}.${padded(s)}`],
    ];
    for (const [what, request] of cases) {
      // RFC 7519 §1 / RFC 7515 §7.1 and §2: a JWT is a compact JWS of unpadded base64url; RFC 9101 §6.3.
      assertRefused(await f.par('par-app', { request }), 'the request object must be a signed JWT in compact serialization', what);
    }
  });
});

describe('the error_description of a refused request object', () => {
  test('names a missing claim as missing, and only an nbf in the future as not yet valid', async (t) => {
    const f = await codeFlowFixture(t);
    const now = Math.floor(f.clock.now() / 1000);
    assertPushed(await f.par('par-app', { request: await f.requestObject({}) }), 'all claims present');
    const cases: [string, Record<string, unknown>, string][] = [
      // FAPI 2.0 Message Signing §5.3.1: nbf and exp are required.
      ['missing nbf', { nbf: undefined }, 'the request object must contain nbf'],
      ['missing exp', { exp: undefined }, 'the request object must contain exp'],
      ['missing iss', { iss: undefined }, 'the request object must contain iss'],
      ['nbf in the future', { nbf: now + 600, exp: now + 900 }, 'the request object is not yet valid (nbf)'],
      ['nbf not a number', { nbf: String(now) }, 'the request object nbf claim is invalid'],
    ];
    for (const [what, claims, description] of cases) {
      assertRefused(await f.par('par-app', { request: await f.requestObject(claims) }), description, what);
    }
  });
});
