import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import type { ReviewedPerson } from '../../src/identity/access-review.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';

describe('GET /admin/access-review', () => {
  test('admits admin:read only', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/access-review' }), 401, 'invalid_token');
    const writeOnly = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer), scope: 'admin:write' });
    assertOAuthError(await f.inject({ method: 'GET', url: '/admin/access-review', headers: { authorization: `Bearer ${writeOnly}` } }), 403, 'insufficient_scope');
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'a refused read is not a read');
  });

  test("lists each person's roles, status, lock, factors and live sessions — never a name or email — and puts the read on the record", async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    await f.signIn('ana');
    await f.signIn('ana');
    const ended = await f.signIn('ana');
    // The fixture's sign-in makes the person; the document then gives them their roles (as people's are given).
    await f.apply({
      users: [
        { username: 'ana', name: 'Ana Trader', email: 'ana@broker.example', roles: ['trader'], desks: ['rates'] },
        { username: 'bo', password: 'bo-correct-horse-42', name: 'Bo Locked', roles: ['trader'], status: 'locked' },
      ],
    });
    // Sessions are stored by the SHA-256 of their cookie's value.
    const endedId = createHash('sha256').update(ended.cookie.split('=')[1]!).digest('base64url');
    const logout = await f.ctx.storage.db.updateTable('sessions').set({ ended_at: f.clock.now(), end_reason: 'logout' }).where('id', '=', endedId).executeTakeFirst();
    assert.equal(Number(logout.numUpdatedRows), 1);
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });

    const response = await f.inject({ method: 'GET', url: '/admin/access-review', headers: { authorization: `Bearer ${token}` } });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.headers['cache-control'], 'no-store');
    const people = (response.json() as { people: ReviewedPerson[] }).people;
    const ana = people.find((p) => p.username === 'ana')!;
    assert.deepEqual({ roles: ana.roles, desks: ana.desks, status: ana.status, factors: ana.factors, live_sessions: ana.live_sessions }, {
      roles: ['trader'],
      desks: ['rates'],
      status: 'active',
      factors: { password: false, totp: false, passkeys: 0, recovery_codes_left: 0 },
      live_sessions: 2,
    });
    const bo = people.find((p) => p.username === 'bo')!;
    assert.equal(bo.status, 'locked');
    assert.equal(bo.lock_reason, 'admin');
    assert.equal(bo.factors.password, true);
    assert.equal(bo.live_sessions, 0);
    assert.doesNotMatch(response.body, /Ana Trader|broker\.example|"name"|"email"|"attributes"/);

    // An idle session is over too, whatever its row says.
    f.clock.advance(24 * 3600_000);
    const later = await f.inject({ method: 'GET', url: '/admin/access-review', headers: { authorization: `Bearer ${await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) })}` } });
    assert.equal((later.json() as { people: ReviewedPerson[] }).people.find((p) => p.username === 'ana')!.live_sessions, 0);

    const reads = await f.auditEvents('people.reviewed');
    assert.equal(reads.length, 2);
    assert.equal(reads[0]!.client, 'admin-viewer');
    assert.equal(reads[0]!.details?.people, people.length);
    assert.equal(reads[0]!.details?.via, 'access-review');
  });

  test('a read of the people API (names, emails) is on the record too, one person by their id', async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    const ana = await f.user('ana');
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    assert.equal((await f.inject({ method: 'GET', url: '/admin/users', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
    assert.equal((await f.inject({ method: 'GET', url: '/admin/users/ana', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
    const reads = await f.auditEvents('people.reviewed');
    assert.deepEqual(reads.map((e) => [e.details?.via, e.details?.people, e.subject ?? null]), [['users', reads[0]!.details?.people, null], ['users', 1, ana]]);
    assert.ok(Number(reads[0]!.details?.people) >= 1);
  });
  test("a read of a person's KYC record, of their linked upstream identities, or of the screening matches is on the record too", async (t) => {
    const f = await codeFlowFixture(t, { risk: 'off' });
    const ana = await f.user('ana');
    const token = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
    const get = (url: string) => f.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
    assert.equal((await get('/admin/kyc/users/ana')).statusCode, 200);
    assert.equal((await get('/admin/users/ana/links')).statusCode, 200);
    assert.equal((await get('/admin/screening/matches')).statusCode, 200);
    const reads = await f.auditEvents('people.reviewed');
    assert.deepEqual(reads.map((e) => [e.details?.via, e.details?.people, e.subject ?? null, e.client]), [
      ['kyc', 1, ana, 'admin-viewer'],
      ['users', 1, ana, 'admin-viewer'],
      ['screening', 0, null, 'admin-viewer'],
    ]);
  });
});
