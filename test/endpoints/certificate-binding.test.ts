import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { dpopKey, dpopProof } from '../helpers/dpop.ts';
import { makePki, type Pem } from '../helpers/pki.ts';
import { assertOAuthError, decodeJwt } from './fixture.ts';

// RFC 8705 §3-4: certificate-bound tokens from the code and refresh grants. The certificate comes
// from a trusted TLS-terminating proxy's header (inject's address, 127.0.0.1, is the proxy), so
// these tests need no TLS listener; test/endpoints/mtls.test.ts covers the real handshake.

const proxied = { CLEARANCE_CLIENT_CERT_HEADER: 'client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };

interface TokenBody {
  access_token: string;
  refresh_token?: string;
  token_type: string;
}

/** RFC 9440 §2.2: the certificate's DER in base64 between colons. */
function certHeader(pem: Pem): Record<string, string> {
  return { 'client-cert': `:${new X509Certificate(pem.cert).raw.toString('base64')}:` };
}

async function redeem(f: CodeFlowFixture, client: string, headers: Record<string, string>): Promise<LightMyRequestResponse> {
  const { code, pkce } = await f.authorizeAndApprove({ client });
  const auth = await f.clientAuth(client);
  return f.token({
    ...(auth.auth ? { auth: auth.auth } : {}),
    form: { grant_type: 'authorization_code', code, code_verifier: pkce.verifier, redirect_uri: String(f.request(client).redirect_uri), ...auth.form },
    headers,
  });
}

async function refresh(f: CodeFlowFixture, client: string, refreshToken: string, headers: Record<string, string>): Promise<LightMyRequestResponse> {
  const auth = await f.clientAuth(client);
  return f.token({ ...(auth.auth ? { auth: auth.auth } : {}), form: { grant_type: 'refresh_token', refresh_token: refreshToken, ...auth.form }, headers });
}

describe('certificate-bound tokens from the code and refresh grants (RFC 8705 §3, §4)', () => {
  test('binds a public client refresh token to its certificate: another certificate or none is invalid_grant', async (t) => {
    const f = await codeFlowFixture(t, { env: proxied });
    const pki = makePki(t);
    const mine = pki.selfSigned('native', '/CN=native-app');
    const other = pki.selfSigned('other', '/CN=native-app');
    const issued = await redeem(f, 'native-app', certHeader(mine));
    assert.equal(issued.statusCode, 200, issued.body);
    const body = issued.json() as TokenBody;
    assert.equal(body.token_type, 'Bearer', 'RFC 8705 keeps the Bearer type');
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { 'x5t#S256': mine.thumbprint });

    assertOAuthError(await refresh(f, 'native-app', body.refresh_token!, certHeader(other)), 400, 'invalid_grant', 'another certificate');
    assertOAuthError(await refresh(f, 'native-app', body.refresh_token!, {}), 400, 'invalid_grant', 'no certificate');
    const refreshed = await refresh(f, 'native-app', body.refresh_token!, certHeader(mine));
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.deepEqual(decodeJwt((refreshed.json() as TokenBody).access_token).payload.cnf, { 'x5t#S256': mine.thumbprint });
  });

  test('leaves a confidential client refresh token to client authentication, so a renewed certificate keeps working', async (t) => {
    const f = await codeFlowFixture(t, { env: proxied });
    const pki = makePki(t);
    const first = pki.selfSigned('first', '/CN=web-app');
    const renewed = pki.selfSigned('renewed', '/CN=web-app');
    const body = (await redeem(f, 'web-app', certHeader(first))).json() as TokenBody;
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { 'x5t#S256': first.thumbprint });
    const refreshed = await refresh(f, 'web-app', body.refresh_token!, certHeader(renewed));
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.deepEqual(decodeJwt((refreshed.json() as TokenBody).access_token).payload.cnf, { 'x5t#S256': renewed.thumbprint }, 'bound to the certificate presented now');
  });

  test('binds to the DPoP key when a request carries both a proof and a certificate', async (t) => {
    const f = await codeFlowFixture(t, { env: proxied });
    const pki = makePki(t);
    const key = dpopKey();
    const proof = dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000) });
    const body = (await redeem(f, 'web-app', { ...certHeader(pki.selfSigned('both', '/CN=web-app')), dpop: proof })).json() as TokenBody;
    assert.equal(body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(body.access_token).payload.cnf, { jkt: key.jkt });
  });

  test('refuses a certificate-bound userinfo token presented with another certificate', async (t) => {
    const f = await codeFlowFixture(t, { env: proxied });
    const pki = makePki(t);
    const mine = pki.selfSigned('mine', '/CN=web-app');
    const { code, pkce } = await f.authorizeAndApprove({ client: 'web-app', query: { scope: 'openid' } });
    const issued = await f.token({
      auth: f.basic('web-app'),
      form: { grant_type: 'authorization_code', code, code_verifier: pkce.verifier, redirect_uri: String(f.request('web-app').redirect_uri) },
      headers: certHeader(mine),
    });
    const token = (issued.json() as TokenBody).access_token;
    const call = (headers: Record<string, string>) => f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}`, ...headers } });
    assert.equal((await call(certHeader(mine))).statusCode, 200);
    assertOAuthError(await call(certHeader(pki.selfSigned('thief', '/CN=web-app'))), 401, 'invalid_token');
    assertOAuthError(await call({}), 401, 'invalid_token');
  });
});
