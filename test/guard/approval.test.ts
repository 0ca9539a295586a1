import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { approvalDigest, createGuard, type ApprovalCheckRecord, type Guard } from 'clearance/guard';
import { guardFixture, ordersApi, refused, type GuardFixture } from './fixture.ts';

// What-you-see-is-what-you-sign at the resource server (AMENDMENTS, strong authentication): the
// guard executes an order only if it is exactly the one the person approved, whose digest the
// token carries, and reports every check so the resource server can record it.

const url = 'https://orders.example.com/api/orders';
const order = { type: 'order', instrument: 'XS2345678901', side: 'buy', notional: 2_500_000, currency: 'EUR' };
const settlement = { type: 'settlement_instruction', account: 'DE89370400440532013000', currency: 'EUR' };

let f: GuardFixture;
let guard: Guard;
const checks: ApprovalCheckRecord[] = [];
const cleanups: (() => unknown)[] = [];

before(async () => {
  f = await guardFixture({ after: (fn) => cleanups.push(fn) });
  guard = createGuard({ issuer: f.issuer, audience: ordersApi, jwksUri: `${f.issuer}/jwks`, onApprovalCheck: (record) => checks.push(record) });
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

async function accessWith(claims: Record<string, unknown>) {
  const token = await f.sign(f.claims({ authorization_details: [order, settlement], txn: 'txn-approval-1', ...claims }));
  return guard.verify({ method: 'POST', url, headers: { authorization: `Bearer ${token}` } });
}

describe('the guard checking an approved order', () => {
  test('passes the order and settlement instruction the person approved, and reports the match', async () => {
    const digest = approvalDigest([order, settlement]);
    const access = await accessWith({ authorization_details_digest: digest });
    checks.length = 0;
    // The member order of the resource server's copy does not matter: RFC 8785 sorts members.
    assert.equal(guard.requireApprovedDetails(access, [{ ...order, currency: 'EUR' }, settlement]), digest);
    assert.equal(checks.length, 1);
    assert.deepEqual({ ...checks[0], at: 0, jti: '' }, { jti: '', subject: access.subject, clientId: access.clientId, txn: 'txn-approval-1', approved: digest, presented: digest, matched: true, at: 0 });
  });

  test('refuses an order changed after the approval, with 403 insufficient_scope, and reports the mismatch', async () => {
    const access = await accessWith({ authorization_details_digest: approvalDigest([order, settlement]) });
    checks.length = 0;
    const error = await refused(Promise.resolve().then(() => guard.requireApprovedDetails(access, [{ ...order, notional: 25_000_000 }, settlement])), 403, 'insufficient_scope');
    assert.match(error.message, /differs from the one the person approved/);
    assert.equal(checks[0]?.matched, false);
    assert.notEqual(checks[0]?.presented, checks[0]?.approved);
  });

  test('refuses when the token carries no approval, or nothing to approve is presented', async () => {
    const unapproved = await accessWith({});
    await refused(Promise.resolve().then(() => guard.requireApprovedDetails(unapproved, [order, settlement])), 403, 'insufficient_scope');
    const approved = await accessWith({ authorization_details_digest: approvalDigest([order, settlement]) });
    await refused(Promise.resolve().then(() => guard.requireApprovedDetails(approved, [{ type: 'account_access', accounts: ['A-1'] }])), 403, 'insufficient_scope');
  });

  test('refuses a token whose authorization_details_digest is not a digest', async () => {
    await refused(accessWith({ authorization_details_digest: 'not a digest' }), 401, 'invalid_token');
  });
});
