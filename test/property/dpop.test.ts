/**
 * Property test for DPoP (DESIGN §8 layer 6): whatever DPoP header values a client sends — random
 * text, JWT-shaped junk, proofs with arbitrary headers and claims, signed or not — the token
 * endpoint and the admin API never answer 5xx, every refusal is registered error JSON that is
 * never cached, and nothing but a well-formed proof of the right request yields a DPoP token.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { signCompact } from '../../src/keys/jws.ts';
import { assertErrorShape, formBody, ordersApi, protocolFixture } from '../endpoints/fixture.ts';
import { dpopKey } from '../helpers/dpop.ts';

const b64u = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value) ?? 'null').toString('base64url');

const json = fc.jsonValue({ maxDepth: 3 });
const headerValues = fc.record(
  {
    typ: fc.oneof(fc.constant('dpop+jwt'), fc.string({ maxLength: 20 }), json),
    alg: fc.oneof(fc.constantFrom('ES256', 'EdDSA', 'PS256', 'none', 'RS256', 'HS256'), json),
    jwk: fc.oneof(json, fc.record({ kty: fc.constantFrom('EC', 'OKP', 'RSA', 'oct'), crv: fc.constantFrom('P-256', 'Ed25519', 'X25519'), x: fc.string(), y: fc.string(), n: fc.string(), e: fc.string(), d: fc.string() }, { requiredKeys: ['kty'] })),
    crit: json,
  },
  { requiredKeys: [] },
);
const claimValues = fc.record(
  { jti: fc.oneof(fc.string({ maxLength: 300 }), json), htm: fc.oneof(fc.constantFrom('POST', 'GET', 'post'), json), htu: fc.oneof(fc.constantFrom('http://localhost:9000/token', 'http://[::1', 'javascript:x'), fc.string(), json), iat: fc.oneof(fc.integer(), fc.double(), json), ath: json, nonce: json },
  { requiredKeys: [] },
);

test('no DPoP header value makes the token endpoint or the admin API answer 5xx', async (t) => {
  const f = await protocolFixture(t);
  const key = dpopKey();
  const proof = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.tuple(fc.oneof(headerValues, json), fc.oneof(claimValues, json), fc.string({ maxLength: 90 })).map(([h, c, s]) => `${b64u(h)}.${b64u(c)}.${Buffer.from(s).toString('base64url')}`),
    // Really signed with a good key, whatever the header and claims say.
    fc.tuple(headerValues, claimValues).map(([h, c]) => signCompact('ES256', key.privateKey, { jwk: key.jwk, ...h }, c as Record<string, unknown>)),
  );
  const admin = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
  await fc.assert(
    fc.asyncProperty(fc.array(proof, { minLength: 1, maxLength: 3 }), fc.boolean(), async (proofs, toResource) => {
      const response = toResource
        ? await f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `DPoP ${admin}`, dpop: proofs } })
        : await f.inject({
            method: 'POST',
            url: '/token',
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('broker-1'), dpop: proofs },
            payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }),
          });
      assert.ok(response.statusCode < 500, `never a 5xx: ${response.statusCode} ${response.body}`);
      if (response.statusCode >= 400) assertErrorShape(response);
      // Random values cannot make a valid proof (the htu/htm/iat/jti combination is never generated right).
      assert.notEqual(response.statusCode, 200, response.body);
    }),
    { numRuns: 200, seed: 9449 },
  );
});
