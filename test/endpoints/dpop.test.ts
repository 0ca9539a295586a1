import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { codeFlowFixture, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { ath, dpopKey, dpopProof, type DpopKey, type ProofClaims, type ProofOptions } from '../helpers/dpop.ts';
import { assertOAuthError, decodeJwt, formBody, ordersApi, protocolFixture, venueApi, type ProtocolFixture } from './fixture.ts';

// DPoP (RFC 9449) over HTTP: every proof check of SECURITY-CHECKLIST "DPoP / mTLS binding" at the
// token endpoint, the binding of client_credentials, code and refresh tokens, PAR's dpop_jkt,
// server nonces, and the resource side (the admin API, userinfo).

interface TokenBody {
  access_token: string;
  token_type: string;
  refresh_token?: string;
  scope: string;
}

const now = (f: ProtocolFixture) => Math.floor(f.clock.now() / 1000);

/** A proof for POST /token at the fixture's issuer, at the fixture clock's time. */
function tokenProof(f: ProtocolFixture, key: DpopKey, claims: Partial<ProofClaims> = {}, options: ProofOptions = {}): string {
  return dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: now(f), ...claims }, options);
}

/** client_credentials for broker-1 (client_secret_basic) with these DPoP header values. */
function clientCredentials(f: ProtocolFixture, proofs: string | string[], form: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('broker-1'), dpop: proofs },
    payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create', ...form }),
  });
}

/** A DPoP-bound admin token for admin-ops, and its key. */
async function dpopAdminToken(f: ProtocolFixture): Promise<{ token: string; key: DpopKey }> {
  const key = dpopKey();
  const response = await f.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('admin-ops'), dpop: tokenProof(f, key) },
    payload: formBody({ grant_type: 'client_credentials', resource: `${f.issuer}/admin` }),
  });
  assert.equal(response.statusCode, 200, response.body);
  return { token: (response.json() as TokenBody).access_token, key };
}

/** GET a resource path with an Authorization header and DPoP header values. */
function getResource(f: ProtocolFixture, path: string, authorization: string, proofs: string[] = []): Promise<LightMyRequestResponse> {
  return f.inject({ method: 'GET', url: path, headers: { authorization, ...(proofs.length ? { dpop: proofs } : {}) } });
}

function resourceProof(f: ProtocolFixture, key: DpopKey, token: string, path: string, claims: Partial<ProofClaims> = {}, options: ProofOptions = {}): string {
  return dpopProof(key, { htm: 'GET', htu: `${f.issuer}${path}`, iat: now(f), ath: ath(token), ...claims }, options);
}

/** A 401 from a resource with a DPoP challenge naming `error`. */
function assertDpopChallenge(response: LightMyRequestResponse, error: string, what = ''): void {
  assertOAuthError(response, 401, error, what);
  assert.match(String(response.headers['www-authenticate']), new RegExp(`^DPoP realm="clearance", error="${error}"`), what);
}

describe('DPoP at the token endpoint (RFC 9449 §5)', () => {
  test('binds a client_credentials token to the proof key: cnf.jkt, token_type DPoP, and introspection says DPoP', async (t) => {
    const f = await protocolFixture(t);
    const key = dpopKey();
    const response = await clientCredentials(f, tokenProof(f, key));
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as TokenBody;
    assert.equal(body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { jkt: key.jkt });
    const introspected = await f.post('/introspect', { auth: f.basic('broker-1'), form: { token: body.access_token } });
    assert.equal(introspected.json().token_type, 'DPoP');
    assert.deepEqual(introspected.json().cnf, { jkt: key.jkt });
    const [issued] = await f.auditEvents('token.issued');
    assert.equal((issued!.details as Record<string, unknown>).bound, 'dpop');
  });

  test('accepts EdDSA and PS256 proofs too', async (t) => {
    const f = await protocolFixture(t);
    for (const alg of ['EdDSA', 'PS256'] as const) {
      const key = dpopKey(alg);
      const response = await clientCredentials(f, tokenProof(f, key));
      assert.equal(response.statusCode, 200, `${alg}: ${response.body}`);
      assert.deepEqual(decodeJwt((response.json() as TokenBody).access_token).payload.cnf, { jkt: key.jkt });
    }
  });

  test('refuses every malformed or wrong proof with 400 invalid_dpop_proof', async (t) => {
    const f = await protocolFixture(t);
    const key = dpopKey();
    const other = dpopKey();
    const privateJwk = { ...key.jwk, d: (key.privateKey.export({ format: 'jwk' }) as Record<string, unknown>).d };
    const good = tokenProof(f, key);
    const [h, p] = good.split('.');
    const cases: [string, string | string[], string][] = [
      ['two DPoP headers', [tokenProof(f, key), tokenProof(f, key)], 'exactly one'],
      ['not a JWT', 'not-a-jwt', 'signed JWT'],
      ['two segments', `${h}.${p}`, 'signed JWT'],
      ['a JWE-like five segments', `${h}.${p}.a.b.c`, 'signed JWT'],
      ['non-base64url characters', `${h}.${p}.ab+/`, 'signed JWT'],
      ['no typ', tokenProof(f, key, {}, { header: { typ: undefined } }), 'typ'],
      ['typ JWT', tokenProof(f, key, {}, { header: { typ: 'JWT' } }), 'typ'],
      ['typ at+jwt', tokenProof(f, key, {}, { header: { typ: 'at+jwt' } }), 'typ'],
      ['no alg', tokenProof(f, key, {}, { header: { alg: undefined } }), 'alg'],
      ['alg none', tokenProof(f, key, {}, { header: { alg: 'none' } }), 'alg'],
      ['alg NoNe', tokenProof(f, key, {}, { header: { alg: 'NoNe' } }), 'alg'],
      ['alg RS256', tokenProof(f, key, {}, { header: { alg: 'RS256' } }), 'alg'],
      ['alg HS256', tokenProof(f, key, {}, { header: { alg: 'HS256' } }), 'alg'],
      ['no jwk', tokenProof(f, key, {}, { header: { jwk: undefined } }), 'jwk'],
      ['a private jwk', tokenProof(f, key, {}, { header: { jwk: privateJwk } }), 'public key'],
      ['a symmetric jwk', tokenProof(f, key, {}, { header: { jwk: { kty: 'oct', k: 'c2VjcmV0' } } }), 'public key'],
      ['an Ed25519 jwk for ES256', tokenProof(f, key, {}, { header: { jwk: dpopKey('EdDSA').jwk } }), 'not a key for ES256'],
      ['a bad signature', tokenProof(f, key, {}, { signWith: other.privateKey }), 'signature'],
      ['crit', tokenProof(f, key, {}, { header: { crit: ['exp'] } }), 'crit'],
      ['no jti', tokenProof(f, key, {}, { omit: ['jti'] }), 'jti'],
      ['no htm', tokenProof(f, key, {}, { omit: ['htm'] }), 'htm'],
      ['no htu', tokenProof(f, key, {}, { omit: ['htu'] }), 'htu'],
      ['no iat', tokenProof(f, key, {}, { omit: ['iat'] }), 'iat'],
      ['htm GET', tokenProof(f, key, { htm: 'GET' }), 'htm'],
      ['htm post', tokenProof(f, key, { htm: 'post' }), 'htm'],
      ['htu of the PAR endpoint', tokenProof(f, key, { htu: `${f.issuer}/par` }), 'htu'],
      ['htu of another host', tokenProof(f, key, { htu: 'http://evil.example.com:9000/token' }), 'htu'],
      ['htu with another port', tokenProof(f, key, { htu: 'http://localhost:9001/token' }), 'htu'],
      ['htu in another path case', tokenProof(f, key, { htu: `${f.issuer}/TOKEN` }), 'htu'],
      ['iat an hour ago', tokenProof(f, key, { iat: now(f) - 3600 }), 'too old'],
      ['iat in an hour', tokenProof(f, key, { iat: now(f) + 3600 }), 'too old'],
      ['iat as a string', tokenProof(f, key, { iat: String(now(f)) as unknown as number }), 'iat'],
    ];
    for (const [what, proofs, reason] of cases) {
      const body = assertOAuthError(await clientCredentials(f, proofs), 400, 'invalid_dpop_proof', what);
      assert.ok(String(body.error_description).includes(reason), `${what}: refused for its own reason, not "${body.error_description}"`);
    }
    // None of them got a token, and a good proof still works.
    assert.equal((await f.auditEvents('token.issued')).length, 0);
    assert.equal((await clientCredentials(f, good)).statusCode, 200);
  });

  test('accepts an htu with a query or fragment, in other letter case, and with the default port', async (t) => {
    const f = await protocolFixture(t);
    const key = dpopKey();
    for (const htu of [`${f.issuer}/token?x=1`, `${f.issuer}/token#frag`, 'HTTP://LOCALHOST:9000/token']) {
      const response = await clientCredentials(f, tokenProof(f, key, { htu }));
      assert.equal(response.statusCode, 200, `${htu}: ${response.body}`);
    }
    const https = await protocolFixture(t, { env: { CLEARANCE_ISSUER: 'https://as.example.com' } });
    for (const htu of ['https://as.example.com:443/token', 'https://AS.example.com/token']) {
      const response = await clientCredentials(https, tokenProof(https, key, { htu }));
      assert.equal(response.statusCode, 200, `${htu}: ${response.body}`);
    }
  });

  test('refuses a replayed proof', async (t) => {
    const f = await protocolFixture(t);
    const proof = tokenProof(f, dpopKey());
    assert.equal((await clientCredentials(f, proof)).statusCode, 200);
    const body = assertOAuthError(await clientCredentials(f, proof), 400, 'invalid_dpop_proof');
    assert.equal(body.error_description, 'the DPoP proof was already used');
  });

  test('gives a sender-constrained resource a DPoP-bound token, and still no bearer token', async (t) => {
    const f = await protocolFixture(t);
    assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: venueApi } }), 400, 'invalid_request');
    const key = dpopKey();
    const response = await clientCredentials(f, tokenProof(f, key), { resource: venueApi, scope: 'trade:execute' });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(decodeJwt((response.json() as TokenBody).access_token).payload.cnf, { jkt: key.jkt });
  });

  test('keeps the refusal of a DPoP proof from costing a private_key_jwt client its assertion', async (t) => {
    const f = await protocolFixture(t);
    const assertion = await f.assertion();
    const form = formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
    const send = (proof: string) => f.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof }, payload: form });
    const key = dpopKey();
    assertOAuthError(await send(tokenProof(f, key, { htm: 'GET' })), 400, 'invalid_dpop_proof');
    assert.equal((await send(tokenProof(f, key))).statusCode, 200, 'the same assertion, once the proof is right');
  });
});

test('uses a proof only once the client has authenticated: a failed authentication writes nothing', async (t) => {
  const f = await protocolFixture(t);
  const proof = tokenProof(f, dpopKey());
  const send = (authorization: string) =>
    f.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization, dpop: proof }, payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }) });
  assertOAuthError(await send(f.basic('broker-1', 'wrong-secret')), 401, 'invalid_client');
  assert.equal((await f.ctx.storage.db.selectFrom('jti_replay').select('key').where('key', 'like', 'dpop:%').execute()).length, 0);
  assert.equal((await send(f.basic('broker-1'))).statusCode, 200, 'the same proof, now with the right secret');
});

describe('DPoP server nonces (RFC 9449 §8, §9)', () => {
  test('answers a proof without the nonce with use_dpop_nonce and a DPoP-Nonce, and accepts the retry', async (t) => {
    const f = await protocolFixture(t, { env: { CLEARANCE_DPOP_NONCE: 'required' } });
    const key = dpopKey();
    const first = await clientCredentials(f, tokenProof(f, key));
    assertOAuthError(first, 400, 'use_dpop_nonce');
    const nonce = String(first.headers['dpop-nonce']);
    assert.match(nonce, /^[\w-]{24}$/);
    const wrong = await clientCredentials(f, tokenProof(f, key, { nonce: 'A'.repeat(24) }));
    assertOAuthError(wrong, 400, 'use_dpop_nonce');
    const retry = await clientCredentials(f, tokenProof(f, key, { nonce }));
    assert.equal(retry.statusCode, 200, retry.body);
    assert.equal(retry.headers['dpop-nonce'], nonce, 'a nonce for the next proof');
    // The nonce rotates; an old one is refused after two periods.
    f.clock.advance(241_000);
    assertOAuthError(await clientCredentials(f, tokenProof(f, key, { nonce })), 400, 'use_dpop_nonce');
  });

  test('asks for the nonce at a resource with a 401 DPoP challenge', async (t) => {
    const f = await protocolFixture(t, { env: { CLEARANCE_DPOP_NONCE: 'required' } });
    const key = dpopKey();
    const nonce = String((await clientCredentials(f, tokenProof(f, key))).headers['dpop-nonce']);
    const issued = await f.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: f.basic('admin-ops'), dpop: tokenProof(f, key, { nonce }) },
      payload: formBody({ grant_type: 'client_credentials', resource: `${f.issuer}/admin` }),
    });
    const token = (issued.json() as TokenBody).access_token;
    const refused = await getResource(f, '/admin/clients', `DPoP ${token}`, [resourceProof(f, key, token, '/admin/clients')]);
    assertDpopChallenge(refused, 'use_dpop_nonce');
    assert.equal(refused.headers['dpop-nonce'], nonce);
    const ok = await getResource(f, '/admin/clients', `DPoP ${token}`, [resourceProof(f, key, token, '/admin/clients', { nonce })]);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.headers['dpop-nonce'], nonce);
  });

  test('asks for the nonce at the PAR endpoint too, and accepts the pushed request retried with it', async (t) => {
    const f = await codeFlowFixture(t, { env: { CLEARANCE_DPOP_NONCE: 'required' } });
    const key = dpopKey();
    const proof = (claims: Partial<ProofClaims> = {}) => dpopProof(key, { htm: 'POST', htu: `${f.issuer}/par`, iat: now(f), ...claims });
    // RFC 9449 §8: a proof without the server's nonce is refused with use_dpop_nonce and a DPoP-Nonce to retry with.
    const first = await pushWithDpop(f, pkce().challenge, proof());
    assertOAuthError(first, 400, 'use_dpop_nonce');
    const nonce = String(first.headers['dpop-nonce']);
    assert.match(nonce, /^[\w-]{24}$/);
    assertOAuthError(await pushWithDpop(f, pkce().challenge, proof({ nonce: 'A'.repeat(24) })), 400, 'use_dpop_nonce', 'a nonce the server never gave');
    // The proof is checked before anything else: the refusals stored no pushed request, used no
    // proof's jti, and cost the client no authentication failure.
    assert.equal((await f.ctx.storage.db.selectFrom('pushed_requests').select('id').execute()).length, 0);
    assert.equal((await f.ctx.storage.db.selectFrom('jti_replay').select('key').where('key', 'like', 'dpop:%').execute()).length, 0);
    assert.equal((await f.auditEvents('client.auth_failed')).length, 0);
    const retry = await pushWithDpop(f, pkce().challenge, proof({ nonce }));
    assert.equal(retry.statusCode, 201, retry.body);
    assert.match(String((retry.json() as { request_uri: string }).request_uri), /^urn:ietf:params:oauth:request_uri:/);
    assert.equal(retry.headers['dpop-nonce'], nonce, 'a nonce for the next proof');
  });
});

describe('DPoP at the admin API, a protected resource (RFC 9449 §7)', () => {
  test('admits a DPoP-bound token with the DPoP scheme and a proof of its key', async (t) => {
    const f = await protocolFixture(t);
    const { token, key } = await dpopAdminToken(f);
    const response = await getResource(f, '/admin/clients', `DPoP ${token}`, [resourceProof(f, key, token, '/admin/clients')]);
    assert.equal(response.statusCode, 200, response.body);
    // A query on the request: htu names the URL without it.
    const withQuery = await getResource(f, '/admin/clients?limit=5', `dpop ${token}`, [resourceProof(f, key, token, '/admin/clients')]);
    assert.equal(withQuery.statusCode, 200, withQuery.body);
  });

  test('refuses a DPoP-bound token under the Bearer scheme (RFC 9449 §7.1)', async (t) => {
    const f = await protocolFixture(t);
    const { token, key } = await dpopAdminToken(f);
    const response = await getResource(f, '/admin/clients', `Bearer ${token}`, [resourceProof(f, key, token, '/admin/clients')]);
    assertOAuthError(response, 401, 'invalid_token');
    // RFC 9449 §7.1: the challenge names the DPoP scheme too, so the client learns which one the token needs.
    const challenge = String(response.headers['www-authenticate']);
    assert.match(challenge, /^Bearer realm="clearance", error="invalid_token"/);
    assert.match(challenge, /, DPoP realm="clearance", error="invalid_token", .*algs="/);
  });

  test('refuses a missing, wrong or foreign proof with 401 and a DPoP challenge', async (t) => {
    const f = await protocolFixture(t);
    const { token, key } = await dpopAdminToken(f);
    const path = '/admin/clients';
    const cases: [string, string[], string][] = [
      ['no proof', [], 'invalid_dpop_proof'],
      ['two proofs', [resourceProof(f, key, token, path), resourceProof(f, key, token, path)], 'invalid_dpop_proof'],
      ['no ath', [resourceProof(f, key, token, path, {}, { omit: ['ath'] })], 'invalid_dpop_proof'],
      ['the ath of another token', [resourceProof(f, key, token, path, { ath: ath(`${token}x`) })], 'invalid_dpop_proof'],
      ['htm POST', [resourceProof(f, key, token, path, { htm: 'POST' })], 'invalid_dpop_proof'],
      ['htu of another path', [resourceProof(f, key, token, '/admin/resource-servers')], 'invalid_dpop_proof'],
      ['iat an hour ago', [resourceProof(f, key, token, path, { iat: now(f) - 3600 })], 'invalid_dpop_proof'],
      ['a proof of another key', [resourceProof(f, dpopKey(), token, path)], 'invalid_dpop_proof'],
      ['a bad signature', [resourceProof(f, key, token, path, {}, { signWith: dpopKey().privateKey })], 'invalid_dpop_proof'],
    ];
    for (const [what, proofs, error] of cases) assertDpopChallenge(await getResource(f, path, `DPoP ${token}`, proofs), error, what);
    // A bearer token (not DPoP-bound) under the DPoP scheme.
    const bearer = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin` });
    assertDpopChallenge(await getResource(f, path, `DPoP ${bearer}`, [resourceProof(f, key, bearer, path)]), 'invalid_token', 'bearer token, DPoP scheme');
  });

  test('refuses a replayed proof before it checks whose key signed it', async (t) => {
    const f = await protocolFixture(t);
    const { token } = await dpopAdminToken(f);
    const foreign = resourceProof(f, dpopKey(), token, '/admin/clients');
    const first = assertOAuthError(await getResource(f, '/admin/clients', `DPoP ${token}`, [foreign]), 401, 'invalid_dpop_proof');
    assert.equal(first.error_description, 'the DPoP proof is not signed with the key the access token is bound to');
    const again = assertOAuthError(await getResource(f, '/admin/clients', `DPoP ${token}`, [foreign]), 401, 'invalid_dpop_proof');
    assert.equal(again.error_description, 'the DPoP proof was already used', 'the replay check comes first');
  });

  test('refuses an access token in the query string', async (t) => {
    const f = await protocolFixture(t);
    const { token, key } = await dpopAdminToken(f);
    const response = await f.inject({ method: 'GET', url: `/admin/clients?access_token=${token}`, headers: { dpop: resourceProof(f, key, token, '/admin/clients') } });
    assertOAuthError(response, 400, 'invalid_request');
  });
});

/** POST /par for par-app with a DPoP header (or none). */
async function pushWithDpop(f: CodeFlowFixture, challenge: string, proof: string | undefined, extra: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  const auth = await f.clientAuth('par-app');
  const form = { ...(f.request('par-app', { code_challenge: challenge }) as Record<string, string>), ...auth.form, ...extra };
  return f.post('/par', { form, ...(proof ? { headers: { dpop: proof } } : {}) });
}

function parProof(f: ProtocolFixture, key: DpopKey): string {
  return dpopProof(key, { htm: 'POST', htu: `${f.issuer}/par`, iat: now(f) });
}

/** POST /token grant_type=authorization_code for `client` with a DPoP header (or none). */
async function redeemWithDpop(f: CodeFlowFixture, client: string, code: string, verifier: string, proof: string | undefined): Promise<LightMyRequestResponse> {
  const auth = await f.clientAuth(client);
  const form = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: String(f.request(client).redirect_uri), ...auth.form };
  return f.token({ ...(auth.auth ? { auth: auth.auth } : {}), form, ...(proof ? { headers: { dpop: proof } } : {}) });
}

async function refreshWithDpop(f: CodeFlowFixture, client: string, refreshToken: string, proof: string | undefined): Promise<LightMyRequestResponse> {
  const auth = await f.clientAuth(client);
  const form = { grant_type: 'refresh_token', refresh_token: refreshToken, ...auth.form };
  return f.token({ ...(auth.auth ? { auth: auth.auth } : {}), form, ...(proof ? { headers: { dpop: proof } } : {}) });
}

/** A code for par-app from a pushed request, through the browser journey. */
async function parCode(f: CodeFlowFixture, proof: string | undefined, extra: Record<string, string> = {}): Promise<{ code: string; verifier: string }> {
  const challenge = pkce();
  const pushed = await pushWithDpop(f, challenge.challenge, proof, extra);
  assert.equal(pushed.statusCode, 201, pushed.body);
  const { code } = await f.authorizeAndApprove({ client: 'par-app', query: { request_uri: (pushed.json() as { request_uri: string }).request_uri }, pkce: challenge });
  return { code, verifier: challenge.verifier };
}

describe('DPoP with PAR and the authorization code (RFC 9449 §10)', () => {
  test('binds the code to the key of the proof sent to PAR, and the tokens to the same key', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, verifier } = await parCode(f, parProof(f, key));
    const response = await redeemWithDpop(f, 'par-app', code, verifier, tokenProof(f, key));
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as TokenBody;
    assert.equal(body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { jkt: key.jkt });
  });

  test('refuses the code with invalid_grant when the token request proves another key, or none, without burning it', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, verifier } = await parCode(f, parProof(f, key));
    assertOAuthError(await redeemWithDpop(f, 'par-app', code, verifier, tokenProof(f, dpopKey())), 400, 'invalid_grant', 'another key');
    assertOAuthError(await redeemWithDpop(f, 'par-app', code, verifier, undefined), 400, 'invalid_grant', 'no proof');
    assert.equal((await redeemWithDpop(f, 'par-app', code, verifier, tokenProof(f, key))).statusCode, 200);
  });

  test('binds the code to dpop_jkt sent to PAR without a proof', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, verifier } = await parCode(f, undefined, { dpop_jkt: key.jkt });
    assertOAuthError(await redeemWithDpop(f, 'par-app', code, verifier, tokenProof(f, dpopKey())), 400, 'invalid_grant');
    assert.equal((await redeemWithDpop(f, 'par-app', code, verifier, tokenProof(f, key))).statusCode, 200);
  });

  test('refuses a PAR request whose dpop_jkt is not the key of its proof (RFC 9449 §10.1)', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const response = await pushWithDpop(f, pkce().challenge, parProof(f, key), { dpop_jkt: dpopKey().jkt });
    assertOAuthError(response, 400, 'invalid_request');
    assert.equal((await pushWithDpop(f, pkce().challenge, parProof(f, key), { dpop_jkt: key.jkt })).statusCode, 201, 'matching is fine');
    assertOAuthError(await pushWithDpop(f, pkce().challenge, parProof(f, key), { dpop_jkt: 'not-a-thumbprint' }), 400, 'invalid_request');
    assertOAuthError(await pushWithDpop(f, pkce().challenge, dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: now(f) })), 400, 'invalid_dpop_proof', 'a proof for the token endpoint');
  });

  test('binds a code to dpop_jkt at the authorization endpoint', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'web-app', query: { dpop_jkt: key.jkt } });
    assertOAuthError(await redeemWithDpop(f, 'web-app', code, challenge.verifier, undefined), 400, 'invalid_grant');
    const response = await redeemWithDpop(f, 'web-app', code, challenge.verifier, tokenProof(f, key));
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((response.json() as TokenBody).token_type, 'DPoP');
  });

  test('refuses a replayed proof before comparing its key with the code binding', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, verifier } = await parCode(f, parProof(f, dpopKey()));
    const foreign = tokenProof(f, dpopKey());
    assertOAuthError(await redeemWithDpop(f, 'par-app', code, verifier, foreign), 400, 'invalid_grant');
    const replay = assertOAuthError(await redeemWithDpop(f, 'par-app', code, verifier, foreign), 400, 'invalid_dpop_proof');
    assert.equal(replay.error_description, 'the DPoP proof was already used');
  });

  test('lets userinfo accept a DPoP-bound token with the DPoP scheme and refuse it as Bearer', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'web-app', query: { scope: 'openid' } });
    const body = (await redeemWithDpop(f, 'web-app', code, challenge.verifier, tokenProof(f, key))).json() as TokenBody;
    const token = body.access_token;
    const ok = await getResource(f, '/userinfo', `DPoP ${token}`, [resourceProof(f, key, token, '/userinfo')]);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(typeof ok.json().sub, 'string');
    const asBearer = await getResource(f, '/userinfo', `Bearer ${token}`);
    assertOAuthError(asBearer, 401, 'invalid_token');
    assert.match(String(asBearer.headers['www-authenticate']), /DPoP realm="clearance", error="invalid_token"/, 'a DPoP challenge beside the Bearer one');
    assertDpopChallenge(await getResource(f, '/userinfo', `DPoP ${token}`, [resourceProof(f, dpopKey(), token, '/userinfo')]), 'invalid_dpop_proof', 'another key');
  });
});

describe('DPoP-bound refresh tokens (RFC 9449 §5)', () => {
  test('binds a public client refresh token to its key: refused without a proof or with another key, accepted with its key', async (t) => {
    const f = await codeFlowFixture(t);
    const key = dpopKey();
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'native-app' });
    const first = (await redeemWithDpop(f, 'native-app', code, challenge.verifier, tokenProof(f, key))).json() as TokenBody;
    assert.ok(first.refresh_token);
    assertOAuthError(await refreshWithDpop(f, 'native-app', first.refresh_token!, undefined), 400, 'invalid_grant', 'no proof');
    assertOAuthError(await refreshWithDpop(f, 'native-app', first.refresh_token!, tokenProof(f, dpopKey())), 400, 'invalid_grant', 'another key');
    const refreshed = await refreshWithDpop(f, 'native-app', first.refresh_token!, tokenProof(f, key));
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    const body = refreshed.json() as TokenBody;
    assert.equal(body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { jkt: key.jkt });
    // The rotated child keeps the binding.
    assertOAuthError(await refreshWithDpop(f, 'native-app', body.refresh_token!, tokenProof(f, dpopKey())), 400, 'invalid_grant');
    assert.equal((await refreshWithDpop(f, 'native-app', body.refresh_token!, tokenProof(f, key))).statusCode, 200);
    assert.equal((await f.auditEvents('consent.revoked')).length, 0, 'a refused key is not a reuse');
  });

  test('leaves a confidential client refresh token bound to its authentication: a new key binds the new access token', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'web-app' });
    const first = (await redeemWithDpop(f, 'web-app', code, challenge.verifier, tokenProof(f, dpopKey()))).json() as TokenBody;
    const next = dpopKey();
    const refreshed = await refreshWithDpop(f, 'web-app', first.refresh_token!, tokenProof(f, next));
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.deepEqual(decodeJwt((refreshed.json() as TokenBody).access_token).payload.cnf, { jkt: next.jkt });
  });

  test('gives a sender-constrained resource no bearer token from a code or a refresh token', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [{ client_id: 'venue-app', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: ['https://app.example.com/cb'], scope: 'trade:execute' }] });
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'venue-app', query: { scope: 'trade:execute', redirect_uri: 'https://app.example.com/cb' } });
    const redeem = (proof: string | undefined) =>
      f.token({ auth: f.basic('venue-app'), form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier, redirect_uri: 'https://app.example.com/cb' }, ...(proof ? { headers: { dpop: proof } } : {}) });
    assertOAuthError(await redeem(undefined), 400, 'invalid_request');
    const key = dpopKey();
    const issued = await redeem(tokenProof(f, key));
    assert.equal(issued.statusCode, 200, issued.body);
    const body = issued.json() as TokenBody;
    assertOAuthError(await f.token({ auth: f.basic('venue-app'), form: { grant_type: 'refresh_token', refresh_token: body.refresh_token! } }), 400, 'invalid_request');
    const refreshed = await f.token({ auth: f.basic('venue-app'), form: { grant_type: 'refresh_token', refresh_token: body.refresh_token! }, headers: { dpop: tokenProof(f, key) } });
    assert.equal(refreshed.statusCode, 200, refreshed.body);
  });
});

describe('discovery of DPoP and mTLS (RFC 9449 §5.1, RFC 8705 §3.3, §5)', () => {
  test('advertises the DPoP algorithms and certificate-bound tokens, and no mTLS aliases without a way to see certificates', async (t) => {
    const f = await protocolFixture(t);
    const metadata = (await f.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.deepEqual(metadata.dpop_signing_alg_values_supported, ['ES256', 'EdDSA', 'Ed25519', 'PS256']);
    assert.equal(metadata.tls_client_certificate_bound_access_tokens, true);
    assert.equal(metadata.mtls_endpoint_aliases, undefined);
  });

  test('advertises mtls_endpoint_aliases when a trusted proxy passes certificates, at CLEARANCE_MTLS_ORIGIN when set', async (t) => {
    const proxied = await protocolFixture(t, { env: { CLEARANCE_CLIENT_CERT_HEADER: 'client-cert', CLEARANCE_TRUSTED_PROXIES: '10.0.0.1' } });
    const same = (await proxied.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, Record<string, string>>;
    assert.equal(same.mtls_endpoint_aliases!.token_endpoint, `${proxied.issuer}/token`);
    const aliased = await protocolFixture(t, {
      env: { CLEARANCE_CLIENT_CERT_HEADER: 'client-cert', CLEARANCE_TRUSTED_PROXIES: '10.0.0.1', CLEARANCE_MTLS_ORIGIN: 'https://mtls.example.com' },
    });
    const metadata = (await aliased.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, Record<string, string>>;
    assert.deepEqual(metadata.mtls_endpoint_aliases, {
      token_endpoint: 'https://mtls.example.com/token',
      pushed_authorization_request_endpoint: 'https://mtls.example.com/par',
      backchannel_authentication_endpoint: 'https://mtls.example.com/bc-authorize',
      introspection_endpoint: 'https://mtls.example.com/introspect',
      revocation_endpoint: 'https://mtls.example.com/revoke',
      userinfo_endpoint: 'https://mtls.example.com/userinfo',
    });
    // A proof addressed to the alias is for this endpoint too.
    const key = dpopKey();
    const response = await clientCredentials(aliased, dpopProof(key, { htm: 'POST', htu: 'https://mtls.example.com/token', iat: now(aliased) }));
    assert.equal(response.statusCode, 200, response.body);
  });
});
