import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { adminAudience } from '../../src/admin/authorize.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { acr } from '../../src/identity/acr.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { codeFlowFixture, webRedirect, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';

// Issue 24's done criterion, end to end over HTTP: "A withdrawal to a new crypto address is
// refused until the address is added with step-up, approved by a second person and has cooled
// down; then it succeeds, and its evidence bundle shows the address-book change, both approvals
// and the transfer."

const firmLei = '5493001KJTIIGC8Y1R12';
const custodyApi = 'https://custody.example.com/api';
const wallet = 'eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b';
const password = 'correct horse battery staple 7';
const adminScope = 'admin:read admin:write approvals:decide';
const minute = 60_000;
const hour = 60 * minute;

/** 2 ETH from the firm's treasury account to the new wallet. */
const withdrawal = { type: 'transfer', transfer_type: 'withdrawal', asset: 'eip155:1/slip44:60', amount: '2', source_account: 'TRE-1', destination: { kind: 'blockchain', account: wallet }, purpose: 'Move to cold storage' };

async function harness(t: Parameters<typeof codeFlowFixture>[0], dialect: TestDialect, env: NodeJS.ProcessEnv = {}): Promise<CodeFlowFixture> {
  // The travel rule's data is helper A's to test; above 1,000 ETH here, so this withdrawal needs none.
  const f = await codeFlowFixture(t, { risk: 'off', dialect, env: { CLEARANCE_TRAVEL_RULE_THRESHOLD: '1000', ...env } });
  for (const username of ['ops-1', 'appr-1']) await f.user(username);
  await f.apply({
    regions: [{ id: 'eu', name: 'Europe' }],
    legal_entities: [{ lei: firmLei, name: 'Example Broker', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'treasury', product_classes: [] }], accounts: [{ id: 'TRE-1', region: 'eu', desk: 'treasury' }] }],
    users: [
      { username: 'ops-1', password, name: 'Olivia Ops', roles: [], desks: ['treasury'] },
      { username: 'appr-1', password, name: 'Arthur Approver', roles: ['approver'], desks: ['treasury'] },
    ],
    resource_servers: [{ identifier: custodyApi, scopes: ['transfer:withdrawal'] }],
    clients: [
      { client_id: 'ops-app', client_name: 'Operations', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], redirect_uris: [webRedirect], scope: adminScope },
      { client_id: 'treasury-bot', kind: 'service', owner_lei: firmLei, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'transfer:withdrawal' },
    ],
    transfer_controls: { defaults: { first_use_hold: 600 }, entities: { [firmLei]: { assets: { 'eip155:1/slip44:60': { approval_threshold: '50', daily_limit: '100' } } } } },
  });
  f.clock.advance(2000);
  return f;
}

/** A person's admin token from the operations app, signed in as given (default: with a passkey, just now). */
async function personToken(f: CodeFlowFixture, username: string, signIn: { acr: string; amr: string[] } = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] }): Promise<string> {
  const person = await f.signIn(username, signIn);
  const { code, pkce } = await f.authorizeAndApprove({ client: 'ops-app', person, query: { scope: adminScope, resource: adminAudience(f.issuer) } });
  const redeemed = await f.redeem('ops-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return redeemed.json().access_token as string;
}

const admin = (f: CodeFlowFixture, token: string, method: 'GET' | 'POST', url: string, body?: unknown) =>
  f.inject({ method, url, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });

const withdraw = (f: CodeFlowFixture) =>
  f.token({ auth: f.basic('treasury-bot'), form: { grant_type: 'client_credentials', resource: custodyApi, txn: 'new', authorization_details: JSON.stringify([withdrawal]) } });

/** Asserts the withdrawal is refused with `invalid_authorization_details` and a description matching `why`. */
async function refused(f: CodeFlowFixture, why: RegExp): Promise<void> {
  const body = assertOAuthError(await withdraw(f), 400, 'invalid_authorization_details');
  assert.match(String(body.error_description), why);
}

for (const dialect of testDialects()) {
  describe(`a withdrawal to a new crypto address on ${dialect.name}`, () => {
    test('is refused until the address is added with step-up, approved by a second person and cooled down; then it succeeds, and its bundle shows the change, both approvals and the transfer', async (t) => {
      const f = await harness(t, dialect);
      const key = `caip10:${wallet}`;

      // 1. A new address: not in the address book.
      await refused(f, new RegExp(`destination ${key} is not in the address book of account TRE-1$`));

      // 2. Adding it takes the phishing-resistant step-up: a password-and-OTP session is sent to step up.
      const addition = { lei: firmLei, account: 'TRE-1', label: 'Cold wallet', destination: { kind: 'blockchain', account: wallet } };
      const weak = await personToken(f, 'ops-1', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
      assertOAuthError(await admin(f, weak, 'POST', '/admin/transfer-destinations', addition), 401, 'insufficient_user_authentication');
      await refused(f, /is not in the address book/);
      const ops = await personToken(f, 'ops-1');
      const asked = await admin(f, ops, 'POST', '/admin/transfer-destinations', addition);
      assert.equal(asked.statusCode, 202, asked.body);
      const { destination, approval_request: changeTxn } = asked.json() as { destination: { id: string }; approval_request: string };

      // 3. Asked, not approved: the withdrawal waits for the second person.
      await refused(f, new RegExp(`destination ${key} \\(${destination.id}\\) of account TRE-1 awaits approval$`));
      const approver = await personToken(f, 'appr-1');
      const decided = await admin(f, approver, 'POST', `/admin/approvals/${changeTxn}/decision`, { decision: 'approve' });
      assert.equal(decided.statusCode, 200, decided.body);
      assert.equal(decided.json().settled, 'approved');

      // 4. Approved: cooling down for 24 hours, the refusal says until when.
      const usableFrom = f.clock.now() + 24 * hour;
      await refused(f, new RegExp(`is cooling down until ${new Date(usableFrom).toISOString().replace(/\./g, '\\.')}$`));
      f.clock.advance(24 * hour - minute);
      await refused(f, /is cooling down until/);
      // Cooled down, but its first use within ten minutes of that is held for a second person (risk hold).
      f.clock.advance(2 * minute);
      await refused(f, /is held: the destination's first use comes within minutes of its cool-down ending/);

      // 5. Then it succeeds.
      f.clock.advance(10 * minute);
      const response = await withdraw(f);
      assert.equal(response.statusCode, 200, response.body);
      const claims = decodeJwt(String(response.json().access_token));
      assert.deepEqual(claims.authorization_details, [withdrawal]);
      const txn = String(claims.txn);

      // 6. Its evidence bundle: the transfer, the address-book change and its approvals, verified offline.
      const master = resolveMasterKey(f.ctx.config).key;
      await sealNow(f.ctx, master);
      const signingKey = await new AuditKeys(f.ctx.storage.db, master, f.ctx.clock).signingKey(auditOrigin(f.ctx.config.issuer));
      const { text, bundle } = await exportBundle(f.ctx.storage.db, { query: { txn }, key: signingKey, jwksInForce: (a, b) => f.ctx.keys.jwksInForce(a, b), now: f.clock.now() });
      const issued = bundle.events.map((e) => e.event).find((e) => e.type === 'token.issued')!;
      assert.deepEqual(issued.details!.transfers, [
        { authorization_details: 0, transfer_type: 'withdrawal', account: 'TRE-1', lei: firmLei, asset: 'eip155:1/slip44:60', amount: '2', destination_key: key, destination_id: destination.id, destination_version: 1, daily_total: '2', daily_limit: '100' },
      ]);
      const [change] = bundle.destinations ?? [];
      assert.ok(change, 'the bundle carries the address-book change behind the transfer');
      assert.equal(change.txn, changeTxn);
      const types = change.events.map((e) => e.event.type);
      for (const type of ['transfer_destination.requested', 'approval.requested', 'approval.given', 'transfer_destination.approved'] as const) assert.ok(types.includes(type), `${type} in ${types.join(', ')}`);
      const requestedEvent = change.events.find((e) => e.event.type === 'transfer_destination.requested')!.event;
      const givenEvent = change.events.find((e) => e.event.type === 'approval.given')!.event;

      const report = verifyBundle(text);
      assert.deepEqual(report.problems, []);
      assert.equal(report.ok, true);
      const [summary] = report.destinations!;
      assert.equal(summary!.key, key);
      assert.equal(summary!.requestedBy, await f.user('ops-1'));
      assert.deepEqual(summary!.approvals.map((a) => a.approver), [await f.user('appr-1')]);
      assert.equal(summary!.usableFrom, usableFrom);
      // Both approvals: the requester's (asked with the passkey step-up) and the second person's, two people.
      assert.equal(requestedEvent.actor, await f.user('ops-1'));
      assert.equal(givenEvent.txn, changeTxn);
      assert.notEqual(summary!.requestedBy, summary!.approvals[0]!.approver);
      // The refusals before it are on the record too, each with the destination and amount.
      const refusals = (await f.auditEvents('transfer.refused')).map((e) => [e.details!.reason, e.details!.destination_key, e.details!.amount]);
      assert.deepEqual(refusals, [
        ['destination-not-in-address-book', key, '2'],
        ['destination-not-in-address-book', key, '2'],
        ['destination-awaits-approval', key, '2'],
        ['destination-cooling-down', key, '2'],
        ['destination-cooling-down', key, '2'],
        ['transfer-first-use-hold', key, '2'],
      ]);
    });

    test('a destination removed from the book and added again is new again: it cools down and its first use is held as a new one\'s', async (t) => {
      const f = await harness(t, dialect);
      const addition = { lei: firmLei, account: 'TRE-1', label: 'Cold wallet', destination: { kind: 'blockchain', account: wallet } };
      /** Asks for the wallet (a fresh passkey sign-in), has it approved, and waits out its cool-down and first-use hold. */
      const addAndApprove = async () => {
        const asked = await admin(f, await personToken(f, 'ops-1'), 'POST', '/admin/transfer-destinations', addition);
        assert.equal(asked.statusCode, 202, asked.body);
        const { destination, approval_request: changeTxn } = asked.json() as { destination: { id: string }; approval_request: string };
        const decided = await admin(f, await personToken(f, 'appr-1'), 'POST', `/admin/approvals/${changeTxn}/decision`, { decision: 'approve' });
        assert.equal(decided.statusCode, 200, decided.body);
        return destination.id;
      };
      const id = await addAndApprove();
      f.clock.advance(24 * hour + 11 * minute);
      assert.equal((await withdraw(f)).statusCode, 200, 'used once, after its cool-down and hold');

      // Removed: refused at once.
      const removed = await f.inject({ method: 'DELETE', url: `/admin/transfer-destinations/${id}`, headers: { authorization: `Bearer ${await personToken(f, 'ops-1')}` } });
      assert.equal(removed.statusCode, 200, removed.body);
      await refused(f, /is not in the address book/);

      // Added again: approved, it cools down as a new destination would …
      assert.equal(await addAndApprove(), id, 'the same entry of the book, a new version');
      await refused(f, /is cooling down until/);
      // … and its first use right after is held for a second person, the earlier use notwithstanding.
      f.clock.advance(24 * hour + minute);
      await refused(f, /is held: the destination's first use comes within minutes of its cool-down ending/);
      f.clock.advance(10 * minute);
      assert.equal((await withdraw(f)).statusCode, 200);
      assert.deepEqual((await f.auditEvents('transfer.refused')).map((e) => e.details!.reason), ['destination-not-in-address-book', 'destination-cooling-down', 'transfer-first-use-hold']);
    });

    test('an IBAN whose beneficiary the screening list names is refused at the request, audited and alerted, and nothing is asked of an approver', async (t) => {
      const f = await harness(t, dialect, { CLEARANCE_SCREENING_LIST: fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url)) });
      const ops = await personToken(f, 'ops-1');
      const addition = (name: string) => ({ lei: firmLei, account: 'TRE-1', destination: { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX', name } });
      const refusedChange = assertOAuthError(await admin(f, ops, 'POST', '/admin/transfer-destinations', addition('Fictitious Shipping Holdings Ltd')), 400, 'invalid_request');
      // No tipping-off: the answer does not say why.
      assert.equal(refusedChange.error_description, "the destination's beneficiary cannot be accepted at present");
      const [event] = await f.auditEvents('transfer_destination.refused');
      assert.deepEqual(event!.decision, { allow: false, reasons: ['counterparty-screening'] });
      assert.deepEqual([event!.actor, event!.details!.destination_key, event!.details!.entry_id, event!.details!.matched_on], [await f.user('ops-1'), 'iban:DE89370400440532013000', 'SAN-E001', ['name']]);
      const alerts = await f.ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
      assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Record<string, unknown>).at), ['address_book']);
      assert.equal((await f.auditEvents('approval.requested')).length, 0, 'no approver is asked');
      assert.equal((await f.ctx.storage.db.selectFrom('transfer_destination_versions').select('version').execute()).length, 0, 'nothing enters the book');
      const rows = await f.ctx.storage.db.selectFrom('audit_events').select('event').execute();
      assert.doesNotMatch(rows.map((r) => r.event).join('\n'), /Fictitious Shipping/, 'the log names no one');
      // A clean beneficiary is asked as before.
      assert.equal((await admin(f, ops, 'POST', '/admin/transfer-destinations', addition('Example Supplier GmbH'))).statusCode, 202);
    });
  });
}
