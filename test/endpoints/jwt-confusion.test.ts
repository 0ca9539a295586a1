/**
 * Cross-JWT confusion over HTTP (RFC 8725 §3.11, §3.12; SECURITY-CHECKLIST "JOSE": "an ID token as a
 * client assertion, a request object as a DPoP proof → reject, using typ, aud and required claims").
 * Each case takes a real JWT Clearance or a client made for one purpose — an ID token, an access
 * token, a request object, a DPoP proof, a client assertion — and presents it where another kind
 * is read. The unit tests (test/clients/authentication/private-key-jwt.test.ts, test/jose) check
 * the rules on hand-made tokens; this file checks the endpoints refuse the genuine articles.
 *
 * A real token of one kind is usually signed by a key the receiver would not use for the other
 * (our ID token is not signed by any client's key), so its refusal could come from a key or client
 * lookup rather than from the type rule. Each such case says which rule answers, and a variant
 * signed with the right key, but of the wrong kind, shows the typ or claims rule itself refusing.
 * Client authentication refusals all share one public description ("client authentication failed",
 * so a caller learns nothing about which check failed); the rule that answered is the `detail`,
 * which the `client.auth_failed` audit event records, and that is what these tests read.
 *
 * Failed client authentications are throttled per client and address (10 per 60 s), so each
 * request comes from an address of its own (RFC 5737 documentation ranges).
 */
import assert from 'node:assert/strict';
import { KeyObject, randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { signCompact } from '../../src/keys/jws.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { addressSequence } from '../helpers/addresses.ts';
import { dpopKey, dpopProof, type ProofClaims } from '../helpers/dpop.ts';
import { assertOAuthError, decodeJwt, ordersApi } from './fixture.ts';

const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** A source address no other request of this file used. */
const address = addressSequence();

interface Harness {
  f: CodeFlowFixture;
  /** The fixture clock, in seconds. */
  now: number;
  /** oms-service's registered private key (kid oms-1, ES256). */
  omsKey: KeyObject;
  /** The claims of a good client assertion by oms-service. */
  assertionClaims(over?: Record<string, unknown>): Record<string, unknown>;
  /** client_credentials for oms-service at /token with this client_assertion, from a fresh address. */
  asClientAssertion(assertion: string): Promise<LightMyRequestResponse>;
  /** The detail of the latest `client.auth_failed` event: which rule refused the client. */
  lastAuthFailure(): Promise<string>;
}

async function harness(t: TestContext): Promise<Harness> {
  const f = await codeFlowFixture(t);
  const now = Math.floor(f.clock.now() / 1000);
  return {
    f,
    now,
    omsKey: KeyObject.from(f.omsKey),
    assertionClaims: (over = {}) => ({ iss: 'oms-service', sub: 'oms-service', aud: f.issuer, iat: now, exp: now + 60, jti: randomUUID(), ...over }),
    asClientAssertion: (assertion) =>
      f.token({
        form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:amend', client_assertion_type: jwtBearer, client_assertion: assertion },
        remoteAddress: address(),
      }),
    async lastAuthFailure() {
      const events = await f.auditEvents('client.auth_failed');
      assert.ok(events.length > 0, 'the refusal is audited');
      return String(events.at(-1)!.decision?.reasons[0]);
    },
  };
}

/**
 * A 401 invalid_client whose audited reason matches `rule`. The public description is the uniform
 * one unless the rule is about the request's shape rather than the credential (a missing sub).
 */
async function assertClientRefused(h: Harness, response: LightMyRequestResponse, rule: RegExp, what: string, description = 'client authentication failed'): Promise<void> {
  const body = assertOAuthError(response, 401, 'invalid_client', what);
  assert.equal(body.error_description, description, `${what}: the public answer`);
  assert.match(await h.lastAuthFailure(), rule, `${what}: the rule that refused it`);
}

describe('cross-JWT confusion: a real JWT of one kind is refused where another kind is read (RFC 8725 §3.11, §3.12)', () => {
  test('a good client assertion of oms-service gets a token, so the refusals below are the JWT kind rules', async (t) => {
    const h = await harness(t);
    const response = await h.asClientAssertion(signCompact('ES256', h.omsKey, { kid: 'oms-1' }, h.assertionClaims()));
    assert.equal(response.statusCode, 200, response.body);
  });

  describe('an ID token as a client assertion', () => {
    test('refuses an ID token Clearance issued, sent as client_assertion at /token, with 401 invalid_client', async (t) => {
      const h = await harness(t);
      const { code, pkce } = await h.f.authorizeAndApprove({ client: 'web-app', query: { scope: 'openid order:create' } });
      const redeemed = await h.f.redeem('web-app', code, pkce.verifier);
      assert.equal(redeemed.statusCode, 200, redeemed.body);
      const idToken = (redeemed.json() as { id_token: string }).id_token;
      const { header, payload } = decodeJwt(idToken);
      // What makes it dangerous if accepted: a typ (JWT) a client assertion may carry too, our issuer as iss.
      assert.equal(header.typ, 'JWT');
      assert.equal(payload.iss, h.f.issuer);

      const response = await h.asClientAssertion(idToken);
      // The rule that answers is "no such client": RFC 7523 §3 (B) makes sub the client_id, and an ID
      // token's sub is a person. That is a lookup, not the type rule; the next test has the client's
      // own key sign an ID-token-shaped JWT, so only the type rule stands between it and a token.
      await assertClientRefused(h, response, /^unknown client /, 'our ID token as client_assertion');
    });

    test("refuses a JWT signed by the client's own key but shaped like an ID token (nonce, at_hash, auth_time) by its claims", async (t) => {
      const h = await harness(t);
      const idTokenShaped = signCompact('ES256', h.omsKey, { kid: 'oms-1', typ: 'JWT' }, h.assertionClaims({ nonce: 'n-456', at_hash: 'x'.repeat(22), auth_time: h.now }));
      // RFC 8725 §3.12: a JWT of one kind MUST NOT be accepted as another; an ID token's claims give it away.
      await assertClientRefused(h, await h.asClientAssertion(idTokenShaped), /a "nonce" claim: a JWT of another kind \(cross-JWT confusion, RFC 8725 §3\.12\)/, 'ID-token-shaped assertion');
    });
  });

  describe('an access token as a client assertion', () => {
    test('refuses an access token Clearance issued to oms-service, sent back as its client_assertion, by its typ at+jwt', async (t) => {
      const h = await harness(t);
      const good = await h.asClientAssertion(signCompact('ES256', h.omsKey, { kid: 'oms-1' }, h.assertionClaims()));
      assert.equal(good.statusCode, 200, good.body);
      const accessToken = (good.json() as { access_token: string }).access_token;
      const { header, payload } = decodeJwt(accessToken);
      // A client_credentials token has sub = the client and our ES256 alg, so it finds oms-service and
      // passes the alg rule: the typ rule is the one that answers, with a real token.
      assert.equal(header.typ, 'at+jwt');
      assert.equal(header.alg, 'ES256');
      assert.equal(payload.sub, 'oms-service');

      // RFC 8725 §3.11: explicit typing; a JWT typed for another purpose MUST be refused.
      await assertClientRefused(h, await h.asClientAssertion(accessToken), /^client_assertion typ "at\+jwt" is not a client assertion's \(cross-JWT confusion, RFC 8725 §3\.11\)$/, 'our access token as client_assertion');
    });
  });

  describe('a DPoP proof as a client assertion', () => {
    test('refuses a real DPoP proof sent as client_assertion at /token with 401 invalid_client', async (t) => {
      const h = await harness(t);
      const key = dpopKey();
      const proof = dpopProof(key, { htm: 'POST', htu: `${h.f.issuer}/token`, iat: h.now });
      // The same proof is good as a proof: broker-1 gets a DPoP-bound token with it.
      const bound = await h.f.token({ auth: h.f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi }, headers: { dpop: proof }, remoteAddress: address() });
      assert.equal(bound.statusCode, 200, bound.body);
      assert.equal((bound.json() as { token_type: string }).token_type, 'DPoP');

      const response = await h.asClientAssertion(dpopProof(key, { htm: 'POST', htu: `${h.f.issuer}/token`, iat: h.now }));
      // The rule that answers is RFC 7523 §3 (B)'s required sub (a proof names no client); it is signed by
      // its own embedded key anyway, never a client's. The next test signs one with the client's key.
      await assertClientRefused(h, response, /^client_assertion has no sub$/, 'a DPoP proof as client_assertion', 'client_assertion must have sub = client_id');
    });

    test("refuses a JWT signed by the client's own key with a client assertion's claims but typed dpop+jwt, by its typ", async (t) => {
      const h = await harness(t);
      const typedAsProof = signCompact('ES256', h.omsKey, { kid: 'oms-1', typ: 'dpop+jwt' }, h.assertionClaims());
      // RFC 8725 §3.11: the typ says what the JWT is for, and a DPoP proof (RFC 9449 §4.2) is not client authentication.
      await assertClientRefused(h, await h.asClientAssertion(typedAsProof), /^client_assertion typ "dpop\+jwt" is not a client assertion's/, 'dpop+jwt-typed assertion');
    });

    test("refuses a JWT signed by the client's own key, untyped, carrying a proof's htm and htu, by its claims", async (t) => {
      const h = await harness(t);
      const proofShaped = signCompact('ES256', h.omsKey, { kid: 'oms-1' }, h.assertionClaims({ htm: 'POST', htu: `${h.f.issuer}/token` }));
      // RFC 8725 §3.12: without a typ, the claims of another kind still mark it.
      await assertClientRefused(h, await h.asClientAssertion(proofShaped), /a "htm" claim: a JWT of another kind/, 'proof-shaped assertion');
    });
  });

  describe('a request object as a DPoP proof', () => {
    test('refuses a real signed request object sent as the DPoP header at /token with 400 invalid_dpop_proof', async (t) => {
      const h = await harness(t);
      const requestObject = await h.f.requestObject({});
      // It is a good request object: par-app pushes it and gets a request_uri.
      const pushed = await h.f.par('par-app', { client_id: 'par-app', request: requestObject });
      assert.equal(pushed.statusCode, 201, pushed.body);

      const response = await h.f.token({
        auth: h.f.basic('broker-1'),
        form: { grant_type: 'client_credentials', resource: ordersApi },
        headers: { dpop: await h.f.requestObject({}) },
        remoteAddress: address(),
      });
      // RFC 9449 §4.3 (4): the typ MUST be dpop+jwt; a request object is oauth-authz-req+jwt (RFC 9101 §10.8).
      const body = assertOAuthError(response, 400, 'invalid_dpop_proof', 'a request object as DPoP');
      assert.equal(body.error_description, 'the DPoP proof must have typ dpop+jwt');
    });

    test('refuses a request object retyped dpop+jwt and signed with its own jwk, because it lacks the claims of a proof', async (t) => {
      const h = await harness(t);
      const key = dpopKey();
      const { payload } = decodeJwt(await h.f.requestObject({}));
      // Everything a proof's header needs is right (typ, alg, a public jwk that verifies the signature);
      // the claims are a request object's: RFC 9449 §4.2 requires jti, htm, htu and iat.
      const retyped = dpopProof(key, payload as unknown as ProofClaims, { omit: ['jti'] });
      assert.equal(decodeJwt(retyped).payload.response_type, 'code');
      const response = await h.f.token({
        auth: h.f.basic('broker-1'),
        form: { grant_type: 'client_credentials', resource: ordersApi },
        headers: { dpop: retyped },
        remoteAddress: address(),
      });
      // RFC 9449 §4.3 (required claims): refused for a missing jti, the first of them.
      const body = assertOAuthError(response, 400, 'invalid_dpop_proof', 'request-object claims as DPoP');
      assert.equal(body.error_description, 'the DPoP proof must have jti');
    });
  });

  describe('a client assertion as a request object', () => {
    test('refuses a real client assertion of par-app sent as its request object at /par with 400 invalid_request_object', async (t) => {
      const h = await harness(t);
      const { form: auth } = await h.f.clientAuth('par-app');
      const assertion = auth.client_assertion!;
      // It is a good assertion: par-app authenticates with it.
      const accepted = await h.f.post('/par', { form: { ...h.f.request('par-app'), ...auth }, remoteAddress: address() });
      assert.equal(accepted.statusCode, 201, accepted.body);

      // Signed by par-app's own registered key, untyped (which a request object may be), iss = par-app
      // and aud = our issuer: what refuses it is the required nbf of FAPI 2.0 Message Signing §5.3.1,
      // a claim a client assertion need not carry. The next test gives it an nbf and the typ of an assertion.
      const response = await h.f.par('par-app', { client_id: 'par-app', request: assertion });
      const body = assertOAuthError(response, 400, 'invalid_request_object', 'a client assertion as request object');
      assert.equal(body.error_description, 'the request object must contain nbf');
    });

    test('refuses a client assertion typed client-authentication+jwt as a request object by its typ, even with nbf', async (t) => {
      const h = await harness(t);
      const par = KeyObject.from(h.f.parKey);
      const claims = { iss: 'par-app', sub: 'par-app', aud: h.f.issuer, iat: h.now, nbf: h.now, exp: h.now + 60, jti: randomUUID() };
      const typed = signCompact('ES256', par, { kid: 'par-1', typ: 'client-authentication+jwt' }, claims);
      // It is a good assertion (RFC 7523bis typ): par-app authenticates with it.
      const accepted = await h.f.post('/par', { form: { ...(h.f.request('par-app') as Record<string, string>), client_assertion_type: jwtBearer, client_assertion: typed }, remoteAddress: address() });
      assert.equal(accepted.statusCode, 201, accepted.body);

      // RFC 8725 §3.11, RFC 9101 §10.8: only oauth-authz-req+jwt (or no typ) is a request object.
      const again = signCompact('ES256', par, { kid: 'par-1', typ: 'client-authentication+jwt' }, { ...claims, jti: randomUUID() });
      const response = await h.f.par('par-app', { client_id: 'par-app', request: again });
      const body = assertOAuthError(response, 400, 'invalid_request_object', 'a typed client assertion as request object');
      assert.equal(body.error_description, 'the request object typ must be oauth-authz-req+jwt');
    });
  });
});
