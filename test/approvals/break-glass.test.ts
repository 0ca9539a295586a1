import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planApply } from '../../src/apply/index.ts';
import { activationInForce, expireActivations, requestActivation, standDown } from '../../src/approvals/break-glass/activations.ts';
import { closeReview, findReview } from '../../src/approvals/break-glass/reviews.ts';
import { findApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { assertOAuthError, decodeJwt, ordersApi, resourceServers } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { breakGlassFixture, type BreakGlassFixture } from './break-glass-fixture.ts';

async function alertsOf(f: BreakGlassFixture, type: string) {
  return f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', type).execute();
}

async function introspect(f: BreakGlassFixture, token: string): Promise<Record<string, unknown>> {
  const response = await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

for (const dialect of testDialects()) {
  describe(`break-glass on ${dialect.name}`, () => {
    test('an emergency account authenticates only after two distinct custodians approved; the requester and a non-custodian cannot approve', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      assertOAuthError(await f.emergencyToken('bg-orders'), 401, 'invalid_client', 'disabled by default');
      const refusedRequest = await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: '  ' });
      assert.deepEqual(refusedRequest, { ok: false, refusal: 'reason_required' });
      const opened = await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'order gateway down' });
      assert.ok(opened.ok);
      assert.equal(opened.request.kind, 'break_glass');
      assert.equal(opened.request.requiredApprovals, 2);
      assert.deepEqual(await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'again' }), { ok: false, refusal: 'already_requested' });
      const id = opened.request.id;

      assert.deepEqual(await f.decide(id, 'eng'), { ok: false, refusal: 'approver_is_requester' });
      assert.deepEqual(await f.decide(id, 'mallory'), { ok: false, refusal: 'not_eligible: not a break-glass-custodian' });
      assert.deepEqual(await f.decide(id, 'cust-1', { proof: f.proof(acr.multiFactor) }), { ok: false, refusal: 'insufficient_authentication' });
      const stale = f.proof(acr.phishingResistant, Math.floor(f.clock.now() / 1000) - 600);
      assert.deepEqual(await f.decide(id, 'cust-1', { proof: stale }), { ok: false, refusal: 'not_eligible: authentication not fresh (more than 5 minutes old)' });

      const first = await f.decide(id, 'cust-1');
      assert.ok(first.ok && first.settled === undefined, 'one approval is not enough');
      assertOAuthError(await f.emergencyToken('bg-orders'), 401, 'invalid_client', 'after one approval');
      assert.deepEqual(await f.decide(id, 'cust-1'), { ok: false, refusal: 'already_decided' }, 'the same custodian twice is one approval');
      const second = await f.decide(id, 'cust-3');
      assert.ok(second.ok && second.settled === 'approved');
      assert.equal((await findApprovalRequest(f.ctx.storage.db, id))!.status, 'consumed');

      const activation = await activationInForce(f.ctx.storage.db, 'bg-orders', f.clock.now());
      assert.equal(activation?.id, id);
      assert.equal(activation.endsAt - activation.startsAt, 600_000);
      const [alert] = await alertsOf(f, 'break_glass.activated');
      assert.equal(alert?.subject, 'bg-orders');
      assert.equal(JSON.parse(alert!.data).activation, id);
      assert.equal((await f.auditEvents('break_glass.activated')).length, 1);
      assert.equal((await f.emergencyToken('bg-orders')).statusCode, 200);
      assert.deepEqual(await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'renew' }), { ok: false, refusal: 'already_in_force' }, 'not renewable');
    });

    test('only the named custodians approve an account that names them', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const opened = await requestActivation(f.ctx, { account: 'bg-admin', requester: await f.userId('eng'), reason: 'admin console locked out' });
      assert.ok(opened.ok);
      assert.deepEqual(await f.decide(opened.request.id, 'cust-3'), { ok: false, refusal: 'not_eligible: not a custodian of bg-admin' });
      const denied = await f.decide(opened.request.id, 'cust-1', { decision: 'deny', reason: 'no incident open' });
      assert.ok(denied.ok && denied.settled === 'denied');
      const [alert] = await alertsOf(f, 'approval.denied');
      assert.equal(JSON.parse(alert!.data).reason, 'no incident open', 'a denial raises an alert');
      assert.equal(await activationInForce(f.ctx.storage.db, 'bg-admin', f.clock.now()), undefined);
    });

    test('tokens under an activation have only its scopes and audience, are flagged, end with it, and are inactive at introspection once it expired', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const id = await f.activate('bg-orders');
      assertOAuthError(await f.emergencyToken('bg-orders', { scope: 'order:create' }), 400, 'invalid_scope');
      assert.equal((await f.emergencyToken('bg-orders', { resource: 'https://clearing.example.com' })).statusCode, 400);
      const issued = await f.emergencyToken('bg-orders');
      assert.equal(issued.statusCode, 200, issued.body);
      const token = issued.json().access_token as string;
      const claims = decodeJwt(token).payload;
      assert.equal(claims.break_glass, true);
      assert.equal(claims.break_glass_activation, id);
      assert.equal(claims.txn, id);
      assert.equal(claims.aud, ordersApi);
      assert.equal(claims.scope, 'order:cancel');
      const [event] = await f.auditEvents('token.issued');
      const flagged = (await f.auditEvents('token.issued')).filter((e) => e.details?.break_glass === true);
      assert.ok(event);
      assert.equal(flagged.length, 1, 'the issuance event is flagged');
      assert.equal(flagged[0]!.txn, id);
      assert.equal((await introspect(f, token)).active, true);

      // Near the end: the token's life is cut to the activation's end.
      f.clock.advance(590_000);
      const late = decodeJwt((await f.emergencyToken('bg-orders')).json().access_token).payload;
      assert.ok((late.exp as number) * 1000 <= f.clock.now() + 10_000, 'capped at the activation’s end');
      const lateToken = (await f.emergencyToken('bg-orders')).json().access_token as string;

      f.clock.advance(10_000);
      // Dead at once through the liveness rule, before any worker ran.
      assert.equal((await introspect(f, lateToken)).active, false);
      assertOAuthError(await f.emergencyToken('bg-orders'), 401, 'invalid_client', 'disabled again');
      const ended = await expireActivations(f.ctx);
      assert.deepEqual(ended.map((a) => a.id), [id]);
      assert.deepEqual(await expireActivations(f.ctx), [], 'ended once');
      assert.equal((await alertsOf(f, 'break_glass.expired')).length, 1);
      assert.equal((await f.auditEvents('break_glass.expired')).length, 1);
      assert.equal((await findReview(f.ctx.storage.db, id))?.closedAt, undefined, 'a review is open');
      // A new activation needs new approvals.
      const again = await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'second outage' });
      assert.ok(again.ok);
    });

    test('standing an activation down makes its unexpired tokens inactive at the admin API', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const id = await f.activate('bg-admin');
      const token = (await f.emergencyToken('bg-admin')).json().access_token as string;
      const call = () => f.inject({ method: 'GET', url: '/admin/clients', headers: { authorization: `Bearer ${token}` } });
      assert.equal((await call()).statusCode, 200);
      assert.equal(await standDown(f.ctx, id, await f.userId('eng')), true);
      const refused = await call();
      assert.equal(refused.statusCode, 401);
      assert.equal(refused.json().error, 'invalid_token');
      assert.equal((await f.auditEvents('break_glass.ended')).length, 1);
      assert.equal((await alertsOf(f, 'break_glass.expired')).length, 1);
    });

    test('a token exchanged from a break-glass token carries its activation and dies with it', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
      await f.apply({
        resource_servers: [{ ...resourceServers[0], exchange_clients: ['desk-backend'] }],
        clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:cancel' }],
      });
      const id = await f.activate('bg-orders');
      const subjectToken = (await f.emergencyToken('bg-orders')).json().access_token as string;
      const exchanged = await f.token({
        auth: f.basic('desk-backend'),
        form: { grant_type: exchange, subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: ordersApi },
      });
      assert.equal(exchanged.statusCode, 200, exchanged.body);
      const token = exchanged.json().access_token as string;
      assert.equal(decodeJwt(token).payload.break_glass_activation, id);
      const [event] = await f.auditEvents('token.exchanged');
      assert.equal(event?.details?.break_glass, true);
      assert.equal((await introspect(f, token)).active, true);
      assert.equal(await standDown(f.ctx, id, await f.userId('cust-1')), true);
      assert.equal((await introspect(f, token)).active, false);
    });

    test('the review is closed only by a compliance officer, phishing-resistantly, with a note, once', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      const id = await f.activate('bg-orders');
      f.clock.advance(600_000);
      await expireActivations(f.ctx);
      const close = async (username: string, level: string, note = 'reviewed the two tokens and the failover ticket') =>
        closeReview(f.ctx, { activationId: id, closer: await f.userId(username), acr: level, note });
      assert.deepEqual(await close('cust-1', acr.phishingResistant), { ok: false, refusal: 'not_compliance' });
      assert.deepEqual(await close('eng', acr.phishingResistant), { ok: false, refusal: 'not_compliance' });
      assert.deepEqual(await close('comp', acr.multiFactor), { ok: false, refusal: 'insufficient_authentication' });
      assert.deepEqual(await close('comp', acr.phishingResistant, ' '), { ok: false, refusal: 'note_required' });
      const closed = await close('comp', acr.phishingResistant);
      assert.ok(closed.ok);
      assert.equal(closed.review.closedBy, await f.userId('comp'));
      assert.deepEqual(await close('comp', acr.phishingResistant), { ok: false, refusal: 'already_closed' });
      const [event] = await f.auditEvents('break_glass.review_closed');
      assert.equal(event?.txn, id);
      assert.equal(event?.details?.break_glass, true);
    });

    test('a compliance officer who requested or approved the activation cannot close its review, and the refusal is on the record', async (t) => {
      const f = await breakGlassFixture(t, { dialect });
      await f.apply({ users: [{ username: 'cc', password: 'a-long-enough-password-1', name: 'cc', roles: ['break-glass-custodian', 'compliance'] }] });
      const close = async (activationId: string, username: string) =>
        closeReview(f.ctx, { activationId, closer: await f.userId(username), acr: acr.phishingResistant, note: 'all fine, I was there' });
      // cc approves an activation as a custodian, then tries to review it as compliance.
      const approved = await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'outage' });
      assert.ok(approved.ok);
      assert.ok((await f.decide(approved.request.id, 'cust-1')).ok);
      const second = await f.decide(approved.request.id, 'cc');
      assert.ok(second.ok && second.settled === 'approved', JSON.stringify(second));
      assert.ok(await standDown(f.ctx, approved.request.id, await f.userId('eng')));
      assert.deepEqual(await close(approved.request.id, 'cc'), { ok: false, refusal: 'not_independent' });
      // cc requests one, two other custodians approve it: cc cannot review it either.
      const requested = await requestActivation(f.ctx, { account: 'bg-admin', requester: await f.userId('cc'), reason: 'admin API locked out' });
      assert.ok(requested.ok);
      assert.ok((await f.decide(requested.request.id, 'cust-1')).ok);
      assert.ok((await f.decide(requested.request.id, 'cust-2')).ok);
      assert.ok(await standDown(f.ctx, requested.request.id, await f.userId('cc')));
      assert.deepEqual(await close(requested.request.id, 'cc'), { ok: false, refusal: 'not_independent' });
      const refused = await f.auditEvents('break_glass.review_refused');
      assert.deepEqual(refused.map((e) => [e.txn, e.actor, e.decision?.reasons[0], e.details?.closer_was]), [
        [approved.request.id, await f.userId('cc'), 'not_independent', 'approver'],
        [requested.request.id, await f.userId('cc'), 'not_independent', 'requester'],
      ]);
      assert.equal((await findReview(f.ctx.storage.db, approved.request.id))?.closedAt, undefined);
      // An independent compliance officer closes both.
      assert.ok((await close(approved.request.id, 'comp')).ok);
      assert.ok((await close(requested.request.id, 'comp')).ok);
    });
  });
}

describe('the break_glass section of apply', () => {
  test('refuses, at their paths, an account without its client, a client that could do more, unknown scopes and one named custodian', async (t) => {
    const f = await breakGlassFixture(t);
    const { problems } = await planApply(f.ctx, {
      clients: [{ client_id: 'wide', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'order:create order:cancel' }],
      break_glass: [
        { name: 'nobody', scopes: ['order:cancel'], audience: ordersApi },
        { name: 'wide', scopes: ['order:cancel', 'trade:execute'], audience: ordersApi },
        { name: 'bg-orders', scopes: ['order:cancel'], audience: ordersApi, activation_seconds: 60, custodians: ['cust-1'] },
      ],
    });
    const at = (path: string) => problems.filter((p) => p.path === path).map((p) => p.message);
    assert.match(at('break_glass[0].name').join(), /no client "nobody"/);
    assert.match(at('break_glass[2].activation_seconds').join(), /300 to 28800/);
    assert.match(at('break_glass[2].custodians').join(), /at least two/);
    assert.match(at('break_glass[1].name').join(), /grant_types \[client_credentials\] and nothing else/);
    assert.match(at('break_glass[1].scopes').join(), /registered for order:create/);
    assert.match(at('break_glass[1].scopes[1]').join(), /"trade:execute" is not offered/);
  });
});

describe('writing an emergency account’s client later', () => {
  test('apply refuses, at the client’s paths, an emergency client given another grant type, a scope its account lacks or no authentication', async (t) => {
    const f = await breakGlassFixture(t);
    const { plan, problems } = await planApply(f.ctx, {
      clients: [
        { client_id: 'bg-orders', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'order:cancel order:create' },
        { client_id: 'bg-admin', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read' },
      ],
    });
    assert.equal(plan, undefined);
    const at = (path: string) => problems.filter((p) => p.path === path).map((p) => p.message);
    assert.match(at('clients[0].grant_types').join(), /must have grant_types \[client_credentials\] and nothing else.*emergency account "bg-orders"/);
    assert.match(at('clients[0].scope').join(), /registered for order:create, which the account does not list/);
    assert.deepEqual(at('clients[1].grant_types').concat(at('clients[1].scope')), [], 'an unchanged emergency client passes');
    // Redeclaring the account in the same document is checked on the account's side, once.
    const both = await planApply(f.ctx, {
      clients: [{ client_id: 'bg-orders', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:cancel order:create' }],
      break_glass: [{ name: 'bg-orders', scopes: ['order:cancel', 'order:create'], audience: ordersApi, activation_seconds: 600 }],
    });
    assert.deepEqual(both.problems, []);
  });

  test('the admin API refuses a PUT or PATCH that widens an emergency client, and stores nothing', async (t) => {
    const f = await breakGlassFixture(t);
    const token = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write admin:read' });
    const write = (method: 'PUT' | 'PATCH', body: unknown) =>
      f.inject({ method, url: '/admin/clients/bg-orders', headers: { authorization: `Bearer ${token}`, 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }, payload: JSON.stringify(body) });
    const patched = await write('PATCH', { grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'] });
    assertOAuthError(patched, 400, 'invalid_request');
    assert.match(patched.json().error_description, /clients\[0\]\.grant_types.*emergency account .bg-orders./);
    const put = await write('PUT', { kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:cancel order:create' });
    assertOAuthError(put, 400, 'invalid_request');
    assert.match(put.json().error_description, /clients\[0\]\.scope/);
    const stored = (await f.ctx.clients.get('bg-orders'))!.metadata;
    assert.deepEqual([stored.grant_types, stored.scope], [['client_credentials'], 'order:cancel']);
    // Narrowing or leaving it as it is stays allowed.
    assert.equal((await write('PATCH', { client_name: 'Orders emergency' })).statusCode, 200);
  });
});

describe('the break-glass admin API', () => {
  test('a person requests an activation, the accounts show it in force, and only compliance closes the review; clients and bad input are refused', async (t) => {
    const f = await breakGlassFixture(t);
    const post = (url: string, token: string, payload: unknown) => f.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    const eng = await f.personToken('eng', 'admin:write admin:read', acr.multiFactor);
    const service = await f.accessToken('admin-ops', { resource: `${f.issuer}/admin`, scope: 'admin:write' });
    assertOAuthError(await post('/admin/break-glass/bg-orders/activations', service, { reason: 'x' }), 403, 'access_denied', 'a client token');
    assertOAuthError(await post('/admin/break-glass/bg-orders/activations', eng, {}), 400, 'invalid_request', 'no reason');
    assertOAuthError(await post('/admin/break-glass/nope/activations', eng, { reason: 'x' }), 404, 'not_found');
    const created = await post('/admin/break-glass/bg-orders/activations', eng, { reason: 'order gateway down' });
    assert.equal(created.statusCode, 201, created.body);
    const { request_id: id } = created.json() as { request_id: string };
    assertOAuthError(await post('/admin/break-glass/bg-orders/activations', eng, { reason: 'twice' }), 409, 'invalid_request');
    assert.ok((await f.decide(id, 'cust-1')).ok);
    assert.ok((await f.decide(id, 'cust-2')).ok);
    const listed = await f.inject({ method: 'GET', url: '/admin/break-glass', headers: { authorization: `Bearer ${eng}` } });
    const account = (listed.json().accounts as { name: string; activation: { id: string } | null }[]).find((a) => a.name === 'bg-orders');
    assert.equal(account?.activation?.id, id);

    const mallory = await f.personToken('mallory', 'admin:write');
    assertOAuthError(await post(`/admin/break-glass/activations/${id}/end`, mallory, {}), 403, 'access_denied', 'not the requester nor a custodian');
    assert.equal((await post(`/admin/break-glass/activations/${id}/end`, eng, {})).statusCode, 204);

    const weak = await f.personToken('comp', 'reviews:close', acr.multiFactor);
    const strong = await f.personToken('comp', 'reviews:close');
    const custodian = await f.personToken('cust-1', 'reviews:close');
    // admin:write closes nothing: closing a review is its own scope, which only compliance asks for.
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, await f.personToken('comp', 'admin:write'), { note: 'fine' }), 403, 'insufficient_scope');
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, custodian, { note: 'fine' }), 403, 'access_denied');
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, weak, { note: 'fine' }), 403, 'access_denied');
    const closed = await post(`/admin/break-glass/reviews/${id}/close`, strong, { note: 'incident INC-42 reviewed' });
    assert.equal(closed.statusCode, 200, closed.body);
    assert.equal(closed.json().note, 'incident INC-42 reviewed');
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, strong, { note: 'again' }), 409, 'invalid_request');
  });

  test('refuses over HTTP a review closed by one of the activation’s approvers, delegated tokens, and a repeated or unknown open filter', async (t) => {
    const f = await breakGlassFixture(t);
    await f.apply({ users: [{ username: 'cc', password: 'a-long-enough-password-1', name: 'cc', roles: ['break-glass-custodian', 'compliance'] }] });
    const post = (url: string, token: string, payload: unknown) => f.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    const get = (url: string, token: string) => f.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
    const opened = await requestActivation(f.ctx, { account: 'bg-orders', requester: await f.userId('eng'), reason: 'outage' });
    assert.ok(opened.ok);
    const id = opened.request.id;
    assert.ok((await f.decide(id, 'cust-1')).ok);
    assert.ok((await f.decide(id, 'cc')).ok);

    // A delegated token (act) acts on nothing here, whoever it names.
    const onBehalf = { act: { sub: 'assistant-app' } };
    const delegatedEng = await f.personToken('eng', 'admin:write admin:read', acr.phishingResistant, onBehalf);
    assertOAuthError(await post('/admin/break-glass/bg-admin/activations', delegatedEng, { reason: 'x' }), 403, 'access_denied');
    assertOAuthError(await post(`/admin/break-glass/activations/${id}/end`, delegatedEng, {}), 403, 'access_denied');
    assert.equal((await post(`/admin/break-glass/activations/${id}/end`, await f.personToken('eng', 'admin:write'), {})).statusCode, 204);
    const delegatedComp = await f.personToken('comp', 'reviews:close', acr.phishingResistant, onBehalf);
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, delegatedComp, { note: 'fine' }), 403, 'access_denied');
    // Each refusal of a delegate is on the record, with what it tried.
    assert.deepEqual(
      (await f.auditEvents('break_glass.refused')).map((e) => [e.decision!.reasons[0], e.details!.operation, e.details!.target]),
      [['delegated_token', 'request', 'bg-admin'], ['delegated_token', 'end', id], ['delegated_token', 'close_review', id]],
    );

    // cc approved the activation: cc's review is refused, and recorded.
    const ccToken = await f.personToken('cc', 'reviews:close');
    assertOAuthError(await post(`/admin/break-glass/reviews/${id}/close`, ccToken, { note: 'all fine, I was there' }), 403, 'access_denied');
    assert.deepEqual((await f.auditEvents('break_glass.review_refused')).map((e) => e.txn), [id]);
    assert.equal((await post(`/admin/break-glass/reviews/${id}/close`, await f.personToken('comp', 'reviews:close'), { note: 'INC-7 reviewed' })).statusCode, 200);

    const reader = await f.personToken('comp', 'admin:read');
    assertOAuthError(await get('/admin/break-glass/reviews?open=true&open=false', reader), 400, 'invalid_request');
    assertOAuthError(await get('/admin/break-glass/reviews?open=yes', reader), 400, 'invalid_request');
    assert.equal((await get('/admin/break-glass/reviews?open=false', reader)).json().reviews.length, 1);
  });
});
