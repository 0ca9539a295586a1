import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { beneficiaryNameHmac, beneficiaryNameKey } from '../../src/transfers/destination-input.ts';
import { totalScope, transferTotals } from '../../src/transfers/totals.ts';
import { cibaFixture, cibaGrant, subjectDecides, tokenProof } from '../ciba/fixture.ts';
import { assertOAuthError, basicAuthorization, formBody } from '../endpoints/fixture.ts';
import { freePort } from '../helpers/server.ts';
import { testDialects } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';
import { brokerLei, controls, custodyApi, ether, etherAddress, events, iban, only, seedDestination, transfer, transferContext, transferDocument } from './enforcement-fixture.ts';

// Transfer enforcement over HTTP (src/transfers/enforce.ts, docs/transfers.md "Enforcement at issuance").

const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
type Json = Record<string, unknown>;

async function server(t: TestContext, options: Parameters<typeof transferContext>[1] = {}) {
  const base = await transferContext(t, options);
  const app = buildApp(base.ctx);
  t.after(() => app.close());
  await app.ready();
  const token = (details: Json[], form: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-app', base.secrets['treasury-app']!) },
      payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, authorization_details: JSON.stringify(details), ...form }),
    });
  return { ...base, app, token };
}

describe('transfers at the token endpoint', () => {
  test('refuses a transfer to an unknown destination with registered error JSON, and records it', async (t) => {
    const { ctx, token } = await server(t);
    const response = await token([transfer({ amount: '125000.50' })], { txn: 'new' });
    const body = assertOAuthError(response, 400, 'invalid_authorization_details');
    assert.equal(body.error_description, `authorization_details[0]: destination iban:${iban} is not in the address book of account TRE-001`);
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.destination_key, refused.details!.amount, refused.details!.asset, refused.details!.account], [`iban:${iban}`, '125000.50', 'USD', 'TRE-001']);
    assert.ok(refused.txn, 'the refusal is filed under the trade it would have started');
  });

  test('issues a token for a usable destination; token.issued names the destination and amount', async (t) => {
    const { ctx, token } = await server(t);
    const id = await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const response = await token([transfer({ amount: '125000.50' })], { txn: 'new' });
    assert.equal(response.statusCode, 200, response.body);
    const claims = decodeJwt(String((response.json() as Json).access_token));
    const issued = only(await events(ctx, 'token.issued'));
    assert.equal(issued.txn, claims.txn);
    assert.deepEqual(issued.details!.transfers, [
      { authorization_details: 0, transfer_type: 'withdrawal', account: 'TRE-001', lei: brokerLei, asset: 'USD', amount: '125000.50', destination_key: `iban:${iban}`, destination_id: id, destination_version: 1, daily_total: '125000.5', daily_limit: '2500000' },
    ]);
  });

  test('refuses a transfer at or above the threshold outside an approved CIBA request, saying how to get it approved', async (t) => {
    const { ctx, token } = await server(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const body = assertOAuthError(await token([transfer({ amount: '1500000' })]), 400, 'invalid_authorization_details');
    assert.match(String(body.error_description), /is at or above the approval threshold of 1000000 USD and needs a second person's approval: ask for the token with a CIBA request \(POST \/bc-authorize\)/);
    assert.equal(await transferTotals(ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), ctx.clock.now()), 0n);
  });

  test('answers 503 temporarily_unavailable with Retry-After when the shared Redis does not answer', async (t) => {
    const port = await freePort();
    const { ctx, token } = await server(t, { env: { REDIS_URL: `redis://127.0.0.1:${port}`, CLEARANCE_REDIS_TIMEOUT_MS: '100' } });
    await ctx.risk.limits.connect();
    t.after(() => ctx.risk.limits.close());
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const response = await token([transfer()]);
    // The one 5xx a refusal may be (DESIGN §7): the store cannot answer now; JSON, never cached.
    assert.equal(response.statusCode, 503, response.body);
    assert.equal((response.json() as Json).error, 'temporarily_unavailable');
    assert.match(String(response.headers['cache-control']), /no-store/);
    assert.equal(response.headers['retry-after'], '5');
    assert.equal(only(await events(ctx, 'transfer.refused')).details!.reason, 'totals-unavailable');
  });
});

/** Every audit event row as stored (the raw JSON), for a search of what the log holds. */
async function rawEvents(ctx: Context): Promise<string> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').orderBy('seq').execute();
  return rows.map((r) => r.event).join('\n');
}

describe("a beneficiary's name in tokens and the log", () => {
  test('a withdrawal to a named IBAN is issued with the name as the address book\'s name_hmac: neither the token, the token response nor token.issued carries the name', async (t) => {
    const { ctx, token } = await server(t);
    const named = { ...ibanDestination, name: 'Jane Roe' };
    await seedDestination(ctx, { destination: named, state: 'usable' });
    const response = await token([transfer({ destination: named })], { txn: 'new' });
    assert.equal(response.statusCode, 200, response.body);
    assert.doesNotMatch(response.body, /Jane Roe/, 'the token response');
    const body = response.json() as Json;
    const claims = decodeJwt(String(body.access_token)) as Json;
    assert.doesNotMatch(JSON.stringify(claims), /Jane Roe/, 'the access token');
    // The name as the address book's change records say it: the keyed HMAC under the master key's beneficiary-name key.
    const nameHmac = beneficiaryNameHmac(beneficiaryNameKey(resolveMasterKey(ctx.config).key), 'Jane Roe');
    const destination = { kind: 'iban', iban, bic: 'COBADEFFXXX', name_hmac: nameHmac };
    assert.deepEqual((claims.authorization_details as Json[])[0]!.destination, destination);
    assert.deepEqual((body.authorization_details as Json[])[0]!.destination, destination);
    const issued = only(await events(ctx, 'token.issued'));
    assert.deepEqual((issued.details!.authorization_details as Json[])[0]!.destination, destination);
    assert.doesNotMatch(await rawEvents(ctx), /Jane Roe/, 'the audit log');
  });

  test("a CIBA request for a transfer to a named IBAN records no name in approval.requested or the request's content", async (t) => {
    const { f } = await cibaTransfers(t);
    const named = { ...ibanDestination, name: 'Jane Roe' };
    const started = await f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-2', resource: custodyApi, authorization_details: JSON.stringify([transfer({ destination: named })]) }, 'treasury-ciba');
    assert.equal(started.statusCode, 200, started.body);
    const request = await f.pending();
    assert.doesNotMatch(JSON.stringify(request.content), /Jane Roe/, "the request's content");
    const requested = (await f.auditEvents('approval.requested')).find((e) => e.txn === request.id || e.details?.request_id === request.id);
    assert.ok(requested, 'approval.requested');
    assert.doesNotMatch(await rawEvents(f.ctx), /Jane Roe/, 'the audit log');
  });
});

const screeningList = fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url));
/** An LEI the example list names (SAN-E001, Fictitious Shipping Holdings Ltd). */
const listedLei = '5299000FICTSHIP00137';

/** Travel-rule data (IVMS 101) with this beneficiary, from a natural-person originator. */
const travelRuleTo = (beneficiary: Json) => ({
  originator: { originatorPersons: [{ naturalPerson: { name: { nameIdentifier: [{ primaryIdentifier: 'Doe', secondaryIdentifier: 'Jane', nameIdentifierType: 'LEGL' }] } } }], accountNumber: ['CRY-001'] },
  beneficiary: { beneficiaryPersons: [beneficiary], accountNumber: [etherAddress] },
});
const cryptoTransfer = (beneficiary: Json) => transfer({ asset: ether, amount: '1', source_account: 'CRY-001', destination: { kind: 'blockchain', account: etherAddress }, travel_rule: travelRuleTo(beneficiary) });

describe("transfer beneficiaries screened at the token endpoint", () => {
  test('a transfer to a listed beneficiary — an IBAN name, a travel-rule person, a travel-rule firm by LEI or name — is refused and audited as a settlement counterparty is; a clean one is issued', async (t) => {
    const { ctx, token } = await server(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
    // The book's name is the clean one: a listed name in a request is refused by screening before the book is asked.
    await seedDestination(ctx, { destination: { ...ibanDestination, name: 'Example Supplier GmbH' }, state: 'usable' });
    await seedDestination(ctx, { account: 'CRY-001', destination: { kind: 'blockchain', account: etherAddress }, state: 'usable' });
    const refusedWith = async (details: Json[]) => {
      const body = assertOAuthError(await token(details), 400, 'invalid_authorization_details');
      assert.equal(body.error_description, `authorization_details[${details.length - 1}] names a counterparty that cannot be accepted at present`);
    };
    const clean = transfer({ destination: { ...ibanDestination, name: 'Example Supplier GmbH' } });
    await refusedWith([clean, transfer({ destination: { ...ibanDestination, name: 'Fictitious Shipping Holdings Ltd' } })]);
    await refusedWith([transfer({ destination: { ...ibanDestination, name: 'Ivan PETROV' } })]);
    await refusedWith([cryptoTransfer({ naturalPerson: { name: { nameIdentifier: [{ primaryIdentifier: 'Petrov', secondaryIdentifier: 'Ivan', nameIdentifierType: 'LEGL' }] } } })]);
    await refusedWith([cryptoTransfer({ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'Harbour Services Ltd', legalPersonNameIdentifierType: 'LEGL' }] }, nationalIdentification: { nationalIdentifier: listedLei, nationalIdentifierType: 'LEIX' } } })]);
    await refusedWith([cryptoTransfer({ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'FSH Maritime', legalPersonNameIdentifierType: 'TRAD' }] } } })]);
    const denied = (await events(ctx, 'policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening'));
    assert.deepEqual(denied.map((e) => [e.details!.authorization_details, e.details!.counterparty, e.details!.counterparty_lei, e.details!.entry_id, e.details!.matched_on]), [
      [1, 'destination', undefined, 'SAN-E001', ['name']],
      // `Ivan Petrov` is the alias `Petrov, Ivan` and a partial of `Ivan Ivanovich PETROV`.
      [0, 'destination', undefined, 'SAN-0001', ['name', 'alias']],
      [0, 'travel_rule.beneficiary.beneficiaryPersons[0]', undefined, 'SAN-0001', ['name', 'alias']],
      [0, 'travel_rule.beneficiary.beneficiaryPersons[0]', listedLei, 'SAN-E001', ['lei']],
      [0, 'travel_rule.beneficiary.beneficiaryPersons[0]', undefined, 'SAN-E001', ['alias']],
    ]);
    const alerts = await ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => { const d = JSON.parse(a.data) as Json; return [d.entry_id, d.at, d.refused]; }), [
      ['SAN-E001', 'issuance', true],
      ['SAN-0001', 'issuance', true],
      ['SAN-0001', 'issuance', true],
      ['SAN-E001', 'issuance', true],
      ['SAN-E001', 'issuance', true],
    ]);
    assert.doesNotMatch(await rawEvents(ctx), /Fictitious Shipping|PETROV|Petrov|FSH Maritime/i, 'the refusals name no one');
    // Nothing refused was reserved; a clean beneficiary of each kind is issued.
    assert.equal(await transferTotals(ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), ctx.clock.now()), 0n);
    assert.equal((await token([clean])).statusCode, 200);
    const issued = await token([cryptoTransfer({ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'Example Custodian SA', legalPersonNameIdentifierType: 'LEGL' }] }, nationalIdentification: { nationalIdentifier: '969500CUBANEXAMPLE21', nationalIdentifierType: 'LEIX' } } })]);
    assert.equal(issued.statusCode, 200, issued.body);
  });
});

describe("a beneficiary's name against the address book's", () => {
  test("a request naming another beneficiary than the book's for the IBAN is refused as a destination not in the book is, and recorded; the book's name in another spelling is the same name", async (t) => {
    const { ctx, token } = await server(t);
    const id = await seedDestination(ctx, { destination: { ...ibanDestination, name: 'Example Supplier GmbH' }, state: 'usable' });
    const body = assertOAuthError(await token([transfer({ destination: { ...ibanDestination, name: 'Jane Roe' } })], { txn: 'new' }), 400, 'invalid_authorization_details');
    assert.equal(body.error_description, `authorization_details[0]: destination iban:${iban} (${id}) of account TRE-001 names another beneficiary than its address book's`);
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.reason, refused.details!.destination_id, refused.details!.destination_key], ['destination-name-mismatch', id, `iban:${iban}`]);
    assert.doesNotMatch(await rawEvents(ctx), /Jane Roe|Example Supplier/, 'the refusal names no one');
    assert.equal(await transferTotals(ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), ctx.clock.now()), 0n, 'nothing reserved');
    // Compared as screening compares names: case, diacritics, punctuation and order do not make another name.
    for (const name of ['EXAMPLE SUPPLIER GMBH', 'Supplier, Exämple GmbH', 'Example Supplier GmbH']) {
      const response = await token([transfer({ destination: { ...ibanDestination, name } })]);
      assert.equal(response.statusCode, 200, `${name}: ${response.body}`);
    }
    // A legal form is part of the name here (a different form may be a different firm): refused, fail closed.
    assertOAuthError(await token([transfer({ destination: { ...ibanDestination, name: 'Example Supplier Ltd' } })]), 400, 'invalid_authorization_details');
  });

  test("a request without a name is screened by the book's name for the IBAN: a listed one is refused and audited as a named one is; a clean one is issued", async (t) => {
    const { ctx, token } = await server(t, { env: { CLEARANCE_SCREENING_LIST: screeningList } });
    // The book's name was listed after it was approved (put in directly: change control screens additions).
    await seedDestination(ctx, { destination: { ...ibanDestination, name: 'Fictitious Shipping Holdings Ltd' }, state: 'usable' });
    await seedDestination(ctx, { account: 'TRE-002', destination: { ...ibanDestination, name: 'Example Supplier GmbH' }, state: 'usable' });
    const body = assertOAuthError(await token([transfer({ destination: ibanDestination })]), 400, 'invalid_authorization_details');
    assert.equal(body.error_description, 'authorization_details[0] names a counterparty that cannot be accepted at present');
    const denied = only((await events(ctx, 'policy.denied')).filter((e) => e.decision!.reasons.includes('counterparty-screening')));
    assert.deepEqual([denied.details!.authorization_details, denied.details!.counterparty, denied.details!.entry_id], [0, 'destination', 'SAN-E001']);
    const alerts = await ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
    assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Json).entry_id), ['SAN-E001']);
    assert.doesNotMatch(await rawEvents(ctx), /Fictitious Shipping/, 'the refusal names no one');
    assert.equal(await transferTotals(ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), ctx.clock.now()), 0n, 'nothing reserved');
    const clean = await token([transfer({ source_account: 'TRE-002', destination: ibanDestination })]);
    assert.equal(clean.statusCode, 200, clean.body);
  });
});

const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

/** CIBA with a trader and an approver on the treasury desk, the transfer controls, and a custody back end that exchanges the custody API's tokens onward. */
async function cibaTransfers(t: TestContext) {
  const f = await cibaFixture(t);
  await f.apply({
    ...transferDocument,
    resource_servers: [
      { identifier: custodyApi, scopes: ['transfer:withdrawal', 'transfer:internal', 'transfer:collateral', 'position:view'], exchange_clients: ['custody-backend'] },
    ],
    users: [
      { username: 'trader', name: 'Tina Trader', desks: ['treasury'], roles: ['trader'] },
      { username: 'sup', name: 'Sam Supervisor', desks: ['treasury'], roles: ['approver'] },
    ],
    clients: [
      ...transferDocument.clients,
      { client_id: 'treasury-ciba', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: [cibaGrant, 'refresh_token'], backchannel_token_delivery_mode: 'poll', scope: 'openid transfer:withdrawal' },
      { client_id: 'custody-backend', kind: 'service', grant_types: [exchangeGrant], scope: 'transfer:withdrawal' },
    ],
    transfer_controls: controls,
    policies: [
      {
        version: 'v1',
        text: '@id("all") permit (principal, action, resource);\n@id("approvers-approve") permit (principal is User, action == Action::"approve", resource is User) when { principal has roles && principal.roles.contains("approver") };',
        change_ref: 'CHG-1',
        author: 'alice.author',
        approver: 'bob.approver',
        active: true,
      },
    ],
  });
  await seedDestination(f.ctx, { destination: ibanDestination, state: 'usable' });
  /** A CIBA token for a transfer of `amount`, approved by the trader and, when asked, by the supervisor. */
  const approvedToken = async (amount: string): Promise<Json> => {
    const started = await f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) }, 'treasury-ciba');
    assert.equal(started.statusCode, 200, started.body);
    const request = await f.pending();
    await subjectDecides(f.ctx, request);
    if (request.requiredApprovals > 0) {
      const sup = (await findUserByUsername(f.ctx, 'sup'))!;
      const decided = await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver: { userId: sup.id, username: sup.username, roles: sup.roles, desks: sup.desks }, proof: tokenProof(), decision: 'approve' });
      assert.ok(decided.ok, JSON.stringify(decided));
    }
    f.clock.advance(5_000);
    const response = await f.poll(String((started.json() as Json).auth_req_id), 'treasury-ciba');
    assert.equal(response.statusCode, 200, response.body);
    return response.json() as Json;
  };
  const exchange = (subjectToken: string) =>
    // To the custody API again (a back end acting for the person): the person consented to it.
    f.token({ auth: f.basic('custody-backend'), form: { grant_type: exchangeGrant, subject_token: subjectToken, subject_token_type: accessTokenType, resource: custodyApi } });
  return { f, approvedToken, exchange };
}

describe('a transfer above its threshold through CIBA', () => {
  test('is issued once the person and a second person approved it, and never without the second', async (t) => {
    const { f } = await cibaTransfers(t);
    const details = JSON.stringify([transfer({ amount: '1500000' })]);
    const started = await f.bcAuthorize({ scope: 'openid transfer:withdrawal', login_hint: 'trader', binding_message: 'Withdrawal W-1', resource: custodyApi, authorization_details: details }, 'treasury-ciba');
    assert.equal(started.statusCode, 200, started.body);
    const authReqId = String((started.json() as Json).auth_req_id);
    const request = await f.pending();
    assert.equal(request.requiredApprovals, 1, 'the threshold asks one second person');
    await subjectDecides(f.ctx, request);
    f.clock.advance(5_000);
    assertOAuthError(await f.poll(authReqId, 'treasury-ciba'), 400, 'authorization_pending');
    const sup = (await findUserByUsername(f.ctx, 'sup'))!;
    const decided = await decideApprovalRequest(f.ctx, cibaKind, { requestId: request.id, approver: { userId: sup.id, username: sup.username, roles: sup.roles, desks: sup.desks }, proof: tokenProof(), decision: 'approve' });
    assert.ok(decided.ok, JSON.stringify(decided));
    f.clock.advance(5_000);
    const response = await f.poll(authReqId, 'treasury-ciba');
    assert.equal(response.statusCode, 200, response.body);
    const tokens = response.json() as Json;
    const claims = decodeJwt(String(tokens.access_token)) as Json;
    assert.equal((claims.approvals as unknown[]).length, 1);
    assert.equal(tokens.refresh_token, undefined, 'an approval is for one token: no refresh token');
    const issued = (await f.auditEvents('token.issued')).find((e) => e.txn === request.id)!;
    assert.deepEqual((issued.details!.transfers as Json[])[0]!.approval, ['transfer-approval-threshold']);
    assert.equal((issued.details!.transfers as Json[])[0]!.amount, '1500000');
  });
});

describe('a transfer token exchanged onward (RFC 8693)', () => {
  test("is refused above the threshold — an exchange does not carry the approvals — and exchanged below it, counted once", async (t) => {
    const { f, approvedToken, exchange } = await cibaTransfers(t);
    const total = () => transferTotals(f.ctx).total(totalScope(brokerLei, 'TRE-001', 'USD'), f.clock.now());
    // Above the threshold: the CIBA token carries a second person's approval; the exchanged token would not.
    const above = await approvedToken('1500000');
    assert.equal((decodeJwt(String(above.access_token)).approvals as unknown[]).length, 1);
    const refused = assertOAuthError(await exchange(String(above.access_token)), 400, 'invalid_authorization_details');
    assert.match(String(refused.error_description), /^authorization_details\[0\] \(1500000 USD to iban:DE89370400440532013000\) is at or above the approval threshold of 1000000 USD and needs a second person's approval: ask for the token with a CIBA request \(POST \/bc-authorize\)/);
    assert.equal(only((await events(f.ctx, 'transfer.refused')).filter((e) => e.details!.via === exchangeGrant)).details!.reason, 'transfer-approval-threshold');
    assert.equal(await total(), parseAmount('1500000', 'exact'), 'the refused exchange leaves the approved transfer counted');
    // Below the threshold: exchanged, under the same txn, and not counted again.
    const below = await approvedToken('500000');
    const exchanged = await exchange(String(below.access_token));
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const claims = decodeJwt(String((exchanged.json() as Json).access_token));
    assert.deepEqual(claims.act, { sub: 'custody-backend' });
    assert.equal(claims.txn, decodeJwt(String(below.access_token)).txn);
    assert.equal(await total(), parseAmount('2000000', 'exact'));
  });
});

const postgres = testDialects().find((d) => d.name === 'postgres');

describe('the rolling total across two nodes on one PostgreSQL database', { skip: postgres ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('refuses the request that would exceed the limit, whichever node it reaches, and concurrent requests never exceed it', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-transfer-nodes-'));
    const database = await postgres!.create();
    const config = loadConfig({ CLEARANCE_DATA_DIR: dir });
    const clock = new ManualClock();
    const nodes: Context[] = [
      await openContext(config, { clock, log: createLogger('silent'), storage: database.storage }),
      await openContext(config, { clock, log: createLogger('silent'), storage: database.connect() }),
    ];
    const apps = nodes.map((ctx) => buildApp(ctx));
    t.after(async () => {
      for (const app of apps) await app.close();
      for (const ctx of nodes) await (ctx.audit as { close?: () => Promise<void> }).close?.();
      await database.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });
    const secrets = await applyDocument(nodes[0]!, transferDocument);
    await applyDocument(nodes[0]!, { transfer_controls: controls });
    await seedDestination(nodes[0]!, { destination: ibanDestination, state: 'usable' });
    const token = (node: number, amount: string) =>
      apps[node]!.inject({
        method: 'POST',
        url: '/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('treasury-app', secrets['treasury-app']!) },
        payload: formBody({ grant_type: 'client_credentials', resource: custodyApi, authorization_details: JSON.stringify([transfer({ amount })]) }),
      });
    // 1.8M through node A and B, then 0.8M through node B would make 2.6M: refused there.
    assert.equal((await token(0, '900000')).statusCode, 200);
    assert.equal((await token(1, '900000')).statusCode, 200);
    const over = assertOAuthError(await token(1, '800000'), 400, 'invalid_authorization_details');
    assert.match(String(over.error_description), /would bring its rolling 24-hour total to 2600000 USD, above its limit of 2500000/);
    // A day on, 30 requests of 100,000 at once, alternating nodes: exactly 25 fit.
    clock.advance(24 * 3600_000);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => token(i % 2, '100000')));
    assert.deepEqual(answers.map((r) => r.statusCode).sort(), [...Array(25).fill(200), ...Array(5).fill(400)]);
    const total = await transferTotals(nodes[1]!).total(totalScope(brokerLei, 'TRE-001', 'USD'), clock.now());
    assert.equal(total, parseAmount('2500000', 'exact'));
    const refusals = (await events(nodes[0]!, 'transfer.refused')).filter((e) => e.details!.reason === 'daily-limit');
    assert.equal(refusals.length, 6);
  });
});
