import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { ApplyRefusedError, executeApply, planApply } from '../../src/apply/index.ts';
import { acr } from '../../src/identity/acr.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { cooldownMsOf, destinationStatus } from '../../src/transfers/address-book.ts';
import { formatProblem } from '../../src/validation.ts';
import { beneficiaryNameHmac, beneficiaryNameKey } from '../../src/transfers/destination-input.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { Browser, csrfOf } from '../helpers/inject-browser.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { seedDestination } from '../transfers/enforcement-fixture.ts';

// The transfer address book over the admin API (docs/transfers.md "Destination control"): a
// change asked by a person stepped up to phishing-resistant, approved by a second person holding
// `approver` of the same legal entity through the approvals API, cooled down, then usable; removed
// at once; held for review when asked from a new device; declared by apply as pending.

export const firmLei = '5493001KJTIIGC8Y1R12';
export const otherLei = '529900T8BM49AURSDO55';
const password = 'correct horse battery staple 7';
const wallet = 'eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b';
const scope = 'admin:read admin:write approvals:decide';
const hour = 3600_000;

const person = (username: string, roles: string[], desks = ['ops-eu']) => ({ username, password, name: username, roles, desks });

async function harness(t: TestContext, dialect: TestDialect): Promise<CodeFlowFixture> {
  const f = await codeFlowFixture(t, { risk: 'off', dialect });
  for (const username of ['ops-1', 'appr-1', 'appr-2', 'comp-1', 'appr-other', 'audit-1']) await f.user(username);
  await f.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [
      { lei: firmLei, name: 'Example Broker', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'ops-eu', product_classes: [] }], accounts: [{ id: 'ACC-1', region: 'eu', desk: 'ops-eu' }, { id: 'ACC-2', region: 'eu' }] },
      { lei: otherLei, name: 'Other Firm', jurisdiction: 'DE', home_region: 'eu', roles: ['custodian'], desks: [{ id: 'other-ops', product_classes: [] }], accounts: [{ id: 'OTH-1', region: 'eu' }] },
    ],
    users: [person('ops-1', []), person('appr-1', ['approver']), person('appr-2', ['approver']), person('comp-1', ['compliance']), person('appr-other', ['approver'], ['other-ops']), person('audit-1', ['auditor'], [])],
    clients: [
      { client_id: 'ops-app', client_name: 'Operations', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope },
      { client_id: 'ops-bot', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read admin:write' },
      { client_id: 'other-bot', kind: 'service', owner_lei: otherLei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read' },
    ],
  });
  // Tokens issued in the second the people were changed would count as issued before it.
  f.clock.advance(2000);
  return f;
}

/** A person's admin token from the operations app, after signing in as `signIn` says (default: a passkey, just now). */
async function personToken(f: CodeFlowFixture, username: string, signIn?: Person | { acr: string; amr: string[] }): Promise<string> {
  const signedIn = signIn && 'cookie' in signIn ? signIn : await f.signIn(username, signIn ?? { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ client: 'ops-app', person: signedIn, query: { scope, resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('ops-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const call = (f: CodeFlowFixture, token: string | undefined, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
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

const addition = { lei: firmLei, account: 'ACC-1', label: 'Cold wallet', destination: { kind: 'blockchain', account: wallet } };
const lookup = (f: CodeFlowFixture) => destinationStatus(f.ctx, { lei: firmLei, account: 'ACC-1', key: `caip10:${wallet}` });

for (const dialect of testDialects()) {
  describe(`the transfer address book over the admin API on ${dialect.name}`, () => {
    test('refuses an addition without the phishing-resistant step-up (401 insufficient_user_authentication, audited), by a client (403), or by a person of another entity (403)', async (t) => {
      const f = await harness(t, dialect);
      const weak = await personToken(f, 'ops-1', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
      const refused = await call(f, weak, 'POST', '/admin/transfer-destinations', addition);
      const error = assertOAuthError(refused, 401, 'insufficient_user_authentication');
      assert.equal(error.acr_values, acr.phishingResistant);
      assert.equal(error.max_age, 300);
      assert.match(String(refused.headers['www-authenticate']), /error="insufficient_user_authentication".*acr_values="urn:clearance:acr:phr"/);
      const [audited] = await events(f, 'transfer_destination.refused');
      assert.deepEqual((audited!.decision as { reasons: string[] }).reasons, ['insufficient_user_authentication']);

      // Stepped up, but too long ago: freshness is part of the step-up.
      const signedIn = await f.signIn('ops-1', { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
      f.clock.advance(250_000);
      const stale = await personToken(f, 'ops-1', signedIn);
      f.clock.advance(60_000);
      assertOAuthError(await call(f, stale, 'POST', '/admin/transfer-destinations', addition), 401, 'insufficient_user_authentication');

      const bot = await f.accessToken('ops-bot', { resource: adminAudience(f.issuer), scope: 'admin:read admin:write' });
      assertOAuthError(await call(f, bot, 'POST', '/admin/transfer-destinations', addition), 403, 'access_denied');
      const outsider = await personToken(f, 'appr-other');
      assertOAuthError(await call(f, outsider, 'POST', '/admin/transfer-destinations', addition), 403, 'access_denied');
      assert.deepEqual((await lookup(f)).state, 'unknown');
      assert.deepEqual(await events(f, 'transfer_destination.requested'), []);
    });

    test('refuses a bad destination or an account of another entity with 400 naming it', async (t) => {
      const f = await harness(t, dialect);
      const token = await personToken(f, 'ops-1');
      for (const [body, message] of [
        [{ ...addition, destination: { kind: 'iban', iban: 'DE89370400440532013001' } }, /destination\.iban: must be a valid IBAN/],
        [{ ...addition, destination: { kind: 'blockchain', account: 'eip155:1:0xAb5801a7d398351b8be11c439e05c5b3259aec9b' } }, /destination\.account: has a wrong EIP-55 checksum/],
        [{ ...addition, destination: { kind: 'wire', account: 'x' } }, /destination\.kind: must be one of/],
        [{ ...addition, account: 'OTH-1' }, /OTH-1 is not an account of legal entity/],
      ] as const) {
        const error = assertOAuthError(await call(f, token, 'POST', '/admin/transfer-destinations', body), 400, 'invalid_request', JSON.stringify(body));
        assert.match(String(error.error_description), message);
      }
    });

    test('an addition waits for a second approver: the requester cannot approve it; an approver of the entity does; it cools down 24 h, then it is usable', async (t) => {
      const f = await harness(t, dialect);
      const ops = await personToken(f, 'ops-1');
      const asked = await call(f, ops, 'POST', '/admin/transfer-destinations', addition);
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal(asked.headers['cache-control'], 'no-store');
      const { destination, approval_request: requestId, required_approvals, status } = asked.json();
      assert.equal(status, 'pending');
      assert.equal(required_approvals, 1);
      assert.equal(destination.destination_key, `caip10:${wallet}`);
      assert.equal((await lookup(f)).state, 'pending');
      assertOAuthError(await call(f, ops, 'POST', '/admin/transfer-destinations', addition), 409, 'invalid_request');

      // The requester is not their own second pair of eyes (nor does the API offer it to them).
      assert.deepEqual((await call(f, ops, 'GET', '/admin/approvals')).json().approvals, []);
      assertOAuthError(await call(f, ops, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 403, 'access_denied');
      const [selfRefused] = (await events(f, 'approval.refused')).filter((e) => e.txn === requestId);
      assert.deepEqual((selfRefused!.decision as { reasons: string[] }).reasons, ['approver_is_requester']);
      // An approver of another legal entity is not offered it and may not decide it.
      const other = await personToken(f, 'appr-other');
      assert.deepEqual((await call(f, other, 'GET', '/admin/approvals')).json().approvals, []);
      assertOAuthError(await call(f, other, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 403, 'access_denied');

      const approver = await personToken(f, 'appr-1');
      const offered = (await call(f, approver, 'GET', '/admin/approvals')).json().approvals;
      assert.deepEqual(offered.map((a: { id: string }) => a.id), [requestId]);
      assert.equal(offered[0].kind, 'transfer_destination');
      assert.match(offered[0].title, /New transfer destination for account ACC-1/);
      const approved = await call(f, approver, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
      assert.equal(approved.statusCode, 200, approved.body);
      assert.equal(approved.json().settled, 'approved');

      const cooling = await lookup(f);
      assert.equal(cooling.state, 'cooling_down');
      assert.equal(cooling.usableFrom, f.clock.now() + 24 * hour);
      const listed = (await call(f, ops, 'GET', `/admin/transfer-destinations?lei=${firmLei}`)).json().destinations;
      assert.equal(listed.length, 1);
      assert.equal(listed[0].status, 'cooling_down');
      assert.deepEqual(listed[0].versions[0].approved_by, [(await f.user('appr-1'))]);
      f.clock.advance(24 * hour - 1);
      assert.equal((await lookup(f)).state, 'cooling_down');
      f.clock.advance(1);
      assert.deepEqual(await lookup(f), { state: 'usable', id: destination.id, version: 1, usableFrom: cooling.usableFrom });

      const [requested] = await events(f, 'transfer_destination.requested');
      assert.equal(requested!.txn, requestId);
      assert.equal(requested!.actor, await f.user('ops-1'));
      const [done] = await events(f, 'transfer_destination.approved');
      assert.equal(done!.txn, requestId);
      assert.deepEqual((done!.details as Record<string, unknown>).approved_by, [await f.user('appr-1')]);
      assert.equal((done!.details as Record<string, unknown>).cooldown_ms, 24 * hour);
    });

    test('a removal takes effect at once, cancels a waiting change, and is audited; a denied change is rejected', async (t) => {
      const f = await harness(t, dialect);
      const ops = await personToken(f, 'ops-1');
      const iban = { lei: firmLei, account: 'ACC-1', destination: { kind: 'iban', iban: 'DE89 3704 0044 0532 0130 00', bic: 'COBADEFFXXX', name: 'Beneficiary GmbH' } };
      const asked = (await call(f, ops, 'POST', '/admin/transfer-destinations', iban)).json();
      assert.equal(asked.destination.destination_key, 'iban:DE89370400440532013000');
      // The beneficiary's name is in the book, never in the log: a keyed HMAC of it there (under a
      // key derived from the master key), not a hash anyone could recompute from a guessed name.
      const [requested] = await events(f, 'transfer_destination.requested');
      assert.equal(JSON.stringify(requested).includes('Beneficiary GmbH'), false);
      const recorded = ((requested!.details as Record<string, unknown>).destination as Record<string, unknown>);
      assert.equal(recorded.name_hmac, beneficiaryNameHmac(beneficiaryNameKey(resolveMasterKey(f.ctx.config).key), 'Beneficiary GmbH'));
      assert.notEqual(recorded.name_hmac, createHash('sha256').update('Beneficiary GmbH', 'utf8').digest('hex'));
      assert.equal(recorded.name_sha256, undefined);
      assert.equal(JSON.stringify(await events(f, 'approval.requested')).includes('Beneficiary GmbH'), false);

      const approver = await personToken(f, 'appr-1');
      assert.equal((await call(f, approver, 'POST', `/admin/approvals/${asked.approval_request}/decision`, { decision: 'approve' })).statusCode, 200);
      f.clock.advance(25 * hour);
      const key = { lei: firmLei, account: 'ACC-1', key: 'iban:DE89370400440532013000' };
      assert.equal((await destinationStatus(f.ctx, key)).state, 'usable');

      // A change of its label waits; the approved version stays usable meanwhile.
      const ops2 = await personToken(f, 'ops-1');
      const change = await call(f, ops2, 'POST', '/admin/transfer-destinations', { ...iban, label: 'Payroll' });
      assert.equal(change.statusCode, 202, change.body);
      assert.equal(change.json().version, 2);
      assert.equal((await destinationStatus(f.ctx, key)).state, 'usable');

      const bot = await f.accessToken('ops-bot', { resource: adminAudience(f.issuer), scope: 'admin:read admin:write' });
      const removed = await call(f, bot, 'DELETE', `/admin/transfer-destinations/${asked.destination.id}`);
      assert.equal(removed.statusCode, 200, removed.body);
      assert.equal(removed.json().destination.status, 'removed');
      assert.deepEqual(await destinationStatus(f.ctx, key), { id: asked.destination.id, state: 'removed', removedAt: f.clock.now() });
      const [event] = await events(f, 'transfer_destination.removed');
      assert.deepEqual((event!.details as Record<string, unknown>).versions, [1, 2]);
      assert.deepEqual((event!.details as Record<string, unknown>).cancelled_requests, [change.json().approval_request]);
      assertOAuthError(await call(f, bot, 'DELETE', `/admin/transfer-destinations/${asked.destination.id}`), 409, 'invalid_request');
      assertOAuthError(await call(f, bot, 'DELETE', '/admin/transfer-destinations/dst_unknown'), 404, 'not_found');
      // The cancelled change can no longer be approved.
      const approver2 = await personToken(f, 'appr-2');
      assertOAuthError(await call(f, approver2, 'POST', `/admin/approvals/${change.json().approval_request}/decision`, { decision: 'approve' }), 409, 'invalid_request');

      // Asked again, and denied: rejected, never usable.
      const again = (await call(f, await personToken(f, 'ops-1'), 'POST', '/admin/transfer-destinations', iban)).json();
      assert.equal(again.version, 3);
      const denied = await call(f, await personToken(f, 'appr-2'), 'POST', `/admin/approvals/${again.approval_request}/decision`, { decision: 'deny', reason: 'not a known beneficiary' });
      assert.equal(denied.json().settled, 'denied');
      assert.equal((await destinationStatus(f.ctx, key)).state, 'removed');
      const [rejected] = await events(f, 'transfer_destination.rejected');
      assert.equal(rejected!.txn, again.approval_request);
    });

    test("a reader sees the address books of its own legal entities only: a person their desks' entities', a client its owner_lei's, a whole-log reader (auditor, an entity-less client) all; another entity's destination is 404", async (t) => {
      const f = await harness(t, dialect);
      const firmIban = { kind: 'iban' as const, iban: 'DE89370400440532013000', name: 'Firm Beneficiary GmbH' };
      const otherIban = { kind: 'iban' as const, iban: 'GB82WEST12345698765432', name: 'Other Beneficiary Ltd' };
      const firmId = await seedDestination(f.ctx, { lei: firmLei, account: 'ACC-1', destination: firmIban, state: 'usable' });
      const otherId = await seedDestination(f.ctx, { lei: otherLei, account: 'OTH-1', destination: otherIban, state: 'usable' });
      const listed = async (token: string, query = '') => {
        const response = await call(f, token, 'GET', `/admin/transfer-destinations${query}`);
        assert.equal(response.statusCode, 200, response.body);
        return (response.json().destinations as { id: string }[]).map((d) => d.id).sort();
      };
      const readOne = (token: string, id: string) => call(f, token, 'GET', `/admin/transfer-destinations/${id}`);

      // A person of the other firm: its book only, whatever the query names; the firm's destination does not exist for them.
      const outsider = await personToken(f, 'appr-other');
      assert.deepEqual(await listed(outsider), [otherId]);
      assert.deepEqual(await listed(outsider, `?lei=${firmLei}`), []);
      assert.deepEqual(await listed(outsider, `?lei=${firmLei}&account=ACC-1`), []);
      const hidden = assertOAuthError(await readOne(outsider, firmId), 404, 'not_found');
      assert.deepEqual(hidden, assertOAuthError(await readOne(outsider, 'dst_unknown'), 404, 'not_found'), 'the same answer as for a destination that does not exist');
      assert.equal((await readOne(outsider, otherId)).statusCode, 200);
      // A person of the firm: the firm's.
      const ops = await personToken(f, 'ops-1');
      assert.deepEqual(await listed(ops), [firmId]);
      assertOAuthError(await readOne(ops, otherId), 404, 'not_found');
      // A client of the other firm (owner_lei): the other firm's.
      const otherBot = await f.accessToken('other-bot', { resource: adminAudience(f.issuer), scope: 'admin:read' });
      assert.deepEqual(await listed(otherBot), [otherId]);
      assertOAuthError(await readOne(otherBot, firmId), 404, 'not_found');
      // Who reads the whole log reads every book: an auditor, and a client of no legal entity.
      const auditor = await personToken(f, 'audit-1');
      assert.deepEqual(await listed(auditor), [firmId, otherId].sort());
      assert.equal((await readOne(auditor, firmId)).statusCode, 200);
      const bot = await f.accessToken('ops-bot', { resource: adminAudience(f.issuer), scope: 'admin:read admin:write' });
      assert.deepEqual(await listed(bot), [firmId, otherId].sort());
      assert.deepEqual(await listed(bot, `?lei=${otherLei}`), [otherId]);
    });

    test("a removal of another entity's destination is answered 404 as for one that does not exist, and audited; a whole-log reader not of the entity is refused 403, audited; the destination stays", async (t) => {
      const f = await harness(t, dialect);
      await f.apply({ clients: [{ client_id: 'other-writer', kind: 'service', owner_lei: otherLei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'admin:read admin:write' }] });
      const firmIban = { kind: 'iban' as const, iban: 'DE89370400440532013000', name: 'Firm Beneficiary GmbH' };
      const firmId = await seedDestination(f.ctx, { lei: firmLei, account: 'ACC-1', destination: firmIban, state: 'usable' });
      const remove = (token: string, id: string) => call(f, token, 'DELETE', `/admin/transfer-destinations/${id}`);

      // A person of the other firm, a client of the other firm: the destination does not exist for them.
      const outsider = await personToken(f, 'appr-other');
      const otherWriter = await f.accessToken('other-writer', { resource: adminAudience(f.issuer), scope: 'admin:read admin:write' });
      for (const token of [outsider, otherWriter]) {
        const hidden = assertOAuthError(await remove(token, firmId), 404, 'not_found');
        assert.deepEqual(hidden, assertOAuthError(await remove(token, 'dst_unknown'), 404, 'not_found'), 'the same answer as for a destination that does not exist');
      }
      // An auditor reads every book (the destination is no secret to them) but removes from none: 403.
      const auditor = await personToken(f, 'audit-1');
      assertOAuthError(await remove(auditor, firmId), 403, 'access_denied');

      assert.equal((await destinationStatus(f.ctx, { lei: firmLei, account: 'ACC-1', key: 'iban:DE89370400440532013000' })).state, 'usable', 'nothing removed');
      const refused = await events(f, 'transfer_destination.refused');
      assert.deepEqual(
        refused.map((e) => [e.actor, (e.decision as { reasons: string[] }).reasons, (e.details as Record<string, unknown>).lei, (e.details as Record<string, unknown>).destination]),
        [
          [await f.user('appr-other'), ['not_of_legal_entity'], firmLei, firmId],
          ['other-writer', ['not_of_legal_entity'], firmLei, firmId],
          [await f.user('audit-1'), ['not_of_legal_entity'], firmLei, firmId],
        ],
      );
    });

    test('a change asked from a new device is held for review: an approver alone does not start the cool-down; compliance approves too', async (t) => {
      const f = await harness(t, dialect);
      // The sign-in fired the risk engine's new_device (src/risk/signals/new-device.ts).
      const userId = await f.user('ops-1');
      const started = await startSession(f.ctx, {
        userId,
        acr: acr.phishingResistant,
        amr: ['hwk', 'user', 'mfa'],
        cookieHeader: undefined,
        risk: { score: 25, level: 'medium', outcome: 'allow', signals: [{ signal: 'new_device', points: 25, detail: 'device never seen for this account' }] },
      });
      const ops = await personToken(f, 'ops-1', { userId, cookie: started.setCookie.split(';')[0]!, authentication: started.authentication });
      const asked = await call(f, ops, 'POST', '/admin/transfer-destinations', addition);
      assert.equal(asked.statusCode, 202, asked.body);
      assert.equal(asked.json().status, 'held_for_review');
      assert.equal(asked.json().required_approvals, 2);
      const requestId = asked.json().approval_request;
      assert.equal((await lookup(f)).state, 'held_for_review');
      const [held] = await events(f, 'transfer_destination.held');
      assert.equal(held!.txn, requestId);
      assert.equal((held!.details as Record<string, unknown>).reason, 'new_device');

      const first = await call(f, await personToken(f, 'appr-1'), 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
      assert.equal(first.statusCode, 200, first.body);
      assert.equal(first.json().settled, undefined);
      assert.equal((await lookup(f)).state, 'held_for_review', 'one approver is not enough');
      // A second approver fills no role the first left open.
      const second = await personToken(f, 'appr-2');
      assert.deepEqual((await call(f, second, 'GET', '/admin/approvals')).json().approvals, []);
      assertOAuthError(await call(f, second, 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' }), 403, 'access_denied');

      f.clock.advance(1000);
      const compliance = await call(f, await personToken(f, 'comp-1'), 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
      assert.equal(compliance.statusCode, 200, compliance.body);
      assert.equal(compliance.json().settled, 'approved');
      const status = await lookup(f);
      assert.equal(status.state, 'cooling_down');
      assert.equal(status.usableFrom, f.clock.now() + 24 * hour);
      const [approved] = await events(f, 'transfer_destination.approved');
      assert.deepEqual((approved!.details as Record<string, unknown>).approved_by, [await f.user('appr-1'), await f.user('comp-1')]);
      assert.equal((approved!.details as Record<string, unknown>).review_reason, 'new_device');
    });

    test('the approvals page shows an approver the change in plain words, and their passkey over its digest approves it', async (t) => {
      const f = await harness(t, dialect);
      const asked = (await call(f, await personToken(f, 'ops-1'), 'POST', '/admin/transfer-destinations', addition)).json();
      const signedIn = await f.signIn('appr-1', { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] });
      const browser = new Browser(f, signedIn.cookie);
      const authenticator = new SoftwareAuthenticator({ origin: f.issuer });
      const account = await browser.get('/account');
      const creation = await browser.post('/account/passkeys/options', { csrf_token: csrfOf(account.body) });
      assert.equal((await browser.post('/account/passkeys', { csrf_token: csrfOf(account.body), name: 'Laptop', credential: JSON.stringify(authenticator.register(creation.json())) })).statusCode, 303);

      const list = await browser.get('/account/approvals');
      assert.equal(list.statusCode, 200, list.body);
      assert.match(list.body, new RegExp(`href="/account/approvals/${asked.approval_request}">New transfer destination for account ACC-1</a>`));
      const page = await browser.get(`/account/approvals/${asked.approval_request}`);
      assert.equal(page.statusCode, 200, page.body);
      assert.match(page.body, /blockchain account eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b/);
      assert.match(page.body, /Cold wallet/);
      const options = await browser.post(`/account/approvals/${asked.approval_request}/options`, { csrf_token: csrfOf(page.body) });
      assert.equal(options.statusCode, 200, options.body);
      const credential = JSON.stringify(authenticator.assert(options.json() as never));
      const decided = await browser.post(`/account/approvals/${asked.approval_request}/decision`, { csrf_token: csrfOf((await browser.get('/account')).body), decision: 'approve', credential });
      assert.equal(decided.statusCode, 303, decided.body);
      assert.equal((await lookup(f)).state, 'cooling_down');
      const [given] = (await events(f, 'approval.given')).filter((e) => e.txn === asked.approval_request);
      assert.equal(((given!.details as Record<string, unknown>).evidence as Record<string, unknown>).format, 'clearance-approval-request/1');
    });

    test('apply declares destinations as pending changes (two approvers) and sets an entity\'s cool-down; applying again changes nothing', async (t) => {
      const f = await harness(t, dialect);
      const document = {
        transfer_destinations: {
          cooldowns: [{ lei: firmLei, hours: 48 }],
          destinations: [addition, { lei: firmLei, account: 'ACC-2', destination: { kind: 'internal', account: 'ACC-1' } }],
        },
      };
      const applyDocument = async () => {
        const { plan, problems } = await planApply(f.ctx, document);
        assert.ok(plan, JSON.stringify(problems));
        return executeApply(f.ctx, plan, { actor: 'cli:ops', via: 'cli' });
      };
      const result = await applyDocument();
      assert.deepEqual(
        result.changes.filter((c) => c.kind.startsWith('transfer_')).map((c) => [c.kind, c.outcome]),
        [['transfer_cooldown', 'created'], ['transfer_destination', 'created'], ['transfer_destination', 'created']],
      );
      assert.equal((await lookup(f)).state, 'pending');
      const requests = await events(f, 'transfer_destination.requested');
      assert.equal(requests.length, 2);
      assert.deepEqual(requests.map((r) => (r.details as Record<string, unknown>).via), ['apply', 'apply']);
      assert.deepEqual(requests.map((r) => (r.details as Record<string, unknown>).required_approvals), [2, 2]);
      const again = await applyDocument();
      assert.deepEqual(again.changes.filter((c) => c.kind.startsWith('transfer_')).map((c) => c.outcome), ['unchanged', 'unchanged', 'unchanged']);
      assert.equal((await events(f, 'transfer_destination.requested')).length, 2);

      // Apply never approves: two approvers of the entity do, and the entity's cool-down applies.
      const requestId = String(requests[0]!.txn);
      const one = await call(f, await personToken(f, 'appr-1'), 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
      assert.equal(one.json().settled, undefined);
      const two = await call(f, await personToken(f, 'appr-2'), 'POST', `/admin/approvals/${requestId}/decision`, { decision: 'approve' });
      assert.equal(two.json().settled, 'approved');
      assert.equal((await lookup(f)).usableFrom, f.clock.now() + 48 * hour);
    });

    test('the cool-down is never below one hour: apply and CLEARANCE_TRANSFER_COOLDOWN_HOURS refuse 0, a setting stored before the floor is read as one hour', async (t) => {
      const f = await harness(t, dialect);
      const { plan, problems } = await planApply(f.ctx, { transfer_destinations: { cooldowns: [{ lei: firmLei, hours: 0 }] } });
      assert.equal(plan, undefined);
      assert.deepEqual(problems.map(formatProblem), ['transfer_destinations.cooldowns[0].hours: must be at least 1: a new transfer destination always cools down before its first use (1 to 720 hours)']);
      assert.throws(() => loadConfig({ CLEARANCE_TRANSFER_COOLDOWN_HOURS: '0' }), (e: Error) => e instanceof ConfigError && /CLEARANCE_TRANSFER_COOLDOWN_HOURS must be at least 1 \(hour\)/.test(e.message));
      assert.equal(loadConfig({ CLEARANCE_TRANSFER_COOLDOWN_HOURS: '1' }).transferCooldownHours, 1);
      await f.ctx.storage.db.insertInto('transfer_destination_settings').values({ lei: firmLei, cooldown_ms: 0, updated_at: f.clock.now() }).execute();
      assert.equal(await cooldownMsOf(f.ctx.storage.db, f.ctx.config, firmLei), hour);
    });

    test('an apply whose plan the book outran (another change of the destination now waits) is refused whole, not a server error', async (t) => {
      const f = await harness(t, dialect);
      const declare = (label: string) => ({ transfer_destinations: { destinations: [{ ...addition, label }] } });
      const first = await planApply(f.ctx, declare('Cold wallet A'));
      const second = await planApply(f.ctx, declare('Cold wallet B'));
      assert.ok(first.plan && second.plan);
      await executeApply(f.ctx, first.plan, { actor: 'cli:ops', via: 'cli' });
      await assert.rejects(executeApply(f.ctx, second.plan, { actor: 'cli:ops', via: 'cli' }), (error: unknown) => error instanceof ApplyRefusedError && /already waits for approval/.test(error.message));
      assert.equal((await events(f, 'transfer_destination.requested')).length, 1);
    });
  });
}
