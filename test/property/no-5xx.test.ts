/**
 * Property tests (DESIGN §8 layer 6): whatever a caller sends to the OAuth endpoints — random
 * parameter names and values, repeats, huge and non-ASCII values, any content type, any
 * Authorization header, from any address — the answer is never a 5xx, and every 4xx is registered
 * error JSON that is never cached (SECURITY-CHECKLIST: "every 4xx is no-store JSON; there is never
 * a 5xx"). Bounded runs with fixed seeds, so a failure reproduces.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { assertErrorShape, basicAuthorization, clearingApi, ordersApi, protocolFixture, venueApi, type ProtocolFixture } from '../endpoints/fixture.ts';

const numRuns = 300;

/** Checks the invariant on one response; the label names the request for the counterexample. */
function assertInvariant(response: LightMyRequestResponse, label: string): void {
  assert.ok(response.statusCode < 500, `never a 5xx: ${label} → ${response.statusCode} ${response.body.slice(0, 300)}`);
  if (response.statusCode >= 400) {
    // JSON, no-store, an error code, and RFC 6749 §5.2's character set for error and error_description.
    assertErrorShape(response, label);
    assert.match(response.json().error as string, /^[a-z_]+$/, `a registered-looking code: ${label}`);
    assert.ok(response.body.length < 2_000, `an error body stays short whatever was sent: ${label}`);
  }
  assert.equal(response.headers['cache-control'] === undefined, false, `every response says how to cache: ${label}`);
}

const vocabulary = [
  'grant_type', 'scope', 'resource', 'audience', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type',
  'token', 'token_type_hint', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'username', 'password',
  'subject_token', 'subject_token_type', 'actor_token', 'requested_token_type', 'request_uri', 'authorization_details',
  'access_token', 'state', 'nonce', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
];

/** Header-safe text: visible ASCII, space, tab and Latin-1 (what HTTP allows in a field value). */
const headerText = (maxLength: number) =>
  fc.string({
    maxLength,
    unit: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
      { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)) },
      { weight: 1, arbitrary: fc.constant('\t') },
    ),
  });

const huge = fc
  .tuple(fc.constantFrom('a', '%', '%zz', 'é', '\u0000', '🙂', '.', ' ', '+', 'eyJ'), fc.integer({ min: 1_000, max: 25_000 }))
  .map(([unit, count]) => unit.repeat(count));

const ipAddress = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('127.0.0.1', '::1', '::ffff:10.0.0.1', 'not-an-ip'));

interface World {
  f: ProtocolFixture;
  validBasic: string;
  validToken: string;
  otherToken: string;
  initialAccessToken: string;
}

async function world(t: Parameters<typeof protocolFixture>[0]): Promise<World> {
  const f = await protocolFixture(t);
  return {
    f,
    validBasic: f.basic('broker-1'),
    validToken: await f.accessToken('broker-1', { resource: ordersApi }),
    otherToken: await f.accessToken('orders-gateway', { resource: clearingApi }),
    initialAccessToken: await f.initialAccessToken({ scope: 'order:create order:cancel', uses: 1_000_000 }),
  };
}

/** Parameters of a well-formed request to each endpoint: random requests start from a random part of these. */
function baseParameters(w: World, path: string): [string, string][] {
  switch (path) {
    case '/token':
      return [['grant_type', 'client_credentials'], ['resource', ordersApi], ['scope', 'order:create']];
    case '/introspect':
      return [['token', w.validToken]];
    case '/revoke':
      return [['token', w.validToken], ['token_type_hint', 'access_token']];
    default:
      return [];
  }
}

function arbitraries(w: World, path: string) {
  const name = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...vocabulary) },
    { weight: 2, arbitrary: fc.string({ maxLength: 24 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12, unit: 'binary' }) },
  );
  const value = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        'client_credentials', 'password', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange',
        ordersApi, clearingApi, venueApi, `${ordersApi}#x`, 'https://unknown.example.com', '/relative', 'urn:x',
        'order:create', 'order:create order:cancel', 'order:amend', 'market:read', 'admin:write', ' ', 'a  b',
        'broker-1', 'broker-2', 'oms-service', 'nobody', w.f.secrets['broker-1']!, w.f.secrets['broker-2']!,
        'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', 'access_token', 'refresh_token', 'id_token',
        w.validToken, w.otherToken, `${w.validToken}x`, 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'eyJhbGciOiJub25lIn0.e30.sig',
        '-----BEGIN PRIVATE KEY-----', '', '\u0000', '%', '🙂', 'null', '{}', '[]',
      ),
    },
    { weight: 3, arbitrary: fc.string({ maxLength: 64 }) },
    { weight: 2, arbitrary: fc.string({ maxLength: 32, unit: 'binary' }) },
    { weight: 1, arbitrary: huge },
  );
  /** Values that other components (the audit guard, parsers) treat specially. */
  const tricky = fc.constantFrom(
    'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig', 'eyJ.eyJ.x', 'abcd.efgh.ijkl', '-----BEGIN PRIVATE KEY-----', '-----BEGIN EC PRIVATE KEY-----',
    'x'.repeat(128), 'x'.repeat(129), 'broker-1', 'oms-service', 'admin-ops', 'dyn-x', '..', '\r\n', '\u2028', '\ud800',
  );
  /** A parameter: any name and value, or a parameter the endpoints read, with any value. */
  const pair = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(name, value) },
    {
      weight: 2,
      arbitrary: fc.tuple(
        fc.constantFrom('grant_type', 'scope', 'resource', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type', 'token', 'token_type_hint'),
        fc.oneof(value, tricky),
      ),
    },
  );
  const pairs = fc.array(pair, { maxLength: 12 });
  const base = baseParameters(w, path);
  /** Most of a well-formed request, perhaps one value replaced, plus a few random parameters, shuffled. */
  const mutated = fc
    .tuple(
      fc.array(fc.integer({ min: 0, max: 9 }), { minLength: base.length, maxLength: base.length }),
      fc.option(fc.tuple(fc.nat(), value), { freq: 3 }),
      fc.array(pair, { maxLength: 3 }),
      fc.array(fc.nat(), { maxLength: 6 }),
    )
    .map(([keep, replace, extra, order]) => {
      const kept = base.filter((_, i) => keep[i]! < 9);
      if (replace && kept.length > 0) {
        const at = replace[0] % kept.length;
        kept[at] = [kept[at]![0], replace[1]];
      }
      const all = [...kept, ...extra];
      for (let i = 0; i < order.length && all.length > 1; i++) {
        const j = order[i]! % all.length;
        [all[0], all[j]] = [all[j]!, all[0]!];
      }
      return new URLSearchParams(all).toString();
    });
  /** A form body: encoded pairs (repeats happen by chance and on purpose), or raw junk. */
  const body = fc.oneof(
    { weight: 12, arbitrary: mutated },
    { weight: 3, arbitrary: pairs.map((p) => new URLSearchParams(p).toString()) },
    {
      weight: 2,
      arbitrary: fc.tuple(pairs, fc.constantFrom(...vocabulary)).map(([p, repeated]) => {
        const params = new URLSearchParams(p);
        params.append(repeated, 'x');
        params.append(repeated, 'y');
        return params.toString();
      }),
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: 'binary' }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.stringify(j) ?? 'null') },
    { weight: 1, arbitrary: fc.constant('x=' + 'y'.repeat(70 * 1024)) },
  );
  const contentType = fc.option(
    fc.oneof(
      { weight: 30, arbitrary: fc.constant('application/x-www-form-urlencoded') },
      {
        weight: 6,
        arbitrary: fc.constantFrom(
          'application/x-www-form-urlencoded',
          'application/x-www-form-urlencoded; charset=utf-8',
          'APPLICATION/X-WWW-FORM-URLENCODED',
          'application/x-www-form-urlencoded;charset=latin1',
          'application/json',
          'application/json; charset=utf-16',
          'text/plain',
          'multipart/form-data; boundary=xyz',
          'application/jwt',
          'application/xml',
          '*/*',
          '',
        ),
      },
      { weight: 1, arbitrary: headerText(40) },
    ),
    { freq: 10 },
  );
  const basicOf = fc
    .tuple(fc.string({ maxLength: 30, unit: 'binary' }), fc.string({ maxLength: 30, unit: 'binary' }))
    .map(([id, secret]) => basicAuthorization(id, secret));
  const authorization = fc.option(
    fc.oneof(
      { weight: path === '/register' ? 2 : 12, arbitrary: fc.constant(w.validBasic) },
      { weight: 1, arbitrary: fc.constant(basicAuthorization('broker-2', w.f.secrets['broker-2']!)) },
      { weight: 2, arbitrary: basicOf },
      { weight: 1, arbitrary: headerText(60).map((s) => `Basic ${s}`) },
      { weight: 1, arbitrary: fc.base64String({ maxLength: 60 }).map((s) => `Basic ${s}`) },
      { weight: path === '/register' ? 12 : 2, arbitrary: fc.constant(`Bearer ${w.initialAccessToken}`) },
      { weight: 1, arbitrary: fc.constant(`Bearer ${w.validToken}`) },
      { weight: 1, arbitrary: headerText(60).map((s) => `Bearer ${s}`) },
      { weight: 1, arbitrary: headerText(80) },
    ),
    { freq: 8 },
  );
  const method = fc.oneof({ weight: 12, arbitrary: fc.constant('POST' as const) }, { weight: 1, arbitrary: fc.constantFrom('GET' as const, 'PUT' as const, 'DELETE' as const, 'PATCH' as const) });
  const query = fc.option(fc.oneof(fc.constant('?access_token=abc'), pairs.map((p) => `?${new URLSearchParams(p).toString()}`)), { freq: 8 });
  const accept = fc.option(fc.oneof(fc.constantFrom('application/token-introspection+jwt', 'application/json', '*/*', 'application/token-introspection+jwt;q=0'), headerText(40)), { freq: 3 });
  return { body, contentType, authorization, method, query, accept, remoteAddress: ipAddress, advance: fc.boolean() };
}

/** One random request to `path`, checked against the invariant. */
async function fuzz(t: Parameters<typeof protocolFixture>[0], path: string, seed: number): Promise<void> {
  const w = await world(t);
  const a = arbitraries(w, path);
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        method: a.method,
        query: a.query,
        body: a.body,
        contentType: a.contentType,
        authorization: a.authorization,
        accept: a.accept,
        remoteAddress: a.remoteAddress,
        advance: a.advance,
      }),
      async (r) => {
        // Moving time lets throttling windows expire, so the deeper steps keep being reached.
        if (r.advance) w.f.clock.advance(61_000);
        const headers: Record<string, string> = {};
        if (r.contentType !== null) headers['content-type'] = r.contentType;
        if (r.authorization !== null) headers.authorization = r.authorization;
        if (r.accept !== null) headers.accept = r.accept;
        const withBody = r.method !== 'GET';
        const response = await w.f.inject({
          method: r.method,
          url: `${path}${r.query ?? ''}`,
          headers,
          ...(withBody ? { payload: r.body } : {}),
          remoteAddress: r.remoteAddress,
        });
        assertInvariant(response, `${r.method} ${path} ${JSON.stringify({ ...r, body: String(r.body).slice(0, 200) })}`);
      },
    ),
    { numRuns, seed },
  );
}

describe('no request to an OAuth endpoint yields a 5xx', () => {
  test('the token endpoint answers any request without a 5xx, every 4xx no-store JSON', (t) => fuzz(t, '/token', 7009_1));
  test('the introspection endpoint answers any request without a 5xx, every 4xx no-store JSON', (t) => fuzz(t, '/introspect', 7662_1));
  test('the revocation endpoint answers any request without a 5xx, every 4xx no-store JSON', (t) => fuzz(t, '/revoke', 7009_2));
  test('the registration endpoint answers any form or JSON request without a 5xx, every 4xx no-store JSON', (t) => fuzz(t, '/register', 7591_1));

  test('the registration endpoint answers random JSON client metadata without a 5xx', async (t) => {
    const w = await world(t);
    const metadataKey = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.constantFrom(
          'client_id', 'client_name', 'kind', 'owner_lei', 'token_endpoint_auth_method', 'token_endpoint_auth_signing_alg',
          'jwks', 'jwks_uri', 'grant_types', 'response_types', 'scope', 'redirect_uris', 'post_logout_redirect_uris',
          'tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'client_secret', '__proto__', 'constructor',
        ),
      },
      { weight: 1, arbitrary: fc.string({ maxLength: 16 }) },
    );
    const metadataValue = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.constantFrom<unknown>(
          ['client_credentials'], ['authorization_code'], ['password'], [], 'client_secret_basic', 'private_key_jwt', 'none',
          'tls_client_auth', 'self_signed_tls_client_auth', 'order:create', 'order:create order:cancel', 'admin:write',
          ['https://desk.example.com/cb'], ['http://desk.example.com/cb'], ['http://127.0.0.1:9/cb'], ['com.example.app:/cb'],
          'CN=oms,O=Broker,C=GB', 'CN=', { keys: [] }, { keys: [{ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }] },
          { keys: [{ kty: 'oct', k: 'AA' }] }, 'ES256', 'RS256', '5493001KJTIIGC8Y1R12', 'agent', null, true, 0, -1, 1e308,
        ),
      },
      { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );
    const metadata = fc.dictionary(metadataKey, metadataValue, { maxKeys: 8 });
    const target = fc.oneof(
      { weight: 4, arbitrary: fc.constant({ method: 'POST' as const, path: '/register' }) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('GET' as const, 'PUT' as const, 'DELETE' as const), fc.string({ maxLength: 20 })).map(([method, id]) => ({ method, path: `/register/${encodeURIComponent(id || 'x')}` })) },
    );
    await fc.assert(
      fc.asyncProperty(target, metadata, fc.boolean(), async (where, body, withToken) => {
        const response = await w.f.inject({
          method: where.method,
          url: where.path,
          headers: { 'content-type': 'application/json', ...(withToken ? { authorization: `Bearer ${w.initialAccessToken}` } : {}) },
          ...(where.method === 'GET' ? {} : { payload: JSON.stringify(body) }),
        });
        assertInvariant(response, `${where.method} ${where.path} ${JSON.stringify(body).slice(0, 300)}`);
      }),
      { numRuns, seed: 7592_1 },
    );
  });
});
