import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuthenticatedClient } from '../../src/clients/authentication/types.ts';
import { issuanceOf, type AccessTokenRequest } from '../../src/tokens/issue.ts';
import { tokenBasis } from '../../src/tokens/user-tokens.ts';

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
