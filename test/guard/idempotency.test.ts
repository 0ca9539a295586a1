import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createIdempotencyGuard,
  DuplicateInstructionError,
  fingerprintOf,
  GuardError,
  MemoryIdempotencyStore,
  SqliteIdempotencyStore,
  type IdempotencyStore,
} from 'clearance/guard';

// The idempotency guard keyed on txn + action: one instruction runs once, whatever arrives twice,
// on both stores (the same suite), plus what only the SQLite store can do (survive a restart,
// share a file between processes).

const at = Date.parse('2026-11-02T09:30:00Z');

function sqliteFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'clearance-guard-idem-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'instructions.db');
}

const stores: [string, (t: TestContext) => IdempotencyStore][] = [
  ['in memory', () => new MemoryIdempotencyStore()],
  [
    'in SQLite',
    (t) => {
      const store = new SqliteIdempotencyStore(sqliteFile(t));
      t.after(() => store.close());
      return store;
    },
  ],
];

async function duplicate(promise: Promise<unknown>, error = 'duplicate_instruction'): Promise<DuplicateInstructionError> {
  try {
    await promise;
  } catch (caught) {
    assert.ok(caught instanceof DuplicateInstructionError, String(caught));
    assert.equal(caught.status, 409);
    assert.equal(caught.error, error);
    return caught;
  }
  assert.fail('the instruction ran again');
}

for (const [name, makeStore] of stores) {
  describe(`the idempotency guard ${name}`, () => {
    test('runs the first instruction and refuses a second identical one with the first record, without running it', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t), now: () => at });
      let runs = 0;
      const submit = () => idem.once({ txn: 'txn-1', action: 'settlement:submit' }, async () => ({ settlement_id: `stl-${++runs}` }));
      assert.deepEqual(await submit(), { settlement_id: 'stl-1' });
      const error = await duplicate(submit());
      assert.equal(runs, 1);
      assert.deepEqual(error.record, {
        txn: 'txn-1',
        action: 'settlement:submit',
        state: 'done',
        startedAt: '2026-11-02T09:30:00.000Z',
        processedAt: '2026-11-02T09:30:00.000Z',
        result: { settlement_id: 'stl-1' },
      });
      assert.deepEqual(error.toJSON().instruction, error.record, 'the 409 body carries the first record');
      assert.deepEqual(await idem.get('txn-1', 'settlement:submit'), error.record);
    });

    test('keys on txn and action: another action or another txn is another instruction', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t) });
      assert.equal(await idem.once({ txn: 'txn-1', action: 'settlement:submit' }, async () => 'a'), 'a');
      assert.equal(await idem.once({ txn: 'txn-1', action: 'settlement:amend' }, async () => 'b'), 'b');
      assert.equal(await idem.once({ txn: 'txn-2', action: 'settlement:submit' }, async () => 'c'), 'c');
    });

    test('runs exactly one of two concurrent identical instructions; the other is refused while the first is processing', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t) });
      let runs = 0;
      const work = async () => {
        runs++;
        await sleep(30);
        return { settlement_id: 'stl-1' };
      };
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => idem.once({ txn: 'txn-c', action: 'settlement:submit' }, work)));
      assert.equal(runs, 1);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const refusals = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as DuplicateInstructionError);
      assert.equal(refusals.length, 4);
      for (const refusal of refusals) {
        assert.equal(refusal.error, 'duplicate_instruction');
        assert.equal(refusal.record.state, 'processing');
        assert.equal(refusal.record.processedAt, undefined);
      }
    });

    test('releases the claim when the work fails, so the same instruction can be retried', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t) });
      await assert.rejects(
        idem.once({ txn: 'txn-f', action: 'settlement:submit' }, async () => {
          throw new Error('custodian unreachable');
        }),
        /custodian unreachable/,
      );
      assert.equal(await idem.get('txn-f', 'settlement:submit'), undefined);
      assert.deepEqual(await idem.once({ txn: 'txn-f', action: 'settlement:submit' }, async () => ({ ok: true })), { ok: true });
      await duplicate(idem.once({ txn: 'txn-f', action: 'settlement:submit' }, async () => ({ ok: true })));
    });

    test('refuses the same txn and action with another fingerprint as a conflict, and tells it nothing of the first result', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t) });
      const instruction = { isin: 'XS0000000001', quantity: 100, account: 'ACC-1' };
      await idem.once({ txn: 'txn-p', action: 'settlement:submit', fingerprint: fingerprintOf(instruction) }, async () => ({ settlement_id: 'stl-9' }));
      const reordered = { account: 'ACC-1', quantity: 100, isin: 'XS0000000001' };
      await duplicate(idem.once({ txn: 'txn-p', action: 'settlement:submit', fingerprint: fingerprintOf(reordered) }, async () => 'no'));
      const conflict = await duplicate(idem.once({ txn: 'txn-p', action: 'settlement:submit', fingerprint: fingerprintOf({ ...instruction, quantity: 1000 }) }, async () => 'no'), 'instruction_conflict');
      assert.equal(conflict.toJSON().instruction.result, undefined);
      await duplicate(idem.once({ txn: 'txn-p', action: 'settlement:submit' }, async () => 'no'), 'instruction_conflict');
    });

    test('refuses an instruction whose token carries no txn, without running it', async (t) => {
      const idem = createIdempotencyGuard({ store: makeStore(t) });
      let ran = false;
      for (const txn of [undefined, '']) {
        await assert.rejects(
          idem.once({ txn, action: 'settlement:submit' }, async () => (ran = true)),
          (error: unknown) => error instanceof GuardError && error.status === 403 && error.error === 'txn_required',
        );
      }
      assert.equal(ran, false);
    });
  });
}

describe('the SQLite idempotency store', () => {
  test('keeps its records when the resource server restarts (the file is reopened)', async (t) => {
    const file = sqliteFile(t);
    const first = new SqliteIdempotencyStore(file);
    await createIdempotencyGuard({ store: first }).once({ txn: 'txn-r', action: 'settlement:submit' }, async () => ({ settlement_id: 'stl-1' }));
    first.close();

    const reopened = new SqliteIdempotencyStore(file);
    t.after(() => reopened.close());
    let ran = false;
    const error = await duplicate(createIdempotencyGuard({ store: reopened }).once({ txn: 'txn-r', action: 'settlement:submit' }, async () => (ran = true)));
    assert.equal(ran, false);
    assert.deepEqual(error.record.result, { settlement_id: 'stl-1' });
  });

  test('lets exactly one of two connections to the same file claim an instruction, as two processes would share it', async (t) => {
    const file = sqliteFile(t);
    const a = new SqliteIdempotencyStore(file);
    const b = new SqliteIdempotencyStore(file);
    t.after(() => (a.close(), b.close()));
    let runs = 0;
    const work = async () => {
      runs++;
      await sleep(20);
      return 'done';
    };
    const results = await Promise.allSettled([
      createIdempotencyGuard({ store: a }).once({ txn: 'txn-x', action: 'settlement:submit' }, work),
      createIdempotencyGuard({ store: b }).once({ txn: 'txn-x', action: 'settlement:submit' }, work),
    ]);
    assert.equal(runs, 1);
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    assert.equal((await b.get('txn-x', 'settlement:submit'))?.state, 'done');
  });
});
