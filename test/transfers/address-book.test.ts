import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { approverOf } from '../../src/approvals/deciders.ts';
import { transferDestinationKind } from '../../src/approvals/kinds/transfer-destination.ts';
import { decideApprovalRequest } from '../../src/approvals/requests.ts';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { checkBundledDestinations } from '../../src/audit/bundle-destinations.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { epochSeconds } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUser } from '../../src/identity/users.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { destinationStatus, stateOf } from '../../src/transfers/address-book.ts';
import { reviewComposition } from '../../src/transfers/approval.ts';
import { openDeclaredRequests } from '../../src/transfers/apply-section.ts';
import { insertDestinationEntry, newDestinationId, removeDestination, requestDestinationChange, signInReview, versionRow } from '../../src/transfers/change-control.ts';
import { destinationKey } from '../../src/transfers/detail.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { applyDocument, userId } from '../policy/fixture.ts';
import { transferServer, treasuryLei } from './http-fixture.ts';

// The address book inside (src/transfers/address-book.ts, change-control.ts): the lookup a
// transfer is checked by, the four-eyes change, and the evidence bundle of a transfer that shows
// the change that put its destination in the book.

const hour = 3600_000;
/** The EIP-55 specification's own example address. */
const evmAddress = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';
/** The FATF travel rule's data in IVMS 101 (as test/transfers/detail.test.ts): a natural-person originator, a legal-person beneficiary. */
const travelRule = {
  originator: {
    originatorPersons: [{ naturalPerson: { name: { nameIdentifier: [{ primaryIdentifier: 'Doe', secondaryIdentifier: 'Jane', nameIdentifierType: 'LEGL' }] }, countryOfResidence: 'DE' } }],
    accountNumber: ['TR-001'],
  },
  beneficiary: {
    beneficiaryPersons: [{ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'Example Custodian SA', legalPersonNameIdentifierType: 'LEGL' }] }, nationalIdentification: { nationalIdentifier: '5493001KJTIIGC8Y1R12', nationalIdentifierType: 'LEIX' } } }],
    accountNumber: [`eip155:1:${evmAddress}`],
  },
};
/** 1.5 ether from the treasury's account to a blockchain address. */
const withdrawal = { type: 'transfer', transfer_type: 'withdrawal', asset: 'eip155:1/slip44:60', amount: '1.5', source_account: 'TR-001', destination: { kind: 'blockchain', account: `eip155:1:${evmAddress}` }, travel_rule: travelRule };
const key = `caip10:eip155:1:${evmAddress.toLowerCase()}`;

describe('the address book lookup', () => {
  test('answers the best state of a destination for a transfer: usable, else cooling down, else held, else pending, else removed', () => {
    const now = 1_000_000;
    assert.deepEqual(stateOf([], now), { state: 'unknown' });
    assert.deepEqual(stateOf([{ version: 1, status: 'pending', requestExpiresAt: now + 1 }], now), { state: 'pending', version: 1 });
    assert.deepEqual(stateOf([{ version: 1, status: 'pending', requestExpiresAt: now }], now), { state: 'unknown' }, 'an expired request is no change');
    assert.deepEqual(stateOf([{ version: 1, status: 'held_for_review', requestExpiresAt: now + 1 }], now), { state: 'held_for_review', version: 1 });
    assert.deepEqual(stateOf([{ version: 1, status: 'approved', usableFrom: now + 5 }], now), { state: 'cooling_down', version: 1, usableFrom: now + 5 });
    assert.deepEqual(stateOf([{ version: 1, status: 'approved', usableFrom: now }, { version: 2, status: 'approved', usableFrom: now + 5 }], now), { state: 'usable', version: 1, usableFrom: now }, 'a newer version cooling down leaves the older usable');
    assert.deepEqual(stateOf([{ version: 1, status: 'removed' }, { version: 2, status: 'rejected' }], now), { state: 'removed' });
    assert.deepEqual(stateOf([{ version: 1, status: 'removed' }, { version: 2, status: 'pending' }], now), { state: 'pending', version: 2 });
  });

  test('a change held for review needs one approver and one compliance person, different people', () => {
    assert.equal(reviewComposition([['approver']]), true);
    assert.equal(reviewComposition([['compliance']]), true);
    assert.equal(reviewComposition([['trader']]), false);
    assert.equal(reviewComposition([['approver'], ['compliance']]), true);
    assert.equal(reviewComposition([['compliance'], ['approver']]), true);
    assert.equal(reviewComposition([['approver'], ['approver']]), false);
    assert.equal(reviewComposition([['approver', 'compliance'], ['approver']]), true);
    assert.equal(reviewComposition([['compliance'], ['compliance']]), false);
  });
});

/** A treasury operations person, two approvers and a compliance person, on the treasury desk. */
async function people(ctx: Context): Promise<Record<'ops' | 'approver' | 'approver2' | 'compliance', string>> {
  const password = 'correct horse battery staple 7';
  await applyDocument(ctx, {
    users: [
      { username: 'ops', password, desks: ['treasury'] },
      { username: 'approver', password, desks: ['treasury'], roles: ['approver'] },
      { username: 'approver2', password, desks: ['treasury'], roles: ['approver'] },
      { username: 'compliance', password, desks: ['treasury'], roles: ['compliance'] },
    ],
  });
  return { ops: await userId(ctx, 'ops'), approver: await userId(ctx, 'approver'), approver2: await userId(ctx, 'approver2'), compliance: await userId(ctx, 'compliance') };
}

/** A second person's approval with a fresh phishing-resistant token (what the approvals API records). */
async function approve(ctx: Context, requestId: string, personId: string) {
  const person = (await findUser(ctx, personId))!;
  return decideApprovalRequest(ctx, transferDestinationKind, {
    requestId,
    approver: approverOf(person),
    proof: { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], authTime: epochSeconds(ctx.clock), jti: `jti-${personId}`, clientId: 'ops-app' },
    decision: 'approve',
  });
}

async function events(ctx: Context, type: string): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

for (const dialect of testDialects()) {
  describe(`destination control on ${dialect.name}`, () => {
    test('a withdrawal to a new address is refused until it is added, approved by a second person and cooled down; then its evidence bundle shows the change, its approval and the transfer', async (t) => {
      const { ctx, clock, token } = await transferServer(t, { dialect });
      const ids = await people(ctx);
      clock.advance(2000);
      const ask = () => token({ scope: 'position:view', authorization_details: JSON.stringify([withdrawal]) });
      assert.match(String(assertOAuthError(await ask(), 400, 'invalid_authorization_details').error_description), /is not in the address book of account TR-001/);

      const { request, entry } = await requestDestinationChange(ctx, { lei: treasuryLei, account: 'TR-001', destination: withdrawal.destination as never, label: 'Custodian hot wallet', requester: { type: 'user', id: ids.ops }, via: 'admin-api' });
      assert.equal(entry.key, key);
      assert.match(String(assertOAuthError(await ask(), 400, 'invalid_authorization_details').error_description), /awaits approval/);
      // The one rule: whoever asked never approves.
      assert.deepEqual(await approve(ctx, request.id, ids.ops), { ok: false, refusal: 'approver_is_requester' });
      const approved = await approve(ctx, request.id, ids.approver);
      assert.equal(approved.ok && approved.settled, 'approved');
      assert.match(String(assertOAuthError(await ask(), 400, 'invalid_authorization_details').error_description), /is cooling down until/);
      // The cool-down, and the first-use hold after it (src/transfers/enforce.ts) that would ask for a second person again.
      clock.advance(25 * hour);

      const granted = await token({ scope: 'position:view', authorization_details: JSON.stringify([withdrawal]), txn: 'withdrawal-0001' });
      assert.equal(granted.statusCode, 200, granted.body);
      const txn = decodeJwt(granted.json().access_token).txn as string;
      assert.ok(txn, 'the transfer is a transaction');
      const [issued] = (await events(ctx, 'token.issued')).filter((e) => e.txn === txn);
      const transfers = issued!.details!.transfers as { destination_id: string; destination_version: number }[];
      assert.deepEqual([transfers[0]!.destination_id, transfers[0]!.destination_version], [entry.id, 1]);

      // What `clearance audit export --txn` writes: the transfer, and the change behind its destination.
      const masterKey = resolveMasterKey(ctx.config).key;
      await createSealer(ctx, masterKey).sealOnce();
      const auditKey = await new AuditKeys(ctx.storage.db, masterKey, clock).signingKey(auditOrigin(ctx.config.issuer));
      const { text, bundle } = await exportBundle(ctx.storage.db, { query: { txn }, key: auditKey, jwksInForce: (from, to) => ctx.keys.jwksInForce(from, to), now: clock.now() });
      assert.ok(bundle.events.some((e) => e.event.type === 'token.issued'));
      assert.equal(bundle.destinations?.length, 1);
      assert.deepEqual(
        bundle.destinations![0]!.events.map((e) => e.event.type),
        ['approval.requested', 'transfer_destination.requested', 'approval.refused', 'approval.given', 'approval.completed', 'transfer_destination.approved'],
      );
      const report = verifyBundle(text);
      assert.deepEqual(report.problems, []);
      const [change] = report.destinations!;
      assert.equal(change!.id, entry.id);
      assert.equal(change!.key, key);
      assert.equal(change!.requestedBy, ids.ops);
      assert.deepEqual(change!.approvals.map((a) => [a.approver, a.method, a.acr]), [[ids.approver, 'token', acr.phishingResistant]]);

      // Offline, a change's events must be proven, of its transaction, and named by a transfer of the bundle.
      const section = bundle.destinations![0]!;
      const root = Buffer.from(bundle.checkpoint.rootHash, 'base64');
      const treeSize = bundle.checkpoint.treeSize;
      const main = bundle.events.map(({ event }) => ({ event }));
      assert.deepEqual(checkBundledDestinations(main, bundle.destinations, treeSize, root).problems, []);
      const altered = JSON.parse(canonicalize(section));
      altered.events[5].event.details.approved_by = ['someone-else'];
      assert.match(checkBundledDestinations(main, [altered], treeSize, root).problems.join('; '), /inclusion proof does not lead to the checkpoint's root/);
      const withoutApproval = { ...section, events: section.events.filter((e) => e.event.type !== 'transfer_destination.approved') };
      assert.match(checkBundledDestinations(main, [withoutApproval], treeSize, root).problems.join('; '), /holds no approval of this destination version/);
      assert.match(checkBundledDestinations([], [section], treeSize, root).problems.join('; '), /no transfer in the bundle names this destination version/);
      const elsewhere = { ...section, txn: 'another-txn' };
      assert.match(checkBundledDestinations(main, [elsewhere], treeSize, root).problems.join('; '), /not of the change's transaction another-txn/);

      // A removal holds from its commit on: the next withdrawal is refused.
      await removeDestination(ctx, { id: entry.id, actor: ids.compliance });
      assert.deepEqual(await destinationStatus(ctx, { lei: treasuryLei, account: 'TR-001', key }), { id: entry.id, state: 'removed', removedAt: clock.now() });
      assert.match(String(assertOAuthError(await ask(), 400, 'invalid_authorization_details').error_description), /is not in the address book/);
    });

    test('a requester whose sign-in fired new_device, or cannot be found, is held for review', async (t) => {
      const { ctx } = await transferServer(t, { dialect });
      const ids = await people(ctx);
      assert.equal(await signInReview(ctx, ids.ops, 12345), 'sign_in_unknown');
      const held = await requestDestinationChange(ctx, { lei: treasuryLei, account: 'TR-001', destination: withdrawal.destination as never, requester: { type: 'user', id: ids.ops }, reviewReason: 'new_device', via: 'admin-api' });
      assert.equal(held.version.status, 'held_for_review');
      assert.equal(held.request.requiredApprovals, 2);
      const first = await approve(ctx, held.request.id, ids.approver);
      assert.equal(first.ok && first.settled, undefined);
      assert.deepEqual(await approve(ctx, held.request.id, ids.approver2), { ok: false, refusal: 'not_eligible: a change held for review needs one holder of approver and one of compliance, different people' });
      const second = await approve(ctx, held.request.id, ids.compliance);
      assert.equal(second.ok && second.settled, 'approved');
      assert.equal((await destinationStatus(ctx, { lei: treasuryLei, account: 'TR-001', key })).state, 'cooling_down');
      assert.equal((await events(ctx, 'transfer_destination.held')).length, 1);
    });

    test("a change apply wrote whose IBAN beneficiary the screening list names is rejected, not asked of an approver", async (t) => {
      const { ctx } = await transferServer(t, { dialect, env: { CLEARANCE_SCREENING_LIST: fileURLToPath(new URL('../../examples/screening/list.csv', import.meta.url)) } });
      const destination = { kind: 'iban' as const, iban: 'DE89370400440532013000', name: 'Example Embargoed Trading LLC' };
      const entry = { id: newDestinationId(), lei: treasuryLei, account: 'TR-001', key: destinationKey(destination), kind: 'iban' as const, createdAt: ctx.clock.now() };
      // As apply writes it (src/transfers/apply-section.ts): the version, pending, with no request yet.
      await ctx.storage.db.transaction().execute(async (trx) => {
        await insertDestinationEntry(trx, entry);
        await trx.insertInto('transfer_destination_versions').values(versionRow({ destinationId: entry.id, version: 1, destination, status: 'pending', requestedBy: 'apply-client', requesterType: 'client', requestedAt: ctx.clock.now(), via: 'apply' })).execute();
      });
      assert.equal(await openDeclaredRequests(ctx), 0);
      assert.equal(await openDeclaredRequests(ctx), 0, 'once');
      assert.equal((await events(ctx, 'approval.requested')).length, 0);
      const [rejected, ...more] = await events(ctx, 'transfer_destination.rejected');
      assert.equal(more.length, 0);
      assert.deepEqual([rejected!.decision!.reasons, rejected!.details!.entry_id, rejected!.details!.destination_key], [['counterparty-screening'], 'SAN-E002', `iban:${destination.iban}`]);
      assert.equal((await destinationStatus(ctx, { lei: treasuryLei, account: 'TR-001', key: entry.key })).state, 'unknown', 'not in the book');
      const alerts = await ctx.storage.db.selectFrom('alerts').select('data').where('type', '=', 'screening.matched').execute();
      assert.deepEqual(alerts.map((a) => (JSON.parse(a.data) as Record<string, unknown>).at), ['address_book']);
    });
  });
}
