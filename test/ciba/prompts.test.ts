import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Transaction } from 'kysely';
import { promptRefusal, quietAfterDenialsMs, quietUntil, recentDenialsWindowMs } from '../../src/ciba/prompts.ts';
import type { Database } from '../../src/storage/schema.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

describe('the quiet period after denials', () => {
  const minute = 60_000;

  test('begins at the third denial within ten minutes and lasts thirty minutes', () => {
    const denials = [0, 4 * minute, 8 * minute];
    assert.equal(quietUntil(denials, 9 * minute), 8 * minute + quietAfterDenialsMs);
    assert.equal(quietUntil(denials, 8 * minute + quietAfterDenialsMs - 1), 8 * minute + quietAfterDenialsMs);
    assert.equal(quietUntil(denials, 8 * minute + quietAfterDenialsMs), undefined);
  });

  test('does not begin with two denials, or three spread over more than ten minutes', () => {
    assert.equal(quietUntil([0, minute], 2 * minute), undefined);
    assert.equal(quietUntil([0, 5 * minute, recentDenialsWindowMs + 1], 12 * minute), undefined);
  });

  test('is decided by the latest run of three', () => {
    const denials = [0, minute, 2 * minute, 20 * minute, 21 * minute, 22 * minute];
    assert.equal(quietUntil(denials, 23 * minute), 22 * minute + quietAfterDenialsMs);
  });
});

for (const dialect of testDialects()) {
  describe(`the open requests of one client for one person on ${dialect.name}`, () => {
    test('are counted one opening at a time: a second opening waits for the first to commit, then sees it', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const now = clock.now();
      const opening = async (trx: Transaction<Database>, id: string) => {
        await trx.insertInto('approval_requests').values(pendingRow(id, now)).execute();
        return promptRefusal(trx, { clientId: 'desk-ciba', subject: 'person-1', requestId: id, now }, 1);
      };
      let asked!: () => void;
      const firstAsked = new Promise<void>((resolve) => (asked = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const first = ctx.storage.db.transaction().execute(async (trx) => {
        const refusal = await opening(trx, 'a');
        asked();
        await released;
        return refusal;
      });
      await firstAsked;
      const second = ctx.storage.db.transaction().execute((trx) => opening(trx, 'b'));
      // The first holds its transaction open a while: the second must not decide meanwhile.
      setTimeout(release, 300);
      assert.equal(await first, undefined);
      assert.deepEqual(await second, { reason: 'ciba_open_limit', open: 1, limit: 1 });
    });
  });
}

function pendingRow(id: string, now: number): Database['approval_requests'] {
  return {
    id,
    kind: 'ciba',
    status: 'pending',
    requester: 'desk-ciba',
    requester_type: 'client',
    subject: 'person-1',
    client_id: 'desk-ciba',
    actors: '[]',
    content: JSON.stringify({ request_id: id }),
    digest: randomUUID(),
    required_approvals: 0,
    approvals: 0,
    subject_approval: 'pending',
    created_at: now,
    expires_at: now + 600_000,
    decided_at: null,
    consumed_at: null,
  };
}
