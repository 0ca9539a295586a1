import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { HoldReleaseConflict, requestHoldRelease, settleHoldRelease } from '../../src/audit/hold-release.ts';
import { activeHolds, findHold, HoldError, listHolds, placeHold } from '../../src/audit/holds.ts';
import { parseRetention, planPrune } from '../../src/audit/retention.ts';
import type { ApprovalRequest } from '../../src/approvals/requests.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture, origin, type AuditFixture } from './helpers.ts';

// Issue 17 item 5 (docs/audit.md "Legal hold"): a hold ends only by a two-person release, and a
// bundle states the holds that applied to its events. The approvals themselves (who may approve,
// over HTTP) are tested in test/admin/holds.test.ts.

const day = 86_400_000;
const policy = parseRetention('token.issued=30d,policy.denied=30d');
const ctxOf = (f: AuditFixture) => ({ audit: f.recorder, clock: f.clock, storage: f.storage });

/** Settles a release request approved, as the approval rule's transaction would. */
async function approve(f: AuditFixture, request: ApprovalRequest): Promise<void> {
  await f.recorder.recordWith(async (trx) => ({ value: undefined, events: await settleHoldRelease(trx, request, 'approved', f.clock.now()) }));
}

for (const dialect of testDialects()) {
  describe(`releasing legal holds on ${dialect.name}`, () => {
    test('a release asked by someone not signed in waits for two approvals, one by a compliance person for one; only one waits at a time, even asked at once', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      const hold = await placeHold(ctxOf(f), { txn: 'txn-1', matterRef: 'SEC-2026-114' }, 'cli:ops');
      const asked = await Promise.allSettled([
        requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'matter closed', requester: 'cli:ops', requesterType: 'client' }),
        requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'matter closed', requester: 'cli:ops2', requesterType: 'client' }),
      ]);
      const opened = asked.filter((r) => r.status === 'fulfilled');
      const refused = asked.filter((r) => r.status === 'rejected');
      assert.equal(opened.length, 1, 'one release request');
      assert.ok(refused.every((r) => r.reason instanceof HoldReleaseConflict), String(refused.map((r) => r.reason)));
      const { request } = opened[0]!.value;
      assert.equal(request.kind, 'hold_release');
      assert.equal(request.requiredApprovals, 2);
      assert.equal((await findHold(f.db, hold.id))!.releaseRequest, request.id);
      await assert.rejects(requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'again', requester: 'cli:ops', requesterType: 'client' }), HoldReleaseConflict);
      assert.deepEqual((await activeHolds(f.db)).map((h) => h.id), [hold.id], 'still in force while the release waits');

      const other = await placeHold(ctxOf(f), { client: 'client-1', matterRef: 'M-2' }, 'cli:ops');
      const byPerson = await requestHoldRelease(ctxOf(f), { holdId: other.id, reason: 'done', requester: 'user-comp-1', requesterType: 'user' });
      assert.equal(byPerson.request.requiredApprovals, 1);
      assert.equal(byPerson.request.subject, other.id, 'a client hold is the subject of its release');
      const onPerson = await placeHold(ctxOf(f), { subject: 'user-7', matterRef: 'M-3' }, 'cli:ops');
      const aboutPerson = await requestHoldRelease(ctxOf(f), { holdId: onPerson.id, reason: 'done', requester: 'cli:ops', requesterType: 'client' });
      assert.equal(aboutPerson.request.subject, 'user-7', 'the person held is its subject, so never its approver');
    });

    test('refuses an unknown hold, a released hold and a release without a reason', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      const hold = await placeHold(ctxOf(f), { txn: 'txn-1', matterRef: 'M' }, 'cli:ops');
      for (const reason of [undefined, '  ', 'a\u0000b', 'x'.repeat(501)]) {
        await assert.rejects(requestHoldRelease(ctxOf(f), { holdId: hold.id, reason, requester: 'cli:ops', requesterType: 'client' }), /needs its reason/);
      }
      await assert.rejects(requestHoldRelease(ctxOf(f), { holdId: 'hold-nope', reason: 'r', requester: 'cli:ops', requesterType: 'client' }), /no legal hold hold-nope/);
      const { request } = await requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'r', requester: 'cli:ops', requesterType: 'client' });
      await approve(f, request);
      await assert.rejects(requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'r', requester: 'cli:ops', requesterType: 'client' }), (e: unknown) => e instanceof HoldError && /released already/.test(e.message));
    });

    test('a denied or expired release leaves the hold in force, and another release can be asked', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(10);
      const hold = await placeHold(ctxOf(f), { txn: 'txn-1', matterRef: 'M' }, 'cli:ops');
      const first = await requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'r', requester: 'cli:ops', requesterType: 'client' });
      assert.deepEqual(await f.recorder.recordWith(async (trx) => ({ value: await settleHoldRelease(trx, first.request, 'denied', f.clock.now()), events: [] })), []);
      await f.db.updateTable('approval_requests').set({ status: 'denied' }).where('id', '=', first.request.id).execute();
      assert.deepEqual((await activeHolds(f.db)).map((h) => h.id), [hold.id]);
      const second = await requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'r', requester: 'cli:ops', requesterType: 'client' });
      f.clock.advance(day + 1);
      const third = await requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'r', requester: 'cli:ops', requesterType: 'client' });
      assert.notEqual(third.request.id, second.request.id, 'an expired request no longer blocks');
      // The expired request's approval, had it come, no longer releases: the hold names the new one.
      await approve(f, second.request);
      assert.deepEqual((await activeHolds(f.db)).map((h) => h.id), [hold.id]);
      await approve(f, third.request);
      assert.deepEqual(await activeHolds(f.db), []);
    });

    test('a released hold keeps nothing from a prune, names who released it, and bundles state both active and released holds', async (t) => {
      const f = await auditFixture(dialect, t);
      await f.fill(600);
      f.clock.advance(100 * day);
      await f.fill(600);
      const key = await f.keys.signingKey(origin);
      const hold = await placeHold(ctxOf(f), { txn: 'txn-100', matterRef: 'SEC-2026-114' }, 'cli:ops');
      const ranged = await placeHold(ctxOf(f), { from: f.clock.now() + day, to: f.clock.now() + 2 * day, matterRef: 'future' }, 'cli:ops');
      await f.sealer.sealAll();
      assert.equal((await planPrune(f.db, policy, f.clock.now())).pruneBefore, 256, 'held');

      const active = await exportBundle(f.db, { query: { txn: 'txn-100' }, key, jwksInForce: async () => ({ keys: [] }), now: f.clock.now() });
      assert.deepEqual(active.bundle.holds!.map((h) => [h.hold_id, h.matter_ref, h.released_at]), [[hold.id, 'SEC-2026-114', undefined]], 'the range covers none of the trade, so it is not stated');
      const activeReport = verifyBundle(active.text);
      assert.equal(activeReport.ok, true, activeReport.problems.join('; '));
      assert.deepEqual(activeReport.holds!.map((h) => h.hold_id), [hold.id]);
      assert.ok(active.bundle.events.some((e) => e.event.type === 'audit.hold_placed'), "the hold's own event is filed under the trade");

      const { request } = await requestHoldRelease(ctxOf(f), { holdId: hold.id, reason: 'matter closed', requester: 'cli:ops', requesterType: 'client' });
      await approve(f, request);
      const released = (await listHolds(f.db)).find((h) => h.id === hold.id)!;
      assert.equal(released.releasedAt, f.clock.now());
      assert.deepEqual(released.releasedBy, ['cli:ops']);
      assert.deepEqual((await activeHolds(f.db)).map((h) => h.id), [ranged.id]);
      const [event] = await f.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.hold_released').execute();
      const details = JSON.parse(event!.event).details;
      assert.equal(details.hold_id, hold.id);
      assert.equal(details.release_request, request.id);
      assert.equal(details.reason, 'matter closed');
      await f.sealer.sealAll();
      assert.equal((await planPrune(f.db, policy, f.clock.now())).pruneBefore, 512, 'released: the prune goes as far as retention allows');

      const after = await exportBundle(f.db, { query: { txn: 'txn-100' }, key, jwksInForce: async () => ({ keys: [] }), now: f.clock.now() });
      assert.deepEqual(after.bundle.holds!.map((h) => [h.hold_id, h.released_at, h.released_by]), [[hold.id, f.clock.now(), ['cli:ops']]]);
      assert.equal(verifyBundle(after.text).ok, true);

      // The statement is signed with the rest: dropping it is detected, as is a statement of a hold over nothing in the bundle.
      const dropped = { ...after.bundle, holds: [] };
      assert.match(verifyBundle(canonicalize(dropped) + '\n').problems.join('; '), /bundle signature is not valid/);
      const stray = { ...after.bundle, holds: [...after.bundle.holds!, { hold_id: 'hold-x', kind: 'client', value: 'nobody', matter_ref: 'M' }] };
      assert.match(verifyBundle(canonicalize(stray) + '\n').problems.join('; '), /hold hold-x: covers none of the bundle's events/);
    });
  });
}
