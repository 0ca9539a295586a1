import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownTokenRefusal, personCaller } from '../../src/admin/person-caller.ts';
import { ManualClock } from '../../src/clock.ts';
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

test('a sign-in older than the age asked is refused after its level, a token naming no sign-in time too; without an age any sign-in passes', () => {
  // The token's sign-in was at 1_700_000_000 (seconds); the clock counts milliseconds.
  const at = (seconds: number) => new ManualClock(seconds * 1000);
  const fresh = { maxAgeSeconds: 300, clock: at(1_700_000_300) };
  const late = { maxAgeSeconds: 300, clock: at(1_700_000_301) };
  assert.equal(ownTokenRefusal(tokenOf('alice'), acr.phishingResistant, fresh), undefined, 'exactly max_age old: still fresh (RFC 9470 §3)');
  assert.equal(ownTokenRefusal(tokenOf('alice'), acr.phishingResistant, late), 'stale_authentication');
  assert.equal(ownTokenRefusal(tokenOf('alice'), undefined, late), 'stale_authentication');
  assert.equal(ownTokenRefusal(tokenOf('alice', { auth_time: undefined }), undefined, fresh), 'stale_authentication');
  // Too weak and too old: the level is named first, so the challenge asks for it.
  assert.equal(ownTokenRefusal(tokenOf('alice', { acr: acr.multiFactor }), acr.phishingResistant, late), 'insufficient_authentication');
  assert.equal(ownTokenRefusal(tokenOf('alice', { act: { sub: 'deputy' } }), acr.phishingResistant, late), 'delegated_token');
  assert.equal(ownTokenRefusal(tokenOf('alice'), acr.phishingResistant), undefined, 'no age asked: hours-old sign-ins pass');
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

  // An old sign-in is the token's fault too: refused before the role is looked at.
  const now = Math.floor(f.clock.now() / 1000);
  assert.deepEqual(await personCaller(f.ctx, tokenOf(alice.id, { auth_time: now - 301 }), { level: acr.phishingResistant, maxAgeSeconds: 300, role: 'help-desk' }), { ok: false, reason: 'stale_authentication' });
  assert.equal((await personCaller(f.ctx, tokenOf(alice.id, { auth_time: now - 300 }), { level: acr.phishingResistant, maxAgeSeconds: 300, role: 'compliance' })).ok, true);

  await f.apply({ users: [{ username: 'alice', status: 'disabled' }] });
  assert.deepEqual(await personCaller(f.ctx, tokenOf(alice.id), { role: 'compliance' }), { ok: false, reason: 'not_active' });
});
