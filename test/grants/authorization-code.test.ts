import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { revokeGrant } from '../../src/authorization/consent.ts';
import { codeFlowFixture, ordersApi, pkce, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt } from '../endpoints/fixture.ts';
import { nextUtc } from '../risk/fixture.ts';

interface Tokens {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
}

async function verify(f: CodeFlowFixture, jwt: string, typ: string) {
  const jwks = (await f.inject({ method: 'GET', url: '/jwks' })).json() as JSONWebKeySet;
  return jwtVerify(jwt, createLocalJWKSet(jwks), { issuer: f.issuer, typ, currentDate: new Date(f.clock.now()) });
}

describe('the token endpoint with authorization_code', () => {
  test('issues an access token for the person, a refresh token and an ID token (OIDC Core §3.1.3.3)', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge, person } = await f.authorizeAndApprove({});
    const response = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json() as Tokens;
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.scope, 'order:create');
    assert.match(body.refresh_token!, /^[\w-]{43}$/, 'opaque, 256 bits');

    const access = await verify(f, body.access_token, 'at+jwt');
    assert.equal(access.payload.sub, person.userId);
    assert.equal(access.payload.aud, ordersApi);
    assert.equal(access.payload.client_id, 'web-app');
    assert.equal(access.payload.scope, 'order:create');
    assert.equal(typeof access.payload.grant_id, 'string');
    assert.equal(access.payload.auth_time, person.authentication.authTime);
    assert.equal(access.payload.acr, 'urn:clearance:acr:pwd');
    assert.deepEqual(access.payload.amr, ['pwd']);

    const id = await verify(f, body.id_token!, 'JWT');
    assert.equal(id.payload.iss, f.issuer);
    assert.equal(id.payload.sub, person.userId);
    assert.equal(id.payload.aud, 'web-app');
    assert.equal(id.payload.nonce, 'n-456');
    assert.equal(id.payload.auth_time, person.authentication.authTime);
    assert.equal(id.payload.acr, 'urn:clearance:acr:pwd');
    assert.deepEqual(id.payload.amr, ['pwd']);
    assert.ok(id.payload.exp! > id.payload.iat!);

    const events = await f.auditEvents('token.issued');
    const issued = events.at(-1)!;
    assert.equal(issued.subject, person.userId);
    assert.equal((issued.details as Record<string, unknown>).grant_type, 'authorization_code');
    assert.equal((await f.auditEvents('code.redeemed')).length, 1);
    const text = await f.auditText();
    assert.ok(!text.includes(code) && !text.includes(body.refresh_token!) && !text.includes(challenge.verifier), 'no secrets in the audit log');
  });

  test('issues no ID token without openid, and no refresh token to a client not registered for it', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({ client: 'code-only', query: { scope: 'order:create' } });
    const body = (await f.redeem('code-only', code, challenge.verifier)).json() as Tokens;
    assert.equal(body.id_token, undefined);
    assert.equal(body.refresh_token, undefined);
    assert.equal(decodeJwt(body.access_token).payload.aud, ordersApi);
  });

  test('gives an openid-only request a token for the userinfo endpoint, and lets resource choose it', async (t) => {
    const f = await codeFlowFixture(t);
    const only = await f.authorizeAndApprove({ query: { scope: 'openid' } });
    const body = (await f.redeem('web-app', only.code, only.pkce.verifier)).json() as Tokens;
    assert.equal(decodeJwt(body.access_token).payload.aud, `${f.issuer}/userinfo`);
    assert.equal(body.scope, 'openid');

    const both = await f.authorizeAndApprove({ person: only.person, query: { prompt: 'consent' } });
    const chosen = (await f.redeem('web-app', both.code, both.pkce.verifier, { resource: `${f.issuer}/userinfo` })).json() as Tokens;
    assert.equal(decodeJwt(chosen.access_token).payload.aud, `${f.issuer}/userinfo`);
  });

  test('refuses a resource the grant does not cover with invalid_target', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    assertOAuthError(await f.redeem('web-app', code, challenge.verifier, { resource: 'https://clearing.example.com' }), 400, 'invalid_target');
    assert.equal((await f.redeem('web-app', code, challenge.verifier)).statusCode, 200, 'the refusal did not burn the code');
  });

  test('refuses a reused code with invalid_grant and revokes the tokens of the first redemption', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    const first = (await f.redeem('web-app', code, challenge.verifier)).json() as Tokens;
    assert.equal((await f.introspect('web-app', first.access_token)).active, true);
    f.clock.advance(1000);

    assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_grant');
    assert.equal((await f.introspect('web-app', first.access_token)).active, false, 'the first access token is inactive');
    assertOAuthError(await f.refresh('web-app', first.refresh_token!), 400, 'invalid_grant', 'the first refresh token fails');
    const [reused] = await f.auditEvents('code.reused');
    assert.equal(reused!.client, 'web-app');
    const [revoked] = await f.auditEvents('consent.revoked');
    assert.equal((revoked!.details as Record<string, unknown>).reason, 'authorization code reused');
  });

  test('lets exactly one of 20 parallel redemptions of one code succeed, and revokes what it issued', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    const responses = await Promise.all(Array.from({ length: 20 }, () => f.redeem('web-app', code, challenge.verifier)));
    const ok = responses.filter((r) => r.statusCode === 200);
    assert.equal(ok.length, 1, responses.map((r) => r.statusCode).join(','));
    for (const r of responses.filter((r) => r.statusCode !== 200)) assertOAuthError(r, 400, 'invalid_grant');
    const winner = ok[0]!.json() as Tokens;
    assert.equal((await f.introspect('web-app', winner.access_token)).active, false);
    assert.equal((await f.auditEvents('code.redeemed')).length, 1);
    assert.equal((await f.auditEvents('consent.revoked')).length, 1);
  });

  test('refuses a code older than 60 s', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    f.clock.advance(60_001);
    assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_grant');
  });

  test('refuses a code redeemed by another client, without burning it', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    assertOAuthError(await f.redeem('code-only', code, challenge.verifier, { redirect_uri: webRedirect }), 400, 'invalid_grant');
    assert.equal((await f.redeem('web-app', code, challenge.verifier)).statusCode, 200);
  });

  test('refuses a different or missing redirect_uri', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    assertOAuthError(await f.redeem('web-app', code, challenge.verifier, { redirect_uri: 'https://app.example.com/cb?tenant=a' }), 400, 'invalid_grant');
    const auth = f.basic('web-app');
    assertOAuthError(await f.token({ auth, form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier } }), 400, 'invalid_grant');
  });

  test('refuses a missing, wrong, or malformed code_verifier (RFC 7636 §4.1, §4.6)', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    const auth = f.basic('web-app');
    assertOAuthError(await f.token({ auth, form: { grant_type: 'authorization_code', code, redirect_uri: webRedirect } }), 400, 'invalid_grant');
    assertOAuthError(await f.redeem('web-app', code, pkce().verifier), 400, 'invalid_grant');
    assertOAuthError(await f.redeem('web-app', code, 'short'), 400, 'invalid_grant');
    assertOAuthError(await f.redeem('web-app', code, `${challenge.verifier.slice(0, 42)}+`), 400, 'invalid_grant');
    assertOAuthError(await f.redeem('web-app', code, 'a'.repeat(129)), 400, 'invalid_grant');
    assert.equal((await f.redeem('web-app', code, challenge.verifier)).statusCode, 200, 'the right verifier still works');
  });

  test('refuses an unknown code, and a code sent twice in one request', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    assertOAuthError(await f.redeem('web-app', 'x'.repeat(43), challenge.verifier), 400, 'invalid_grant');
    const auth = f.basic('web-app');
    assertOAuthError(await f.token({ auth, form: { grant_type: 'authorization_code', code: [code, code], code_verifier: challenge.verifier, redirect_uri: webRedirect } }), 400, 'invalid_request');
  });

  test('lets a public client redeem with its client_id, and requires a confidential client to authenticate', async (t) => {
    const f = await codeFlowFixture(t);
    const native = await f.authorizeAndApprove({ client: 'native-app' });
    assert.equal((await f.redeem('native-app', native.code, native.pkce.verifier)).statusCode, 200);

    const web = await f.authorizeAndApprove({ person: native.person });
    const unauthenticated = await f.token({ form: { grant_type: 'authorization_code', client_id: 'web-app', code: web.code, code_verifier: web.pkce.verifier, redirect_uri: webRedirect } });
    assertOAuthError(unauthenticated, 401, 'invalid_client');
    assertOAuthError(await f.token({ auth: f.basic('web-app', 'wrong'), form: { grant_type: 'authorization_code', code: web.code, code_verifier: web.pkce.verifier, redirect_uri: webRedirect } }), 401, 'invalid_client');
  });

  test('refuses a public client at client_credentials and a password grant', async (t) => {
    const f = await codeFlowFixture(t);
    assertOAuthError(await f.token({ form: { grant_type: 'client_credentials', client_id: 'native-app' } }), 401, 'invalid_client');
    assertOAuthError(await f.token({ auth: f.basic('web-app'), form: { grant_type: 'password', username: 'alice', password: 'x' } }), 400, 'unsupported_grant_type');
  });

  test('refuses a revoked grant', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce: challenge } = await f.authorizeAndApprove({});
    const grantId = (await f.ctx.storage.db.selectFrom('grants').select('id').executeTakeFirstOrThrow()).id;
    assert.equal(await revokeGrant(f.ctx, grantId, { actor: 'test', reason: 'test' }), true);
    assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_grant');
  });
});

describe('the authorization code flow under a mandate', () => {
  const mandate = (grantee: Record<string, string>, scopes = ['order:create']) => ({
    id: 'desk-mandate',
    grantor: { lei: '5493001KJTIIGC8Y1R12' },
    grantee,
    scopes,
    legal_basis: { reference: 'Desk authority 12' },
    effective_from: '2020-01-01T00:00:00Z',
    accepted_by: 'ops',
    accepted_at: '2020-01-01T00:00:00Z',
  });

  test('a person acting under their mandate gets tokens naming it, refreshed while it is in force', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    await f.apply({ mandates: [mandate({ user: 'alice' })] });
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { mandate: 'desk-mandate' } });
    const response = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as Tokens;
    assert.deepEqual(decodeJwt(body.access_token).payload.mandate, { id: 'desk-mandate', v: 1 });
    const refreshed = await f.refresh('web-app', body.refresh_token!);
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.deepEqual(decodeJwt((refreshed.json() as Tokens).access_token).payload.mandate, { id: 'desk-mandate', v: 1 });
    const { revokeMandate } = await import('../../src/mandates/store.ts');
    await revokeMandate(f.ctx, 'desk-mandate', { reason: 'desk closed' }, { actor: 'test' });
    assertOAuthError(await f.refresh('web-app', (refreshed.json() as Tokens).refresh_token!), 400, 'invalid_grant');
  });

  test('a person\'s token under a mandate ends when its time window closes; the refresh token outlives the window but is refused until it opens again', async (t) => {
    const f = await codeFlowFixture(t);
    // Every day 09:00 to 03:00 the next morning in Tokyo (UTC+9 all year): 00:00–18:00Z, closed 18:00–24:00Z.
    f.clock.set(nextUtc(f.clock.now(), 3, 17, 59));
    const closes = f.clock.now() + 60_000;
    const person = await f.signIn('alice');
    const hours = { time_window: { timezone: 'Asia/Tokyo', days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], hours: { from: '09:00', to: '03:00' } } };
    await f.apply({ mandates: [{ ...mandate({ user: 'alice' }), constraints: hours }] });
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { mandate: 'desk-mandate' } });
    const response = await f.redeem('web-app', code, challenge.verifier);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as Tokens;
    assert.equal(decodeJwt(body.access_token).payload.exp, closes / 1000, 'the access token ends at the close, not 120 s on');
    // As with effective_to, the refresh token keeps its family's lifetime: the mandate is checked at every refresh.
    f.clock.advance(30_000);
    const refreshed = await f.refresh('web-app', body.refresh_token!);
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.equal(decodeJwt((refreshed.json() as Tokens).access_token).payload.exp, closes / 1000, 'a refreshed one too');
    f.clock.set(closes + 60_000);
    const refused = assertOAuthError(await f.refresh('web-app', (refreshed.json() as Tokens).refresh_token!), 400, 'invalid_grant');
    assert.match(String(refused.error_description), /outside the time window/);
    // The window opens again at 00:00Z: the same refresh token works, its tokens until the next close.
    f.clock.set(closes + 6 * 3600_000 + 60_000);
    const reopened = await f.refresh('web-app', (refreshed.json() as Tokens).refresh_token!);
    assert.equal(reopened.statusCode, 200, reopened.body);
    assert.deepEqual(decodeJwt((reopened.json() as Tokens).access_token).payload.mandate, { id: 'desk-mandate', v: 1 });
  });

  test('a mandate granted to someone else is refused at the token endpoint', async (t) => {
    const f = await codeFlowFixture(t);
    await f.user('bob');
    const person = await f.signIn('alice');
    await f.apply({ mandates: [mandate({ user: 'bob' })] });
    const { code, pkce: challenge } = await f.authorizeAndApprove({ person, query: { mandate: 'desk-mandate' } });
    assertOAuthError(await f.redeem('web-app', code, challenge.verifier), 400, 'invalid_grant');
  });

  test('a malformed mandate is refused at the authorization endpoint', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    const result = await f.authorize(f.request('web-app', { code_challenge: pkce().challenge, mandate: 'no spaces allowed' }), { cookie: person.cookie });
    assert.equal(result.location?.searchParams.get('error'), 'invalid_request');
  });
});
