import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';

// Legal holds through the admin API (docs/audit.md "Legal hold"): audit:hold places one and asks
// for its release; the release takes two people holding `compliance`, decided through the
// approvals API like every request a second person approves.

const password = 'correct horse battery staple 7';
const person = (username: string, roles: string[] = []) => ({ username, password, name: username, roles });

async function harness(t: TestContext): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off' });
  // The fixture's people first (f.user remembers their ids), then their roles.
  for (const username of ['comp-1', 'comp-2', 'comp-3', 'eve']) await f.user(username);
  await f.apply({
    users: [person('comp-1', ['compliance']), person('comp-2', ['compliance']), person('comp-3', ['compliance']), person('eve')],
    clients: [
      {
        client_id: 'compliance-app',
        client_name: 'Compliance',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [webRedirect],
        scope: 'audit:hold audit:read approvals:decide',
      },
      { client_id: 'holds-bot', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:hold audit:read' },
      { client_id: 'reader-bot', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'audit:read' },
    ],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  return f;
}

/** A person's token from the compliance app, signed in with a passkey just now. */
async function personToken(f: CodeFlowFixture, username: string): Promise<string> {
  const signedIn = await f.signIn(username, { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'compliance-app', person: signedIn, query: { scope: 'audit:hold audit:read approvals:decide', resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('compliance-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const botToken = (f: CodeFlowFixture, client = 'holds-bot', scope = 'audit:hold audit:read') => f.accessToken(client, { resource: adminAudience(f.issuer), scope });

const call = (f: CodeFlowFixture, token: string | undefined, method: 'GET' | 'POST', url: string, body?: unknown) =>
  f.inject({
    method,
    url,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });

async function events(f: CodeFlowFixture, type: string): Promise<Record<string, unknown>[]> {
  const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as Record<string, unknown>);
}

describe('legal holds over the admin API', () => {
  test('audit:hold places a hold (201, audited, filed under the trade) and audit:read lists it', async (t) => {
    const f = await harness(t);
    const token = await botToken(f);
    const placed = await call(f, token, 'POST', '/admin/audit/holds', { matter_ref: 'SEC-2026-114', txn: 'trade-42' });
    assert.equal(placed.statusCode, 201, placed.body);
    assert.equal(placed.headers['cache-control'], 'no-store');
    const hold = placed.json().hold;
    assert.equal(hold.kind, 'txn');
    assert.equal(hold.value, 'trade-42');
    assert.equal(hold.status, 'active');
    assert.equal(hold.placed_by, 'holds-bot');
    const [event] = await events(f, 'audit.hold_placed');
    assert.equal(event!.txn, 'trade-42');
    assert.equal((event!.details as Record<string, unknown>).hold_id, hold.id);

    f.clock.advance(1000);
    const ranged = await call(f, token, 'POST', '/admin/audit/holds', { matter_ref: 'FCA-7', since: '2026-01-01T00:00:00Z', until: 1_800_000_000_000 });
    assert.equal(ranged.statusCode, 201, ranged.body);
    assert.equal(ranged.json().hold.since, '2026-01-01T00:00:00.000Z');

    const listed = await call(f, await botToken(f, 'reader-bot', 'audit:read'), 'GET', '/admin/audit/holds');
    assert.equal(listed.statusCode, 200, listed.body);
    assert.deepEqual(listed.json().holds.map((h: { id: string; status: string }) => [h.id, h.status]), [[hold.id, 'active'], [ranged.json().hold.id, 'active']]);
  });

  test('refuses a placement without a token (401), without audit:hold (403 insufficient_scope), and bad input with 400 naming it', async (t) => {
    const f = await harness(t);
    assertOAuthError(await call(f, undefined, 'POST', '/admin/audit/holds', { matter_ref: 'M', txn: 't' }), 401, 'invalid_token');
    const reader = await call(f, await botToken(f, 'reader-bot', 'audit:read'), 'POST', '/admin/audit/holds', { matter_ref: 'M', txn: 't' });
    assertOAuthError(reader, 403, 'insufficient_scope');
    const token = await botToken(f);
    for (const [body, message] of [
      [{ txn: 't' }, /matter reference/],
      [{ matter_ref: 'M' }, /exactly one/],
      [{ matter_ref: 'M', txn: 't', client: 'c' }, /exactly one/],
      [{ matter_ref: 'M', txn: 'has space' }, /txn must be/],
      [{ matter_ref: 'M', since: '2026-02-01', until: '2026-01-01' }, /inverted/],
      [{ matter_ref: 'M', since: 'yesterday', until: '2026-01-01' }, /since must be/],
      [{ matter_ref: 'M', txn: 7 }, /^body\/txn must be string$/],
      [{ matter_ref: 'M', txn: 't', scope: 'all' }, /unknown member scope/],
      [[1], /^body must be object$/],
    ] as const) {
      const response = await call(f, token, 'POST', '/admin/audit/holds', body);
      const error = assertOAuthError(response, 400, 'invalid_request', JSON.stringify(body));
      assert.match(String(error.error_description), message);
    }
    assert.deepEqual(await events(f, 'audit.hold_placed'), []);
  });

  test('a release asked by a client waits for two compliance people; the hold holds until the second approves', async (t) => {
    const f = await harness(t);
    const bot = await botToken(f);
    const hold = (await call(f, bot, 'POST', '/admin/audit/holds', { matter_ref: 'SEC-2026-114', client: 'algo-7' })).json().hold;
    assertOAuthError(await call(f, bot, 'POST', '/admin/audit/holds/hold-unknown/release', { reason: 'r' }), 404, 'not_found');
    assertOAuthError(await call(f, bot, 'POST', `/admin/audit/holds/${hold.id}/release`, {}), 400, 'invalid_request');

    const asked = await call(f, bot, 'POST', `/admin/audit/holds/${hold.id}/release`, { reason: 'matter closed' });
    assert.equal(asked.statusCode, 202, asked.body);
    const { release_request: requestId, required_approvals } = asked.json();
    assert.equal(required_approvals, 2);
    assertOAuthError(await call(f, bot, 'POST', `/admin/audit/holds/${hold.id}/release`, { reason: 'again' }), 409, 'invalid_request');
    assert.equal((await call(f, bot, 'GET', '/admin/audit/holds')).json().holds[0].status, 'release_pending');

    const eve = await personToken(f, 'eve');
    assert.deepEqual((await call(f, eve, 'GET', '/admin/approvals')).json().approvals, [], 'not offered to someone without compliance');
    assertOAuthError(await call(f, eve, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 403, 'access_denied');

    const first = await personToken(f, 'comp-1');
    const offered = (await call(f, first, 'GET', '/admin/approvals')).json().approvals;
    assert.deepEqual(offered.map((a: { id: string }) => a.id), [requestId]);
    assert.match(offered[0].title, new RegExp(`Release of legal hold ${hold.id}`));
    const one = await call(f, first, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
    assert.equal(one.statusCode, 200, one.body);
    assert.equal(one.json().settled, undefined);
    assert.equal((await call(f, bot, 'GET', '/admin/audit/holds')).json().holds[0].status, 'release_pending', 'one approval is not enough');
    assertOAuthError(await call(f, first, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 409, 'invalid_request');

    f.clock.advance(1000);
    const second = await personToken(f, 'comp-2');
    const two = await call(f, second, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
    assert.equal(two.statusCode, 200, two.body);
    assert.equal(two.json().settled, 'approved');
    const [released] = (await call(f, bot, 'GET', '/admin/audit/holds')).json().holds;
    assert.equal(released.status, 'released');
    assert.deepEqual(released.released_by, ['holds-bot', await f.user('comp-1'), await f.user('comp-2')]);
    const [event] = await events(f, 'audit.hold_released');
    assert.equal((event!.details as Record<string, unknown>).matter_ref, 'SEC-2026-114');
    assertOAuthError(await call(f, bot, 'POST', `/admin/audit/holds/${hold.id}/release`, { reason: 'again' }), 400, 'invalid_request');
  });

  test('a compliance person asks with their own token and one other compliance person approves; never the one who asked, never someone without the role', async (t) => {
    const f = await harness(t);
    const bot = await botToken(f);
    const hold = (await call(f, bot, 'POST', '/admin/audit/holds', { matter_ref: 'M', txn: 'trade-9' })).json().hold;
    const eve = await personToken(f, 'eve');
    assertOAuthError(await call(f, eve, 'POST', `/admin/audit/holds/${hold.id}/release`, { reason: 'r' }), 403, 'access_denied');

    const asker = await personToken(f, 'comp-1');
    const asked = await call(f, asker, 'POST', `/admin/audit/holds/${hold.id}/release`, { reason: 'matter closed' });
    assert.equal(asked.statusCode, 202, asked.body);
    assert.equal(asked.json().required_approvals, 1);
    const requestId = asked.json().release_request;
    assertOAuthError(await call(f, asker, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 403, 'access_denied');
    const [refused] = await events(f, 'approval.refused');
    assert.deepEqual((refused!.decision as { reasons: string[] }).reasons, ['approver_is_requester']);

    const other = await personToken(f, 'comp-3');
    const approved = await call(f, other, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
    assert.equal(approved.statusCode, 200, approved.body);
    assert.equal(approved.json().settled, 'approved');
    const [released] = (await call(f, bot, 'GET', '/admin/audit/holds')).json().holds;
    assert.deepEqual([released.status, released.released_by], ['released', [await f.user('comp-1'), await f.user('comp-3')]]);
  });
});
