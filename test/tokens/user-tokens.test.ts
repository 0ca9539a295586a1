import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { grantedPayload, tokenBasis, type GrantedPayload } from '../../src/tokens/user-tokens.ts';

// Every member set: `Required` makes this test stop compiling when TokenBasis gains a member, so
// the case below is brought up to date with it.
const everyMember: Required<GrantedPayload> = {
  resource: 'https://orders.example.com/api',
  scopes: ['order:create'],
  oidcScopes: ['openid', 'offline_access'],
  authorizationDetails: [{ type: 'order', instrument: 'XS0000000001' }],
  authTime: 1_795_000_000,
  acr: 'urn:clearance:acr:mfa',
  amr: ['pwd', 'otp'],
  mandate: 'mandate-1',
  txn: '0196f3c2-5d7e-7000-8000-000000000001',
  approval: { id: 'approval-1', digest: 'sha-256=abc' },
  ciba: { txn: 'ciba-1', approvals: [{ sub: 'u-2', acr: 'urn:clearance:acr:mfa', time: 1_795_000_010, evidence_digest: 'd' }] },
  loginRisk: [{ signal: 'new_device', points: 20 }],
  deviceId: 'device-1',
  assurance: { provider: 'partner-idp', source: 'https://idp.partner.example' },
};

describe('what a code or refresh token carries of its grant', () => {
  test('the basis rebuilt from a stored payload holds every granted member and its parties', () => {
    const basis = tokenBasis({ userId: 'u-1', clientId: 'c-1', grantId: 'g-1' }, everyMember);
    assert.deepEqual(basis, { userId: 'u-1', clientId: 'c-1', grantId: 'g-1', ...everyMember });
  });

  test('a refresh token records every granted member of its basis, and not its parties', () => {
    const basis = tokenBasis({ userId: 'u-1', clientId: 'c-1', grantId: 'g-1' }, everyMember);
    assert.deepEqual(grantedPayload(basis), everyMember);
  });

  test("a code's own members (nonce, session, DPoP key, step-up) and a refresh token's binding stay behind", () => {
    const code = { ...everyMember, nonce: 'n-1', sessionId: 's-1', dpopJkt: 'jkt', stepUpId: 'step-1', cnf: { jkt: 'jkt' } };
    assert.deepEqual(grantedPayload(code), everyMember);
  });

  test('members that are not set are left out, not carried as undefined', () => {
    const { scopes, oidcScopes, authorizationDetails, authTime, acr, amr } = everyMember;
    const least: GrantedPayload = { scopes, oidcScopes, authorizationDetails, authTime, acr, amr, mandate: undefined };
    assert.deepEqual(Object.keys(grantedPayload(least)), ['scopes', 'oidcScopes', 'authorizationDetails', 'authTime', 'acr', 'amr']);
  });
});
