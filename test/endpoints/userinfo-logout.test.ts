import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readSession } from '../../src/identity/sessions.ts';
import { codeFlowFixture, webLogout, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt } from './fixture.ts';
import { csrfOf } from './people-browser.ts';

async function signedInWithTokens(f: CodeFlowFixture, scope = 'openid'): Promise<{ person: Person; accessToken: string; idToken: string; refreshToken: string }> {
  const { code, pkce, person } = await f.authorizeAndApprove({ query: { scope } });
  const body = (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string; id_token: string; refresh_token: string };
  return { person, accessToken: body.access_token, idToken: body.id_token, refreshToken: body.refresh_token };
}

describe('the userinfo endpoint (OIDC Core §5.3)', () => {
  test('returns sub and the profile claims for a userinfo token, by GET and POST', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, accessToken } = await signedInWithTokens(f);
    for (const method of ['GET', 'POST'] as const) {
      const response = await f.inject({ method, url: '/userinfo', headers: { authorization: `Bearer ${accessToken}` } });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const body = response.json() as Record<string, unknown>;
      assert.equal(body.sub, person.userId);
      assert.equal(body.preferred_username, 'alice');
      assert.equal(body.name, 'Alice Trader');
      assert.equal(body.email, 'alice@broker.example.com');
    }
  });

  test('refuses a token for a business API, with an invalid_token challenge', async (t) => {
    const f = await codeFlowFixture(t);
    const { accessToken } = await signedInWithTokens(f, 'openid order:create');
    assert.notEqual(decodeJwt(accessToken).payload.aud, `${f.issuer}/userinfo`);
    const response = await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${accessToken}` } });
    assertOAuthError(response, 401, 'invalid_token');
    assert.match(String(response.headers['www-authenticate']), /^Bearer realm="clearance", error="invalid_token"/);
  });

  test('refuses no token, a token in the query, a forged token and a token of a revoked grant', async (t) => {
    const f = await codeFlowFixture(t);
    const { accessToken } = await signedInWithTokens(f);
    const bare = await f.inject({ method: 'GET', url: '/userinfo' });
    assertOAuthError(bare, 401, 'invalid_token');
    assert.equal(bare.headers['www-authenticate'], 'Bearer realm="clearance", DPoP realm="clearance", algs="ES256 EdDSA Ed25519 PS256"');
    const inQuery = await f.inject({ method: 'GET', url: `/userinfo?access_token=${accessToken}` });
    assertOAuthError(inQuery, 400, 'invalid_request');
    // RFC 6750 §3: a refused request to a protected resource carries a challenge.
    assert.match(String(inQuery.headers['www-authenticate']), /^Bearer realm="clearance", error="invalid_request"/);
    const [h, p, s] = accessToken.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(accessToken).payload, sub: 'someone-else' })).toString('base64url')}.${s}`;
    void p;
    assertOAuthError(await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${forged}` } }), 401, 'invalid_token');
    const grantId = decodeJwt(accessToken).payload.grant_id as string;
    await f.ctx.storage.db.updateTable('grants').set({ revoked_at: f.clock.now(), revoked_by: 'test', revoke_reason: 'test' }).where('id', '=', grantId).execute();
    assertOAuthError(await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${accessToken}` } }), 401, 'invalid_token');
  });

  test('refuses a token in the query string even beside a valid Authorization header, by GET and POST, as the admin API does', async (t) => {
    const f = await codeFlowFixture(t);
    const { accessToken } = await signedInWithTokens(f);
    const authorization = `Bearer ${accessToken}`;
    assert.equal((await f.inject({ method: 'GET', url: '/userinfo?x=1', headers: { authorization } })).statusCode, 200, 'the header alone, with another query parameter, is accepted');
    for (const method of ['GET', 'POST'] as const) {
      for (const url of [`/userinfo?access_token=${accessToken}`, `/userinfo?x=1&access_token=${accessToken}`]) {
        // RFC 6750 §2.3 is not offered, and FAPI 2.0 SP §5.3.4-2: a resource server shall not
        // accept access tokens in the query: the URL ends up in logs, so the request is refused
        // outright rather than served from the header.
        const response = await f.inject({ method, url, headers: { authorization } });
        assertOAuthError(response, 400, 'invalid_request', `${method} ${url.slice(0, 30)}`);
        assert.match(String(response.headers['www-authenticate']), /^Bearer realm="clearance", error="invalid_request"/);
      }
    }
  });
});

describe('the challenges of the userinfo endpoint (RFC 6750 §3, §3.1)', () => {
  test('answers Basic credentials with a challenge that carries no error code', async (t) => {
    const f = await codeFlowFixture(t);
    const response = await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Basic ${Buffer.from('web-app:secret').toString('base64')}` } });
    assertOAuthError(response, 401, 'invalid_token');
    // §3.1: a request with an unsupported authentication method SHOULD NOT get an error code.
    const challenge = String(response.headers['www-authenticate']);
    assert.match(challenge, /^Bearer realm="clearance", DPoP realm="clearance"/);
    assert.doesNotMatch(challenge, /error=/);
  });

  test('answers a malformed Bearer header with 400 invalid_request and a challenge', async (t) => {
    const f = await codeFlowFixture(t);
    const response = await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: 'Bearer two tokens' } });
    assertOAuthError(response, 400, 'invalid_request');
    assert.match(String(response.headers['www-authenticate']), /error="invalid_request"/);
  });
});

describe('RP-initiated logout (OIDC RP-Initiated Logout 1.0)', () => {
  test('ends the session of the hint and redirects to the registered post_logout_redirect_uri with state', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, idToken } = await signedInWithTokens(f);
    const query = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: webLogout, state: 'bye-1' });
    const response = await f.inject({ method: 'GET', url: `/logout?${query}`, headers: { cookie: person.cookie } });
    assert.equal(response.statusCode, 303, response.body);
    assert.equal(response.headers.location, `${webLogout}?state=bye-1`);
    assert.match(String(response.headers['set-cookie']), /clearance_session=; .*Max-Age=0/);
    assert.equal(await readSession(f.ctx, person.cookie), undefined, 'the session ended');
  });

  test('does not redirect for an unregistered or query-altered post_logout_redirect_uri, or without a hint', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, idToken } = await signedInWithTokens(f);
    for (const uri of ['https://evil.example.com/bye', `${webLogout}?x=1`, `${webLogout}/`]) {
      const query = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: uri });
      const response = await f.inject({ method: 'GET', url: `/logout?${query}`, headers: { cookie: person.cookie } });
      assert.equal(response.statusCode, 200, uri);
      assert.equal(response.headers.location, undefined, uri);
    }
    const noHint = await f.inject({ method: 'GET', url: `/logout?${new URLSearchParams({ post_logout_redirect_uri: webLogout, client_id: 'web-app' })}` });
    assert.equal(noHint.statusCode, 200);
    assert.equal(noHint.headers.location, undefined);
  });

  test('ignores an id_token_hint changed to alg none or tampered: no redirect, and the session stays until confirmed', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, idToken } = await signedInWithTokens(f);
    const [h, p, s] = idToken.split('.');
    const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
    const none = `${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${p}.`;
    const noneWithSignature = `${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${p}.${s}`;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(idToken).payload, aud: 'web-app', sub: 'x' })).toString('base64url')}.${s}`;
    for (const hint of [none, noneWithSignature, tampered]) {
      const query = new URLSearchParams({ id_token_hint: hint, post_logout_redirect_uri: webLogout });
      const response = await f.inject({ method: 'GET', url: `/logout?${query}`, headers: { cookie: person.cookie } });
      assert.equal(response.headers.location, undefined);
      assert.match(response.body, /Do you want to sign out/);
      assert.ok(await readSession(f.ctx, person.cookie), 'not signed out by a forged hint');
    }
  });

  test('ends the session after the person confirms on our own page: its CSRF token for this session, Origin ours or null (what a no-referrer page sends); nothing else', async (t) => {
    const f = await codeFlowFixture(t);
    const person = await f.signIn('alice');
    // The confirm page: a CSRF token bound to the session, and the browser's CSRF secret.
    const page = await f.inject({ method: 'GET', url: '/logout', headers: { cookie: person.cookie } });
    assert.match(page.body, /Do you want to sign out/);
    const secret = [page.headers['set-cookie']].flat().map(String).find((c) => c.startsWith('clearance_csrf='))!.split(';')[0]!;
    const token = csrfOf(page.body);
    const confirm = (headers: Record<string, string>, payload: string, cookie = `${person.cookie}; ${secret}`) =>
      f.inject({ method: 'POST', url: '/logout', headers: { cookie, ...headers, 'content-type': 'application/x-www-form-urlencoded' }, payload });
    const own = new URL(f.issuer).origin;
    const refused = [
      await confirm({ origin: 'https://evil.example.com' }, `confirm=yes&csrf_token=${token}`),
      await confirm({ origin: own }, 'confirm=yes'),
      await confirm({ origin: 'null' }, 'confirm=yes'),
      await confirm({ origin: own }, `confirm=yes&csrf_token=${token}&csrf_token=${token}`),
      await confirm({ origin: own }, `confirm=yes&csrf_token=${token}`, person.cookie),
      await confirm({ origin: own }, `csrf_token=${token}`),
    ];
    for (const response of refused) assert.match(response.body, /Do you want to sign out/);
    assert.ok(await readSession(f.ctx, person.cookie), 'still signed in');
    // Another session's token is worth nothing here.
    const other = await f.signIn('alice');
    const otherPage = await f.inject({ method: 'GET', url: '/logout', headers: { cookie: `${other.cookie}; ${secret}` } });
    assert.match((await confirm({ origin: own }, `confirm=yes&csrf_token=${csrfOf(otherPage.body)}`)).body, /Do you want to sign out/);
    assert.ok(await readSession(f.ctx, person.cookie));

    const done = await confirm({ origin: 'null' }, `confirm=yes&csrf_token=${token}`);
    assert.match(done.body, /You are signed out/);
    assert.equal(await readSession(f.ctx, person.cookie), undefined);
    assert.ok(await readSession(f.ctx, other.cookie), 'the other session is untouched');
    const again = await confirm({ origin: own }, `confirm=yes&csrf_token=${csrfOf(otherPage.body)}`, `${other.cookie}; ${secret}`);
    assert.match(again.body, /You are signed out/);
    assert.equal(await readSession(f.ctx, other.cookie), undefined);
  });

  test('treats the hint of a client apply’s prune disabled, or one deleted, as no hint: the confirmation page, no redirect to its URI', async (t) => {
    // `redeclared`: disabled, then declared again by apply — back in service, its older tokens (this hint) still dead.
    for (const end of ['disable', 'remove', 'redeclared'] as const) {
      const f = await codeFlowFixture(t);
      const { person, idToken } = await signedInWithTokens(f);
      f.clock.advance(1000);
      await f.ctx.storage.db.transaction().execute(async (trx) => assert.ok(end === 'remove' ? await f.ctx.clients.remove(trx, 'web-app') : await f.ctx.clients.disable(trx, 'web-app', f.clock.now())));
      if (end === 'redeclared') await f.ctx.storage.db.updateTable('clients').set({ disabled_at: null }).where('client_id', '=', 'web-app').execute();
      f.ctx.clients.invalidate();
      const query = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: webLogout, state: 'bye-2' });
      const response = await f.inject({ method: 'GET', url: `/logout?${query}`, headers: { cookie: person.cookie } });
      assert.equal(response.statusCode, 200, `${end}: ${response.body}`);
      assert.equal(response.headers.location, undefined, end);
      assert.match(response.body, /Do you want to sign out/, end);
      assert.ok(await readSession(f.ctx, person.cookie), `${end}: the session stays until the person confirms`);
    }
  });

  test('accepts an expired ID token as a hint', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, idToken } = await signedInWithTokens(f);
    f.clock.advance(3600_000);
    const query = new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: webLogout });
    const response = await f.inject({ method: 'GET', url: `/logout?${query}`, headers: { cookie: person.cookie } });
    assert.equal(response.statusCode, 303);
  });
});

describe('grants in the admin API', () => {
  test('lists a person\'s grants, shows one, and revokes it with admin:write only', async (t) => {
    const f = await codeFlowFixture(t);
    const { person, accessToken, refreshToken } = await signedInWithTokens(f, 'openid order:create');
    const reader = await f.accessToken('admin-viewer', { resource: `${f.issuer}/admin`, scope: 'admin:read' });
    const writer = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write' });

    const list = await f.inject({ method: 'GET', url: `/admin/grants?user=${person.userId}`, headers: { authorization: `Bearer ${reader}` } });
    assert.equal(list.statusCode, 200, list.body);
    const grants = (list.json() as { grants: Record<string, unknown>[] }).grants;
    assert.equal(grants.length, 1);
    assert.equal(grants[0]!.client_id, 'web-app');
    assert.deepEqual(grants[0]!.resources, { 'https://orders.example.com/api': ['order:create'] });
    assert.deepEqual(grants[0]!.oidc_scopes, ['openid']);
    const id = grants[0]!.id as string;
    assert.equal((await f.inject({ method: 'GET', url: `/admin/grants/${id}`, headers: { authorization: `Bearer ${reader}` } })).json().id, id);

    assertOAuthError(await f.inject({ method: 'DELETE', url: `/admin/grants/${id}`, headers: { authorization: `Bearer ${reader}` } }), 403, 'insufficient_scope');
    assertOAuthError(await f.inject({ method: 'DELETE', url: `/admin/grants/${id}` }), 401, 'invalid_token');
    const revoked = await f.inject({ method: 'DELETE', url: `/admin/grants/${id}?reason=left%20the%20desk`, headers: { authorization: `Bearer ${writer}` } });
    assert.equal(revoked.statusCode, 204, revoked.body);
    assertOAuthError(await f.inject({ method: 'DELETE', url: `/admin/grants/${id}`, headers: { authorization: `Bearer ${writer}` } }), 404, 'not_found');
    const after = (await f.inject({ method: 'GET', url: `/admin/grants/${id}`, headers: { authorization: `Bearer ${reader}` } })).json() as Record<string, unknown>;
    assert.equal(after.revoked_by, 'admin-ops');
    assert.equal(after.revoke_reason, 'left the desk');
    assert.equal((await f.introspect('web-app', accessToken)).active, false);
    assertOAuthError(await f.refresh('web-app', refreshToken), 400, 'invalid_grant');
    const [event] = await f.auditEvents('consent.revoked');
    assert.equal(event!.actor, 'admin-ops');
    assert.equal(event!.subject, person.userId);

    // A new authorization needs consent again, and makes a new grant.
    const again = await f.authorize(f.request('web-app'), { cookie: person.cookie });
    assert.ok(again.location?.pathname.startsWith('/interaction/'));
  });

  test('requires a user or client filter', async (t) => {
    const f = await codeFlowFixture(t);
    const reader = await f.accessToken('admin-viewer', { resource: `${f.issuer}/admin`, scope: 'admin:read' });
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/grants', headers: { authorization: `Bearer ${reader}` } }), 400, 'invalid_request');
  });
});

describe('discovery', () => {
  test('advertises the code flow, PAR, JAR, RAR, userinfo and logout', async (t) => {
    const f = await codeFlowFixture(t);
    const metadata = (await f.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.equal(metadata.authorization_endpoint, `${f.issuer}/authorize`);
    assert.equal(metadata.pushed_authorization_request_endpoint, `${f.issuer}/par`);
    assert.equal(metadata.userinfo_endpoint, `${f.issuer}/userinfo`);
    assert.equal(metadata.end_session_endpoint, `${f.issuer}/logout`);
    assert.deepEqual(metadata.response_types_supported, ['code']);
    assert.deepEqual(metadata.response_modes_supported, ['query']);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(metadata.subject_types_supported, ['public', 'pairwise']);
    assert.equal(metadata.authorization_response_iss_parameter_supported, true);
    assert.equal(metadata.require_pushed_authorization_requests, false);
    assert.deepEqual(metadata.authorization_details_types_supported, ['order', 'settlement_instruction', 'transfer']);
    assert.ok((metadata.request_object_signing_alg_values_supported as string[]).every((alg) => ['ES256', 'EdDSA', 'Ed25519', 'PS256'].includes(alg)));
    assert.ok((metadata.id_token_signing_alg_values_supported as string[]).includes('ES256'));
    assert.ok((metadata.scopes_supported as string[]).includes('openid'));
    assert.ok((metadata.claims_supported as string[]).includes('auth_time'));
    assert.ok((metadata.grant_types_supported as string[]).includes('authorization_code'));
    assert.ok((metadata.grant_types_supported as string[]).includes('refresh_token'));
  });
});
