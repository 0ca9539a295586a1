import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';

interface Tokens {
  access_token: string;
  refresh_token: string;
  id_token?: string;
  scope: string;
}

/** A person's tokens for `client` (through consent and the code). */
async function tokensFor(f: CodeFlowFixture, client: string, query: Record<string, string> = {}): Promise<Tokens> {
  const { code, pkce } = await f.authorizeAndApprove({ client, query });
  const response = await f.redeem(client, code, pkce.verifier);
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Tokens;
}

describe('the token endpoint with refresh_token', () => {
  test('rotates: a new refresh token and access token each time, same scope and subject', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'native-app');
    const second = await f.refresh('native-app', first.refresh_token);
    assert.equal(second.statusCode, 200, second.body);
    const body = second.json() as Tokens;
    assert.notEqual(body.refresh_token, first.refresh_token);
    assert.equal(body.scope, 'order:create');
    assert.equal(decodeJwt(body.access_token).payload.sub, decodeJwt(first.access_token).payload.sub);
    const third = await f.refresh('native-app', body.refresh_token);
    assert.equal(third.statusCode, 200, third.body);
    const [rotated] = await f.auditEvents('refresh.rotated');
    assert.equal(rotated!.client, 'native-app');
  });

  test('returns a fresh ID token with the original auth_time and no nonce (OIDC Core §12.2)', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app');
    f.clock.advance(30_000);
    const body = (await f.refresh('web-app', first.refresh_token)).json() as Tokens;
    const before = decodeJwt(first.id_token!).payload;
    const after = decodeJwt(body.id_token!).payload;
    assert.equal(after.auth_time, before.auth_time);
    assert.equal(after.nonce, undefined);
    assert.equal(after.iat, Math.floor(f.clock.now() / 1000));
  });

  describe('public clients (token_endpoint_auth_method none)', () => {
    test('revokes the whole grant when an old refresh token is used again', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'native-app');
      const second = (await f.refresh('native-app', first.refresh_token)).json() as Tokens;
      // The Order API's gateway may introspect tokens for its audience.
      assert.equal((await f.introspect('orders-gateway', second.access_token)).active, true);
      assertOAuthError(await f.refresh('native-app', first.refresh_token), 400, 'invalid_grant');
      assertOAuthError(await f.refresh('native-app', second.refresh_token), 400, 'invalid_grant', 'the newest token dies with the grant');
      assert.equal((await f.introspect('orders-gateway', second.access_token)).active, false);
      assert.equal((await f.auditEvents('refresh.reused')).length, 1);
      const [revoked] = await f.auditEvents('consent.revoked');
      assert.equal((revoked!.details as Record<string, unknown>).reason, 'refresh token reused');
    });

    test('gives a parallel double use one success, one invalid_grant, and revokes the grant', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'native-app');
      const responses = await Promise.all([f.refresh('native-app', first.refresh_token), f.refresh('native-app', first.refresh_token)]);
      assert.deepEqual(responses.map((r) => r.statusCode).sort(), [200, 400]);
      assertOAuthError(responses.find((r) => r.statusCode === 400)!, 400, 'invalid_grant');
      const winner = responses.find((r) => r.statusCode === 200)!.json() as Tokens;
      assertOAuthError(await f.refresh('native-app', winner.refresh_token), 400, 'invalid_grant');
      assert.equal((await f.auditEvents('consent.revoked')).length, 1);
    });
  });

  describe('confidential clients', () => {
    test('let a retry with the previous refresh token succeed while its successor is unused, with that same successor (FAPI WG #456)', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'web-app');
      const lost = (await f.refresh('web-app', first.refresh_token)).json() as Tokens;
      const retry = await f.refresh('web-app', first.refresh_token);
      assert.equal(retry.statusCode, 200, retry.body);
      const kept = retry.json() as Tokens;
      assert.equal(kept.refresh_token, lost.refresh_token, 'the retry returns the successor the lost response carried');
      assert.notEqual(kept.access_token, lost.access_token);
      assert.equal((await f.refresh('web-app', kept.refresh_token)).statusCode, 200);
      assert.equal((await f.auditEvents('consent.revoked')).length, 0);
    });

    test('revoke the grant when a token is reused after its successor was used', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'web-app');
      const second = (await f.refresh('web-app', first.refresh_token)).json() as Tokens;
      const third = (await f.refresh('web-app', second.refresh_token)).json() as Tokens;
      assertOAuthError(await f.refresh('web-app', first.refresh_token), 400, 'invalid_grant');
      assertOAuthError(await f.refresh('web-app', third.refresh_token), 400, 'invalid_grant');
    });

    test('end every access token of the reused family with the grant, as the revocation endpoint ends a family\'s (RFC 9700 §4.14.2, RFC 7009 §2.1)', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'web-app');
      const second = (await f.refresh('web-app', first.refresh_token)).json() as Tokens;
      const third = (await f.refresh('web-app', second.refresh_token)).json() as Tokens;
      assertOAuthError(await f.refresh('web-app', first.refresh_token), 400, 'invalid_grant');
      for (const issued of [first, second, third]) assert.equal((await f.introspect('web-app', issued.access_token)).active, false);
    });

    test('must authenticate', async (t) => {
      const f = await codeFlowFixture(t);
      const first = await tokensFor(f, 'web-app');
      assertOAuthError(await f.token({ form: { grant_type: 'refresh_token', client_id: 'web-app', refresh_token: first.refresh_token } }), 401, 'invalid_client');
      assertOAuthError(await f.token({ form: { grant_type: 'refresh_token', refresh_token: first.refresh_token } }), 401, 'invalid_client');
    });
  });

  test('refuses a refresh token used by another client, without consuming it', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'native-app');
    assertOAuthError(await f.refresh('web-app', first.refresh_token), 400, 'invalid_grant');
    assert.equal((await f.refresh('native-app', first.refresh_token)).statusCode, 200);
  });

  test('refuses an expired refresh token (12 h absolute, not extended by rotation)', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'native-app');
    f.clock.advance(6 * 3600_000);
    const second = (await f.refresh('native-app', first.refresh_token)).json() as Tokens;
    f.clock.advance(6 * 3600_000 + 1000);
    assertOAuthError(await f.refresh('native-app', second.refresh_token), 400, 'invalid_grant');
  });

  test('allows a narrower scope and refuses a wider one with invalid_scope', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app', { scope: 'openid order:create order:cancel' });
    assert.equal(first.scope, 'order:create order:cancel');
    const narrow = await f.refresh('web-app', first.refresh_token, { scope: 'order:cancel' });
    assert.equal(narrow.statusCode, 200, narrow.body);
    assert.equal(narrow.json().scope, 'order:cancel');
    assert.equal(decodeJwt(narrow.json().access_token).payload.scope, 'order:cancel');
    const next = narrow.json() as Tokens;
    assertOAuthError(await f.refresh('web-app', next.refresh_token, { scope: 'order:create position:view' }), 400, 'invalid_scope');
    assertOAuthError(await f.refresh('web-app', next.refresh_token, { scope: 'openid order:create', resource: `${f.issuer}/userinfo` }), 400, 'invalid_scope', 'order:create is not granted for userinfo');
    const full = await f.refresh('web-app', next.refresh_token);
    assert.equal(full.json().scope, 'order:create order:cancel', 'the refresh token keeps the original scope (RFC 6749 §6)');
  });

  test('accepts the whole granted scope sent again, OIDC scopes included, as requests-oauthlib and authlib send it (RFC 6749 §6)', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app', { scope: 'openid offline_access order:create order:cancel' });
    const again = await f.refresh('web-app', first.refresh_token, { scope: 'openid offline_access order:create order:cancel' });
    assert.equal(again.statusCode, 200, again.body);
    // openid and offline_access belong to the grant, not to the Order API: the business token carries its own scopes.
    assert.equal(again.json().scope, 'order:create order:cancel');
    assert.equal(decodeJwt(again.json().access_token).payload.aud, ordersApi);
    assert.ok(again.json().id_token, 'openid was granted: a refreshed ID token comes back');
    const narrower = await f.refresh('web-app', again.json().refresh_token, { scope: 'openid order:cancel' });
    assert.equal(narrower.statusCode, 200, narrower.body);
    assert.equal(narrower.json().scope, 'order:cancel');
  });

  test('gives the userinfo token for OIDC scopes alone, and refuses an OIDC scope that was never granted', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app', { scope: 'openid order:create' });
    const userinfo = await f.refresh('web-app', first.refresh_token, { scope: 'openid' });
    assert.equal(userinfo.statusCode, 200, userinfo.body);
    assert.equal(decodeJwt(userinfo.json().access_token).payload.aud, `${f.issuer}/userinfo`);
    assert.equal(userinfo.json().scope, 'openid');
    assertOAuthError(await f.refresh('web-app', userinfo.json().refresh_token, { scope: 'offline_access order:create' }), 400, 'invalid_scope', 'offline_access was not granted');
  });

  test('switches the audience within the grant with resource, and refuses others with invalid_target', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app');
    const userinfo = await f.refresh('web-app', first.refresh_token, { resource: `${f.issuer}/userinfo` });
    assert.equal(decodeJwt(userinfo.json().access_token).payload.aud, `${f.issuer}/userinfo`);
    assertOAuthError(await f.refresh('web-app', userinfo.json().refresh_token, { resource: 'https://clearing.example.com' }), 400, 'invalid_target');
  });

  test('fails once the person or an admin revokes the grant, and the access tokens turn inactive', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app');
    const grantId = decodeJwt(first.access_token).payload.grant_id as string;
    const admin = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write' });
    const revoked = await f.inject({ method: 'DELETE', url: `/admin/grants/${grantId}`, headers: { authorization: `Bearer ${admin}` } });
    assert.equal(revoked.statusCode, 204, revoked.body);
    assertOAuthError(await f.refresh('web-app', first.refresh_token), 400, 'invalid_grant');
    assert.equal((await f.introspect('web-app', first.access_token)).active, false);
  });

  test('is revocable at the revocation endpoint (RFC 7009), with its whole rotation family', async (t) => {
    const f = await codeFlowFixture(t);
    const first = await tokensFor(f, 'web-app');
    const second = (await f.refresh('web-app', first.refresh_token)).json() as Tokens;
    const response = await f.post('/revoke', { auth: f.basic('web-app'), form: { token: second.refresh_token, token_type_hint: 'refresh_token' } });
    assert.equal(response.statusCode, 200);
    assertOAuthError(await f.refresh('web-app', second.refresh_token), 400, 'invalid_grant');
    const other = await f.post('/revoke', { auth: f.basic('code-only'), form: { token: 'unknown' } });
    assert.equal(other.statusCode, 200);
  });

  test('refuses an unknown refresh token, and requires one', async (t) => {
    const f = await codeFlowFixture(t);
    assertOAuthError(await f.refresh('web-app', 'x'.repeat(43)), 400, 'invalid_grant');
    assertOAuthError(await f.token({ auth: f.basic('web-app'), form: { grant_type: 'refresh_token' } }), 400, 'invalid_request');
  });
});

/**
 * Issue 20 item 3: one refresh rule under concurrency on every dialect (docs/authorization.md,
 * src/tokens/refresh-tokens.ts). PostgreSQL used to give 12-13 of 50 concurrent uses of a
 * confidential client's token a success and then revoke the grant, so those successes carried
 * tokens that were already dead; SQLite gave 50 successes whose refresh tokens replaced each other.
 */
for (const dialect of testDialects()) {
  describe(`50 concurrent uses of one refresh token on ${dialect.name}`, () => {
    const parallel = 50;

    test('a confidential client: exactly one rotation, every request the same live refresh token and a live access token, the grant kept', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const first = await tokensFor(f, 'web-app');
      const responses = await Promise.all(Array.from({ length: parallel }, () => f.refresh('web-app', first.refresh_token)));
      assert.deepEqual(responses.map((r) => r.statusCode), Array(parallel).fill(200), responses.find((r) => r.statusCode !== 200)?.body);
      const bodies = responses.map((r) => r.json() as Tokens);
      assert.equal(new Set(bodies.map((b) => b.refresh_token)).size, 1, 'one successor for all');
      assert.equal(new Set(bodies.map((b) => b.access_token)).size, parallel);
      const rotations = (await f.auditEvents('refresh.rotated')).map((e) => (e.details as Record<string, unknown>).rotation);
      assert.equal(rotations.filter((r) => r === 'rotated').length, 1, 'exactly one rotation');
      assert.equal(rotations.filter((r) => r === 'retried').length, parallel - 1);
      assert.equal((await f.auditEvents('consent.revoked')).length, 0, 'a race of duplicates is no theft');
      assert.equal((await f.auditEvents('refresh.reused')).length, 0);
      for (const body of bodies) assert.equal((await f.introspect('orders-gateway', body.access_token)).active, true, 'no success carries a dead token');
      const next = await f.refresh('web-app', bodies[0]!.refresh_token);
      assert.equal(next.statusCode, 200, next.body);
      // Once the successor was used, the old token is a reuse (RFC 9700 §4.14.2): the grant goes.
      assertOAuthError(await f.refresh('web-app', first.refresh_token), 400, 'invalid_grant');
      assert.equal((await f.introspect('orders-gateway', (next.json() as Tokens).access_token)).active, false);
    });

    test('a public client: exactly one success, the grant revoked, and that success\'s tokens dead with it', async (t) => {
      const f = await codeFlowFixture(t, { dialect });
      const first = await tokensFor(f, 'native-app');
      const responses = await Promise.all(Array.from({ length: parallel }, () => f.refresh('native-app', first.refresh_token)));
      const winners = responses.filter((r) => r.statusCode === 200);
      assert.equal(winners.length, 1, 'exactly one rotation');
      for (const loser of responses.filter((r) => r.statusCode !== 200)) assertOAuthError(loser, 400, 'invalid_grant');
      assert.equal((await f.auditEvents('consent.revoked')).length, 1, 'a parallel reuse revokes the grant once (RFC 9700 §4.14.2)');
      const winner = winners[0]!.json() as Tokens;
      assertOAuthError(await f.refresh('native-app', winner.refresh_token), 400, 'invalid_grant');
      assert.equal((await f.introspect('orders-gateway', winner.access_token)).active, false);
    });
  });
}
