import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { activityRange, ActivityRangeError, readActivity } from '../../src/audit/activity.ts';
import type { AuditEvent } from '../../src/audit/events.ts';
import { testDialects } from '../helpers/storage.ts';
import { auditFixture } from './helpers.ts';

const hour = 3600_000;

function refusal(reason: string): AuditEvent {
  return { type: 'token.refused', requestId: 'r', client: 'broker-1', details: { error: 'invalid_grant', reason } };
}

test('a dashboard range is aligned to its bucket, and refused when it is empty, too fine or of an unknown width', () => {
  assert.deepEqual(activityRange({ since: 5 * hour + 1234, until: 7 * hour, bucketSeconds: 3600 }), { since: 5 * hour, until: 7 * hour, bucketSeconds: 3600 });
  assert.throws(() => activityRange({ since: 0, until: hour, bucketSeconds: 7 }), ActivityRangeError);
  assert.throws(() => activityRange({ since: hour, until: hour, bucketSeconds: 60 }), ActivityRangeError);
  assert.throws(() => activityRange({ since: 0, until: 401 * 60_000, bucketSeconds: 60 }), /at most 400 buckets/);
  assert.equal(activityRange({ since: 0, until: 400 * 60_000, bucketSeconds: 60 }).since, 0);
});

for (const dialect of testDialects()) {
  describe(`the dashboard's activity on ${dialect.name}`, () => {
    test('counts each series per bucket, refusals by reason, approvals waiting and the seal lag', async (t) => {
      const f = await auditFixture(dialect, t);
      const start = f.clock.now() - (f.clock.now() % hour);
      f.clock.set(start + 60_000);
      const first: AuditEvent[] = [
        { type: 'token.issued', requestId: 'a', client: 'c' },
        { type: 'token.issued', requestId: 'b', client: 'c' },
        { type: 'token.exchanged', requestId: 'c', client: 'c' },
        refusal('invalid_client'),
        refusal('invalid_client'),
        refusal('txn_reused'),
        { type: 'exchange.refused', requestId: 'd', client: 'c', details: { error: 'invalid_target', reason: 'invalid_target' } },
        { type: 'step_up.requested', requestId: 'e', subject: 'ana' },
        { type: 'user.login_succeeded', requestId: 'f', subject: 'ana' },
      ];
      for (const event of first) await f.recorder.record(event);
      await f.sealer.sealAll();
      f.clock.set(start + hour + 5 * 60_000);
      for (const event of [
        { type: 'risk.anomaly', requestId: 'g', subject: 'ana' },
        { type: 'client.throttled', requestId: 'h', client: 'c' },
        { type: 'policy.denied', requestId: 'i', client: 'c', decision: { allow: false, reasons: ['no'], policyVersion: 'v1' } },
        { type: 'token.issued', requestId: 'j', client: 'c' },
        { type: 'audit.refusals_suppressed', details: { source: 'client:c', count: 37, window_start: 0, window_end: 60_000, reasons: ['invalid_client'] } },
        { type: 'audit.refusals_suppressed', details: { source: 'address:10.0.0.1', count: 5, window_start: 0, window_end: 60_000, reasons: ['invalid_client'] } },
      ] as AuditEvent[]) {
        await f.recorder.record(event);
      }
      await f.db
        .insertInto('approval_requests')
        .values(['waiting', 'expired', 'approved'].map((id) => ({
          id,
          kind: 'token',
          status: id === 'approved' ? 'approved' : 'pending',
          requester: 'ana',
          requester_type: 'user',
          subject: 'ana',
          client_id: null,
          actors: '[]',
          content: '{}',
          digest: 'd',
          required_approvals: 1,
          approvals: 0,
          subject_approval: 'none',
          created_at: start,
          expires_at: id === 'expired' ? start + hour : start + 10 * hour,
          decided_at: null,
          consumed_at: null,
        })))
        .execute();
      f.clock.set(start + hour + 35 * 60_000);

      const activity = await readActivity(f.db, activityRange({ since: start, until: start + 3 * hour, bucketSeconds: 3600 }), f.clock.now());
      assert.deepEqual(activity.buckets, [start, start + hour, start + 2 * hour]);
      assert.deepEqual(activity.series, {
        issued: [3, 1, 0],
        refused: [4, 0, 0],
        policy_denied: [0, 1, 0],
        step_ups: [1, 0, 0],
        anomalies: [0, 1, 0],
        throttled: [0, 1, 0],
      });
      assert.deepEqual(activity.refusals_by_reason, [
        { reason: 'invalid_client', count: 2 },
        { reason: 'invalid_target', count: 1 },
        { reason: 'txn_reused', count: 1 },
      ]);
      assert.deepEqual(activity.refusals_suppressed, [0, 42, 0], 'the summaries count the refusals they stand for');
      assert.equal(activity.approvals_waiting, 1, 'the expired and the decided request do not wait');
      assert.equal(activity.seal.tree_size, first.length);
      assert.equal(activity.seal.unsealed, 6);
      assert.equal(activity.seal.lag_ms, 30 * 60_000, 'the oldest unsealed event is 30 minutes old');
      assert.equal(activity.seal.last_checkpoint_time, start + 60_000);

      await f.sealer.sealAll();
      const sealed = await readActivity(f.db, activityRange({ since: start, until: start + hour, bucketSeconds: 300 }), f.clock.now());
      assert.deepEqual(sealed.seal.unsealed, 0);
      assert.deepEqual(sealed.seal.lag_ms, 0);
      assert.equal(sealed.buckets.length, 12);
      assert.equal(sealed.series.issued[0], 3, 'the first five minutes');
      assert.equal(sealed.series.issued.reduce((a, b) => a + b), 3, 'the second hour is outside the range');
    });
  });
}
