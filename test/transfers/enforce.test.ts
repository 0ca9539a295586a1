import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuthorizationDetail } from '../../src/authorization/authorization-details.ts';
import type { Context } from '../../src/context.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { authorizeIssuance, type Issuance } from '../../src/policy/issuance.ts';
import { parseAmount } from '../../src/transfers/amounts.ts';
import { enforceTransfers, transferApprovalsNeeded } from '../../src/transfers/enforce.ts';
import { totalScope, transferTotals } from '../../src/transfers/totals.ts';
import { freePort } from '../helpers/server.ts';
import { redisSkip, uniquePrefix, deleteKeys, testRedisUrl } from '../helpers/redis.ts';
import { testDialects } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';
import { brokerLei, controls, custodyApi, events, iban, only, seedDestination, transfer, transferContext } from './enforcement-fixture.ts';

const ibanDestination = { kind: 'iban' as const, iban, bic: 'COBADEFFXXX' };
let requests = 0;

function issuance(details: Record<string, unknown>[], extra: Partial<Issuance> = {}): Issuance {
  return {
    subject: { type: 'Client', id: 'treasury-app' },
    clientId: 'treasury-app',
    audience: custodyApi,
    scopes: [],
    authorizationDetails: details as unknown as AuthorizationDetail[],
    requestId: `req-${++requests}`,
    grantType: 'client_credentials',
    ...extra,
  };
}

async function refusal(ctx: Context, details: Record<string, unknown>[], extra: Partial<Issuance> = {}): Promise<OAuthError> {
  try {
    await authorizeIssuance(ctx, issuance(details, extra));
  } catch (error) {
    assert.ok(error instanceof OAuthError, String(error));
    return error;
  }
  assert.fail('the issuance was allowed');
}

const usd = (n: string) => parseAmount(n, 'exact')!;
const usdTotal = (ctx: Context, account = 'TRE-001') => transferTotals(ctx).total(totalScope(brokerLei, account, 'USD'), ctx.clock.now());

describe('transfer enforcement at issuance: the address book', () => {
  test('refuses a destination that is not in the address book, and records the refusal with destination and amount', async (t) => {
    const { ctx } = await transferContext(t);
    const error = await refusal(ctx, [transfer({ amount: '2500.00' })], { txn: 'txn-unknown' });
    assert.equal(error.error, 'invalid_authorization_details');
    assert.equal(error.description, `authorization_details[0]: destination iban:${iban} is not in the address book of account TRE-001`);
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.equal(refused.txn, 'txn-unknown');
    assert.deepEqual(refused.decision, { allow: false, reasons: ['destination-not-in-address-book'] });
    assert.deepEqual(refused.details, {
      via: 'client_credentials',
      reason: 'destination-not-in-address-book',
      authorization_details: 0,
      transfer_type: 'withdrawal',
      account: 'TRE-001',
      lei: brokerLei,
      asset: 'USD',
      amount: '2500.00',
      destination_key: `iban:${iban}`,
      state: 'unknown',
    });
    assert.equal(await usdTotal(ctx), 0n, 'nothing reserved');
  });

  test('refuses a removed destination as not in the book, a pending or held one as awaiting approval', async (t) => {
    const { ctx } = await transferContext(t);
    const removed = await seedDestination(ctx, { destination: ibanDestination, state: 'removed' });
    let error = await refusal(ctx, [transfer()]);
    assert.match(error.description!, new RegExp(`destination iban:${iban} \\(${removed}\\) is not in the address book of account TRE-001`));
    const pending = await seedDestination(ctx, { account: 'CRY-001', destination: ibanDestination, state: 'pending' });
    error = await refusal(ctx, [transfer({ source_account: 'CRY-001' })]);
    assert.equal(error.description, `authorization_details[0]: destination iban:${iban} (${pending}) of account CRY-001 awaits approval`);
    await seedDestination(ctx, { account: 'TRE-002', destination: ibanDestination, state: 'held_for_review' });
    error = await refusal(ctx, [transfer({ source_account: 'TRE-002' })]);
    assert.match(error.description!, /awaits approval$/);
    const reasons = (await events(ctx, 'transfer.refused')).map((e) => [e.details!.reason, e.details!.destination_id, e.details!.state]);
    assert.deepEqual(reasons.map((r) => r[0]), ['destination-not-in-address-book', 'destination-awaits-approval', 'destination-awaits-approval']);
    assert.equal(reasons[1]![1], pending);
  });

  test('refuses a destination still cooling down, naming when it may be used', async (t) => {
    const { ctx, clock } = await transferContext(t);
    const usableFrom = clock.now() + 5 * 3600_000;
    await seedDestination(ctx, { destination: ibanDestination, state: 'cooling_down', usableFrom });
    const error = await refusal(ctx, [transfer()]);
    assert.equal(error.error, 'invalid_authorization_details');
    assert.match(error.description!, new RegExp(`is cooling down until ${new Date(usableFrom).toISOString().replace(/\./g, '\\.')}$`));
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.equal(refused.details!.usable_from, new Date(usableFrom).toISOString());
    // Once it has cooled down, the same transfer passes.
    clock.advance(5 * 3600_000);
    const allowed = await authorizeIssuance(ctx, issuance([transfer()]));
    assert.equal(allowed.transfers?.length, 1);
  });

  test('lets a transfer to a usable destination through, with its destination and amount for the token event', async (t) => {
    const { ctx } = await transferContext(t);
    const id = await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const allowed = await authorizeIssuance(ctx, issuance([transfer({ amount: '2500.00' })], { txn: 'txn-ok' }));
    assert.deepEqual(allowed.transfers, [
      {
        authorization_details: 0,
        transfer_type: 'withdrawal',
        account: 'TRE-001',
        lei: brokerLei,
        asset: 'USD',
        amount: '2500.00',
        destination_key: `iban:${iban}`,
        destination_id: id,
        destination_version: 1,
        daily_total: '2500',
        daily_limit: '2500000',
      },
    ]);
    assert.equal(await usdTotal(ctx), usd('2500'));
    assert.deepEqual(await events(ctx, 'transfer.refused'), []);
  });

  test("exempts an internal transfer to the legal entity's own account, never to another firm's", async (t) => {
    const { ctx } = await transferContext(t);
    const own = await authorizeIssuance(ctx, issuance([transfer({ transfer_type: 'internal', destination: { kind: 'internal', account: 'TRE-002' } })]));
    assert.equal(own.transfers![0]!.own_account, true);
    assert.equal(own.transfers![0]!.destination_id, undefined);
    const error = await refusal(ctx, [transfer({ transfer_type: 'collateral', destination: { kind: 'internal', account: 'CU-CUST-001' } })]);
    assert.match(error.description!, /destination internal:CU-CUST-001 is not in the address book of account TRE-001/);
  });

  test('refuses a source account no legal entity declares (fail closed)', async (t) => {
    const { ctx } = await transferContext(t);
    const error = await refusal(ctx, [transfer({ source_account: 'NOBODY-1' })]);
    assert.equal(error.description, 'authorization_details[0]: source account NOBODY-1 is not an account of any legal entity');
    assert.equal(only(await events(ctx, 'transfer.refused')).details!.reason, 'unknown-source-account');
  });
});

describe('transfer enforcement at issuance: thresholds and approvals', () => {
  test('refuses a transfer at or above the threshold without a second person, saying how to get it approved', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const error = await refusal(ctx, [transfer({ amount: '1000000' })]);
    assert.equal(error.error, 'invalid_authorization_details');
    assert.equal(
      error.description,
      `authorization_details[0] (1000000 USD to iban:${iban}) is at or above the approval threshold of 1000000 USD and needs a second person's approval: ask for the token with a CIBA request (POST /bc-authorize) carrying this transfer: a second person approves it before the token is issued`,
    );
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.equal(refused.details!.reason, 'transfer-approval-threshold');
    assert.equal(refused.details!.approval_threshold, '1000000');
    // Just below passes; with a second person's approval (a CIBA token's `approvals`), at it passes too.
    await authorizeIssuance(ctx, issuance([transfer({ amount: '999999.99' })]));
    const approved = await authorizeIssuance(ctx, issuance([transfer({ amount: '1000000' })], { approvals: 1 }));
    assert.deepEqual(approved.transfers![0]!.approval, ['transfer-approval-threshold']);
  });

  test('asks a CIBA request for one second person when a transfer reaches its threshold, none below it', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const ask = (amount: string) => transferApprovalsNeeded(ctx, { ...issuance([transfer({ amount })]), subject: { type: 'User', id: 'u' }, grantType: 'urn:openid:params:grant-type:ciba' });
    assert.deepEqual(await ask('10'), { approvals: 0, policies: [] });
    assert.deepEqual(await ask('1500000'), { approvals: 1, policies: ['transfer-approval-threshold'] });
    // A transfer that could never be issued is refused at once, before anyone is asked to approve it.
    await assert.rejects(transferApprovalsNeeded(ctx, issuance([transfer({ source_account: 'CRY-001' })])), (e: OAuthError) => e.error === 'invalid_authorization_details');
    assert.equal(await usdTotal(ctx), 0n, 'a forecast reserves nothing');
  });
});

describe('transfer enforcement at issuance: the rolling 24-hour total', () => {
  test('refuses the transfer that would take the account over its daily limit, and slides after 24 hours', async (t) => {
    const { ctx, clock } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    // Each token issued: its hold made lasting, as the issuance path does once its events are durable.
    const issued = async (amount: string) => (await authorizeIssuance(ctx, issuance([transfer({ amount })]))).release?.({ issued: true });
    await issued('900000');
    clock.advance(3600_000);
    await issued('900000');
    const error = await refusal(ctx, [transfer({ amount: '700000.01' })]);
    assert.equal(error.description, 'authorization_details[0]: 700000.01 USD from account TRE-001 would bring its rolling 24-hour total to 2500000.01 USD, above its limit of 2500000');
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.reason, refused.details!.daily_total, refused.details!.daily_limit, refused.details!.amount], ['daily-limit', '1800000', '2500000', '700000.01']);
    await issued('700000');
    assert.equal(await usdTotal(ctx), usd('2500000'));
    // 24 hours after the first, it leaves the window.
    clock.advance(23 * 3600_000);
    await issued('900000');
  });

  test('counts two entries of one request together, and a limit switched off for an account counts nothing', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await seedDestination(ctx, { account: 'TRE-002', destination: ibanDestination, state: 'usable' });
    // Together they reach the approval threshold too (approved here: this is about the limit).
    const error = await refusal(ctx, [transfer({ amount: '900000' }), transfer({ amount: '900000' }), transfer({ amount: '900000' })], { approvals: 1 });
    assert.match(error.description!, /^authorization_details\[2\]: 900000 USD from account TRE-001 would bring/);
    assert.equal(await usdTotal(ctx), 0n, 'the two entries reserved before the refusal are taken back');
    await authorizeIssuance(ctx, issuance([transfer({ source_account: 'TRE-002', amount: '900000' }), transfer({ source_account: 'TRE-002', amount: '900000' }), transfer({ source_account: 'TRE-002', amount: '900000' })], { approvals: 1 }));
  });

  test('counts the same transfer of one txn once (a refreshed or exchanged token)', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await authorizeIssuance(ctx, issuance([transfer({ amount: '900000' })], { txn: 'txn-1' }));
    await authorizeIssuance(ctx, issuance([transfer({ amount: '900000' })], { txn: 'txn-1', grantType: 'refresh_token' }));
    assert.equal(await usdTotal(ctx), usd('900000'));
    await authorizeIssuance(ctx, issuance([transfer({ amount: '900000' })], { txn: 'txn-2' }));
    assert.equal(await usdTotal(ctx), usd('1800000'));
  });

  test('takes the reservation back when the decision point refuses the issuance after it', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await applyDocument(ctx, {
      policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);\n@id("no-transfers") forbid (principal, action, resource is Account);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
    });
    const error = await refusal(ctx, [transfer({ amount: '900000' })]);
    assert.equal(error.error, 'invalid_authorization_details');
    assert.match(error.description!, /refused by policy/);
    assert.equal(await usdTotal(ctx), 0n);
    assert.deepEqual(await events(ctx, 'transfer.refused'), [], 'refused by policy, not by transfer control');
  });
});

describe('transfer enforcement at issuance: risk holds', () => {
  test("holds a destination's first use within the hold after its cool-down, until a second person approves", async (t) => {
    const { ctx, clock } = await transferContext(t, { transferControls: { ...controls, defaults: { first_use_hold: 600 } } });
    const usableFrom = clock.now() - 5 * 60_000;
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable', usableFrom });
    const error = await refusal(ctx, [transfer()]);
    assert.match(error.description!, new RegExp(`is held: the destination's first use comes within minutes of its cool-down ending \\(until ${new Date(usableFrom + 600_000).toISOString().replace(/\./g, '\\.')}\\) and needs a second person's approval`));
    assert.equal(only(await events(ctx, 'transfer.refused')).details!.reason, 'transfer-first-use-hold');
    // A CIBA request would ask for the approval while the hold lasts.
    assert.deepEqual(await transferApprovalsNeeded(ctx, issuance([transfer()])), { approvals: 1, policies: ['transfer-first-use-hold'] });
    const approved = await authorizeIssuance(ctx, issuance([transfer()], { approvals: 1 }));
    assert.deepEqual(approved.transfers![0]!.approval, ['transfer-first-use-hold']);
    // Used once, it is no longer a first use.
    await authorizeIssuance(ctx, issuance([transfer()]));
  });

  test('passes a first use after the hold has ended', async (t) => {
    const { ctx, clock } = await transferContext(t, { transferControls: { ...controls, defaults: { first_use_hold: 600 } } });
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable', usableFrom: clock.now() - 11 * 60_000 });
    await authorizeIssuance(ctx, issuance([transfer()]));
  });

  test('holds a first transfer to a destination from a session signed in on a new device', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const newDevice = { loginRisk: [{ signal: 'new_device' as const, points: 20, detail: 'device never seen for this account' }] };
    const error = await refusal(ctx, [transfer()], newDevice);
    assert.match(error.description!, /is held: a first transfer to this destination from a session signed in on a new device needs a second person's approval: ask for the token with a CIBA request/);
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.reason, refused.details!.destination_key, refused.details!.amount], ['transfer-new-device-first-use', `iban:${iban}`, '2500.00']);
    // From a known device the first use passes; after it, the new device is no longer held for this destination.
    await authorizeIssuance(ctx, issuance([transfer()]));
    await authorizeIssuance(ctx, issuance([transfer()], newDevice));
  });

  test('a refused issuance leaves the destination a first use', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await applyDocument(ctx, {
      policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);\n@id("no-transfers") forbid (principal, action, resource is Account);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
    });
    await refusal(ctx, [transfer()]);
    const uses = await ctx.storage.db.selectFrom('transfer_destination_uses').selectAll().execute();
    assert.deepEqual(uses, []);
  });
});

describe('transfer enforcement at issuance: totals in Redis', { skip: redisSkip }, () => {
  test('reserves in the shared Redis when REDIS_URL is set', async (t) => {
    const prefix = uniquePrefix();
    t.after(() => deleteKeys(testRedisUrl, prefix));
    const { ctx } = await transferContext(t, { env: { REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix } });
    await ctx.risk.limits.connect();
    t.after(() => ctx.risk.limits.close());
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    assert.equal(transferTotals(ctx).kind, 'redis');
    await authorizeIssuance(ctx, issuance([transfer({ amount: '2000000' })], { approvals: 1 }));
    assert.equal(await usdTotal(ctx), usd('2000000'));
    const error = await refusal(ctx, [transfer({ amount: '500000.01' })]);
    assert.match(error.description!, /would bring its rolling 24-hour total to 2500000\.01 USD/);
    const rows = await ctx.storage.db.selectFrom('transfer_ledger').selectAll().execute();
    assert.deepEqual(rows, [], 'nothing in the database ledger');
  });

  test('refuses with temporarily_unavailable when Redis does not answer (fail closed, never a count per node)', async (t) => {
    const port = await freePort();
    const { ctx } = await transferContext(t, { env: { REDIS_URL: `redis://127.0.0.1:${port}`, CLEARANCE_REDIS_TIMEOUT_MS: '100' } });
    await ctx.risk.limits.connect();
    t.after(() => ctx.risk.limits.close());
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const error = await refusal(ctx, [transfer()]);
    assert.equal(error.error, 'temporarily_unavailable');
    assert.equal(error.status, 503);
    assert.equal(error.headers['Retry-After'], '5');
    assert.equal(error.description, 'the rolling transfer totals cannot be checked at present; try again shortly');
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.reason, refused.details!.amount, refused.details!.destination_key], ['totals-unavailable', '2500.00', `iban:${iban}`]);
    // A transfer without a daily limit does not need the store.
    await authorizeIssuance(ctx, issuance([transfer({ source_account: 'TRE-002', transfer_type: 'internal', destination: { kind: 'internal', account: 'TRE-001' } })]));
  });
});

// A refused request takes back only what it reserved itself (docs/transfers.md "What is counted"):
// a reservation it found already counted under the same txn and entry is the issued token's.
const refusingPolicy = {
  policies: [{ version: 'v1', text: '@id("all") permit (principal, action, resource);\n@id("no-other-app") forbid (principal == Client::"other-app", action, resource);', change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
};
const exchangeByOtherApp: Partial<Issuance> = { subject: { type: 'Client', id: 'other-app' }, clientId: 'other-app', grantType: 'urn:ietf:params:oauth:grant-type:token-exchange' };

function releaseOnlyOwn(setup: (t: Parameters<typeof transferContext>[0]) => Promise<Context>) {
  test('a refused exchange of the same txn and entry leaves the issued transfer counted', async (t) => {
    const ctx = await setup(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await applyDocument(ctx, refusingPolicy);
    await authorizeIssuance(ctx, issuance([transfer({ amount: '900000' })], { txn: 'txn-A' }));
    assert.equal(await usdTotal(ctx), usd('900000'));
    // Same txn, same entry, refused by the decision point after enforcement found it counted.
    const error = await refusal(ctx, [transfer({ amount: '900000' })], { txn: 'txn-A', ...exchangeByOtherApp });
    assert.match(error.description!, /is refused by policy/);
    assert.equal(await usdTotal(ctx), usd('900000'), 'the first, issued transfer still counts');
    // The limit still holds against it: 900,000 + 1,600,001 > 2,500,000.
    const over = await refusal(ctx, [transfer({ amount: '1600000.01' })], { approvals: 1 });
    assert.match(over.description!, /would bring its rolling 24-hour total to 2500000\.01 USD/);
  });

  test('of two identical issuances of one txn in parallel, the one refused after creating the reservation leaves the other\'s transfer counted', async (t) => {
    const ctx = await setup(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const meta = (i: Issuance) => ({ requestId: i.requestId, caller: i.clientId, via: i.grantType, txn: 'txn-P' });
    // Both pass enforcement before either is decided: the first creates the reservation, the second finds it.
    const first = issuance([transfer({ amount: '900000' })], { txn: 'txn-P' });
    const second = issuance([transfer({ amount: '900000' })], { txn: 'txn-P' });
    const firstEnforced = await enforceTransfers(ctx, first, meta(first));
    await enforceTransfers(ctx, second, meta(second));
    // The first is refused then (a policy): it takes back what it holds; the second is issued.
    await firstEnforced.release();
    assert.equal(await usdTotal(ctx), usd('900000'), 'the issued transfer still counts');
    const over = await refusal(ctx, [transfer({ amount: '1600000.01' })], { approvals: 1 });
    assert.match(over.description!, /would bring its rolling 24-hour total to 2500000\.01 USD/);
  });

  test('an issued issuance keeps its hold, so twins and refreshes of one txn leave it counted — the issued twin kept, the refused creator let go', async (t) => {
    const ctx = await setup(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    const meta = (i: Issuance) => ({ requestId: i.requestId, caller: i.clientId, via: i.grantType, txn: 'txn-K' });
    const first = issuance([transfer({ amount: '900000' })], { txn: 'txn-K' });
    const second = issuance([transfer({ amount: '900000' })], { txn: 'txn-K' });
    const firstEnforced = await enforceTransfers(ctx, first, meta(first));
    const secondEnforced = await enforceTransfers(ctx, second, meta(second));
    // The second is issued (its hold made lasting), the first, the reservation's creator, refused.
    await secondEnforced.release({ issued: true });
    await firstEnforced.release();
    assert.equal(await usdTotal(ctx), usd('900000'));
    // Refreshed again and again (each issued), then a refresh refused: still counted once.
    for (let i = 0; i < 3; i++) {
      const refresh = issuance([transfer({ amount: '900000' })], { txn: 'txn-K', grantType: 'refresh_token' });
      await (await enforceTransfers(ctx, refresh, meta(refresh))).release({ issued: true });
    }
    const refused = issuance([transfer({ amount: '900000' })], { txn: 'txn-K', grantType: 'refresh_token' });
    await (await enforceTransfers(ctx, refused, meta(refused))).release();
    assert.equal(await usdTotal(ctx), usd('900000'), 'the issued transfer still counts');
    const over = await refusal(ctx, [transfer({ amount: '1600000.01' })], { approvals: 1 });
    assert.match(over.description!, /would bring its rolling 24-hour total to 2500000\.01 USD/);
  });

  test('a request whose second entry fails its limit leaves the first entry counted by an earlier issuance', async (t) => {
    const ctx = await setup(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await authorizeIssuance(ctx, issuance([transfer({ amount: '900000' })], { txn: 'txn-B' }));
    // Entry 0 is found counted (same txn, same entry); entry 1 would take the total to 2,600,000.
    const error = await refusal(ctx, [transfer({ amount: '900000' }), transfer({ amount: '1700000' })], { txn: 'txn-B', approvals: 1 });
    assert.match(error.description!, /^authorization_details\[1\]: 1700000 USD from account TRE-001 would bring its rolling 24-hour total to 2600000 USD/);
    assert.equal(await usdTotal(ctx), usd('900000'), 'entry 0, counted by the issued token, is not released');
    // What the refused request created itself is taken back.
    const created = await refusal(ctx, [transfer({ amount: '800000' }), transfer({ amount: '1700000.01' })], { txn: 'txn-C', approvals: 1 });
    assert.match(created.description!, /^authorization_details\[1\]/);
    assert.equal(await usdTotal(ctx), usd('900000'), "the refused request's own reservation of entry 0 is released");
  });
}

for (const dialect of testDialects()) {
  describe(`transfer enforcement at issuance: a refusal releases only its own reservations (database on ${dialect.name})`, () => {
    releaseOnlyOwn(async (t) => (await transferContext(t, { dialect })).ctx);
  });
}

describe('transfer enforcement at issuance: a refusal releases only its own reservations (Redis)', { skip: redisSkip }, () => {
  releaseOnlyOwn(async (t) => {
    const prefix = uniquePrefix();
    t.after(() => deleteKeys(testRedisUrl, prefix));
    const { ctx } = await transferContext(t, { env: { REDIS_URL: testRedisUrl, CLEARANCE_REDIS_PREFIX: prefix } });
    await ctx.risk.limits.connect();
    t.after(() => ctx.risk.limits.close());
    assert.equal(transferTotals(ctx).kind, 'redis');
    return ctx;
  });
});

describe('transfer enforcement at issuance: one asset, however it is spelled', () => {
  const usdc = 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
  const lower = usdc.toLowerCase();
  const upper = `eip155:1/erc20:0x${usdc.slice(-40).toUpperCase()}`;
  const destination = { kind: 'blockchain' as const, account: 'eip155:1:0xab5801a7d398351b8be11c439e05c5b3259aec9b' };
  const crypto = (asset: string, amount: string) => transfer({ source_account: 'CRY-001', destination, asset, amount });

  test('limits configured under the EIP-55 spelling apply to the lower- and upper-case spellings, and the total is shared', async (t) => {
    const { ctx } = await transferContext(t, { transferControls: { defaults: { first_use_hold: 0 }, entities: { [brokerLei]: { assets: { [usdc]: { approval_threshold: '1000', daily_limit: '5000' } } } } } });
    await seedDestination(ctx, { account: 'CRY-001', destination, state: 'usable' });
    for (const asset of [usdc, lower, upper]) {
      const error = await refusal(ctx, [crypto(asset, '100000')]);
      assert.match(error.description!, /is at or above the approval threshold of 1000 /, asset);
    }
    await authorizeIssuance(ctx, issuance([crypto(usdc, '2000')], { approvals: 1 }));
    await authorizeIssuance(ctx, issuance([crypto(lower, '2000')], { approvals: 1 }));
    const over = await refusal(ctx, [crypto(upper, '1000.01')], { approvals: 1 });
    assert.match(over.description!, /would bring its rolling 24-hour total to 5000\.01 /, 'three spellings, one total');
    const total = await transferTotals(ctx).total(totalScope(brokerLei, 'CRY-001', upper), ctx.clock.now());
    assert.equal(total, usd('4000'));
  });

  test('the decision point sees the asset in its canonical spelling', async (t) => {
    const { ctx } = await transferContext(t, { transferControls: { defaults: { first_use_hold: 0 } } });
    await seedDestination(ctx, { account: 'CRY-001', destination, state: 'usable' });
    await applyDocument(ctx, {
      policies: [{ version: 'v1', text: `@id("all") permit (principal, action, resource);\n@id("no-usdc") forbid (principal, action, resource) when { context has asset && context.asset == "${lower}" };`, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }],
    });
    for (const asset of [usdc, upper]) assert.match((await refusal(ctx, [crypto(asset, '10')])).description!, /refused by policy: no-usdc/, asset);
  });
});

describe('transfer enforcement at issuance: a transfer split across entries', () => {
  test('holds the entries of one request from one account in one asset to the threshold together', async (t) => {
    const { ctx } = await transferContext(t);
    await seedDestination(ctx, { destination: ibanDestination, state: 'usable' });
    await seedDestination(ctx, { account: 'TRE-002', destination: ibanDestination, state: 'usable' });
    const error = await refusal(ctx, [transfer({ amount: '999999' }), transfer({ amount: '999999' })]);
    assert.equal(
      error.description,
      `authorization_details[0] (999999 USD to iban:${iban}) with the request's other transfers from account TRE-001 in USD (1999998 USD in all) is at or above the approval threshold of 1000000 USD and needs a second person's approval: ask for the token with a CIBA request (POST /bc-authorize) carrying this transfer: a second person approves it before the token is issued`,
    );
    const refused = only(await events(ctx, 'transfer.refused'));
    assert.deepEqual([refused.details!.reason, refused.details!.request_total], ['transfer-approval-threshold', '1999998']);
    assert.equal(await usdTotal(ctx), 0n);
    // A CIBA request carrying them asks for a second person.
    assert.deepEqual(await transferApprovalsNeeded(ctx, issuance([transfer({ amount: '999999' }), transfer({ amount: '999999' })])), { approvals: 1, policies: ['transfer-approval-threshold'] });
    // Entries from different accounts are separate transfers: each below the threshold passes.
    await authorizeIssuance(ctx, issuance([transfer({ amount: '999999' }), transfer({ source_account: 'TRE-002', amount: '999999' })]));
    // Approved, split entries pass; each records the demand.
    const approved = await authorizeIssuance(ctx, issuance([transfer({ amount: '700000' }), transfer({ amount: '700000' })], { approvals: 1 }));
    assert.deepEqual(approved.transfers!.map((r) => r.approval), [['transfer-approval-threshold'], ['transfer-approval-threshold']]);
  });
});
