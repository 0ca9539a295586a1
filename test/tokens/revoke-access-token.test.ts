import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { revokeClientAccessToken } from '../../src/tokens/revoke-access-token.ts';
import { decodeJwt, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';

// The one step that revokes a client's access token (src/tokens/revoke-access-token.ts): the
// revocation endpoint's access-token branch (RFC 7009) and the console's sign-out both take it.

async function active(f: ProtocolFixture, token: string): Promise<boolean> {
  const response = await f.post('/introspect', { auth: f.basic('broker-1'), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().active as boolean;
}

describe("revoking a client's access token", () => {
  test('revokes a valid token of the client, records token.revoked with the request and the jti, and introspection then says inactive', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal(await revokeClientAccessToken(f.ctx, 'broker-1', token, 'req-sign-out'), 'revoked');
    assert.equal(await active(f, token), false);
    const [event, ...more] = await f.auditEvents('token.revoked');
    assert.equal(more.length, 0);
    assert.equal(event!.requestId, 'req-sign-out', 'on the record with the request that revoked it');
    assert.equal(event!.actor, 'broker-1');
    assert.equal(event!.client, 'broker-1');
    assert.equal(event!.audience, ordersApi);
    assert.deepEqual(event!.details, { jti: decodeJwt(token).payload.jti, reason: 'revoked by client' });
  });

  test("leaves another client's token active and records nothing", async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('broker-1', { resource: ordersApi });
    assert.equal(await revokeClientAccessToken(f.ctx, 'broker-3', token, 'req-1'), 'another-client');
    assert.equal(await active(f, token), true);
    assert.equal((await f.auditEvents('token.revoked')).length, 0);
  });

  test('says what is not a valid access token (garbage, a refresh token) so, revoking nothing', async (t) => {
    const f = await protocolFixture(t);
    assert.equal(await revokeClientAccessToken(f.ctx, 'broker-1', 'garbage', 'req-1'), 'not-an-access-token');
    assert.equal((await f.auditEvents('token.revoked')).length, 0);
  });
});
