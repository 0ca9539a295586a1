import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createGuard, GuardError, type Guard, type GuardOptions } from 'clearance/guard';
import { clientId, guardFixture, ordersApi, refused, settlementApi, type GuardFixture } from './fixture.ts';

// The guard verifying real Clearance access tokens (RFC 9068) at a resource server: what passes,
// what is refused with which status and challenge. Tokens with odd claims are signed with the
// server's own current key, so only the claim under test is wrong.

const url = 'https://orders.example.com/api/orders';

let f: GuardFixture;
let guard: Guard;
const cleanups: (() => unknown)[] = [];

before(async () => {
  f = await guardFixture({ after: (fn) => cleanups.push(fn) });
  guard = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks` });
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const bearer = (token: string, extra: Record<string, string> = {}) => ({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, ...extra } });

describe('the guard verifying access tokens', () => {
  test('passes a valid token and reads its subject, client, scopes and binding', async () => {
    const { access_token } = await f.token({ scope: 'order:create position:view' });
    const access = await guard.verify(bearer(access_token));
    assert.equal(access.subject, clientId);
    assert.equal(access.clientId, clientId);
    assert.deepEqual(access.scopes, ['order:create', 'position:view']);
    assert.deepEqual(access.binding, { method: 'none' });
    assert.equal(access.scheme, 'Bearer');
    assert.equal(access.claims.aud, ordersApi);
    assert.deepEqual(access.actors, []);
    assert.equal(access.txn, undefined);
  });

  test('reads the delegation chain newest actor first, the txn, the mandate and authorization_details', async () => {
    const act = { sub: 'algo-fx-1', client_id: 'algo-fx-1', act: { sub: 'order-router', act: { sub: 'user-42' } } };
    const details = [{ type: 'order', instrument: 'EURUSD', side: 'buy', max_notional: { amount: 1_000_000, currency: 'USD' } }];
    const token = await f.sign(f.claims({ sub: 'user-1', act, txn: 'txn-8f3a', mandate: { id: 'mdt-1', v: 3 }, authorization_details: details }));
    const access = await guard.verify(bearer(token));
    assert.deepEqual(access.actors.map((a) => a.sub), ['algo-fx-1', 'order-router', 'user-42']);
    assert.deepEqual(access.actors[0], { sub: 'algo-fx-1', client_id: 'algo-fx-1' }, 'each actor without its nested act');
    assert.deepEqual(access.act, act, 'and the raw claim');
    assert.equal(access.txn, 'txn-8f3a');
    assert.deepEqual(access.mandate, { id: 'mdt-1', v: 3 });
    assert.deepEqual(access.authorizationDetails, details);
    assert.equal(access.subject, 'user-1');
  });

  test('refuses a token for another resource server as invalid_token with a Bearer challenge', async () => {
    const { access_token } = await f.token({ scope: 'settlement:submit', resource: settlementApi });
    const error = await refused(guard.verify(bearer(access_token)), 401, 'invalid_token');
    assert.match(error.wwwAuthenticate!, /^Bearer error="invalid_token", error_description="the access token is invalid or expired"$/);
    assert.match(error.detail!, /aud/);
  });

  test('refuses a token with several audiences, even when one is this resource server', async () => {
    await refused(guard.verify(bearer(await f.sign(f.claims({ aud: [ordersApi, settlementApi] })))), 401, 'invalid_token');
  });

  test('refuses a token from another issuer, though signed with a key the guard knows', async () => {
    const error = await refused(guard.verify(bearer(await f.sign(f.claims({ iss: 'https://other.example.com' })))), 401, 'invalid_token');
    assert.match(error.detail!, /iss/);
  });

  test('refuses an expired token, and one issued in the future, beyond the clock skew', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(guard.verify(bearer(await f.sign(f.claims({ iat: now - 600, exp: now - 60 })))), 401, 'invalid_token', 'expired a minute ago');
    await refused(guard.verify(bearer(await f.sign(f.claims({ iat: now + 60, exp: now + 360 })))), 401, 'invalid_token', 'issued in a minute');
    // Within the default 5 s skew, a token that just expired still passes.
    await guard.verify(bearer(await f.sign(f.claims({ iat: now - 300, exp: now - 2 }))));
    const strict = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, clockSkewSeconds: 0 });
    await refused(strict.verify(bearer(await f.sign(f.claims({ iat: now - 300, exp: now - 2 })))), 401, 'invalid_token', 'no skew');
  });

  test('refuses a JWT whose typ is not at+jwt (an ID token or any other JWT), and one without typ', async () => {
    for (const header of [{ typ: 'JWT' }, { typ: 'dpop+jwt' }, { typ: 'at+jwt+x' }, { typ: undefined as unknown as string }]) {
      const error = await refused(guard.verify(bearer(await f.sign(f.claims(), header))), 401, 'invalid_token', String(header.typ));
      assert.match(error.detail!, /typ/);
    }
    // RFC 9068 §4: the full media type is the same typ.
    await guard.verify(bearer(await f.sign(f.claims(), { typ: 'application/at+jwt' })));
  });

  test('refuses alg none in any letter case, and an HS256 token made with the public key as secret', async () => {
    const real = await f.sign(f.claims());
    const [headerSegment, payload] = real.split('.') as [string, string];
    const header = JSON.parse(Buffer.from(headerSegment, 'base64url').toString());
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${Buffer.from(JSON.stringify({ ...header, alg })).toString('base64url')}.${payload}.`;
      await refused(guard.verify(bearer(unsigned)), 401, 'invalid_token', alg);
      await refused(guard.verify(bearer(`${unsigned}AAAA`)), 401, 'invalid_token', `${alg} with a signature`);
    }
    const jwks = (await (await fetch(`${f.issuer}/jwks`)).json()) as { keys: Record<string, unknown>[] };
    const input = `${Buffer.from(JSON.stringify({ ...header, alg: 'HS256' })).toString('base64url')}.${payload}`;
    const confused = `${input}.${createHmac('sha256', JSON.stringify(jwks.keys[0])).update(input).digest('base64url')}`;
    await refused(guard.verify(bearer(confused)), 401, 'invalid_token', 'HS256');
  });

  test('refuses a token whose signature does not verify, or whose kid is unknown', async () => {
    const real = await f.sign(f.claims());
    const [h, p, s] = real.split('.') as [string, string, string];
    const flipped = `${h}.${p}.${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
    await refused(guard.verify(bearer(flipped)), 401, 'invalid_token', 'a flipped signature bit');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), scope: 'order:create order:cancel' })).toString('base64url')}.${s}`;
    await refused(guard.verify(bearer(tampered)), 401, 'invalid_token', 'a widened scope');
    const unknownKid = `${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(h, 'base64url').toString()), kid: 'nope' })).toString('base64url')}.${p}.${s}`;
    await refused(guard.verify(bearer(unknownKid)), 401, 'invalid_token', 'an unknown kid');
  });

  test('refuses malformed tokens: JSON serialization, a JWE, extra segments, garbage', async () => {
    const real = await f.sign(f.claims());
    for (const token of [`${real}.AAAA`, 'a.b.c.d.e', 'not-a-jwt', `${real.split('.').slice(0, 2).join('.')}`]) {
      await refused(guard.verify(bearer(token)), 401, 'invalid_token', token.slice(0, 20));
    }
  });

  test('refuses claims of the wrong shape: act without sub, a mandate without a version, authorization_details without type', async () => {
    for (const extra of [{ act: { client_id: 'x' } }, { mandate: { id: 'mdt-1' } }, { authorization_details: [{ instrument: 'EURUSD' }] }, { txn: 7 }, { cnf: 'abc' }]) {
      await refused(guard.verify(bearer(await f.sign(f.claims(extra)))), 401, 'invalid_token', JSON.stringify(extra));
    }
  });

  test('answers a request without a token with a challenge for both schemes and no error code', async () => {
    const error = await refused(guard.verify({ method: 'GET', url, headers: {} }), 401, 'invalid_token');
    assert.equal(error.wwwAuthenticate, 'Bearer, DPoP algs="ES256 EdDSA Ed25519 PS256"');
    const basic = await refused(guard.verify({ method: 'GET', url, headers: { authorization: 'Basic b3JkZXI6c2VjcmV0' } }), 401, 'invalid_token');
    assert.equal(basic.wwwAuthenticate, 'Bearer, DPoP algs="ES256 EdDSA Ed25519 PS256"');
  });

  test('refuses a token in the URL query, even with a valid Authorization header', async () => {
    const { access_token } = await f.token();
    const error = await refused(guard.verify({ method: 'GET', url: `${url}?access_token=${access_token}`, headers: { authorization: `Bearer ${access_token}` } }), 400, 'invalid_request');
    assert.match(error.description, /not the URL/);
  });

  test('refuses a bearer token when sender-constrained tokens are required', async () => {
    const constrained = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, requireSenderConstraint: true });
    const { access_token } = await f.token();
    const error = await refused(constrained.verify(bearer(access_token)), 401, 'invalid_token');
    assert.match(error.wwwAuthenticate!, /^DPoP error="invalid_token"/);
  });

  test('finds the keys through the issuer discovery document, or takes a static JWK set', async () => {
    const { access_token } = await f.token();
    const discovered = createGuard({ issuer: f.issuer, audience: ordersApi });
    assert.equal((await discovered.verify(bearer(access_token))).clientId, clientId);
    const jwks = (await (await fetch(`${f.issuer}/jwks`)).json()) as GuardOptions['jwks'];
    const fixed = createGuard({ issuer: f.issuer, audience: ordersApi, jwks: jwks! });
    assert.equal((await fixed.verify(bearer(access_token))).clientId, clientId);
  });

  test('answers 503 temporarily_unavailable, not invalid_token, when the keys cannot be fetched', async () => {
    const unreachable = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: 'http://127.0.0.1:9/jwks' });
    const { access_token } = await f.token();
    const error = await refused(unreachable.verify(bearer(access_token)), 503, 'temporarily_unavailable');
    assert.equal(error.headers['retry-after'], '5');
  });

  test('refuses an algorithm outside its allowlist, and will not be configured with none or HS256', async () => {
    const psOnly = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, algorithms: ['PS256'] });
    await refused(psOnly.verify(bearer(await f.sign(f.claims()))), 401, 'invalid_token', 'an ES256 token at a PS256-only guard');
    for (const algorithms of [['none'], ['HS256'], []]) {
      assert.throws(() => createGuard({ issuer: f.issuer, audience: ordersApi, algorithms }), TypeError);
    }
    assert.throws(() => createGuard({ issuer: 'http://clearance.internal', audience: ordersApi }), /https/);
  });

  test('takes an http issuer only on a loopback host unless allowHttp is set, and never one with credentials', () => {
    const make = (issuer: string, allowHttp?: boolean) => createGuard({ issuer, audience: ordersApi, jwks: { keys: [] }, ...(allowHttp === undefined ? {} : { allowHttp }) });
    for (const issuer of ['http://localhost:9000', 'http://127.0.0.2:9000', 'http://[::1]:9000', 'http://[::ffff:127.0.0.1]:9000']) make(issuer);
    for (const issuer of ['http://127.0.0.1.nip.io', 'http://as.localhost', 'http://localhost.example.com', 'http://[::ffff:10.0.0.1]']) {
      assert.throws(() => make(issuer), /must be an https URL/, issuer);
    }
    make('http://clearance.internal', true);
    assert.throws(() => make('https://user:secret@as.example.com'), /must not carry credentials/);
  });
});

describe('the guard checking what a token allows', () => {
  test('refuses a missing scope with 403 insufficient_scope naming the scope in the challenge', async () => {
    const access = await guard.verify(bearer((await f.token({ scope: 'position:view' })).access_token));
    guard.requireScopes(access, ['position:view']);
    const error = await refused(Promise.resolve().then(() => guard.requireScopes(access, ['order:create'])), 403, 'insufficient_scope');
    assert.equal(error.wwwAuthenticate, 'Bearer error="insufficient_scope", error_description="the order:create scope is required", scope="order:create"');
  });

  test('returns the authorization_details entry that covers the request, else 403 insufficient_scope', async () => {
    type Order = { type: 'order'; instrument: string; max_notional: { amount: number; currency: string } };
    const details = [
      { type: 'settlement_instruction', amount: 5 },
      { type: 'order', instrument: 'EURUSD', max_notional: { amount: 1_000_000, currency: 'USD' } },
    ];
    const access = await guard.verify(bearer(await f.sign(f.claims({ authorization_details: details }))));
    const covers = (instrument: string, notional: number) => (d: Order) => d.instrument === instrument && d.max_notional.amount >= notional;
    assert.deepEqual(guard.requireAuthorizationDetail<Order>(access, { type: 'order', match: covers('EURUSD', 500_000) }), details[1]);
    await refused(Promise.resolve().then(() => guard.requireAuthorizationDetail<Order>(access, { type: 'order', match: covers('EURUSD', 2_000_000) })), 403, 'insufficient_scope', 'over the limit');
    await refused(Promise.resolve().then(() => guard.requireAuthorizationDetail(access, { type: 'rfq' })), 403, 'insufficient_scope', 'no entry of the type');
    const throws = () => {
      throw new Error('bug');
    };
    await refused(Promise.resolve().then(() => guard.requireAuthorizationDetail(access, { type: 'order', match: throws })), 403, 'insufficient_scope', 'a match that throws');
  });

  test('gives every refusal a JSON body and keeps the log-only detail out of it', async () => {
    const error = await refused(guard.verify(bearer('x.y.z')), 401, 'invalid_token');
    assert.ok(error instanceof GuardError);
    assert.deepEqual(error.toJSON(), { error: 'invalid_token', error_description: 'the access token is invalid or expired' });
    assert.ok(error.detail);
  });
});

test('the guard is imported through the package name, as a resource server would import it', async () => {
  const resolved = import.meta.resolve('clearance/guard');
  assert.match(resolved, /\/src\/guard\/index\.ts$/);
});
