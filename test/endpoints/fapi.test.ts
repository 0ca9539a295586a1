import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { InitialAccessTokens } from '../../src/clients/registration/initial-access-tokens.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { formatProblem } from '../../src/validation.ts';
import { codeFlowFixture, parRedirect, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { dpopKey, dpopProof } from '../helpers/dpop.ts';
import { testContext } from '../helpers/storage.ts';
import { assertOAuthError, basicAuthorization, decodeJwt, formBody, ordersApi, protocolFixture } from './fixture.ts';

// The FAPI 2.0 Security Profile switch (docs/configuration.md "FAPI 2.0"): per client
// (`profile: fapi2`) and server-wide (CLEARANCE_PROFILE=fapi2). A FAPI client cannot obtain a
// bearer token, use plain PKCE, skip PAR, or authenticate with a secret.

const assertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** A client assertion for `clientId`, signed with `key` (kid k1). */
async function assertion(issuer: string, clientId: string, key: CryptoKey, nowSeconds: number): Promise<string> {
  return new SignJWT({ iss: clientId, sub: clientId, aud: issuer, iat: nowSeconds, exp: nowSeconds + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .sign(key);
}

async function problemsOf(ctx: Context, document: Record<string, unknown>): Promise<string[]> {
  return (await planApply(ctx, document)).problems.map(formatProblem);
}

const fapiCodeClient = (jwk: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  client_id: 'fapi-app',
  kind: 'app',
  token_endpoint_auth_method: 'private_key_jwt',
  jwks: { keys: [{ ...jwk, kid: 'k1', alg: 'ES256' }] },
  grant_types: ['authorization_code', 'refresh_token'],
  redirect_uris: [parRedirect],
  scope: 'openid order:create',
  profile: 'fapi2',
  ...extra,
});

describe('registering under the FAPI 2.0 profile', () => {
  test('refuses a FAPI client with a shared secret or none, and an unknown profile, each at its path', async (t) => {
    const f = await protocolFixture(t);
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = (await exportJWK(publicKey)) as Record<string, unknown>;
    for (const method of ['client_secret_basic', 'client_secret_post', 'none']) {
      const problems = await problemsOf(f.ctx, { clients: [{ ...fapiCodeClient(jwk), jwks: undefined, token_endpoint_auth_method: method }] });
      assert.ok(problems.some((p) => p.startsWith('clients[0].token_endpoint_auth_method') && /FAPI 2.0/.test(p)), `${method}: ${problems.join('; ')}`);
    }
    const noPar = await problemsOf(f.ctx, { clients: [fapiCodeClient(jwk, { require_pushed_authorization_requests: false })] });
    assert.ok(noPar.some((p) => p.startsWith('clients[0].require_pushed_authorization_requests')), noPar.join('; '));
    const unknown = await problemsOf(f.ctx, { clients: [fapiCodeClient(jwk, { profile: 'fapi1' })] });
    assert.ok(unknown.some((p) => p.startsWith('clients[0].profile')), unknown.join('; '));
    assert.deepEqual(await problemsOf(f.ctx, { clients: [fapiCodeClient(jwk)] }), []);
  });

  test('refuses every secret client server-wide under CLEARANCE_PROFILE=fapi2, in apply and in dynamic registration', async (t) => {
    const { ctx } = await testContext({ t, env: { CLEARANCE_PROFILE: 'fapi2' } });
    const problems = await problemsOf(ctx, { clients: [{ client_id: 'svc', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] }] });
    assert.ok(problems.some((p) => p.startsWith('clients[0].token_endpoint_auth_method') && /CLEARANCE_PROFILE=fapi2/.test(p)), problems.join('; '));
    const app = buildApp(ctx);
    t.after(() => app.close());
    const token = await new InitialAccessTokens(ctx.storage.db).issue({ allowedScope: 'order:create', uses: 1, ttlSeconds: 60, createdBy: 'test', now: ctx.clock.now() });
    const response = await app.inject({
      method: 'POST',
      url: '/register',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      payload: JSON.stringify({ grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic' }),
    });
    assertOAuthError(response, 400, 'invalid_client_metadata');
  });
});

/** A server with CLEARANCE_PROFILE=fapi2, an Order API and one private_key_jwt client of each kind. */
async function fapiServer(t: TestContext): Promise<{ ctx: Context; app: FastifyInstance; key: CryptoKey }> {
  const { ctx } = await testContext({ t, env: { CLEARANCE_PROFILE: 'fapi2' } });
  const app = buildApp(ctx);
  t.after(() => app.close());
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = (await exportJWK(publicKey)) as Record<string, unknown>;
  const { plan, problems } = await planApply(ctx, {
    resource_servers: [{ identifier: ordersApi, scopes: ['order:create'] }],
    clients: [
      { ...fapiCodeClient(jwk), profile: undefined },
      { client_id: 'fapi-svc', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...jwk, kid: 'k1', alg: 'ES256' }] }, grant_types: ['client_credentials'], scope: 'order:create' },
    ],
  });
  assert.ok(plan, problems.map(formatProblem).join('\n'));
  await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
  return { ctx, app, key: privateKey };
}

describe('the FAPI 2.0 profile server-wide (CLEARANCE_PROFILE=fapi2)', () => {
  test('says in discovery that PAR is required, and refuses an authorization request without PAR', async (t) => {
    const { app } = await fapiServer(t);
    const metadata = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.equal(metadata.require_pushed_authorization_requests, true);
    const query = formBody({ client_id: 'fapi-app', response_type: 'code', redirect_uri: parRedirect, scope: 'openid order:create', code_challenge: pkce().challenge, code_challenge_method: 'S256', state: 's1' });
    const response = await app.inject({ method: 'GET', url: `/authorize?${query}` });
    assert.equal(response.statusCode, 303, response.body);
    const location = new URL(String(response.headers.location));
    assert.equal(location.searchParams.get('error'), 'invalid_request');
    assert.match(location.searchParams.get('error_description')!, /PAR/);
    assert.equal(location.searchParams.get('state'), 's1');
  });

  test('issues only sender-constrained client_credentials tokens', async (t) => {
    const { ctx, app, key } = await fapiServer(t);
    const now = () => Math.floor(ctx.clock.now() / 1000);
    const request = async (headers: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, client_assertion_type: assertionType, client_assertion: await assertion(ctx.config.issuer, 'fapi-svc', key, now()) }),
      });
    assertOAuthError(await request({}), 400, 'invalid_request');
    const proofKey = dpopKey();
    const response = await request({ dpop: dpopProof(proofKey, { htm: 'POST', htu: `${ctx.config.issuer}/token`, iat: now() }) });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().token_type, 'DPoP');
    assert.deepEqual(decodeJwt(response.json().access_token).payload.cnf, { jkt: proofKey.jkt });
  });

  test('refuses at the token endpoint a secret client registered before the switch was turned on', async (t) => {
    const { ctx, app } = await fapiServer(t);
    // As if written under the default profile: straight into the registry, past today's validation.
    const { secret } = await ctx.storage.db.transaction().execute((trx) =>
      ctx.clients.upsert(trx, { client_id: 'legacy', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' }),
    );
    ctx.clients.invalidate();
    const response = await app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('legacy', secret!), dpop: dpopProof(dpopKey(), { htm: 'POST', htu: `${ctx.config.issuer}/token`, iat: Math.floor(ctx.clock.now() / 1000) }) },
      payload: formBody({ grant_type: 'client_credentials', resource: ordersApi }),
    });
    const body = assertOAuthError(response, 401, 'invalid_client');
    assert.match(String(body.error_description), /FAPI 2.0/);
    assert.equal(response.headers['www-authenticate'], 'Basic realm="clearance"');
  });
});

/** A code flow fixture with `fapi-app` (profile fapi2, private_key_jwt with par-app's key). */
async function fapiClientFixture(t: TestContext): Promise<CodeFlowFixture & { fapiAuth(): Promise<Record<string, string>> }> {
  const f = await codeFlowFixture(t);
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  await f.apply({ clients: [fapiCodeClient((await exportJWK(publicKey)) as Record<string, unknown>)] });
  return Object.assign(f, {
    async fapiAuth() {
      return { client_assertion_type: assertionType, client_assertion: await assertion(f.issuer, 'fapi-app', privateKey, Math.floor(f.clock.now() / 1000)) };
    },
  });
}

/** fapi-app's code for a person who approved it: pushed (PAR), authorized, its PKCE verifier kept. */
async function pushedAndApproved(f: Awaited<ReturnType<typeof fapiClientFixture>>): Promise<{ code: string; challenge: ReturnType<typeof pkce> }> {
  const challenge = pkce();
  const pushed = await f.post('/par', { form: { ...(f.request('fapi-app', { redirect_uri: parRedirect, code_challenge: challenge.challenge }) as Record<string, string>), ...(await f.fapiAuth()) } });
  assert.equal(pushed.statusCode, 201, pushed.body);
  const { code } = await f.authorizeAndApprove({ client: 'fapi-app', query: { request_uri: pushed.json().request_uri }, pkce: challenge });
  return { code, challenge };
}

describe('a client registered with profile fapi2', () => {
  test('cannot skip PAR', async (t) => {
    const f = await fapiClientFixture(t);
    const person = await f.signIn('alice');
    const result = await f.authorize(f.request('fapi-app', { redirect_uri: parRedirect }), { cookie: person.cookie });
    assert.equal(result.location?.searchParams.get('error'), 'invalid_request');
    assert.match(result.location!.searchParams.get('error_description')!, /PAR/);
  });

  test('cannot use plain PKCE or none', async (t) => {
    const f = await fapiClientFixture(t);
    const push = async (extra: Record<string, string | undefined>) =>
      f.post('/par', { form: { ...(f.request('fapi-app', { redirect_uri: parRedirect, ...extra }) as Record<string, string>), ...(await f.fapiAuth()) } });
    const verifier = pkce().verifier;
    for (const [what, extra] of [
      ['plain', { code_challenge: verifier, code_challenge_method: 'plain' }],
      ['no method (plain)', { code_challenge: verifier, code_challenge_method: undefined }],
      ['no PKCE', { code_challenge: undefined, code_challenge_method: undefined }],
    ] as const) {
      const body = assertOAuthError(await push(extra), 400, 'invalid_request', what);
      assert.match(String(body.error_description), /code_challenge/, what);
    }
  });

  test('cannot obtain a bearer token from its code; with a DPoP proof it gets a DPoP-bound one', async (t) => {
    const f = await fapiClientFixture(t);
    const { code, challenge } = await pushedAndApproved(f);
    const redeem = async (headers: Record<string, string>): Promise<LightMyRequestResponse> =>
      f.token({ form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier, redirect_uri: parRedirect, ...(await f.fapiAuth()) }, headers });
    assertOAuthError(await redeem({}), 400, 'invalid_request');
    const key = dpopKey();
    const response = await redeem({ dpop: dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000) }) });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().token_type, 'DPoP');
    // Its refresh token too gives only bound tokens (the retry rule has a test of its own below).
    const refreshToken = response.json().refresh_token as string;
    const refresh = async (headers: Record<string, string>) => f.token({ form: { grant_type: 'refresh_token', refresh_token: refreshToken, ...(await f.fapiAuth()) }, headers });
    assertOAuthError(await refresh({}), 400, 'invalid_request');
    const proof = () => dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000) });
    const refreshed = await refresh({ dpop: proof() });
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.equal(refreshed.json().token_type, 'DPoP');
  });

  // docs/configuration.md "FAPI 2.0", refresh tokens: FAPI clients rotate like every confidential
  // client, and "a retry with the previous token succeeds while its successor is unused" — FAPI 2.0
  // allows rotation only on those terms (FAPI WG #456/#676), because a client whose response was
  // lost has no other token to continue with. Reuse after the successor was used is still detected.
  test('gives a retry with the previous refresh token the same successor, and refuses the previous token once the successor was used', async (t) => {
    const f = await fapiClientFixture(t);
    const { code, challenge } = await pushedAndApproved(f);
    const key = dpopKey();
    const proof = () => dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: Math.floor(f.clock.now() / 1000) });
    const issued = await f.token({ form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier, redirect_uri: parRedirect, ...(await f.fapiAuth()) }, headers: { dpop: proof() } });
    assert.equal(issued.statusCode, 200, issued.body);
    const original = issued.json().refresh_token as string;
    const refresh = async (refreshToken: string) => f.token({ form: { grant_type: 'refresh_token', refresh_token: refreshToken, ...(await f.fapiAuth()) }, headers: { dpop: proof() } });

    // The first use rotates: a new refresh token replaces the original.
    const lost = await refresh(original);
    assert.equal(lost.statusCode, 200, lost.body);
    const successor = lost.json().refresh_token as string;
    assert.ok(successor);
    assert.notEqual(successor, original, 'the refresh token rotates');

    // The response was lost: the retry with the original succeeds and returns the SAME successor,
    // so the client ends up holding the one live refresh token of the family (FAPI WG #456).
    const retry = await refresh(original);
    assert.equal(retry.statusCode, 200, retry.body);
    assert.equal(retry.json().refresh_token, successor, 'the retry returns the successor the lost response carried');
    assert.notEqual(retry.json().access_token, lost.json().access_token, 'a fresh access token');
    assert.equal(retry.json().token_type, 'DPoP');
    assert.equal((await f.auditEvents('consent.revoked')).length, 0, 'a retry is no reuse: the grant stands');

    // The successor is used: from now on the original is a reused token (RFC 9700 §4.14.2).
    const next = await refresh(successor);
    assert.equal(next.statusCode, 200, next.body);
    assertOAuthError(await refresh(original), 400, 'invalid_grant', 'the original after its successor was used');
    // Detected as reuse: the grant is revoked, so the newest refresh token dies with it.
    assertOAuthError(await refresh(next.json().refresh_token as string), 400, 'invalid_grant', 'the newest token after the reuse');
    assert.equal((await f.auditEvents('refresh.reused')).length, 1);
    assert.equal((await f.auditEvents('consent.revoked')).length, 1);
  });

  test('cannot authenticate with a secret, even if one was registered for it before', async (t) => {
    const f = await fapiClientFixture(t);
    const { secret } = await f.ctx.storage.db.transaction().execute((trx) =>
      f.ctx.clients.upsert(trx, { client_id: 'fapi-legacy', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [parRedirect], scope: 'openid', profile: 'fapi2' }),
    );
    f.ctx.clients.invalidate();
    const response = await f.post('/par', { auth: basicAuthorization('fapi-legacy', secret!), form: f.request('fapi-legacy', { redirect_uri: parRedirect, scope: 'openid' }) as Record<string, string> });
    assertOAuthError(response, 401, 'invalid_client');
  });
});
