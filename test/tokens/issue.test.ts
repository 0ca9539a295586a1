import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuthenticatedClient } from '../../src/clients/authentication/types.ts';
import { issuanceOf, type AccessTokenRequest } from '../../src/tokens/issue.ts';
import { tokenBasis } from '../../src/tokens/user-tokens.ts';
import { assertOAuthError, clearingApi, decodeJwt, ordersApi, protocolFixture } from '../endpoints/fixture.ts';
import { nextUtc } from '../risk/fixture.ts';

// What the decision point is asked about an access token request (src/policy/issuance.ts Issuance).

const request = (extra: Partial<AccessTokenRequest> = {}): AccessTokenRequest => ({
  grantType: 'refresh_token',
  requestId: 'req-1',
  client: { client: { metadata: { client_id: 'web-app' } } } as AuthenticatedClient,
  keys: {},
  target: { audience: 'https://orders.example.com/api', ttl: 300, requireSenderConstraint: false },
  sub: 'u-1',
  principal: { type: 'User', id: 'u-1' },
  scopes: ['order:create'],
  authorizationDetails: [],
  claims: { acr: 'urn:clearance:acr:pwd', auth_time: 1_700_000_000 },
  ...extra,
});

describe('the issuance the decision point is asked about', () => {
  test("names the signals of the person's sign-in (Issuance.loginRisk), as the grant's code or refresh token carried them", () => {
    const signals = [
      { signal: 'new_device' as const, points: 25, detail: 'no valid device cookie' },
      { signal: 'off_hours' as const, points: 20 },
    ];
    const payload = { scopes: ['order:create'], oidcScopes: [], authorizationDetails: [], authTime: 1_700_000_000, acr: 'urn:clearance:acr:pwd', amr: ['pwd'], loginRisk: signals };
    const basis = tokenBasis({ userId: 'u-1', clientId: 'web-app', grantId: 'g-1' }, payload);
    assert.deepEqual(basis.loginRisk, signals);
    const issuance = issuanceOf(request({ risk: { loginRisk: basis.loginRisk! } }), 'web-app');
    assert.deepEqual(issuance.loginRisk, signals);
    assert.equal(issuance.acr, 'urn:clearance:acr:pwd');
    assert.equal(issuance.grantType, 'refresh_token');
  });

  test('names none for a quiet sign-in, or a grant made before sign-ins were assessed', () => {
    assert.equal('loginRisk' in issuanceOf(request(), 'web-app'), false);
    assert.equal('loginRisk' in tokenBasis({ userId: 'u-1', clientId: 'web-app', grantId: 'g-1' }, { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'urn:clearance:acr:pwd', amr: ['pwd'] }), false);
  });
});

describe('a token issued under a mandate', () => {
  test('ends when the stretch of the mandate\'s time window it was issued in closes, and introspection calls it inactive from then on', async (t) => {
    const f = await protocolFixture(t);
    // Trading hours 09:00–18:00 in Tokyo (UTC+9 all year), 00:00–09:00Z; a minute before the close.
    f.clock.set(nextUtc(f.clock.now(), 3, 8, 59));
    const closes = f.clock.now() + 60_000;
    await f.apply({
      resource_servers: [{ identifier: clearingApi, scopes: ['settlement:submit', 'position:view', 'market:read'], access_token_ttl: 600, access_token_format: 'reference', introspection_clients: ['orders-gateway'] }],
      mandates: [
        {
          id: 'desk-hours',
          grantor: { lei: '5493001KJTIIGC8Y1R12' },
          grantee: { client_id: 'broker-1' },
          scopes: ['order:create', 'settlement:submit'],
          constraints: { time_window: { timezone: 'Asia/Tokyo', days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '18:00' } } },
          legal_basis: { reference: 'Desk agreement 3' },
          effective_from: '2020-01-01T00:00:00Z',
          accepted_by: 'ops',
          accepted_at: '2020-01-01T00:00:00Z',
        },
      ],
    });
    const issued = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create', mandate: 'desk-hours' } });
    assert.equal(issued.statusCode, 200, issued.body);
    const { access_token: jwt, expires_in } = issued.json() as { access_token: string; expires_in: number };
    assert.equal(decodeJwt(jwt).payload.exp, closes / 1000, 'a JWT checked locally ends at the close, not 120 s on');
    assert.equal(expires_in, 60);
    const reference = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: clearingApi, scope: 'settlement:submit', mandate: 'desk-hours' } });
    assert.equal(reference.statusCode, 200, reference.body);
    const handle = (reference.json() as { access_token: string; expires_in: number });
    assert.equal(handle.expires_in, 60, 'a reference token too');
    const introspected = async (token: string) => (await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } })).json() as { active: boolean; exp?: number };
    assert.deepEqual([(await introspected(jwt)).active, (await introspected(handle.access_token)).active], [true, true]);
    f.clock.set(closes + 30_000);
    assert.deepEqual([(await introspected(jwt)).active, (await introspected(handle.access_token)).active], [false, false], 'the delegate may not act after the hours the grantor allowed');
    const refused = assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create', mandate: 'desk-hours' } }), 400, 'invalid_grant');
    assert.match(String(refused.error_description), /outside the time window of mandate desk-hours v1/);
  });
});
