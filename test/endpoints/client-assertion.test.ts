/**
 * private_key_jwt client assertions from the outside: every rule of
 * src/clients/authentication/private-key-jwt.ts that the unit tests
 * (test/clients/authentication/private-key-jwt.test.ts, index.test.ts) check on authenticateClient
 * is checked here again over HTTP, at both endpoints that authenticate clients with assertions in
 * the conformance suites: the token endpoint (client_credentials, `oms-service`) and the PAR
 * endpoint (`par-app`). Checklist: /work/shared/SECURITY-CHECKLIST.md, "Client authentication".
 *
 * Failed client authentications are throttled per client and source address (throttle.ts: 10 per
 * 60 s), so every request comes from its own address: a 429 must never stand in for a 401 here.
 */
import assert from 'node:assert/strict';
import { KeyObject, createHmac, createPublicKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { exportJWK } from 'jose';
import { signCompact } from '../../src/keys/jws.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { addressSequence } from '../helpers/addresses.ts';
import { makeCertificate } from '../clients/authentication/fixture.ts';
import { assertOAuthError, ordersApi } from './fixture.ts';

const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** A client that signs assertions: its id, the kid it registered, and its private key. */
interface Signer {
  id: string;
  kid: string;
  key: KeyObject;
}

/** An endpoint under test, the client that authenticates there, and what success looks like. */
interface Endpoint {
  path: '/token' | '/par';
  signer: Signer;
  /** 200 for a token, 201 for a pushed request (RFC 9126 §2.2). */
  accepted: number;
  /** A request the endpoint grants once the client is authenticated (fresh PKCE for /par). */
  form(): Record<string, string>;
}

type Form = Record<string, string>;

/** What a case sends on top of the endpoint's form: the assertion, and perhaps more parameters or a Basic header. */
interface Attempt {
  assertion: string;
  form?: Form;
  auth?: string;
}

interface Harness {
  f: CodeFlowFixture;
  /** The fixture clock, in seconds. */
  now: number;
  endpoints: Endpoint[];
  oms: Signer;
  par: Signer;
  /** The claims of a good assertion by `signer`; `undefined` in `over` removes a claim. */
  claims(signer: Signer, over?: Record<string, unknown>): Record<string, unknown>;
  /** A good ES256 assertion by `signer`, with claims and header overridden. */
  assertion(signer: Signer, over?: Record<string, unknown>, header?: Record<string, unknown>): string;
  /** POST the endpoint's form with the attempt, from an address of its own. */
  send(endpoint: Endpoint, attempt: Attempt): Promise<LightMyRequestResponse>;
}

async function harness(t: TestContext): Promise<Harness> {
  const f = await codeFlowFixture(t);
  const now = Math.floor(f.clock.now() / 1000);
  const oms: Signer = { id: 'oms-service', kid: 'oms-1', key: KeyObject.from(f.omsKey) };
  const par: Signer = { id: 'par-app', kid: 'par-1', key: KeyObject.from(f.parKey) };
  // One address per request, so no case is throttled.
  const address = addressSequence();
  const claims = (signer: Signer, over: Record<string, unknown> = {}) => {
    const all: Record<string, unknown> = { iss: signer.id, sub: signer.id, aud: f.issuer, iat: now, exp: now + 60, jti: randomUUID(), ...over };
    for (const [name, value] of Object.entries(all)) if (value === undefined) delete all[name];
    return all;
  };
  return {
    f,
    now,
    oms,
    par,
    endpoints: [
      {
        path: '/token',
        signer: oms,
        accepted: 200,
        form: () => ({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:amend' }),
      },
      { path: '/par', signer: par, accepted: 201, form: () => f.request('par-app') as Form },
    ],
    claims,
    assertion: (signer, over = {}, header = {}) => signCompact('ES256', signer.key, { kid: signer.kid, ...header }, claims(signer, over)),
    send: (endpoint, { assertion, form = {}, auth }) =>
      f.post(endpoint.path, {
        ...(auth ? { auth } : {}),
        form: { ...endpoint.form(), client_assertion_type: jwtBearer, client_assertion: assertion, ...form },
        remoteAddress: address(),
      }),
  };
}

/** Base64url of a JSON value, for assertions signCompact will not make. */
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A compact JWS with any header, signed by `signature` over the signing input. */
function handSigned(header: Record<string, unknown>, claims: Record<string, unknown>, signature: (input: Buffer) => Buffer): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${signature(Buffer.from(input, 'ascii')).toString('base64url')}`;
}

/** The endpoint grants the attempt: the good assertion really works, so a refusal is the rule's. */
async function assertAccepted(h: Harness, endpoint: Endpoint, attempt: Attempt, label: string): Promise<void> {
  const response = await h.send(endpoint, attempt);
  assert.equal(response.statusCode, endpoint.accepted, `${label} at ${endpoint.path}: ${response.body}`);
}

/** The endpoint refuses the attempt as a failed client authentication (RFC 6749 §5.2). */
async function assertRefused(h: Harness, endpoint: Endpoint, attempt: Attempt, label: string): Promise<void> {
  assertOAuthError(await h.send(endpoint, attempt), 401, 'invalid_client', `${label} at ${endpoint.path}`);
}

/** A refusal case: a sentence for the test name, and the attempt to send at an endpoint. */
type Case = [description: string, attempt: (h: Harness, endpoint: Endpoint) => Attempt | Promise<Attempt>];

/**
 * One test per case, each at /token and at /par, each endpoint first shown to accept a good
 * assertion from the same fixture.
 */
function refuses(cases: Case[]): void {
  for (const [description, attempt] of cases) {
    test(`refuses ${description} at /token and at /par with 401 invalid_client`, async (t) => {
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer) }, 'a good assertion');
        await assertRefused(h, endpoint, await attempt(h, endpoint), description);
      }
    });
  }
}

/** The endpoint URLs as the server advertises them (RFC 8414 §2), not as this test guesses them. */
async function advertised(h: Harness): Promise<{ token: string; par: string }> {
  const response = await h.f.inject({ method: 'GET', url: '/.well-known/openid-configuration' });
  assert.equal(response.statusCode, 200, response.body);
  const metadata = response.json() as { token_endpoint: string; pushed_authorization_request_endpoint: string };
  return { token: metadata.token_endpoint, par: metadata.pushed_authorization_request_endpoint };
}

describe('private_key_jwt client assertions over HTTP, at the token and PAR endpoints', () => {
  test('accepts a good assertion at /token with 200 and at /par with 201', async (t) => {
    const h = await harness(t);
    for (const endpoint of h.endpoints) await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer) }, 'a good assertion');
  });

  describe('the audience', () => {
    // RFC 7523 §3 (3): the server MUST reject a JWT without its own identity as the audience; FAPI 2.0
    // SP §5.3.2.1-8: it shall accept only its issuer identifier, as a string. An endpoint URL or an
    // array is what an audience-injection attack needs (the assertion is replayable elsewhere).
    refuses([
      ['an assertion whose aud is the token endpoint', async (h, e) => ({ assertion: h.assertion(e.signer, { aud: (await advertised(h)).token }) })],
      ['an assertion whose aud is the PAR endpoint', async (h, e) => ({ assertion: h.assertion(e.signer, { aud: (await advertised(h)).par }) })],
      ['an assertion whose aud is the array [issuer, another server]', (h, e) => ({ assertion: h.assertion(e.signer, { aud: [h.f.issuer, 'https://as.other.example'] }) })],
      ['an assertion whose aud is the array [issuer], not the issuer as a string', (h, e) => ({ assertion: h.assertion(e.signer, { aud: [h.f.issuer] }) })],
      ['an assertion whose aud names another authorization server', (h, e) => ({ assertion: h.assertion(e.signer, { aud: 'https://as.other.example' }) })],
    ]);

    test('advertises the token and PAR endpoints the audience cases use, under the issuer', async (t) => {
      const h = await harness(t);
      const { token, par } = await advertised(h);
      // Otherwise the endpoint-URL cases above would test some other URL.
      assert.equal(token, `${h.f.issuer}/token`);
      assert.equal(par, `${h.f.issuer}/par`);
    });
  });

  describe('the lifetime', () => {
    // RFC 7523 §3 (4): exp is required and the server MUST reject an expired JWT, with some skew.
    // The checklist asks for a refusal 5 min after exp; the code allows 60 s (clockSkewSeconds).
    refuses([
      ['an assertion whose exp is more than 5 min in the past', (h, e) => ({ assertion: h.assertion(e.signer, { iat: h.now - 360, exp: h.now - 301 }) })],
      ['an assertion whose exp is 61 s in the past, beyond the 60 s of skew', (h, e) => ({ assertion: h.assertion(e.signer, { iat: h.now - 120, exp: h.now - 61 }) })],
      ['an assertion without exp', (h, e) => ({ assertion: h.assertion(e.signer, { exp: undefined }) })],
      // Not made yet: an iat ahead of the clock by more than the skew (conformance suite).
      ['an assertion whose iat is more than 60 s in the future', (h, e) => ({ assertion: h.assertion(e.signer, { iat: h.now + 61, exp: h.now + 120 }) })],
      // RFC 7519 §4.1.5: a JWT MUST NOT be accepted before nbf (with some skew).
      ['an assertion whose nbf is more than 60 s in the future', (h, e) => ({ assertion: h.assertion(e.signer, { nbf: h.now + 61, exp: h.now + 120 }) })],
    ]);

    test('accepts an assertion whose nbf is 8 s in the future (clock skew) at /token with 200 and at /par with 201', async (t) => {
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer, { nbf: h.now + 8, exp: h.now + 68 }) }, 'nbf now + 8 s');
      }
    });
  });

  describe('the client the assertion names', () => {
    refuses([
      // RFC 7523 §3 (2): the JWT MUST contain sub, and for client authentication it is the client_id.
      ['an assertion without sub', (h, e) => ({ assertion: h.assertion(e.signer, { sub: undefined }) })],
      // OIDC Core §9 (private_key_jwt): iss MUST contain the client_id, as sub does.
      ['an assertion whose iss is another client than its sub', (h, e) => ({ assertion: h.assertion(e.signer, { iss: 'broker-1' }) })],
      // RFC 7521 §4.2: a client_id in the body MUST identify the client the assertion identifies.
      [
        "an assertion whose iss and sub name another client than the body's client_id",
        (h, e) => ({ assertion: h.assertion(e.signer, { iss: 'web-app', sub: 'web-app' }), form: { client_id: e.signer.id } }),
      ],
      // OIDC Core §9: jti is REQUIRED for private_key_jwt (RFC 7523 §3 (7) leaves it optional).
      ['an assertion without jti', (h, e) => ({ assertion: h.assertion(e.signer, { jti: undefined }) })],
    ]);

    test('refuses the second use of an assertion (the same jti) at /token and at /par with 401 invalid_client', async (t) => {
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        const assertion = h.assertion(endpoint.signer);
        await assertAccepted(h, endpoint, { assertion }, 'the first use');
        // OIDC Core §9: these tokens MUST only be used once; RFC 7523 §3 (7).
        await assertRefused(h, endpoint, { assertion }, 'the replayed assertion');
      }
    });

    test('refuses a fresh assertion that reuses an earlier jti at /token and at /par with 401 invalid_client', async (t) => {
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        const jti = randomUUID();
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer, { jti }) }, 'the first jti');
        // A new signature and exp do not make the jti new.
        await assertRefused(h, endpoint, { assertion: h.assertion(endpoint.signer, { jti, exp: h.now + 90 }) }, 'the same jti again');
      }
    });
  });

  describe('the signature algorithm', () => {
    // RFC 8725 §3.1: only algorithms on the allowlist, and never "none", in any letter case.
    const unsigned: Case[] = ['none', 'None', 'NONE', 'nOnE'].flatMap((alg): Case[] => [
      [`an assertion with alg "${alg}" and an empty signature`, (h, e) => ({ assertion: `${b64({ alg, kid: e.signer.kid })}.${b64(h.claims(e.signer))}.` })],
      [
        `an assertion with alg "${alg}" and a signature segment`,
        (h, e) => ({ assertion: handSigned({ alg, kid: e.signer.kid }, h.claims(e.signer), (input) => sign('sha256', input, e.signer.key)) }),
      ],
    ]);
    refuses(unsigned);

    refuses([
      // FAPI 2.0 SP §5.4.1: PS256, ES256 or EdDSA only; RS256 (PKCS#1 v1.5) is off the allowlist
      // even with a real signature by a real RSA key.
      [
        'an assertion signed with RS256 by an RSA key',
        (h, e) => {
          const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
          return { assertion: handSigned({ alg: 'RS256', kid: e.signer.kid }, h.claims(e.signer), (input) => sign('sha256', input, rsa)) };
        },
      ],
      // RFC 8725 §2.1 (key confusion): an HMAC keyed with the client's public key, which anyone can read.
      [
        "an assertion MACed with HS256 keyed with the client's PEM public key",
        (h, e) => {
          const publicPem = String(createPublicKey(e.signer.key).export({ format: 'pem', type: 'spki' }));
          return { assertion: handSigned({ alg: 'HS256', kid: e.signer.kid }, h.claims(e.signer), (input) => createHmac('sha256', publicPem).update(input).digest()) };
        },
      ],
      [
        "an assertion MACed with HS256 keyed with the client's registered public JWK",
        async (h, e) => {
          const { d: _private, ...jwk } = await exportJWK(e.signer.key);
          return { assertion: handSigned({ alg: 'HS256', kid: e.signer.kid }, h.claims(e.signer), (input) => createHmac('sha256', JSON.stringify(jwk)).update(input).digest()) };
        },
      ],
      // ES384 is off the allowlist: a P-384 signature, well formed.
      [
        'an assertion signed with ES384 by a P-384 key',
        (h, e) => {
          const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
          return {
            assertion: handSigned({ alg: 'ES384', kid: e.signer.kid }, h.claims(e.signer), (input) => sign('sha384', input, { key: p384, dsaEncoding: 'ieee-p1363' })),
          };
        },
      ],
      // On the allowlist but not the client's registered ES256 (OIDC Registration §2,
      // token_endpoint_auth_signing_alg). The client has no key of these types either, so the key
      // lookup would refuse these too; the next test isolates the registered-alg rule.
      ['an assertion signed with EdDSA by an Ed25519 key the client did not register', (h, e) => ({ assertion: signCompact('EdDSA', generateKeyPairSync('ed25519').privateKey, {}, h.claims(e.signer)) })],
      ['an assertion signed with PS256 by an RSA key the client did not register', (h, e) => ({ assertion: signCompact('PS256', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, {}, h.claims(e.signer)) })],
    ]);

    test("refuses an EdDSA assertion from a client registered for ES256 even with its Ed25519 key registered, at /token and at /par with 401 invalid_client", async (t) => {
      const h = await harness(t);
      // The registered alg is then the only thing between the assertion and acceptance: the key is
      // the client's own, registered next to its ES256 key, and verifies the signature.
      for (const endpoint of h.endpoints) {
        const ed = generateKeyPairSync('ed25519');
        const client = await h.f.ctx.clients.get(endpoint.signer.id);
        assert.ok(client?.metadata.jwks, endpoint.signer.id);
        const edJwk = { ...(await exportJWK(ed.publicKey)), kid: `${endpoint.signer.kid}-ed` };
        await h.f.apply({ clients: [{ ...client.metadata, jwks: { keys: [...client.metadata.jwks.keys, edJwk] } }] });
        const signer: Signer = { ...endpoint.signer, kid: edJwk.kid, key: ed.privateKey };
        const assertion = signCompact('EdDSA', ed.privateKey, { kid: signer.kid }, h.claims(signer));
        // OIDC Registration §2: token_endpoint_auth_signing_alg — requests not signed with it MUST be rejected.
        await assertRefused(h, endpoint, { assertion }, 'EdDSA with a registered Ed25519 key');
        // The ES256 key still works: the new registration took and the refusal is the alg's.
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer) }, 'ES256 after the Ed25519 key was added');
      }
    });
  });

  describe('what the header may name, and the serialization', () => {
    // RFC 8725 §3.10: a key the token carries (jwk, x5c) or points at (jku, x5u) is never used;
    // only the client's registered keys verify. Signed here by an attacker's key that the header offers.
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const byAttacker = (h: Harness, e: Endpoint, header: Record<string, unknown>) =>
      handSigned({ alg: 'ES256', kid: e.signer.kid, ...header }, h.claims(e.signer), (input) => sign('sha256', input, { key: attacker.privateKey, dsaEncoding: 'ieee-p1363' }));
    const good = (h: Harness, e: Endpoint) => h.assertion(e.signer).split('.') as [string, string, string];
    refuses([
      ['an assertion signed by the key its own jwk header carries', async (h, e) => ({ assertion: byAttacker(h, e, { jwk: await exportJWK(attacker.publicKey) }) })],
      [
        'an assertion signed by the key of the certificate its own x5c header carries',
        (h, e) => {
          const { certificate, privateKey } = makeCertificate({ subject: `/CN=${e.signer.id}` });
          return { assertion: handSigned({ alg: 'ES256', kid: e.signer.kid, x5c: [certificate.raw.toString('base64')] }, h.claims(e.signer), (input) => sign('sha256', input, { key: privateKey, dsaEncoding: 'ieee-p1363' })) };
        },
      ],
      // RFC 7515 §4.1.11: a crit extension this server does not understand makes the JWS invalid.
      ['an assertion whose header carries crit', (h, e) => ({ assertion: h.assertion(e.signer, {}, { crit: ['exp'], exp: h.now + 60 }) })],
      // RFC 8725 §3.3 / 8725bis: one serialization, compact, three segments, canonical base64url.
      ['a JWE in place of the assertion', () => ({ assertion: ['eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0', 'a2V5', 'aXY', 'Y2lwaGVy', 'dGFn'].join('.') })],
      ['the assertion in the JWS JSON serialization', (h, e) => {
        const [protectedHeader, payload, signature] = good(h, e);
        return { assertion: JSON.stringify({ payload, protected: protectedHeader, signature }) };
      }],
      ['the assertion with a fourth segment', (h, e) => ({ assertion: `${h.assertion(e.signer)}.eyJ9` })],
      ['the assertion with its payload in standard base64 and padding', (h, e) => {
        const [head, payload, signature] = good(h, e);
        return { assertion: `${head}.${Buffer.from(payload, 'base64url').toString('base64')}=.${signature}` };
      }],
      ['the assertion with its signature padded', (h, e) => {
        const [head, payload, signature] = good(h, e);
        return { assertion: `${head}.${payload}.${signature}==` };
      }],
    ]);

    test('never fetches a jku or x5u the assertion names, and refuses one signed by a key served there, at /token and at /par with 401 invalid_client', async (t) => {
      let hits = 0;
      const server = createServer((_request, response) => {
        hits++;
        response.end(JSON.stringify({ keys: [] }));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        // Signed by the registered key: accepted, the URLs unused.
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer, {}, { jku: url, x5u: url }) }, 'a good assertion naming jku and x5u');
        await assertRefused(h, endpoint, { assertion: byAttacker(h, endpoint, { jku: url, x5u: url }) }, 'an attacker key behind jku');
      }
      assert.equal(hits, 0, 'nothing was fetched');
    });

    test('answers an assertion over 8 KiB with 400 invalid_client at /token and at /par, never a 5xx', async (t) => {
      const h = await harness(t);
      for (const endpoint of h.endpoints) {
        await assertAccepted(h, endpoint, { assertion: h.assertion(endpoint.signer) }, 'a good assertion');
        assertOAuthError(await h.send(endpoint, { assertion: h.assertion(endpoint.signer, { padding: 'x'.repeat(9000) }) }), 400, 'invalid_client', `oversized at ${endpoint.path}`);
      }
    });
  });

  describe('one authentication method for one client', () => {
    refuses([
      // RFC 6749 §2.3: the client MUST NOT use more than one authentication method in each request.
      ['an assertion sent with client_id and client_secret in the body', (h, e) => ({ assertion: h.assertion(e.signer), form: { client_id: e.signer.id, client_secret: 'a-secret-too' } })],
      ['an assertion sent with an Authorization: Basic header for a secret client', (h, e) => ({ assertion: h.assertion(e.signer), auth: h.f.basic(e.path === '/token' ? 'broker-1' : 'web-app') })],
      // RFC 7521 §4.2: a client_id that is not the assertion's client: client B's id with A's credentials.
      ["oms-service's good assertion with another client's client_id in the body", (h, e) => ({ assertion: h.assertion(h.oms), form: { client_id: e.path === '/token' ? 'broker-1' : 'par-app' } })],
    ]);
  });
});
