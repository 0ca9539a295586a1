import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi } from '../endpoints/fixture.ts';
import { adminPersonToken } from '../admin/admin-person.ts';

/**
 * A write that takes a role away from a person ends the tokens they were issued before it (RFC 9700
 * §4.14.2), as "sign out everywhere" does: their scopes were decided for the roles they held. The
 * admin API's PATCH and PUT, POST /admin/apply and `clearance apply` all write people through
 * upsertUser (src/identity/users.ts). A write that only adds or keeps roles leaves them alone.
 */

/** Alice as codeFlowFixture's user() creates her, for apply documents and PUTs. */
const alice = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com' };

interface Held {
  /** The newest refresh token (a refresh that succeeds rotates it). */
  refresh: string;
  /** An Order API token from the code. */
  orders: string;
  /** Her admin-API token (`admin:read admin:write`), minted as the console's would be. */
  admin: string;
}

/**
 * Alice signs in to web-app (refresh token, Order API token), is made an administrator by the
 * operator (the CLI gives guarded roles), and gets an admin-API token. Bob, another administrator,
 * is the one who changes her roles.
 */
async function administrators(t: Parameters<typeof codeFlowFixture>[0]): Promise<{ f: CodeFlowFixture; held: Held; bob: string }> {
  const f = await codeFlowFixture(t);
  const { code, pkce } = await f.authorizeAndApprove({ query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const { access_token: orders, refresh_token: refresh } = redeemed.json() as { access_token: string; refresh_token: string };
  await f.apply({ users: [{ ...alice, roles: ['admin'] }, { username: 'bob', name: 'Bob Admin', roles: ['admin'] }] });
  const held = { refresh, orders, admin: await adminPersonToken(f, 'alice') };
  const bob = await adminPersonToken(f, 'bob');
  // The write comes a second later: a token's `iat` has a resolution of a second.
  f.clock.advance(1000);
  return { f, held, bob };
}

function patchAlice(f: CodeFlowFixture, token: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'PATCH',
    url: '/admin/users/alice',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' },
    payload: JSON.stringify(body),
  });
}

const adminApi = (f: CodeFlowFixture, token: string) => f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `Bearer ${token}` } });

/** Whether /introspect finds the token active, asked by `caller` (the client it was issued to, or an introspector of its audience). */
async function active(f: CodeFlowFixture, token: string, caller = 'trading-ui'): Promise<boolean> {
  const response = await f.post('/introspect', { auth: f.basic(caller), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return (response.json() as { active: boolean }).active;
}

async function assertLive(f: CodeFlowFixture, held: Held, label: string): Promise<void> {
  const admin = await adminApi(f, held.admin);
  assert.equal(admin.statusCode, 200, `${label}: admin API ${admin.body}`);
  assert.equal(await active(f, held.admin), true, `${label}: admin token at /introspect`);
  assert.equal(await active(f, held.orders, 'orders-gateway'), true, `${label}: Order API token at /introspect`);
  const refreshed = await f.refresh('web-app', held.refresh, { resource: ordersApi });
  assert.equal(refreshed.statusCode, 200, `${label}: refresh ${refreshed.body}`);
  held.refresh = refreshed.json().refresh_token as string;
}

async function assertEnded(f: CodeFlowFixture, held: Held, label: string): Promise<void> {
  const admin = assertOAuthError(await adminApi(f, held.admin), 401, 'invalid_token', `${label}: admin API`);
  assert.ok(admin, label);
  assert.equal(await active(f, held.admin), false, `${label}: admin token at /introspect`);
  assert.equal(await active(f, held.orders, 'orders-gateway'), false, `${label}: Order API token at /introspect`);
  assertOAuthError(await f.refresh('web-app', held.refresh, { resource: ordersApi }), 400, 'invalid_grant', `${label}: refresh`);
}

describe('taking a role away from a person', () => {
  test('ends the tokens issued to them before it: an administrator whose admin role another removes is 401 at the admin API, inactive at /introspect, and cannot refresh', async (t) => {
    const { f, held, bob } = await administrators(t);
    await assertLive(f, held, 'before');

    const removed = await patchAlice(f, bob, { roles: [] });
    assert.equal(removed.statusCode, 200, removed.body);
    assert.equal(removed.json().outcome, 'updated', removed.body);

    await assertEnded(f, held, 'after the admin role was removed');
    const [event] = (await f.auditEvents('user.signed_out_everywhere')).filter((e) => e.details?.via === 'admin-api');
    assert.ok(event, 'the write records what it ended');
    assert.deepEqual(event.decision?.reasons, ['roles_removed']);
    assert.deepEqual(event.details?.roles_removed, ['admin']);
    assert.equal(event.details?.refresh_tokens_revoked, 1);

    // A token issued after the change works: she stays active, with the scopes her roles now allow.
    f.clock.advance(1000);
    assert.equal(await active(f, await adminPersonToken(f, 'alice')), true, 'a token issued after the write');
  });

  test('a write that only adds a role that needs no approval, or keeps them, leaves the tokens alone', async (t) => {
    const { f, held, bob } = await administrators(t);
    const added = await patchAlice(f, bob, { roles: ['admin', 'trader'] });
    assert.equal(added.statusCode, 200, added.body);
    assert.equal(added.json().outcome, 'updated', added.body);
    await assertLive(f, held, 'after a role was added');

    const renamed = await patchAlice(f, bob, { name: 'Alice Admin' });
    assert.equal(renamed.json().outcome, 'updated', renamed.body);
    await assertLive(f, held, 'after a write that keeps the roles');
    assert.equal((await f.auditEvents('user.signed_out_everywhere')).length, 0);
  });

  test('through `clearance apply` too: a document that drops a role ends the person’s tokens', async (t) => {
    const { f, held } = await administrators(t);
    await assertLive(f, held, 'before');
    await f.apply({ users: [{ ...alice, roles: [] }] });
    await assertEnded(f, held, 'after apply dropped the admin role');
    const [event] = await f.auditEvents('user.signed_out_everywhere');
    assert.equal(event?.details?.via, 'cli');
    assert.deepEqual(event?.details?.roles_removed, ['admin']);
  });
});
