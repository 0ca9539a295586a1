import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { userinfoAudience } from '../../src/authorization/scopes.ts';
import { accessAudience } from '../../src/resource-servers/builtins.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { RevocationList } from '../../src/tokens/revocation.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { exampleMandate } from '../mandates/fixture.ts';
import { assertOAuthError, decodeJwt } from '../endpoints/fixture.ts';

/**
 * The one protected-resource check (src/tokens/protected-resource.ts): userinfo, the admin API
 * and the AuthZEN API refuse exactly the tokens introspection calls inactive.
 */

const day = 86_400_000;

/** Each protected resource of ours: its audience, the scope it needs, and a request that uses a token. */
function resources(f: CodeFlowFixture) {
  return [
    { name: 'userinfo', audience: userinfoAudience(f.issuer), scope: 'openid', call: (token: string) => f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}` } }) },
    { name: 'the admin API', audience: adminAudience(f.issuer), scope: 'admin:read', call: (token: string) => f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `Bearer ${token}` } }) },
    {
      name: 'the AuthZEN API',
      audience: accessAudience(f.issuer),
      scope: 'access:evaluate',
      call: (token: string) =>
        f.inject({
          method: 'POST',
          url: '/access/v1/evaluation',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          payload: JSON.stringify({ subject: { type: 'client', id: 'broker-1' }, action: { name: 'order:create' }, resource: { type: 'instrument', id: 'EURUSD' } }),
        }),
    },
  ];
}

/** A token for `audience` as a grant mints it, with the liveness references given. */
async function token(f: CodeFlowFixture, audience: string, scope: string, refs: { sub: string; grant_id?: string; refresh_family?: string; mandate?: { id: string; v: number } }): Promise<{ token: string; jti: string; exp: number }> {
  const iat = Math.floor(f.clock.now() / 1000);
  const jti = newJti();
  const claims = { iss: f.issuer, aud: audience, iat, exp: iat + 300, jti, client_id: 'web-app', scope, ...refs };
  return { token: await mintAccessToken(f.ctx.keys, claims), jti, exp: claims.exp };
}

describe('the one protected-resource check at userinfo, the admin API and the AuthZEN API', () => {
  test('refuses a token whose consent grant was revoked, at every resource', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid' } });
    const redeemed = (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string };
    const { grant_id: grantId, sub } = decodeJwt(redeemed.access_token).payload as { grant_id: string; sub: string };
    const tokens = await Promise.all(resources(f).map((r) => token(f, r.audience, r.scope, { sub, grant_id: grantId })));
    for (const [i, r] of resources(f).entries()) assert.equal((await r.call(tokens[i]!.token)).statusCode, 200, `${r.name} accepts the live token`);

    await f.ctx.storage.db.updateTable('grants').set({ revoked_at: f.clock.now(), revoked_by: 'test', revoke_reason: 'person withdrew consent' }).where('id', '=', grantId).execute();
    for (const [i, r] of resources(f).entries()) {
      const refused = await r.call(tokens[i]!.token);
      assertOAuthError(refused, 401, 'invalid_token', r.name);
      assert.match(String(refused.headers['www-authenticate']), /^Bearer realm="clearance", error="invalid_token"/, r.name);
    }
  });

  test('refuses a token whose mandate was revoked, at every resource', async (t) => {
    const f = await codeFlowFixture(t);
    const admin = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const mandate = {
      ...exampleMandate,
      grantee: { client_id: 'broker-1' },
      effective_from: new Date(f.clock.now() - day).toISOString(),
      effective_to: new Date(f.clock.now() + 365 * day).toISOString(),
      accepted_by: 'broker-coo',
    };
    const adminCall = (url: string, body: unknown) =>
      f.inject({ method: 'POST', url, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, payload: JSON.stringify(body) });
    assert.equal((await adminCall('/admin/mandates', mandate)).statusCode, 201);
    // A person's token for userinfo needs a live grant besides the mandate; the others are clients'.
    const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid' } });
    const redeemed = (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string };
    const person = decodeJwt(redeemed.access_token).payload as { grant_id: string; sub: string };
    const ref = { id: mandate.id, v: 1 };
    const tokens = await Promise.all(
      resources(f).map((r) => token(f, r.audience, r.scope, r.audience === userinfoAudience(f.issuer) ? { sub: person.sub, grant_id: person.grant_id, mandate: ref } : { sub: 'broker-1', mandate: ref })),
    );
    for (const [i, r] of resources(f).entries()) assert.equal((await r.call(tokens[i]!.token)).statusCode, 200, `${r.name} accepts the token while its mandate is in force`);

    assert.equal((await adminCall(`/admin/mandates/${mandate.id}/revoke`, { reason: 'client agreement terminated' })).statusCode, 200);
    for (const [i, r] of resources(f).entries()) assertOAuthError(await r.call(tokens[i]!.token), 401, 'invalid_token', r.name);
  });

  test('refuses a revoked token, at every resource', async (t) => {
    const f = await codeFlowFixture(t);
    const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid' } });
    const redeemed = (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string };
    const { grant_id: grantId, sub } = decodeJwt(redeemed.access_token).payload as { grant_id: string; sub: string };
    const revocations = new RevocationList(f.ctx.storage.db);
    for (const r of resources(f)) {
      const issued = await token(f, r.audience, r.scope, r.audience === userinfoAudience(f.issuer) ? { sub, grant_id: grantId } : { sub: 'broker-1' });
      assert.equal((await r.call(issued.token)).statusCode, 200, r.name);
      await revocations.revoke(issued.jti, issued.exp * 1000, f.clock.now(), 'test');
      assertOAuthError(await r.call(issued.token), 401, 'invalid_token', r.name);
    }
  });

  test('refuses a token of a refresh family revoked at the revocation endpoint, at every resource, and not one of another family (RFC 7009 §2.1)', async (t) => {
    const f = await codeFlowFixture(t);
    const redeem = async () => {
      const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid' } });
      return (await f.redeem('web-app', code, pkce.verifier)).json() as { access_token: string; refresh_token: string };
    };
    const revoked = await redeem();
    const kept = await redeem();
    const person = decodeJwt(revoked.access_token).payload as { grant_id: string; sub: string; refresh_family: string };
    const other = (decodeJwt(kept.access_token).payload as { refresh_family: string }).refresh_family;
    const refs = (r: { audience: string }, family: string) => (r.audience === userinfoAudience(f.issuer) ? { sub: person.sub, grant_id: person.grant_id, refresh_family: family } : { sub: 'broker-1', refresh_family: family });
    const ofRevoked = await Promise.all(resources(f).map((r) => token(f, r.audience, r.scope, refs(r, person.refresh_family))));
    const ofKept = await Promise.all(resources(f).map((r) => token(f, r.audience, r.scope, refs(r, other))));
    for (const [i, r] of resources(f).entries()) assert.equal((await r.call(ofRevoked[i]!.token)).statusCode, 200, `${r.name} accepts the token while its family is live`);

    assert.equal((await f.post('/revoke', { auth: f.basic('web-app'), form: { token: revoked.refresh_token } })).statusCode, 200);
    for (const [i, r] of resources(f).entries()) {
      assertOAuthError(await r.call(ofRevoked[i]!.token), 401, 'invalid_token', r.name);
      assert.equal((await r.call(ofKept[i]!.token)).statusCode, 200, `${r.name} accepts another family's token`);
    }
  });
});
