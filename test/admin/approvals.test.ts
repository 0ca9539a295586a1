import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { adminAudience } from '../../src/admin/authorize.ts';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decisionsOf, findApprovalRequest } from '../../src/approvals/requests.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { openOrderRequest, useTestKind } from '../approvals/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { auditRefuses } from '../helpers/audit-faults.ts';

// The admin API of an approvals app (docs/approvals.md "The approver's side"): a person's own,
// fresh, strong token for <issuer>/admin with the scope `approvals:decide` lists and decides what that
// person may decide on the approvals page; a client's own token decides nothing.

async function harness(t: TestContext): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t);
  useTestKind(t);
  await f.apply({
    clients: [
      {
        client_id: 'approvals-app',
        client_name: 'Approvals',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: [webRedirect],
        scope: 'approvals:decide',
      },
      {
        client_id: 'approvals-bot',
        kind: 'service',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        scope: 'approvals:decide admin:read',
      },
    ],
  });
  return f;
}

/** A person's token from the approvals app, signed in at `level`. */
async function personToken(f: CodeFlowFixture, username: string, options: { level?: string; scope?: string; person?: Person } = {}): Promise<string> {
  const level = options.level ?? acr.phishingResistant;
  const person = options.person ?? (await f.signIn(username, { acr: level, amr: level === acr.password ? ['pwd'] : ['hwk', 'user', 'mfa'] }));
  const { code, pkce } = await f.authorizeAndApprove({ client: 'approvals-app', person, query: { scope: options.scope ?? 'approvals:decide', resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('approvals-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const call = (f: CodeFlowFixture, token: string, method: 'GET' | 'POST', url: string, body?: unknown) =>
  f.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });

describe('the approvals admin API', () => {
  test('puts a request that asks no second person in no second person’s hands: not listed, 404 to show, 403 to decide, audited', async (t) => {
    const f = await harness(t);
    const request = await openOrderRequest(f.ctx, await f.user('alice'), { requiredApprovals: 0, subjectMustApprove: true });
    const token = await personToken(f, 'sup-1');
    assert.deepEqual((await call(f, token, 'GET', '/admin/approvals')).json().approvals, []);
    assertOAuthError(await call(f, token, 'GET', `/admin/approvals/${request.id}`), 404, 'not_found');
    assertOAuthError(await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' }), 403, 'access_denied');
    const refused = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.refused').execute();
    assert.deepEqual(refused.map((r) => JSON.parse(r.event).decision.reasons), [['approver_not_asked']]);
    const after = (await findApprovalRequest(f.ctx.storage.db, request.id))!;
    assert.deepEqual([after.status, after.approvals], ['pending', 0]);
  });

  test('lists what the person may decide, shows it with its decisions, and decides it with the token as proof', async (t) => {
    const f = await harness(t);
    const request = await openOrderRequest(f.ctx, await f.user('alice'));
    const token = await personToken(f, 'sup-1');
    const claims = decodeJwt(token);
    assert.equal(claims.acr, acr.phishingResistant);

    const listed = await call(f, token, 'GET', '/admin/approvals');
    assert.equal(listed.statusCode, 200, listed.body);
    assert.equal(listed.headers['cache-control'], 'no-store');
    const [item] = listed.json().approvals;
    assert.equal(item.id, request.id);
    assert.equal(item.title, 'Large order');
    assert.equal(item.binding_message, 'Order 7781 for ACC-7781');
    assert.equal(item.requester.name, 'Trading Desk');
    assert.equal(item.subject.name, 'Alice Trader');
    assert.equal(item.role, 'approver');
    assert.equal(item.digest, request.digest);

    const decided = await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' });
    assert.equal(decided.statusCode, 200, decided.body);
    assert.equal(decided.json().settled, 'approved');
    const [decision] = await decisionsOf(f.ctx.storage.db, request.id);
    assert.equal(decision!.method, 'token');
    const given = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.given').executeTakeFirstOrThrow();
    const evidence = JSON.parse(given.event).details.evidence;
    assert.deepEqual(evidence, { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], auth_time: claims.auth_time, jti: claims.jti, client_id: 'approvals-app' });
    assert.doesNotMatch(given.event, new RegExp(token.split('.')[2]!), 'never the token itself');

    const shown = await call(f, token, 'GET', `/admin/approvals/${request.id}`);
    assert.equal(shown.statusCode, 200, shown.body);
    assert.equal(shown.json().approval.status, 'approved');
    assert.deepEqual(shown.json().decisions.map((d: { approver: string; decision: string }) => [d.approver, d.decision]), [[decision!.approver, 'approve']]);
    assert.deepEqual((await call(f, token, 'GET', '/admin/approvals')).json().approvals, []);
  });

  test('puts each read of a request it shows (the people it names) on the record as people.reviewed by the reader, before answering', async (t) => {
    const f = await harness(t);
    const token = await personToken(f, 'sup-1');
    const reader = await f.user('sup-1');
    assert.deepEqual((await call(f, token, 'GET', '/admin/approvals')).json().approvals, []);
    assert.equal((await f.auditEvents('people.reviewed')).length, 0, 'an empty queue names no one: an approvals app may poll it');

    const alice = await f.user('alice');
    const request = await openOrderRequest(f.ctx, alice);
    const listed = await call(f, token, 'GET', '/admin/approvals');
    assert.equal(listed.json().approvals[0].subject.name, 'Alice Trader');
    assert.equal((await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' })).statusCode, 200);
    const shown = await call(f, token, 'GET', `/admin/approvals/${request.id}`);
    assert.equal(shown.statusCode, 200, shown.body);

    const reads = await f.auditEvents('people.reviewed');
    // The request's subject (a person), then with the reader's own decision: the client that asked is no one.
    assert.deepEqual(
      reads.map((e) => [e.actor, e.client, e.subject ?? null, e.details]),
      [
        [reader, 'approvals-app', null, { people: 1, via: 'approvals', requests: 1 }],
        [reader, 'approvals-app', alice, { people: 2, via: 'approvals', request: request.id }],
      ],
    );
  });

  test('answers server_error, never the people of a request, when the read cannot be put on the record', async (t) => {
    const f = await harness(t);
    const request = await openOrderRequest(f.ctx, await f.user('alice'));
    const token = await personToken(f, 'sup-1');
    auditRefuses(t, f.ctx, 'people.reviewed');
    for (const url of ['/admin/approvals', `/admin/approvals/${request.id}`]) {
      const failed = await call(f, token, 'GET', url);
      assert.deepEqual([failed.statusCode, failed.json().error, failed.headers['cache-control']], [500, 'server_error', 'no-store'], url);
      assert.doesNotMatch(failed.body, /Alice/, url);
    }
  });

  test('refuses a client’s own token with 403, whatever its scopes', async (t) => {
    const f = await harness(t);
    const request = await openOrderRequest(f.ctx, await f.user('alice'));
    const token = await f.accessToken('approvals-bot', { resource: adminAudience(f.issuer), scope: 'approvals:decide' });
    assertOAuthError(await call(f, token, 'GET', '/admin/approvals'), 403, 'access_denied');
    assertOAuthError(await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' }), 403, 'access_denied');
    assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'pending');
    // Both refusals are on the record: a client holding approvals:decide is worth seeing.
    const refused = (await f.auditEvents('approval.refused')).filter((e) => e.decision!.reasons[0] === 'client_token');
    assert.deepEqual(refused.map((e) => [e.client, e.txn ?? null]), [['approvals-bot', null], ['approvals-bot', request.id]]);
  });

  test('refuses a person’s token without the approvals:decide scope with 403 insufficient_scope', async (t) => {
    const f = await harness(t);
    await f.apply({ clients: [{ client_id: 'approvals-app', client_name: 'Approvals', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: 'approvals:decide admin:read' }] });
    const token = await personToken(f, 'sup-1', { scope: 'admin:read' });
    const response = await call(f, token, 'GET', '/admin/approvals');
    assertOAuthError(response, 403, 'insufficient_scope');
    assert.match(String(response.headers['www-authenticate']), /scope="approvals:decide"/);
  });

  test('a decision needs an authentication of the last 5 minutes at the kind’s level: else 401 insufficient_user_authentication, audited', async (t) => {
    const f = await harness(t);
    const request = await openOrderRequest(f.ctx, await f.user('alice'));
    const weak = await personToken(f, 'sup-1', { level: acr.password });
    const low = await call(f, weak, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' });
    const lowBody = assertOAuthError(low, 401, 'insufficient_user_authentication');
    assert.equal(lowBody.acr_values, acr.phishingResistant);
    assert.match(String(low.headers['www-authenticate']), /^Bearer realm="clearance", error="insufficient_user_authentication", .*acr_values="urn:clearance:acr:phr"/);

    // A token issued now from a session whose sign-in is 301 s old.
    const session = await f.signIn('sup-2', { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
    f.clock.advance(301_000);
    const older = await personToken(f, 'sup-2', { person: session });
    assert.equal(decodeJwt(older).auth_time, session.authentication.authTime);
    const late = await call(f, older, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' });
    const lateBody = assertOAuthError(late, 401, 'insufficient_user_authentication');
    assert.equal(lateBody.max_age, 300);
    assert.match(String(late.headers['www-authenticate']), /max_age=300/);

    const refused = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.refused').orderBy('seq').execute();
    assert.deepEqual(refused.map((r) => JSON.parse(r.event).decision.reasons[0]), ['insufficient_authentication', 'stale_authentication']);
    assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.status, 'pending');
  });

  test('refuses the subject’s own approval of a CIBA request by token with 403 (their passkey approves it), audited; the token still denies it', async (t) => {
    const f = await harness(t);
    useTestKind(t, { subjectProof: cibaKind.subjectProof });
    const alice = await f.user('alice');
    const request = await openOrderRequest(f.ctx, alice, { requiredApprovals: 0, subjectMustApprove: true });
    const token = await personToken(f, 'alice');
    const listed = (await call(f, token, 'GET', '/admin/approvals')).json().approvals as { id: string; role: string }[];
    assert.deepEqual(listed.map((a) => [a.id, a.role]), [[request.id, 'subject']], 'shown to the subject, who may deny it here');
    const approved = await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'approve' });
    assertOAuthError(approved, 403, 'access_denied');
    assert.match(approved.json().error_description, /passkey/);
    const refused = await f.ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'approval.refused').execute();
    assert.deepEqual(refused.map((r) => JSON.parse(r.event).decision.reasons), [['subject_passkey_required']]);
    assert.equal((await findApprovalRequest(f.ctx.storage.db, request.id))!.subjectApproval, 'pending', 'nothing changed');
    const denied = await call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, { decision: 'deny', reason: 'not me' });
    assert.equal(denied.statusCode, 200, denied.body);
    assert.equal(denied.json().settled, 'denied');
  });

  test('refuses the subject as a second person, an ineligible person, a second decision, a denial without reason, and a bad body', async (t) => {
    const f = await harness(t);
    const alice = await f.user('alice');
    const request = await openOrderRequest(f.ctx, alice, { requiredApprovals: 2 });
    const decide = (token: string, body: unknown) => call(f, token, 'POST', `/admin/approvals/${request.id}/decision`, body);
    const aliceToken = await personToken(f, 'alice');
    assertOAuthError(await decide(aliceToken, { decision: 'approve' }), 403, 'access_denied');
    assertOAuthError(await call(f, aliceToken, 'GET', '/admin/approvals/not-a-request'), 404, 'not_found');
    const mallory = await personToken(f, 'mallory');
    assertOAuthError(await decide(mallory, { decision: 'approve' }), 403, 'access_denied');
    assertOAuthError(await call(f, mallory, 'GET', `/admin/approvals/${request.id}`), 404, 'not_found');
    const sup = await personToken(f, 'sup-1');
    assertOAuthError(await decide(sup, { decision: 'deny' }), 400, 'invalid_request');
    assertOAuthError(await decide(sup, { decision: 'maybe' }), 400, 'invalid_request');
    assertOAuthError(await decide(sup, { decision: 'approve', extra: 1 }), 400, 'invalid_request');
    assertOAuthError(await decide(sup, ['approve']), 400, 'invalid_request');
    assert.equal((await decide(sup, { decision: 'approve' })).statusCode, 200);
    assertOAuthError(await decide(sup, { decision: 'approve' }), 409, 'invalid_request');
    assertOAuthError(await call(f, sup, 'POST', '/admin/approvals/00000000-0000-0000-0000-000000000000/decision', { decision: 'approve' }), 404, 'not_found');
    const after = await findApprovalRequest(f.ctx.storage.db, request.id);
    assert.equal(after!.approvals, 1);
    assert.equal(after!.status, 'pending');
  });
});
