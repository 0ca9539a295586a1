import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownTokenRefusal, personCaller } from '../../src/admin/person-caller.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import type { AccessTokenClaims } from '../../src/tokens/claims.ts';
import { peopleFixture } from '../identity/fixture.ts';

/** A person's own admin token, as the code flow issues it; `over` changes or removes members. */
function tokenOf(sub: string, over: Partial<Record<keyof AccessTokenClaims, unknown>> = {}): AccessTokenClaims {
  const claims: Record<string, unknown> = {
    iss: 'https://as.example',
    sub,
    aud: 'https://as.example/admin',
    client_id: 'ops-console',
    scope: 'admin:write',
    jti: 'jti-1',
    iat: 1_700_000_000,
    exp: 1_700_000_300,
    grant_id: 'grant-1',
    auth_time: 1_700_000_000,
    acr: acr.phishingResistant,
    amr: ['hwk'],
  };
  for (const [name, value] of Object.entries(over)) {
    if (value === undefined) delete claims[name];
    else claims[name] = value;
  }
  return claims as unknown as AccessTokenClaims;
}

test("a client's own token is refused as a client's, whatever else is wrong with it", () => {
  assert.equal(ownTokenRefusal(tokenOf('alice', { grant_id: undefined })), 'client_token');
  assert.equal(ownTokenRefusal(tokenOf('alice', { grant_id: undefined, act: { sub: 'bot' }, acr: undefined }), acr.phishingResistant), 'client_token');
  assert.equal(ownTokenRefusal(tokenOf('alice', { sub: undefined })), 'client_token');
});

test('a delegated token is refused before its sign-in level is looked at', () => {
  assert.equal(ownTokenRefusal(tokenOf('alice', { act: { sub: 'deputy' }, acr: undefined }), acr.phishingResistant), 'delegated_token');
});

test('a sign-in below the level asked is refused; without a level any sign-in passes', () => {
  assert.equal(ownTokenRefusal(tokenOf('alice', { acr: acr.multiFactor }), acr.phishingResistant), 'insufficient_authentication');
  assert.equal(ownTokenRefusal(tokenOf('alice', { acr: acr.multiFactor })), undefined);
  assert.equal(ownTokenRefusal(tokenOf('alice'), acr.phishingResistant), undefined);
});

test('the person is read only after the token passes, and must be active and hold the role', async (t) => {
  const f = await peopleFixture(t);
  const alice = (await findUserByUsername(f.ctx, 'alice'))!;
  await f.apply({ users: [{ username: 'alice', roles: ['compliance'] }] });

  const held = await personCaller(f.ctx, tokenOf(alice.id), { level: acr.phishingResistant, role: 'compliance' });
  assert.equal(held.ok, true);
  assert.equal(held.ok && held.user.username, 'alice');

  assert.deepEqual(await personCaller(f.ctx, tokenOf(alice.id), { role: 'help-desk' }), { ok: false, reason: 'missing_role' });
  // Below the level and without the role: the token's own fault is the one named.
  assert.deepEqual(await personCaller(f.ctx, tokenOf(alice.id, { acr: acr.multiFactor }), { level: acr.phishingResistant, role: 'help-desk' }), { ok: false, reason: 'insufficient_authentication' });
  assert.deepEqual(await personCaller(f.ctx, tokenOf('no-such-person'), {}), { ok: false, reason: 'not_active' });

  await f.apply({ users: [{ username: 'alice', status: 'disabled' }] });
  assert.deepEqual(await personCaller(f.ctx, tokenOf(alice.id), { role: 'compliance' }), { ok: false, reason: 'not_active' });
});
