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
import { mintAccessToken } from '../../src/tokens/access-token.ts';
import type { AccessTokenClaims } from '../../src/tokens/claims.ts';
import { tokenExchangeGrantType, tokenTypes } from '../../src/tokens/token-types.ts';
import { assertErrorShape, basicAuthorization, clearingApi, decodeJwt, formBody, ordersApi, protocolFixture, reportingApi, resourceServers, secretClient, venueApi, type ProtocolFixture } from '../endpoints/fixture.ts';
import { dpopKey, dpopProof, type DpopKey } from '../helpers/dpop.ts';

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

/** A client that may use token exchange; the order API lists it in `exchange_clients`, so it may exchange other clients' order tokens too. */
const exchanger = 'desk-exchanger';

interface World {
  f: ProtocolFixture;
  validBasic: string;
  /** The exchanger's credentials: without them no request gets past client authentication into the token exchange handler. */
  exchangerBasic: string;
  validToken: string;
  otherToken: string;
  initialAccessToken: string;
}

async function world(t: Parameters<typeof protocolFixture>[0]): Promise<World> {
  const f = await protocolFixture(t);
  // Apply adds to the fixture's configuration (no prune): the order API again, now naming the exchanger.
  await f.apply({
    resource_servers: [{ ...resourceServers.find((r) => r.identifier === ordersApi)!, exchange_clients: [exchanger] }],
    clients: [secretClient(exchanger, 'order:create order:cancel market:read settlement:submit', { grant_types: ['client_credentials', tokenExchangeGrantType] })],
  });
  return {
    f,
    validBasic: f.basic('broker-1'),
    exchangerBasic: f.basic(exchanger),
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
      { weight: path === '/token' ? 2 : 1, arbitrary: fc.constant(w.exchangerBasic) },
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

const b64u = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Tokens of ours to exchange, each for a reason the handler must decide on. */
interface ExchangeMaterial {
  /** Live bearer tokens for the order API the exchanger may exchange: its own and broker-1's (exchange_clients). */
  exchangeable: string[];
  /** Other verifying tokens of ours, each refused (or narrowed) for its own reason. */
  others: string[];
  /** The key of the DPoP-bound token among `others` (cnf.jkt): exchanged only with a proof of it. */
  key: DpopKey;
}

async function exchangeMaterial(w: World): Promise<ExchangeMaterial> {
  const { f } = w;
  const key = dpopKey();
  const bound = await f.token({
    auth: w.exchangerBasic,
    form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' },
    headers: { dpop: dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000) }) },
  });
  assert.equal(bound.statusCode, 200, bound.body);
  const ownOrders = await f.accessToken(exchanger, { resource: ordersApi });
  // Signed by us with claims no grant issues today but the handler reads: a long act chain, a
  // may_act, authorization_details, a mandate and a consent grant that do not exist, a huge scope.
  const claims = decodeJwt(ownOrders).payload as unknown as AccessTokenClaims;
  let act: Record<string, unknown> = { sub: 'hop-0' };
  for (let i = 1; i < 40; i++) act = { sub: `hop-${i}`, act };
  const minted = await Promise.all(
    [
      { act },
      { may_act: { sub: 'someone-else' } },
      { may_act: { sub: exchanger } },
      { authorization_details: [{ type: 'order', instrument: 'XS0000000009', limit: 10 }, { type: 'order', instrument: 'x'.repeat(2_000) }] },
      { mandate: { id: 'mandate-that-does-not-exist', v: 1 } },
      { grant_id: 'grant-that-does-not-exist' },
      { txn: 'not-a-txn' },
      { scope: `order:create ${'order:x '.repeat(1_500)}order:cancel` },
      { scope: 'order:create', pad: 'x'.repeat(17_000) },
      { cnf: { 'x5t#S256': 'A'.repeat(43) } },
      { exp: claims.iat - 1 },
    ].map((extra) => mintAccessToken(f.ctx.keys, { ...claims, jti: `${claims.jti}-${Object.keys(extra).join('-')}`, ...extra } as AccessTokenClaims)),
  );
  return {
    exchangeable: [ownOrders, w.validToken],
    others: [
      // Its own clearing token: no scope of it is offered by the order API (invalid_scope there).
      await f.accessToken(exchanger, { resource: clearingApi, scope: 'market:read settlement:submit' }),
      // Another client's clearing token (nothing lets the exchanger), and an admin token.
      w.otherToken,
      await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` }),
      (bound.json() as { access_token: string }).access_token,
      ...minted,
    ],
    key,
  };
}

/** A token of ours, changed the ways an attacker (or a broken client) changes one. */
function mutatedToken(real: string[]) {
  const token = fc.constantFrom(...real);
  const base64url = fc.constantFrom(...'ABCabc019-_');
  return fc.oneof(
    // One character flipped.
    fc.tuple(token, fc.nat(), base64url).map(([t, at, c]) => {
      const i = at % t.length;
      return `${t.slice(0, i)}${t[i] === c ? (c === 'A' ? 'B' : 'A') : c}${t.slice(i + 1)}`;
    }),
    // Truncated.
    fc.tuple(token, fc.nat()).map(([t, at]) => t.slice(0, at % t.length)),
    // Another alg in the header, the payload and signature kept.
    fc.tuple(token, fc.constantFrom<unknown>('none', 'None', 'HS256', 'RS256', 'ES384', 'EdDSA', 'PS256', undefined, 1, ['ES256'])).map(([t, alg]) => {
      const [h, p, sig] = t.split('.');
      const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
      return `${b64u({ ...header, alg })}.${p}.${alg === 'none' ? '' : sig}`;
    }),
    // Huge or rewritten claims, the signature kept (so it no longer verifies).
    fc.tuple(token, fc.integer({ min: 100, max: 20_000 }), fc.jsonValue({ maxDepth: 2 })).map(([t, size, extra]) => {
      const [h, p, sig] = t.split('.');
      const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
      return `${h}.${b64u({ ...payload, pad: 'x'.repeat(size), extra })}.${sig}`;
    }),
    // Segments dropped, repeated or reordered.
    fc.tuple(token, fc.constantFrom('drop-sig', 'drop-header', 'repeat-payload', 'swap', 'twice', 'trailing-dot')).map(([t, how]) => {
      const [h, p, sig] = t.split('.');
      if (how === 'drop-sig') return `${h}.${p}`;
      if (how === 'drop-header') return `${p}.${sig}`;
      if (how === 'repeat-payload') return `${h}.${p}.${p}.${sig}`;
      if (how === 'swap') return `${p}.${h}.${sig}`;
      if (how === 'twice') return `${t}${t}`;
      return `${t}.`;
    }),
  );
}

/**
 * Token exchange requests: each parameter is the one of a well-formed exchange (the exchanger's own
 * or broker-1's order token, to the order API) most of the time and fuzzed otherwise, so that
 * some runs are granted and the others fail at every step of the handler, not only the first.
 */
function exchangeArbitraries(w: World, x: ExchangeMaterial) {
  const absent = fc.constant(undefined);
  const text = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ maxLength: 40, unit: 'binary' }), fc.constantFrom('', ' ', '\u0000', 'null', 'eyJ.eyJ.x', 'clr_at_x'));
  const all = [...x.exchangeable, ...x.others];
  const token = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...x.exchangeable) },
    { weight: 3, arbitrary: fc.constantFrom(...x.others) },
    { weight: 4, arbitrary: mutatedToken(all) },
    { weight: 1, arbitrary: text },
    { weight: 1, arbitrary: huge },
  );
  const otherTokenType = fc.oneof(
    fc.constantFrom<string>(tokenTypes.jwt, tokenTypes.idToken, tokenTypes.refreshToken, 'urn:ietf:params:oauth:token-type:saml2', tokenTypes.accessToken.toUpperCase(), ''),
    text,
  );
  const target = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(ordersApi, clearingApi, reportingApi, venueApi) },
    { weight: 2, arbitrary: fc.constantFrom(`${w.f.issuer}/admin`, w.f.issuer, `${ordersApi}/`, `${ordersApi}#x`, 'https://unknown.example.com', 'urn:x', '/relative', '') },
    { weight: 1, arbitrary: text },
  );
  const someTargets = fc.array(target, { minLength: 2, maxLength: 3 });
  return fc.record({
    subject_token: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...x.exchangeable) }, { weight: 6, arbitrary: token }, { weight: 1, arbitrary: absent }),
    subject_token_type: fc.oneof({ weight: 10, arbitrary: fc.constant<string>(tokenTypes.accessToken) }, { weight: 3, arbitrary: otherTokenType }, { weight: 1, arbitrary: absent }),
    // RFC 8693 §2.1: actor_token_type comes with actor_token and only then; both ways wrong too.
    actor: fc.oneof(
      { weight: 8, arbitrary: fc.constant<[string | undefined, string | undefined]>([undefined, undefined]) },
      { weight: 3, arbitrary: fc.tuple(token, fc.constant<string | undefined>(tokenTypes.accessToken)) },
      { weight: 1, arbitrary: fc.tuple(token, fc.option(otherTokenType, { nil: undefined })) },
      { weight: 1, arbitrary: fc.tuple(absent, fc.oneof(fc.constant(tokenTypes.accessToken), otherTokenType)) },
    ),
    requested_token_type: fc.oneof(
      { weight: 8, arbitrary: absent },
      { weight: 2, arbitrary: fc.constant<string>(tokenTypes.accessToken) },
      { weight: 2, arbitrary: otherTokenType },
    ),
    resource: fc.oneof(
      { weight: 8, arbitrary: fc.constant<string[]>([ordersApi]) },
      { weight: 3, arbitrary: target.map((t) => [t]) },
      { weight: 1, arbitrary: fc.constant<string[]>([]) },
      { weight: 1, arbitrary: someTargets },
    ),
    audience: fc.oneof(
      { weight: 12, arbitrary: fc.constant<string[]>([]) },
      { weight: 1, arbitrary: fc.constant<string[]>([ordersApi]) },
      { weight: 1, arbitrary: target.map((t) => [t]) },
      { weight: 1, arbitrary: someTargets },
    ),
    scope: fc.oneof(
      { weight: 8, arbitrary: absent },
      {
        weight: 3,
        arbitrary: fc.constantFrom('order:create', 'order:create order:cancel', 'order:cancel order:create order:create', 'market:read', 'settlement:submit', 'order:amend', 'position:view', 'admin:write', 'order:create  order:cancel', ' ', ''),
      },
      { weight: 1, arbitrary: text },
    ),
    authorization_details: fc.oneof(
      { weight: 10, arbitrary: absent },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          '[]', '{}', 'null', 'x', '[{"type":"order"}]', '[{"type":"order","instrument":"XS0000000009","limit":10}]',
          '[{"type":"order","instrument":"XS0000000009","limit":10},{"type":"order","instrument":"XS0000000009","limit":10}]',
          '[{"limit":10,"type":"order","instrument":"XS0000000009"}]', '[1e999]', '[{"__proto__":{}}]',
        ),
      },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.stringify(j) ?? 'null') },
      { weight: 1, arbitrary: text },
    ),
    /** A DPoP proof of the bound token's key (so a bound subject can be exchanged), or of another key. */
    dpop: fc.constantFrom(undefined, undefined, undefined, undefined, undefined, undefined, 'bound-key' as const, 'other-key' as const),
    /** A single-valued parameter sent twice. */
    repeated: fc.oneof({ weight: 14, arbitrary: absent }, { weight: 1, arbitrary: fc.constantFrom('subject_token', 'subject_token_type', 'scope', 'actor_token', 'requested_token_type') }),
  });
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
  test('the token exchange handler answers any subject, actor and target from an entitled client without a 5xx', async (t) => {
    const w = await world(t);
    const x = await exchangeMaterial(w);
    const otherKey = dpopKey();
    // What the runs got: without 200s and the handler's own refusals, the fuzz never got past
    // client authentication and proved nothing about src/grants/token-exchange.ts.
    const statuses = new Map<number, number>();
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(exchangeArbitraries(w, x), async (r) => {
        const form: Record<string, string | string[]> = { grant_type: tokenExchangeGrantType };
        const [actorToken, actorTokenType] = r.actor;
        const single = { subject_token: r.subject_token, subject_token_type: r.subject_token_type, actor_token: actorToken, actor_token_type: actorTokenType, requested_token_type: r.requested_token_type, scope: r.scope, authorization_details: r.authorization_details };
        for (const [name, value] of Object.entries(single)) if (value !== undefined) form[name] = value;
        if (r.resource.length > 0) form.resource = r.resource;
        if (r.audience.length > 0) form.audience = r.audience;
        if (r.repeated !== undefined) form[r.repeated] = [String(form[r.repeated] ?? ''), 'again'];
        const key = r.dpop === 'bound-key' ? x.key : r.dpop === 'other-key' ? otherKey : undefined;
        const headers: Record<string, string> = key ? { dpop: dpopProof(key, { htm: 'POST', htu: `${w.f.issuer}/token`, iat: Math.floor(w.f.clock.now() / 1000) }) } : {};
        const response = await w.f.token({ auth: w.exchangerBasic, form: formBody(form), headers });
        const summary = JSON.parse(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'string' ? v.slice(0, 160) : v)));
        assertInvariant(response, `POST /token (token exchange) ${JSON.stringify(summary)}`);
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
        if (response.statusCode === 200) {
          // SECURITY-CHECKLIST invariants: issued scope ⊆ the subject token's (RFC 8693 §5, RFC 9700
          // §2.3), and no token outlives the one it was exchanged for.
          const issued = decodeJwt((response.json() as { access_token: string }).access_token).payload as { scope?: string; exp: number };
          const subject = decodeJwt(r.subject_token!).payload as { scope?: string; exp: number };
          const held = new Set((subject.scope ?? '').split(' '));
          for (const scope of (issued.scope ?? '').split(' ').filter(Boolean)) assert.ok(held.has(scope), `issued ${scope}, not in the subject token's scope: ${JSON.stringify(summary)}`);
          assert.ok(issued.exp <= subject.exp, `the exchanged token outlives its subject: ${JSON.stringify(summary)}`);
        }
        if (response.statusCode >= 400) {
          const code = response.json().error as string;
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }),
      { numRuns, seed: 8693_1 },
    );
    const seen = JSON.stringify({ statuses: Object.fromEntries(statuses), codes: Object.fromEntries(codes) });
    assert.ok((statuses.get(200) ?? 0) > 0, `some exchanges were granted, so the fuzz reached the issuance path: ${seen}`);
    assert.ok(codes.has('invalid_request'), `the handler refused some subject tokens: ${seen}`);
    assert.ok(codes.has('invalid_target') || codes.has('invalid_scope'), `the handler got as far as the target and scope checks: ${seen}`);
    assert.ok((codes.get('invalid_client') ?? 0) < numRuns / 10, `client authentication let the exchanger through: ${seen}`);
  });
});
