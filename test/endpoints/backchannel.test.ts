import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { fileURLToPath } from 'node:url';
import { testDialects } from '../helpers/storage.ts';
import { clearingApi } from './fixture.ts';
import { adminAudience } from '../../src/admin/authorize.ts';
import { approvalView } from '../../src/approvals/deciders.ts';
import { verifyApprovalEvidence, type RequestApprovalEvidence } from '../../src/approvals/evidence.ts';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decideApprovalRequest, findApprovalRequest, listPendingApprovalRequests } from '../../src/approvals/requests.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { signOutEverywhere } from '../../src/identity/lifecycle.ts';
import { changeKycByAdmin } from '../../src/risk/kyc/admin.ts';
import { accessAudience } from '../../src/resource-servers/builtins.ts';
import { authorizationPruningSettled, maybePruneAuthorizationState } from '../../src/authorization/pruning.ts';
import { fourEyesPolicy, largeOrder } from '../ciba/four-eyes.ts';
import { cibaFixture, cibaGrant, ordersApi, subjectDecides, tokenProof, type CibaFixture } from '../ciba/fixture.ts';

type Json = Record<string, unknown>;

function assertError(response: { statusCode: number; headers: Record<string, unknown>; json(): unknown; body: string }, error: string, status = 400): void {
  assert.equal(response.statusCode, status, response.body);
  assert.equal((response.json() as Json).error, error, response.body);
  assert.match(String(response.headers['cache-control']), /no-store/);
}

async function started(f: CibaFixture, form: Record<string, string | string[]> = {}, clientId = 'desk-ciba'): Promise<Json> {
  const response = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4711', ...form }, clientId);
  assert.equal(response.statusCode, 200, response.body);
  assert.match(String(response.headers['cache-control']), /no-store/);
  return response.json() as Json;
}

describe('the backchannel authentication endpoint', () => {
  test('answers auth_req_id, expires_in and interval, and opens an approval request for the person with what they will see', async (t) => {
    const f = await cibaFixture(t);
    const body = await started(f, { requested_expiry: '120' });
    assert.deepEqual(Object.keys(body).sort(), ['auth_req_id', 'expires_in', 'interval']);
    assert.match(String(body.auth_req_id), /^[A-Za-z0-9_-]{43}$/, '256 random bits');
    assert.equal(body.expires_in, 120);
    assert.equal(body.interval, 5);
    const request = await f.pending();
    assert.equal(request.kind, 'ciba');
    assert.equal(request.requester, 'desk-ciba');
    assert.equal(request.requesterType, 'client');
    assert.equal(request.subjectApproval, 'pending');
    assert.equal(request.requiredApprovals, 0);
    assert.deepEqual(request.content, { type: 'ciba', client_id: 'desk-ciba', client_name: 'desk-ciba app', scope: 'openid order:create', audience: ordersApi, authorization_details: [], binding_message: 'Order 4711', subject: f.traderId, request_id: request.id });
  });

  test('keeps the person’s username out of the audit log: the content names them by id, and the approval shows their username read at view time', async (t) => {
    const f = await cibaFixture(t);
    await started(f);
    const request = await f.pending();
    await subjectDecides(f.ctx, request);
    const [requested] = await f.auditEvents('approval.requested');
    const [given] = await f.auditEvents('approval.given');
    assert.deepEqual(requested!.details?.content, request.content);
    assert.equal((given!.details?.evidence as Json).content !== undefined, true, 'the passkey evidence carries the content it signed');
    // docs/privacy.md: a username is personal data; only top-level details members are sealed.
    for (const event of [requested!, given!]) assert.ok(!JSON.stringify(event.details).includes('"trader"'), `${event.type} names no username`);
    assert.deepEqual(verifyApprovalEvidence(given!.details?.evidence as unknown as RequestApprovalEvidence), [], 'the evidence still verifies');
    const view = await approvalView(f.ctx, request, cibaKind);
    assert.equal(view.description.title, 'desk-ciba app (desk-ciba) asks to sign in trader');
    assert.deepEqual(view.description.lines.find((l) => l.label === 'For'), { label: 'For', value: 'trader' });
    assert.deepEqual(view.subject, { id: f.traderId, name: 'Tina Trader' });
  });

  test('starts its trade: the request’s id is the txn, started for this client; txn=new is that, a txn of the client’s choosing is refused', async (t) => {
    const f = await cibaFixture(t);
    await started(f, { txn: 'new' });
    const request = await f.pending();
    const row = await f.ctx.storage.db.selectFrom('transactions').selectAll().where('txn', '=', request.id).executeTakeFirstOrThrow();
    assert.equal(row.client_id, 'desk-ciba', 'nobody else can start this txn');
    const [requested] = await f.auditEvents('approval.requested');
    assert.equal(requested!.txn, request.id);

    const chosen = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', txn: 'trade-7' }, 'desk-ciba');
    assertError(chosen, 'invalid_request');
    assert.match(String((chosen.json() as Json).error_description), /minted by Clearance/);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 1, 'nothing opened');
  });

  test('refuses Clearance’s own APIs as the audience (invalid_target): a CIBA token never acts as the person at the admin or access API', async (t) => {
    const f = await cibaFixture(t);
    await f.apply({
      clients: [{ client_id: 'sneaky', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid approvals:decide admin:read access:evaluate' }],
    });
    const ask = (form: Record<string, string>) => f.bcAuthorize({ login_hint: 'trader', ...form }, 'sneaky');
    assertError(await ask({ scope: 'openid approvals:decide', resource: adminAudience(f.issuer) }), 'invalid_target');
    assertError(await ask({ scope: 'openid approvals:decide' }), 'invalid_target', 400);
    assertError(await ask({ scope: 'openid access:evaluate', resource: accessAudience(f.issuer) }), 'invalid_target');
    assert.equal((await f.auditEvents('approval.requested')).length, 0, 'nobody is asked');
    const userinfo = await ask({ scope: 'openid' });
    assert.equal(userinfo.statusCode, 200, 'the userinfo endpoint stays the audience of a sign-in');
  });

  test('refuses a client not registered for the CIBA grant, and an unauthenticated one', async (t) => {
    const f = await cibaFixture(t);
    assertError(await f.post('/bc-authorize', { auth: f.basic('broker-1'), form: { scope: 'openid', login_hint: 'trader' } }), 'unauthorized_client');
    assertError(await f.post('/bc-authorize', { form: { scope: 'openid', login_hint: 'trader' } }), 'invalid_client', 401);
  });

  test('needs exactly one hint naming an active person', async (t) => {
    const f = await cibaFixture(t);
    assertError(await f.bcAuthorize({ scope: 'openid' }), 'invalid_request');
    const idToken = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', id_token_hint: idToken }), 'invalid_request');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'nobody' }), 'unknown_user_id');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'idle' }), 'unknown_user_id', 400);
    assertError(await f.bcAuthorize({ scope: 'openid', id_token_hint: idToken }), 'invalid_request');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint_token: 'not-a-token' }), 'invalid_request');
  });

  test('takes an ID token it issued to this client as id_token_hint, expired or not, and no other client’s', async (t) => {
    const f = await cibaFixture(t);
    const { authReqId } = await approvedTokens(f);
    const tokens = (await f.poll(authReqId)).json() as Json;
    f.clock.advance(3600_000);
    await started(f, { login_hint: [], id_token_hint: String(tokens.id_token) } as never);
    assertError(await f.bcAuthorize({ scope: 'openid', id_token_hint: String(tokens.id_token) }, 'other-ciba'), 'invalid_request');
  });

  test('takes a live access token of this client as login_hint_token, and refuses an expired or revoked one', async (t) => {
    const f = await cibaFixture(t);
    const { authReqId } = await approvedTokens(f);
    const accessToken = String(((await f.poll(authReqId)).json() as Json).access_token);
    await started(f, { login_hint: [], login_hint_token: accessToken } as never);
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint_token: accessToken }, 'other-ciba'), 'invalid_request');
    const revoked = await f.post('/revoke', { auth: f.basic('desk-ciba'), form: { token: accessToken } });
    assert.equal(revoked.statusCode, 200);
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint_token: accessToken }), 'expired_login_hint_token');
    f.clock.advance(3600_000);
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint_token: accessToken }), 'expired_login_hint_token');
  });

  test('requires openid in scope, and checks scopes, resource and authorization_details', async (t) => {
    const f = await cibaFixture(t);
    assertError(await f.bcAuthorize({ login_hint: 'trader' }), 'invalid_request');
    assertError(await f.bcAuthorize({ scope: 'order:create', login_hint: 'trader' }), 'invalid_scope');
    assertError(await f.bcAuthorize({ scope: 'openid order:cancel', login_hint: 'trader' }), 'invalid_scope');
    assertError(await f.bcAuthorize({ scope: 'openid order:create', resource: [ordersApi, 'https://clearing.example.com/api'], login_hint: 'trader' }), 'invalid_target');
    assertError(await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', authorization_details: '[{"type":"teleport"}]' }), 'invalid_authorization_details');
  });

  test('screens the counterparties authorization_details names before anyone is asked: a listed one is invalid_authorization_details, audited and alerted, and opens nothing', async (t) => {
    const f = await cibaFixture(t, { env: { CLEARANCE_SCREENING_LIST: fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url)) } });
    await f.apply({ clients: [{ client_id: 'settle-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant], backchannel_token_delivery_mode: 'poll', scope: 'openid settlement:submit' }] });
    const instruction = (counterparty: Json) => ({ type: 'settlement_instruction', settlement_type: 'dvp', account: 'GB-FX-001', max_amount: { amount: '1000000', currency: 'USD' }, ...counterparty });
    const ask = (...details: Json[]) =>
      f.bcAuthorize({ scope: 'openid settlement:submit', resource: clearingApi, login_hint: 'trader', binding_message: 'Settle 42', authorization_details: JSON.stringify(details) }, 'settle-ciba');
    const clean = instruction({ counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name: 'Example Broker Ltd' });
    for (const listed of [instruction({ counterparty_lei: '5299000FICTSHIP00137' }), instruction({ counterparty_lei: '5493001KJTIIGC8Y1R12', counterparty_name: 'E.E.T.C.' })]) {
      const refused = await ask(clean, listed);
      assertError(refused, 'invalid_authorization_details');
      // As at the token endpoint (src/risk/kyc/enforce.ts): nothing tells the client why.
      assert.equal((refused.json() as Json).error_description, 'authorization_details[1] names a counterparty that cannot be accepted at present');
    }
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 0, 'nobody is asked to approve it');
    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
    assert.deepEqual(denied.map((e) => [e.client, e.details!.authorization_details, e.details!.entry_id, e.details!.via]), [
      ['settle-ciba', 1, 'SAN-E001', cibaGrant],
      ['settle-ciba', 1, 'SAN-E002', cibaGrant],
    ]);
    const alerts = await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Json).entry_id), ['SAN-E001', 'SAN-E002']);
    // A clean counterparty is asked as before.
    assert.equal((await ask(clean)).statusCode, 200);
    assert.equal((await f.pending()).kind, 'ciba');
  });

  test("refuses a frozen subject before anyone is asked: access_denied (CIBA §13; the token endpoint says invalid_grant), audited policy.denied kyc-frozen, and nothing is opened", async (t) => {
    const f = await cibaFixture(t);
    await changeKycByAdmin(f.ctx, { type: 'User', id: f.traderId }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });
    const refused = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4711' });
    assertError(refused, 'access_denied', 403); // CIBA §13: access_denied is 403
    assert.equal((refused.json() as Json).error_description, 'no token can be issued for this subject at present');
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 0, 'nobody is asked to approve it');
    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen'));
    assert.deepEqual(denied.map((e) => [e.subject, e.client, e.details!.frozen, e.details!.via]), [[f.traderId, 'desk-ciba', `User::${JSON.stringify(f.traderId)}`, cibaGrant]]);
    // Lifted: asked as before.
    await changeKycByAdmin(f.ctx, { type: 'User', id: f.traderId }, { status: 'verified' }, { actor: 'admin-ops', reason: 'test' });
    await started(f);
  });

  test('refuses a login_hint_token whose act chain names a client of a frozen firm before anyone is asked: access_denied, audited policy.denied kyc-frozen, nothing opened', async (t) => {
    const f = await cibaFixture(t);
    const hintToken = await actChainHint(f);
    await changeKycByAdmin(f.ctx, { type: 'LegalEntity', id: algoFirm }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });
    const opened = (await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length;
    const refused = await f.bcAuthorize({ scope: 'openid order:create', login_hint_token: hintToken, binding_message: 'Order 4712' });
    assertError(refused, 'access_denied', 403);
    assert.equal((refused.json() as Json).error_description, 'no token can be issued for this subject at present');
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, opened, 'nobody is asked to approve it');
    const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen'));
    assert.deepEqual(denied.map((e) => [e.subject, e.client, e.details!.frozen, e.details!.via]), [[f.traderId, 'desk-ciba', `LegalEntity::${JSON.stringify(algoFirm)}`, cibaGrant]]);
  });

  test('refuses a binding_message that is too long or not printable text', async (t) => {
    const f = await cibaFixture(t);
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', binding_message: 'x'.repeat(101) }), 'invalid_binding_message');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', binding_message: 'Order\n4711' }), 'invalid_binding_message');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', binding_message: 'Order \u202e1174' }), 'invalid_binding_message');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', binding_message: 'Order\u200b4711' }), 'invalid_binding_message');
    await started(f, { binding_message: 'Kauf 5 Mio. XS1234567890 zu 101,25 €' });
  });

  test('judges a binding_message only once the client has authenticated: an unauthenticated caller gets invalid_client, an authenticated one invalid_binding_message', async (t) => {
    const f = await cibaFixture(t);
    const bad = { scope: 'openid', login_hint: 'trader', binding_message: 'Order\n4711' };
    for (const auth of [undefined, f.basic('desk-ciba', 'not-its-secret')]) {
      const response = await f.post('/bc-authorize', { ...(auth ? { auth } : {}), form: { ...bad, ...(auth ? {} : { client_id: 'desk-ciba' }) } });
      assertError(response, 'invalid_client', 401);
    }
    assertError(await f.bcAuthorize({ ...bad, binding_message: 'x'.repeat(101) }, 'desk-ciba'), 'invalid_binding_message');
    // The form's control-character rule still holds for every other parameter.
    assertError(await f.bcAuthorize({ ...bad, binding_message: 'Order 4711', login_hint: 'tra\u0000der' }), 'invalid_request');
    assertError(await f.bcAuthorize(bad), 'invalid_binding_message');
  });

  test('bounds requested_expiry, ignores user_code, and never records it', async (t) => {
    const f = await cibaFixture(t);
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', requested_expiry: '0' }), 'invalid_request');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', requested_expiry: '3601' }), 'invalid_request');
    assertError(await f.bcAuthorize({ scope: 'openid', login_hint: 'trader', requested_expiry: '1.5' }), 'invalid_request');
    await started(f, { user_code: 'pin-8139-secret' });
    assert.ok(!(await f.auditText()).includes('pin-8139-secret'));
  });

  test('needs a signed request from a client that registered a signing alg, and checks it as §7.1.1 says', async (t) => {
    const f = await cibaFixture(t);
    const post = async (form: Record<string, string>) =>
      f.post('/bc-authorize', { form: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await f.assertionOf('signing-ciba'), ...form } });
    assertError(await post({ scope: 'openid', login_hint: 'trader' }), 'invalid_request');
    const claims = { scope: 'openid order:create', login_hint: 'trader', binding_message: 'Signed 1' };
    const jwt = await f.signedRequest('signing-ciba', claims);
    const ok = await post({ request: jwt });
    assert.equal(ok.statusCode, 200, ok.body);
    assertError(await post({ request: jwt }), 'invalid_request'); // the jti is single use
    assertError(await post({ request: await f.signedRequest('signing-ciba', claims), login_hint: 'trader' }), 'invalid_request');
    assertError(await post({ request: await f.signedRequest('signing-ciba', { ...claims, aud: 'https://elsewhere.example.com' }) }), 'invalid_request');
    assertError(await post({ request: await f.signedRequest('signing-ciba', { ...claims, iss: 'desk-ciba' }) }), 'invalid_request');
    assertError(await post({ request: await f.signedRequest('signing-ciba', { ...claims, jti: undefined }) }), 'invalid_request');
    assertError(await post({ request: await f.signedRequest('signing-ciba', { ...claims, iat: undefined }) }), 'invalid_request');
    const now = Math.floor(f.clock.now() / 1000);
    assertError(await post({ request: await f.signedRequest('signing-ciba', { ...claims, nbf: now, exp: now + 3700 }) }), 'invalid_request');
  });

  test('requires a fapi2 client to sign its requests', async (t) => {
    const f = await cibaFixture(t);
    const post = async (form: Record<string, string>) =>
      f.post('/bc-authorize', { form: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await f.assertionOf('fapi-ciba'), ...form } });
    const unsigned = await post({ scope: 'openid', login_hint: 'trader' });
    assertError(unsigned, 'invalid_request');
    assert.match(String((unsigned.json() as Json).error_description), /signed/);
    const signed = await post({ request: await f.signedRequest('fapi-ciba', { scope: 'openid', login_hint: 'trader', binding_message: 'Desk 4 / 1142' }) });
    assert.equal(signed.statusCode, 200, signed.body);
  });

  test('requires a binding_message of a fapi2 client (FAPI-CIBA §5.2.2): without one the person could not tell its request from another started for them at the same time', async (t) => {
    const f = await cibaFixture(t);
    const post = async (form: Record<string, string>) =>
      f.post('/bc-authorize', { form: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await f.assertionOf('fapi-ciba'), ...form } });
    const unbound = await post({ request: await f.signedRequest('fapi-ciba', { scope: 'openid', login_hint: 'trader' }) });
    assertError(unbound, 'invalid_request');
    assert.match(String((unbound.json() as Json).error_description), /binding_message is required/);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 0, 'nobody is asked');
    // An order in authorization_details is no substitute: two identical orders look the same to the person.
    await f.apply({ instrument_classes: [{ id: 'fx' }] });
    const order = JSON.stringify([largeOrder]);
    assertError(await post({ request: await f.signedRequest('fapi-ciba', { scope: 'openid order:create', login_hint: 'trader', authorization_details: order }) }), 'invalid_request');
    const bound = await post({ request: await f.signedRequest('fapi-ciba', { scope: 'openid order:create', login_hint: 'trader', authorization_details: order, binding_message: 'Desk 4 / 1142' }) });
    assert.equal(bound.statusCode, 200, bound.body);
    // Other clients may still leave it out (CIBA Core §7.1: OPTIONAL).
    await started(f, { binding_message: [] } as never);
  });

  test('refuses a fourth open request of one client for one person as access_denied (CIBA §13), records it, and asks again once one is answered or expired', async (t) => {
    const f = await cibaFixture(t);
    for (const n of [1, 2, 3]) await started(f, { binding_message: `Order ${n}`, requested_expiry: '120' });
    const refused = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4' });
    assertError(refused, 'access_denied', 403);
    assert.match(String((refused.json() as Json).error_description), /already waiting/);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 3, 'the person is not prompted a fourth time');
    const [recorded] = (await f.auditEvents('token.refused')).filter((e) => e.details?.reason === 'ciba_open_limit');
    assert.deepEqual([recorded!.client, recorded!.subject, recorded!.details?.error, recorded!.details?.grant_type, recorded!.details?.open, recorded!.details?.limit], ['desk-ciba', f.traderId, 'access_denied', cibaGrant, 3, 3]);
    // Another client's prompts are its own.
    await started(f, {}, 'other-ciba');
    // One answered: room for one more.
    await subjectDecides(f.ctx, (await listPendingApprovalRequests(f.ctx, { subject: f.traderId })).find((r) => r.clientId === 'desk-ciba')!);
    await started(f, { binding_message: 'Order 4' });
    assertError(await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 5' }), 'access_denied', 403);
    // Expired: no longer waiting for the person.
    f.clock.advance(120_000);
    await started(f, { binding_message: 'Order 5' });
  });

  test('takes the number of open requests from CLEARANCE_CIBA_MAX_OPEN_REQUESTS', async (t) => {
    const f = await cibaFixture(t, { env: { CLEARANCE_CIBA_MAX_OPEN_REQUESTS: '1' } });
    await started(f);
    assertError(await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 2' }), 'access_denied', 403);
  });

  test('stops prompting a person for a client whose three requests they denied within ten minutes, for thirty minutes, and records it', async (t) => {
    const f = await cibaFixture(t);
    for (const n of [1, 2, 3]) {
      await started(f, { binding_message: `Order ${n}` });
      await subjectDecides(f.ctx, await f.pending(), 'deny');
      f.clock.advance(4 * 60_000);
    }
    // The third denial was 4 minutes ago.
    const refused = await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4' });
    assertError(refused, 'access_denied', 403);
    assert.match(String((refused.json() as Json).error_description), /denied/);
    assert.equal((await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute()).length, 3, 'the person is not prompted again');
    const [recorded] = (await f.auditEvents('token.refused')).filter((e) => e.details?.reason === 'ciba_recently_denied');
    assert.deepEqual([recorded!.client, recorded!.subject, recorded!.details?.error, recorded!.details?.denied, recorded!.details?.until], ['desk-ciba', f.traderId, 'access_denied', 3, f.clock.now() - 4 * 60_000 + 30 * 60_000]);
    // Another client may still ask.
    await started(f, {}, 'other-ciba');
    f.clock.advance(25 * 60_000);
    assertError(await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: 'Order 4' }), 'access_denied', 403);
    f.clock.advance(60_000);
    await started(f, { binding_message: 'Order 4' });
  });

  test('keeps prompting a person whose denials of a client are spread over more than ten minutes', async (t) => {
    const f = await cibaFixture(t);
    for (const n of [1, 2, 3]) {
      await started(f, { binding_message: `Order ${n}` });
      await subjectDecides(f.ctx, await f.pending(), 'deny');
      f.clock.advance(6 * 60_000);
    }
    await started(f, { binding_message: 'Order 4' });
  });

  test('is advertised in discovery with the CIBA metadata', async (t) => {
    const f = await cibaFixture(t);
    const metadata = (await f.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Json;
    assert.equal(metadata.backchannel_authentication_endpoint, `${f.issuer}/bc-authorize`);
    assert.deepEqual(metadata.backchannel_token_delivery_modes_supported, ['poll', 'ping']);
    assert.equal(metadata.backchannel_user_code_parameter_supported, false);
    assert.ok((metadata.backchannel_authentication_request_signing_alg_values_supported as string[]).includes('ES256'));
    assert.ok((metadata.grant_types_supported as string[]).includes('urn:openid:params:grant-type:ciba'));
  });
});

/** A request the trader approved; its auth_req_id. */
async function approvedTokens(f: CibaFixture, form: Record<string, string | string[]> = {}, clientId = 'desk-ciba'): Promise<{ authReqId: string }> {
  const body = await started(f, form, clientId);
  await subjectDecides(f.ctx, await f.pending());
  return { authReqId: String(body.auth_req_id) };
}

/** The firm that owns `algo-7`, the service in the act chain of `actChainHint`'s token. */
const algoFirm = '5493001KJTIIGC8Y1R12';

/**
 * A login_hint_token of desk-ciba for the trader whose act chain names `algo-7`, a service of
 * `algoFirm` (as an exchange would give it: minted here, from a CIBA token of the trader).
 */
async function actChainHint(f: CibaFixture): Promise<string> {
  await f.apply({ clients: [{ client_id: 'algo-7', kind: 'service', owner_lei: algoFirm, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' }] });
  const { authReqId } = await approvedTokens(f);
  const claims = decodeJwt(String(((await f.poll(authReqId)).json() as Json).access_token));
  return f.ctx.keys.signJwt({ typ: 'at+jwt' }, { ...claims, jti: 'hint-algo-7', act: { sub: 'algo-7', act: { sub: 'desk-ciba' } } });
}

/** A user's id by username. */
async function idOf(f: CibaFixture, username: string): Promise<string> {
  return (await findUserByUsername(f.ctx, username))!.id;
}

/**
 * The four-eyes policy with supervisors holding the approver role, and a CIBA request for an order
 * above its threshold (one second person needed); `approve(name)` is that supervisor's approval.
 */
async function fourEyesRequest(f: CibaFixture, supervisors: string[]) {
  await f.apply({ instrument_classes: [{ id: 'fx' }], users: supervisors.map((username) => ({ username, name: `${username} Supervisor`, roles: ['approver'] })) });
  await f.apply({ policies: [{ version: 'v1', text: fourEyesPolicy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
  const body = await started(f, { resource: ordersApi, authorization_details: JSON.stringify([largeOrder]) });
  const request = await f.pending();
  assert.equal(request.requiredApprovals, 1, 'the policy asks for a second person');
  const approve = async (username: string) => {
    const person = (await findUserByUsername(f.ctx, username))!;
    return decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver: { userId: person.id, username, roles: person.roles, desks: person.desks }, proof: tokenProof(), decision: 'approve' });
  };
  return { authReqId: String(body.auth_req_id), request, approve };
}

for (const dialect of testDialects()) {
  describe(`the CIBA grant on ${dialect.name}`, () => {
    test('answers authorization_pending, slow_down when polled too fast (the interval growing by 5 s), then the tokens once', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const authReqId = String((await started(f)).auth_req_id);
      assertError(await f.poll(authReqId), 'authorization_pending');
      assertError(await f.poll(authReqId), 'slow_down');
      f.clock.advance(5_000);
      assertError(await f.poll(authReqId), 'slow_down', 400); // 5 s of 10: the interval is 15 s now
      f.clock.advance(15_000);
      assertError(await f.poll(authReqId), 'authorization_pending');
      await subjectDecides(f.ctx, await f.pending());
      const response = await f.poll(authReqId);
      assert.equal(response.statusCode, 200, response.body);
      assert.match(String(response.headers['cache-control']), /no-store/);
      const tokens = response.json() as Json;
      assert.ok(tokens.id_token && tokens.refresh_token && tokens.access_token);
      assertError(await f.poll(authReqId), 'invalid_grant');
    });

    test('issues a token with txn, acr from the subject’s approval and the evidence linked in token.issued', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId } = await approvedTokens(f);
      const request = (await f.ctx.storage.db.selectFrom('approval_requests').select('id').executeTakeFirstOrThrow()).id;
      const tokens = (await f.poll(authReqId)).json() as Json;
      const claims = decodeJwt(String(tokens.access_token));
      assert.equal(claims.sub, f.traderId);
      assert.equal(claims.aud, ordersApi);
      assert.equal(claims.txn, request);
      assert.equal(claims.acr, 'urn:clearance:acr:phr');
      assert.deepEqual(claims.amr, ['hwk', 'user', 'mfa'], 'the passkey of the subject’s own approval');
      const own = (await f.auditEvents('approval.given')).find((e) => e.details?.role === 'subject')!;
      assert.equal(own.details?.method, 'passkey');
      assert.equal(claims.auth_time, Math.floor(own.time / 1000), 'auth_time is the subject’s passkey approval');
      assert.equal(claims.approvals, undefined, 'no second person was asked');
      const id = decodeJwt(String(tokens.id_token));
      assert.equal(id.sub, f.traderId);
      assert.equal(id.aud, 'desk-ciba');
      const [issued] = (await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === 'urn:openid:params:grant-type:ciba');
      assert.equal(issued!.txn, request);
      assert.equal(issued!.details?.approval_request_id, request);
      const given = await f.auditEvents('approval.given');
      assert.deepEqual(issued!.details?.evidence_digests, [{ sub: f.traderId, role: 'subject', evidence_digest: given[0]!.details?.evidence_digest }]);
      assert.equal((await f.auditEvents('consent.granted')).length, 1);
      const refreshed = await f.token({ auth: f.basic('desk-ciba'), form: { grant_type: 'refresh_token', refresh_token: String(tokens.refresh_token) } });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      const again = decodeJwt(String((refreshed.json() as Json).access_token));
      assert.equal(again.txn, request, 'a refreshed token stays in the request’s transaction');
      assert.equal(again.acr, 'urn:clearance:acr:phr');
    });

    test('gives a token issued with a second person’s approval no refresh token, so the approval lifts a four-eyes forbid for that token only', async (t) => {
      const f = await cibaFixture(t, { dialect });
      await f.apply({ instrument_classes: [{ id: 'fx' }], users: [{ username: 'sup', name: 'Sam Supervisor', roles: ['approver'] }] });
      await f.apply({ policies: [{ version: 'v1', text: fourEyesPolicy, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
      const body = await started(f, { resource: ordersApi, authorization_details: JSON.stringify([largeOrder]) });
      const request = await f.pending();
      assert.equal(request.requiredApprovals, 1, 'the policy asks for a second person');
      await subjectDecides(f.ctx, request);
      const sup = (await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'sup').executeTakeFirstOrThrow()).id;
      const second = await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver: { userId: sup, username: 'sup', roles: ['approver'], desks: [] }, proof: tokenProof(), decision: 'approve' });
      assert.ok(second.ok && second.settled === 'approved', JSON.stringify(second));
      const response = await f.poll(String(body.auth_req_id));
      assert.equal(response.statusCode, 200, response.body);
      const tokens = response.json() as Json;
      assert.deepEqual((decodeJwt(String(tokens.access_token)).approvals as Json[]).map((a) => a.sub), [sup]);
      assert.equal(tokens.refresh_token, undefined, 'desk-ciba is registered for refresh_token, yet gets none');
      assert.ok(tokens.id_token);
      const [issued] = (await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant);
      assert.equal(issued!.details?.refresh_id, undefined);
      assert.equal((await f.ctx.storage.db.selectFrom('refresh_tokens').select('id').execute()).length, 0, 'no refresh family exists');
    });

    test('does not count a second person’s approval once they are disabled: the request waits for another approver, whose approval alone the token names', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup', 'sue']);
      assert.ok((await approve('sup')).ok);
      await f.apply({ users: [{ username: 'sup', name: 'Sam Supervisor', roles: [], status: 'disabled' }] });
      await subjectDecides(f.ctx, request);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'pending', 'the disabled approver’s approval does not complete it');
      assertError(await f.poll(authReqId), 'authorization_pending');
      const own = (await f.auditEvents('approval.given')).find((e) => e.details?.role === 'subject')!;
      assert.deepEqual(own.details?.not_counted, [{ approver: await idOf(f, 'sup'), reason: 'the approver is no longer an active person' }]);
      assert.equal((await f.auditEvents('approval.completed')).length, 0);

      const second = await approve('sue');
      assert.ok(second.ok && second.settled === 'approved', JSON.stringify(second));
      const [completed] = await f.auditEvents('approval.completed');
      assert.equal(completed!.details?.approvals, 1, 'only the approval that stands is counted');
      f.clock.advance(5_000);
      const response = await f.poll(authReqId);
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual((decodeJwt(String((response.json() as Json).access_token)).approvals as Json[]).map((a) => a.sub), [await idOf(f, 'sue')]);
      const [issued] = (await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant);
      assert.deepEqual((issued!.details?.evidence_digests as Json[]).map((d) => d.role), ['subject', 'approver']);
    });

    test('issues nothing on the subject’s approval once their tokens were cut off after it, even when a second person settles the request later', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup']);
      await subjectDecides(f.ctx, request);
      // The person signs out everywhere (a lost phone, a suspicious prompt): what they authenticated before is dead.
      f.clock.advance(1000);
      assert.equal(await signOutEverywhere(f.ctx, 'trader', { actor: 'admin-ops' }), true);
      f.clock.advance(1000);
      const settled = await approve('sup');
      assert.ok(settled.ok && settled.settled === 'approved', JSON.stringify(settled));
      assertError(await f.poll(authReqId), 'invalid_grant');
      assert.equal((await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant).length, 0);
    });

    test('refuses for good, as access_denied, a token whose second person signed out everywhere after approving, and withdraws the request', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup']);
      await subjectDecides(f.ctx, request);
      const settled = await approve('sup');
      assert.ok(settled.ok && settled.settled === 'approved', JSON.stringify(settled));
      // The approver reports their phone stolen: what they authenticated before is untrustworthy, their approval with it.
      f.clock.advance(1000);
      assert.equal(await signOutEverywhere(f.ctx, 'sup', { actor: 'admin-ops' }), true);
      f.clock.advance(5_000);
      assertError(await f.poll(authReqId), 'access_denied', 400);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'cancelled');
      const [withdrawn] = (await f.auditEvents('approval.completed')).filter((e) => e.details?.outcome === 'cancelled');
      assert.deepEqual(withdrawn!.details?.not_counted, [{ approver: await idOf(f, 'sup'), reason: 'the approver’s tokens were cut off (sign out everywhere, a recovery, roles taken away) after the approval' }]);
      const [refused] = await f.auditEvents('token.refused');
      assert.equal(refused!.details?.reason, 'approval_no_longer_stands');
      assert.equal((await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant).length, 0);
    });

    test('does not count a second person’s approval given before their cut-off: the request waits for an approval given after it', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup']);
      assert.ok((await approve('sup')).ok);
      f.clock.advance(1000);
      assert.equal(await signOutEverywhere(f.ctx, 'sup', { actor: 'admin-ops' }), true);
      f.clock.advance(1000);
      await subjectDecides(f.ctx, request);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'pending', 'the approval from before the cut-off does not complete it');
      assertError(await f.poll(authReqId), 'authorization_pending');
      const own = (await f.auditEvents('approval.given')).find((e) => e.details?.role === 'subject')!;
      assert.equal((own.details?.not_counted as Json[])[0]!.approver, await idOf(f, 'sup'));
    });

    test('keeps an approved request when whether its approvals still stand cannot be checked just now: authorization_pending, then the token', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup']);
      await subjectDecides(f.ctx, request);
      const settled = await approve('sup');
      assert.ok(settled.ok && settled.settled === 'approved', JSON.stringify(settled));
      // The eligibility check fails (a lookup fault): it proves nothing against the approval.
      const stillStands = cibaKind.stillStands;
      cibaKind.stillStands = async () => {
        throw new Error('the entity model could not be read');
      };
      try {
        assertError(await f.poll(authReqId), 'authorization_pending');
      } finally {
        cibaKind.stillStands = stillStands;
      }
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'approved', 'not withdrawn');
      f.clock.advance(5_000);
      const response = await f.poll(authReqId);
      assert.equal(response.statusCode, 200, response.body);
    });

    test('refuses for good, as access_denied, a token whose second person is no longer eligible once the request settled, and withdraws the request', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId, request, approve } = await fourEyesRequest(f, ['sup']);
      await subjectDecides(f.ctx, request);
      const settled = await approve('sup');
      assert.ok(settled.ok && settled.settled === 'approved', JSON.stringify(settled));
      // Still active, but no longer holding the role the approve permit asks for.
      await f.apply({ users: [{ username: 'sup', name: 'Sam Supervisor', roles: [] }] });
      assertError(await f.poll(authReqId), 'access_denied', 400);
      assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'cancelled');
      const [withdrawn] = (await f.auditEvents('approval.completed')).filter((e) => e.details?.outcome === 'cancelled');
      assert.equal(withdrawn!.txn, request.id);
      assert.deepEqual(withdrawn!.details?.not_counted, [{ approver: await idOf(f, 'sup'), reason: 'no policy that names the approve action lets this person approve it' }]);
      const [refused] = await f.auditEvents('token.refused');
      assert.equal(refused!.txn, request.id);
      assert.equal(refused!.details?.reason, 'approval_no_longer_stands');
      // Eligible again: the answer stays access_denied (CIBA §11: the client stops polling).
      await f.apply({ users: [{ username: 'sup', name: 'Sam Supervisor', roles: ['approver'] }] });
      f.clock.advance(5_000);
      assertError(await f.poll(authReqId), 'access_denied', 400);
      assert.equal((await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant).length, 0);
    });

    test('issues nothing on a subject’s approval by a token, even one the decision rule let through: auth_time is always the subject’s passkey', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const authReqId = String((await started(f)).auth_req_id);
      const request = await f.pending();
      // As a kind without the passkey rule would (the rule itself is tested in test/approvals/requests.test.ts).
      const lax = { ...cibaKind, subjectProof: undefined };
      const approved = await decideApprovalRequest(f.ctx, lax, { requestId: request.id, approver: { userId: f.traderId, username: 'trader', roles: ['trader'], desks: [] }, proof: tokenProof(), decision: 'approve' });
      assert.ok(approved.ok && approved.settled === 'approved', JSON.stringify(approved));
      assertError(await f.poll(authReqId), 'invalid_grant');
      assert.equal((await f.auditEvents('token.issued')).length, 0);
    });

    test('carries the approved order’s digest, and the act chain of a login_hint_token', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId } = await approvedTokens(f);
      const first = String(((await f.poll(authReqId)).json() as Json).access_token);
      // A token with an act chain, as an exchange would give it: minted here for the test.
      const act = { sub: 'algo-7', act: { sub: 'desk-ciba' } };
      const claims = decodeJwt(first);
      const hintToken = await f.ctx.keys.signJwt({ typ: 'at+jwt' }, { ...claims, jti: 'hint-1', act });
      await f.apply({ instrument_classes: [{ id: 'fx' }] });
      const order = [{ type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '1000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' }];
      const body = await started(f, { login_hint: [], login_hint_token: hintToken, authorization_details: JSON.stringify(order) } as never);
      const request = await f.pending();
      assert.deepEqual(request.actors, ['algo-7', 'desk-ciba']);
      await subjectDecides(f.ctx, request);
      f.clock.advance(1000);
      const response = await f.poll(String(body.auth_req_id));
      assert.equal(response.statusCode, 200, response.body);
      const token = decodeJwt(String((response.json() as Json).access_token));
      assert.deepEqual(token.act, act);
      assert.match(String(token.authorization_details_digest), /^[A-Za-z0-9_-]{43}$/);
      assert.equal(token.txn, request.id);
    });

    test('issues no token, nor a refreshed one, whose act chain names a client of a firm frozen since the request was opened', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const hintToken = await actChainHint(f);
      const ask = async () => {
        const body = await started(f, { login_hint: [], login_hint_token: hintToken } as never);
        await subjectDecides(f.ctx, await f.pending());
        return String(body.auth_req_id);
      };
      const redeemedBefore = await ask();
      const approvedBefore = await ask();
      f.clock.advance(1000);
      const tokens = (await f.poll(redeemedBefore)).json() as Json;
      assert.deepEqual(decodeJwt(String(tokens.access_token)).act, { sub: 'algo-7', act: { sub: 'desk-ciba' } });
      assert.ok(tokens.refresh_token, 'desk-ciba is registered for refresh_token');

      await changeKycByAdmin(f.ctx, { type: 'LegalEntity', id: algoFirm }, { status: 'frozen' }, { actor: 'admin-ops', reason: 'test' });
      const refused = await f.poll(approvedBefore);
      assertError(refused, 'invalid_grant');
      assert.equal((refused.json() as Json).error_description, 'no token can be issued for this subject at present');
      const refreshed = await f.token({ auth: f.basic('desk-ciba'), form: { grant_type: 'refresh_token', refresh_token: String(tokens.refresh_token) } });
      assertError(refreshed, 'invalid_grant');
      const denied = (await f.auditEvents('policy.denied')).filter((e) => e.decision!.reasons.includes('kyc-frozen'));
      assert.deepEqual(denied.map((e) => [e.details!.frozen, e.details!.via]), [
        [`LegalEntity::${JSON.stringify(algoFirm)}`, cibaGrant],
        [`LegalEntity::${JSON.stringify(algoFirm)}`, 'refresh_token'],
      ]);
      assert.equal((await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === cibaGrant).length, 2, 'the hint’s own token and the one redeemed before the freeze');
    });

    test('refuses another client’s auth_req_id, an unknown one, and answers access_denied when the person denies', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const authReqId = String((await started(f)).auth_req_id);
      assertError(await f.poll(authReqId, 'other-ciba'), 'invalid_grant');
      assertError(await f.poll('A'.repeat(43)), 'invalid_grant');
      await subjectDecides(f.ctx, await f.pending(), 'deny');
      assertError(await f.poll(authReqId), 'access_denied', 400);
    });

    test('opens at most three of the requests one client sends at once for one person', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const answers = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader', binding_message: `Order ${n}` })));
      assert.deepEqual(answers.map((r) => r.statusCode).sort(), [200, 200, 200, 403, 403, 403], answers.map((r) => r.body).join('\n'));
      assert.equal((await listPendingApprovalRequests(f.ctx, { subject: f.traderId })).length, 3);
    });

    test('answers expired_token once the request expired, approved or not', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const pending = String((await started(f, { requested_expiry: '60' })).auth_req_id);
      f.clock.advance(60_000);
      assertError(await f.poll(pending), 'expired_token');
      const approved = String((await started(f, { requested_expiry: '60' })).auth_req_id);
      await subjectDecides(f.ctx, await f.pending());
      f.clock.advance(60_000);
      assertError(await f.poll(approved), 'expired_token');
    });

    test('gives two redemptions at once one set of tokens', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId } = await approvedTokens(f);
      const both = await Promise.all([f.poll(authReqId), f.poll(authReqId)]);
      assert.deepEqual(both.map((r) => r.statusCode).sort(), [200, 400], both.map((r) => r.body).join('\n'));
      assert.equal((await f.auditEvents('token.issued')).filter((e) => e.details?.grant_type === 'urn:openid:params:grant-type:ciba').length, 1);
    });

    test('prunes a request a day after its expiry, with its sealed notification token, and keeps the approval request', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const rows = async () => Number((await f.ctx.storage.db.selectFrom('ciba_requests').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
      assert.equal((await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader' })).statusCode, 200);
      const old = await f.pending();
      f.clock.advance(600_000 + 24 * 3600_000 + 1);
      assert.equal((await f.bcAuthorize({ scope: 'openid order:create', login_hint: 'trader' })).statusCode, 200);
      assert.equal(await rows(), 2);
      maybePruneAuthorizationState(f.ctx);
      await authorizationPruningSettled(f.ctx);
      assert.equal(await rows(), 1, 'the expired one went, the live one stayed');
      assert.ok(await findApprovalRequest(f.ctx.storage.db, old.id), 'the approval request, evidence of what was asked, stays');
    });

    test('never writes the auth_req_id into the audit log or the database', async (t) => {
      const f = await cibaFixture(t, { dialect });
      const { authReqId } = await approvedTokens(f);
      await f.poll(authReqId);
      await f.poll(authReqId);
      assert.ok(!(await f.auditText()).includes(authReqId));
      const rows = JSON.stringify(await f.ctx.storage.db.selectFrom('ciba_requests').selectAll().execute());
      assert.ok(!rows.includes(authReqId));
    });
  });
}
