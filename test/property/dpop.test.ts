/**
 * Property tests for DPoP (DESIGN §8 layer 6): whatever DPoP header values a client sends — random
 * text, JWT-shaped junk, proofs with arbitrary headers and claims, signed or not, and every way of
 * spoiling a valid proof — the token endpoint and the admin API never answer 5xx, every refusal is
 * registered error JSON that is never cached (at a resource, with its DPoP challenge), and nothing
 * but a well-formed proof of the right request is accepted.
 */
import assert from 'node:assert/strict';
import { randomUUID, sign } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { signCompact } from '../../src/keys/jws.ts';
import { assertErrorShape, formBody, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import { ath, dpopKey, dpopProof, type DpopKey } from '../helpers/dpop.ts';

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

const seconds = (f: ProtocolFixture) => Math.floor(f.clock.now() / 1000);

/** A DPoP-bound access token for the admin API (admin-ops, client_credentials with a proof of `key`). */
async function boundAdminToken(f: ProtocolFixture, key: DpopKey): Promise<string> {
  const response = await f.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('admin-ops'), dpop: dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: seconds(f) }) },
    payload: formBody({ grant_type: 'client_credentials', resource: `${f.issuer}/admin` }),
  });
  assert.equal(response.statusCode, 200, response.body);
  const body = response.json() as { access_token: string; token_type: string };
  assert.equal(body.token_type, 'DPoP');
  return body.access_token;
}

test('no DPoP header value makes the token endpoint or the admin API answer 5xx', async (t) => {
  const f = await protocolFixture(t);
  const key = dpopKey();
  const proof = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.tuple(fc.oneof(headerValues, json), fc.oneof(claimValues, json), fc.string({ maxLength: 90 })).map(([h, c, s]) => `${b64u(h)}.${b64u(c)}.${Buffer.from(s).toString('base64url')}`),
    // Really signed with a good key, whatever the header and claims say.
    fc.tuple(headerValues, claimValues).map(([h, c]) => signCompact('ES256', key.privateKey, { jwk: key.jwk, ...h }, c as Record<string, unknown>)),
  );
  // Bound to the very key the signed proofs use: an unbound token under the DPoP scheme would be
  // refused before its proof is read (src/tokens/resource-access.ts), and the proofs never parsed.
  const admin = await boundAdminToken(f, key);
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
      // Random values cannot make a valid proof (the htu/htm/iat/jti/ath combination is never generated right).
      assert.notEqual(response.statusCode, 200, response.body);
    }),
    { numRuns: 200, seed: 9449 },
  );
});

/** The header and claims of a valid proof for one request; mutations change these before signing. */
interface ProofParts {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
}

/** Compact ES256 JWS of any header (signCompact would overwrite its alg): only the header is wrong, never the signature over it. */
function signAny(key: DpopKey, header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = `${b64u(header)}.${b64u(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

/** Removes the member when a mutation's value is this. */
const remove = Symbol('remove');

/**
 * A mutation of a valid proof: what it does (for the counterexample), whether the result can still
 * be a valid proof (a changed claim may be an equivalent one: an htu with a query, an iat a second
 * off), and the DPoP header values it makes from a fresh valid proof's parts.
 */
interface Mutation {
  label: string;
  mayPass: boolean;
  proofs(parts: ProofParts): string[];
}

/** Header-safe text: what an HTTP field value may hold. */
const headerText = fc.string({
  maxLength: 300,
  unit: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }, { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)) }),
});

function mutations(f: ProtocolFixture, key: DpopKey, otherKey: DpopKey, token: string, path: string): fc.Arbitrary<Mutation> {
  const url = `${f.issuer}${path}`;
  const origin = new URL(f.issuer);
  const set = (where: 'header' | 'claims', name: string, value: unknown) => (parts: ProofParts): ProofParts => {
    const copy = { header: { ...parts.header }, claims: { ...parts.claims } };
    if (value === remove) delete copy[where][name];
    else copy[where][name] = value;
    return copy;
  };
  const signed = (label: string, mayPass: boolean, change: (parts: ProofParts) => ProofParts, signer = key): Mutation => ({
    label,
    mayPass,
    proofs: (parts) => {
      const changed = change(parts);
      return [signAny(signer, changed.header, changed.claims)];
    },
  });
  const valid = (parts: ProofParts) => signAny(key, parts.header, parts.claims);
  const describeValue = (value: unknown) => (value === remove ? 'removed' : JSON.stringify(value)?.slice(0, 120));

  /** Values for each claim: its near misses, its equivalents, and anything at all. */
  const claimValue: Record<string, fc.Arbitrary<unknown>> = {
    htm: fc.oneof(fc.constantFrom<unknown>('POST', 'get', 'GET ', 'HEAD', 'OPTIONS', '', remove), json),
    htu: fc.oneof(
      fc.constantFrom<unknown>(
        `${url}?x=1`, `${url}#f`, `${origin.protocol}//${origin.host.toUpperCase()}${path}`, `${url}/`, `${f.issuer}/admin/./clients`, `${f.issuer}/admin/%63lients`,
        `${f.issuer}/admin/Clients`, `${f.issuer}/token`, url.replace('http', 'https'), url.replace('://', '://user:pass@'), 'http://[::1', 'javascript:x', '', remove,
      ),
      fc.webUrl(),
      fc.string({ maxLength: 40 }),
      json,
    ),
    ath: fc.oneof(fc.constantFrom<unknown>(ath(`${token}x`), ath(token).toUpperCase(), `${ath(token)}=`, '', remove), fc.string({ maxLength: 60 }), json),
    iat: fc.oneof(
      fc.integer({ min: -7_200, max: 7_200 }).map((d) => seconds(f) + d),
      fc.constantFrom<unknown>(seconds(f) + 0.5, String(seconds(f)), null, 1e308, -1, 0, remove),
      json,
    ),
    jti: fc.oneof(fc.constantFrom<unknown>('', 'j'.repeat(256), 'k'.repeat(257), '\u0000', 'a\nb', 'replayed', remove), fc.string({ maxLength: 80 }), json),
    nonce: fc.oneof(fc.string({ maxLength: 40 }), json),
    extra: json,
  };
  const claim = fc
    .constantFrom(...Object.keys(claimValue))
    .chain((name) => claimValue[name]!.map((value) => signed(`claim ${name} = ${describeValue(value)}`, true, set('claims', name, value))));

  /** Header parameters the proof rules refuse whatever their value here (the signature is always ES256 by `key`). */
  const refusedHeader = fc.oneof(
    fc.oneof(fc.constantFrom<unknown>('JWT', 'DPOP+JWT', 'application/dpop+jwt', 'at+jwt', '', remove), fc.string({ maxLength: 20 }), json)
      .filter((typ) => typ !== 'dpop+jwt')
      .map((typ) => signed(`header typ = ${describeValue(typ)}`, false, set('header', 'typ', typ))),
    fc.oneof(fc.constantFrom<unknown>('none', 'None', 'RS256', 'HS256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'es256', '', remove), json)
      .filter((alg) => alg !== 'ES256')
      .map((alg) => signed(`header alg = ${describeValue(alg)}`, false, set('header', 'alg', alg))),
    fc.oneof(
      fc.constantFrom<unknown>(
        otherKey.jwk, key.privateKey.export({ format: 'jwk' }), { kty: 'EC' }, { kty: 'oct', k: 'AA' }, { ...key.jwk, crv: 'P-384' },
        { ...key.jwk, x: `${String(key.jwk.x).slice(0, -2)}AA` }, { ...key.jwk, kty: 'OKP' }, 'jwk', [key.jwk], null, remove,
      ),
      json,
    ).map((jwk) => signed(`header jwk = ${describeValue(jwk)}`, false, set('header', 'jwk', jwk))),
    fc.constantFrom<unknown>(['exp'], [], 'b64', null).map((crit) => signed(`header crit = ${describeValue(crit)}`, false, set('header', 'crit', crit))),
  );
  /** Header parameters the rules ignore: the proof may still be valid. */
  const ignoredHeader = fc
    .tuple(fc.constantFrom('kid', 'x5c', 'jku', 'b64', 'zip', 'cty'), json)
    .map(([name, value]) => signed(`header ${name} = ${describeValue(value)}`, true, set('header', name, value)));

  /** The compact serialization spoiled: every change alters the signing input or the signature. */
  const structural = fc
    .tuple(fc.constantFrom('drop-header', 'drop-payload', 'drop-signature', 'repeat-payload', 'swap', 'trailing-dot', 'empty-signature', 'flip', 'insert', 'truncate'), fc.nat(), fc.constantFrom(...'+/= %.Aa0_-'))
    .map(([how, at, char]): Mutation => ({
      label: `compact ${how} at ${at} (${char})`,
      mayPass: false,
      proofs: (parts) => {
        const proof = valid(parts);
        const [h, p, s] = proof.split('.') as [string, string, string];
        const i = at % proof.length;
        switch (how) {
          case 'drop-header': return [`${p}.${s}`];
          case 'drop-payload': return [`${h}.${s}`];
          case 'drop-signature': return [`${h}.${p}`];
          case 'repeat-payload': return [`${h}.${p}.${p}.${s}`];
          case 'swap': return [`${p}.${h}.${s}`];
          case 'trailing-dot': return [`${proof}.`];
          case 'empty-signature': return [`${h}.${p}.`];
          case 'flip': {
            const replacement = proof[i] === 'A' ? 'B' : 'A';
            return [`${proof.slice(0, i)}${proof[i] === '.' ? '.' : replacement}${proof.slice(i + 1)}${proof[i] === '.' ? 'A' : ''}`];
          }
          case 'insert': return [`${proof.slice(0, i)}${char}${proof.slice(i)}`];
          default: return [proof.slice(0, i)];
        }
      },
    }));

  const any = fc.oneof(
    { weight: 3, arbitrary: fc.constant<Mutation>({ label: 'the valid proof', mayPass: true, proofs: (parts) => [valid(parts)] }) },
    { weight: 8, arbitrary: claim },
    { weight: 6, arbitrary: refusedHeader },
    { weight: 1, arbitrary: ignoredHeader },
    { weight: 5, arbitrary: structural },
    // Valid in every claim, signed by another key: not the key the token is bound to.
    { weight: 1, arbitrary: fc.constant(signed('a valid proof of another key', false, set('header', 'jwk', otherKey.jwk), otherKey)) },
    // Everything as it should be but the signature, made by another key than the jwk's.
    { weight: 1, arbitrary: fc.constant(signed('signed by another key than its jwk', false, (parts) => parts, otherKey)) },
    // Past the size cap, however valid otherwise (RFC 9449 leaves the cap to the server; 8 KiB here).
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom<'header' | 'claims'>('header', 'claims'), fc.integer({ min: 6_500, max: 40_000 })).map(([where, size]) =>
        signed(`${where} padded with ${size} characters`, false, set(where, 'pad', 'x'.repeat(size)))),
    },
    // More than one DPoP field (RFC 9449 §4.3 (1)), whatever the other one is.
    { weight: 1, arbitrary: headerText.map((other): Mutation => ({ label: `a second DPoP field ${JSON.stringify(other.slice(0, 80))}`, mayPass: false, proofs: (parts) => [valid(parts), other] })) },
    { weight: 1, arbitrary: fc.constant<Mutation>({ label: 'the valid proof twice', mayPass: false, proofs: (parts) => [valid(parts), valid(parts)] }) },
    // Nothing like a proof.
    { weight: 2, arbitrary: headerText.map((text): Mutation => ({ label: `text ${JSON.stringify(text.slice(0, 80))}`, mayPass: false, proofs: () => [text] })) },
    {
      weight: 1,
      arbitrary: fc.tuple(json, json, fc.string({ maxLength: 90 })).map(([h, c, s]): Mutation => ({ label: `JWT-shaped ${JSON.stringify([h, c]).slice(0, 120)}`, mayPass: false, proofs: () => [`${b64u(h)}.${b64u(c)}.${b64u(s)}`] })),
    },
  );
  // A counterexample names the mutation, not the source of its function.
  return any.map((m) => Object.assign(m, { [fc.toStringMethod]: () => `Mutation(${m.label})` }));
}

test('no change to a valid DPoP proof makes a resource answer 5xx, and only the proof as it should be is accepted', async (t) => {
  const f = await protocolFixture(t);
  const key = dpopKey();
  const otherKey = dpopKey();
  const path = '/admin/clients';
  // A bound token, so the DPoP scheme gets past the token to the proof (src/tokens/resource-access.ts).
  const token = await boundAdminToken(f, key);
  /** The refusal descriptions seen, by error code: evidence of how far into the proof rules the runs got. */
  const seen = new Map<string, Map<string, number>>();
  let accepted = 0;
  let refused = 0;
  const check = (response: LightMyRequestResponse, mutation: Mutation) => {
    const label = `${mutation.label} → ${response.statusCode} ${response.body.slice(0, 300)}`;
    assert.ok(response.statusCode < 500, `never a 5xx: ${label}`);
    if (response.statusCode === 200) {
      assert.ok(mutation.mayPass, `only a valid proof is accepted: ${label}`);
      assert.ok(Array.isArray(response.json().clients), `the admin API answered: ${label}`);
      accepted++;
      return;
    }
    // RFC 9449 §7.1: a resource refuses with 401 and a DPoP challenge naming the error (RFC 6750 §3).
    assert.equal(response.statusCode, 401, label);
    assertErrorShape(response, label);
    const { error, error_description: description } = response.json() as { error: string; error_description?: string };
    assert.ok(error === 'invalid_dpop_proof' || error === 'invalid_token', `a proof or token error: ${label}`);
    assert.equal(mutation.label === 'the valid proof', false, `the valid proof is accepted: ${label}`);
    const challenge = String(response.headers['www-authenticate']);
    assert.ok(challenge.startsWith(`DPoP realm="clearance", error="${error}", error_description="`), `a DPoP challenge naming ${error}: ${challenge} for ${label}`);
    assert.match(challenge, /, algs="[^"]+"$/, `the challenge names the algorithms: ${label}`);
    const byCode = seen.get(error) ?? new Map<string, number>();
    byCode.set(String(description), (byCode.get(String(description)) ?? 0) + 1);
    seen.set(error, byCode);
    refused++;
  };
  await fc.assert(
    fc.asyncProperty(mutations(f, key, otherKey, token, path), fc.constantFrom('', '?limit=5'), async (mutation, query) => {
      // A fresh proof of this request each run (its jti unused, its iat now), then spoiled.
      const parts: ProofParts = { header: { typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }, claims: { jti: randomUUID(), htm: 'GET', htu: `${f.issuer}${path}`, iat: seconds(f), ath: ath(token) } };
      const response = await f.inject({ method: 'GET', url: `${path}${query}`, headers: { authorization: `DPoP ${token}`, dpop: mutation.proofs(parts) } });
      check(response, mutation);
    }),
    { numRuns: 300, seed: 9449_2 },
  );
  const summary = JSON.stringify({ accepted, refused, seen: Object.fromEntries([...seen].map(([code, descriptions]) => [code, Object.fromEntries(descriptions)])) });
  assert.ok(accepted > 0, `a valid proof was accepted, so the harness works: ${summary}`);
  assert.ok(refused > accepted, `most changed proofs were refused: ${summary}`);
  // The proof parser was reached, and past it: a token refusal or "needs a proof" would be the only
  // descriptions if the request stopped before the proof was read.
  const proofRefusals = [...(seen.get('invalid_dpop_proof')?.keys() ?? [])].filter((d) => d !== 'the DPoP scheme needs a DPoP proof');
  assert.ok(proofRefusals.length >= 8, `the proof rules refused for many reasons: ${summary}`);
  for (const rule of [/malformed|signed JWT/, /typ/, /alg/, /jwk/, /signature/, /htu/, /too old/, /ath/, /key the access token is bound to/]) {
    assert.ok(proofRefusals.some((d) => rule.test(d)), `a proof refused by the rule ${rule}: ${summary}`);
  }
  assert.ok((seen.get('invalid_token')?.size ?? 0) === 0, `the bound token itself was never refused: ${summary}`);
});
