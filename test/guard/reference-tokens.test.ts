import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { createGuard, type GuardRequest } from 'clearance/guard';
import { ath, dpopKey, dpopProof } from '../helpers/dpop.ts';
import { freePort } from '../helpers/server.ts';
import { clientId, guardFixture, ordersApi, refused, type GuardFixture } from './fixture.ts';

// The guard with reference tokens (RFC 7662): an opaque handle it validates by asking Clearance's
// introspection endpoint as the resource server's own client — against a running Clearance.

const custodyApi = 'https://custody.example.com/api';
const url = 'https://custody.example.com/api/positions';

let f: GuardFixture;
let gatewaySecret: string;
let signingKey: CryptoKey;
const cleanups: (() => unknown)[] = [];

before(async () => {
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  f = await guardFixture(t);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  signingKey = privateKey;
  await f.server.apply({
    resource_servers: [{ identifier: custodyApi, scopes: ['position:view'], access_token_format: 'reference', introspection_clients: ['custody-guard', 'custody-guard-jwt'] }],
    clients: [
      { client_id: 'custody-guard', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'position:view' },
      {
        client_id: 'custody-guard-jwt',
        kind: 'service',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'g1', alg: 'ES256' }] },
        grant_types: ['client_credentials'],
        scope: 'position:view',
      },
    ],
  });
  gatewaySecret = f.server.secrets['custody-guard']!;
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const introspecting = (extra: { mode?: 'reference' | 'all'; cacheSeconds?: number; now?: () => number; audience?: string; endpoint?: string } = {}) =>
  createGuard({
    issuer: f.issuer,
    audience: extra.audience ?? custodyApi,
    jwksUri: `${f.issuer}/jwks`,
    ...(extra.now ? { now: extra.now } : {}),
    introspection: {
      credentials: { clientId: 'custody-guard', clientSecret: gatewaySecret },
      ...(extra.mode ? { mode: extra.mode } : {}),
      ...(extra.cacheSeconds !== undefined ? { cacheSeconds: extra.cacheSeconds } : {}),
      ...(extra.endpoint ? { endpoint: extra.endpoint } : {}),
    },
  });

const bearer = (token: string, target = url): GuardRequest => ({ method: 'GET', url: target, headers: { authorization: `Bearer ${token}` } });

async function revoke(token: string): Promise<void> {
  const response = await fetch(`${f.issuer}/revoke`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${encodeURIComponent(f.secret)}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  assert.equal(response.status, 200);
}

describe('the guard with reference tokens', () => {
  test('validates a handle by introspection and gives the claims, as for a JWT', async () => {
    const { access_token: handle, token_type } = await f.token({ resource: custodyApi, scope: 'position:view' });
    assert.match(handle, /^clr_at_/);
    assert.equal(token_type, 'Bearer');
    const access = await introspecting().verify(bearer(handle));
    assert.equal(access.subject, clientId);
    assert.equal(access.clientId, clientId);
    assert.deepEqual(access.scopes, ['position:view']);
    assert.equal(access.claims.aud, custodyApi);
    assert.equal(access.claims.iss, f.issuer);
    assert.deepEqual(access.binding, { method: 'none' });
    // With private_key_jwt credentials too.
    const jwtGuard = createGuard({ issuer: f.issuer, audience: custodyApi, jwksUri: `${f.issuer}/jwks`, introspection: { credentials: { clientId: 'custody-guard-jwt', privateKey: signingKey, kid: 'g1' } } });
    assert.equal((await jwtGuard.verify(bearer(handle))).subject, clientId);
  });

  test('refuses a handle without introspection options, and a handle for another audience', async () => {
    const { access_token: handle } = await f.token({ resource: custodyApi, scope: 'position:view' });
    const plain = createGuard({ issuer: f.issuer, audience: custodyApi, jwksUri: `${f.issuer}/jwks` });
    const error = await refused(plain.verify(bearer(handle)), 401, 'invalid_token');
    assert.match(error.detail!, /no introspection options/);
    await refused(introspecting({ audience: ordersApi }).verify(bearer(handle, 'https://orders.example.com/api/orders')), 401, 'invalid_token', 'another audience');
    await refused(introspecting().verify(bearer(`clr_at_${'A'.repeat(43)}`)), 401, 'invalid_token', 'an unknown handle');
  });

  test('refuses a revoked handle at the next request, without a cache', async () => {
    const { access_token: handle } = await f.token({ resource: custodyApi, scope: 'position:view' });
    const guard = introspecting();
    await guard.verify(bearer(handle));
    await revoke(handle);
    await refused(guard.verify(bearer(handle)), 401, 'invalid_token');
  });

  test('with cacheSeconds, reuses an active answer for that long and never past the token\'s exp', async () => {
    const { access_token: handle } = await f.token({ resource: custodyApi, scope: 'position:view' });
    let offset = 0;
    const guard = introspecting({ cacheSeconds: 30, now: () => Date.now() + offset });
    await guard.verify(bearer(handle));
    await revoke(handle);
    // The documented window: a revocation reaches a caching guard within cacheSeconds.
    await guard.verify(bearer(handle));
    offset = 31_000;
    await refused(guard.verify(bearer(handle)), 401, 'invalid_token', 'after the cache time');
    // Never past exp: an answer cached near the end of the token's life expires with it.
    const fresh = (await f.token({ resource: custodyApi, scope: 'position:view' })).access_token;
    offset = 0;
    const near = introspecting({ cacheSeconds: 60, now: () => Date.now() + offset });
    await near.verify(bearer(fresh));
    offset = 310_000; // past exp and the guard's 5 s skew
    await refused(near.verify(bearer(fresh)), 401, 'invalid_token', 'past exp');
    assert.throws(() => introspecting({ cacheSeconds: 61 }), /cacheSeconds/);
  });

  test('with cacheSeconds, asks again once its clock stepped back: a revocation is not held off by the step', async () => {
    const { access_token: handle } = await f.token({ resource: custodyApi, scope: 'position:view' });
    let offset = 0;
    const guard = introspecting({ cacheSeconds: 30, now: () => Date.now() + offset });
    await guard.verify(bearer(handle));
    await revoke(handle);
    // Three seconds back (within the token checks' skew): the answer cached "in the future" is not reused.
    offset = -3_000;
    await refused(guard.verify(bearer(handle)), 401, 'invalid_token', 'asked again');
  });

  test('checks a DPoP-bound handle\'s proof against the introspected cnf.jkt', async () => {
    const key = dpopKey();
    const { access_token: handle, token_type } = await f.token({ resource: custodyApi, scope: 'position:view', dpop: key });
    assert.equal(token_type, 'DPoP');
    const guard = introspecting();
    const request = (proof: string | undefined, scheme = 'DPoP'): GuardRequest => ({ method: 'GET', url, headers: { authorization: `${scheme} ${handle}`, ...(proof ? { dpop: proof } : {}) } });
    const proof = (signer = key) => dpopProof(signer, { htm: 'GET', htu: url, ath: ath(handle) });
    await refused(guard.verify(request(undefined, 'Bearer')), 401, 'invalid_token', 'as Bearer');
    await refused(guard.verify(request(undefined)), 401, 'invalid_dpop_proof', 'without a proof');
    await refused(guard.verify(request(proof(dpopKey()))), 401, 'invalid_dpop_proof', 'a proof of another key');
    const access = await guard.verify(request(proof()));
    assert.deepEqual(access.binding, { method: 'dpop', jkt: key.jkt });
  });

  test('in mode all, introspects JWTs too: a revoked JWT is refused at once', async () => {
    await f.server.apply({ resource_servers: [{ identifier: ordersApi, scopes: ['order:create', 'order:cancel', 'position:view'], introspection_clients: ['custody-guard'] }] });
    const { access_token: jwt } = await f.token();
    assert.equal(jwt.split('.').length, 3);
    const all = introspecting({ mode: 'all', audience: ordersApi });
    const local = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks` });
    const orders = 'https://orders.example.com/api/orders';
    await all.verify(bearer(jwt, orders));
    await revoke(jwt);
    await refused(all.verify(bearer(jwt, orders)), 401, 'invalid_token', 'introspected');
    // Verified locally, a JWT stays valid until its exp (what mode all is for).
    await local.verify(bearer(jwt, orders));
  });

  test('answers 503 when the introspection endpoint cannot be asked or refuses the guard\'s credentials', async () => {
    const { access_token: handle } = await f.token({ resource: custodyApi, scope: 'position:view' });
    const down = introspecting({ endpoint: `http://127.0.0.1:${await freePort()}/introspect` });
    await refused(down.verify(bearer(handle)), 503, 'temporarily_unavailable', 'no listener');
    const wrong = createGuard({ issuer: f.issuer, audience: custodyApi, jwksUri: `${f.issuer}/jwks`, introspection: { credentials: { clientId: 'custody-guard', clientSecret: 'wrong' } } });
    const error = await refused(wrong.verify(bearer(handle)), 503, 'temporarily_unavailable', 'bad credentials');
    assert.match(error.detail!, /answered 401/);
  });
});
