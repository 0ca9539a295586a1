/**
 * Flights (src/storage/flight.ts): statements sent together, one round trip on PostgreSQL, with
 * transactions that are all or nothing and expectations the database checks. Every dialect.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { FlightRefused, type Flight } from '../../src/storage/flight.ts';
import { migrate, openStorage, type Storage } from '../../src/storage/database.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';

/** A migrated database, seen through a handle that logs each statement and whether it started a round trip. */
async function counted(dialect: TestDialect, t: TestContext): Promise<{ storage: Storage; log: { sql: string; roundTrip: boolean }[] }> {
  const database = await dialect.create(t);
  await migrate(database.storage);
  const log: { sql: string; roundTrip: boolean }[] = [];
  const storage = openStorage({ ...database.options, onQuery: (sql, roundTrip) => log.push({ sql, roundTrip }) });
  t.after(() => storage.close());
  return { storage, log };
}

const generation = (storage: Storage, name: string, value: number) => storage.db.insertInto('generations').values({ name, value });

async function names(storage: Storage): Promise<string[]> {
  return (await storage.db.selectFrom('generations').select('name').orderBy('name').execute()).map((r) => r.name);
}

for (const dialect of testDialects()) {
  describe(`a flight on ${dialect.name}`, () => {
    test('commits its statements as one transaction in one round trip, and answers each', async (t) => {
      const { storage, log } = await counted(dialect, t);
      const flight = storage.flight();
      const a = flight.run(generation(storage, 'a', 1));
      const b = flight.run(generation(storage, 'b', 2));
      const bumped = flight.run(storage.db.updateTable('generations').set({ value: 3 }).where('name', '=', 'a'), { rows: 1, otherwise: 'a_missing' });
      const read = flight.run(storage.db.selectFrom('generations').select(['name', 'value']).orderBy('name'));
      log.length = 0;
      await flight.commit();
      assert.deepEqual(
        log.map((l) => l.roundTrip),
        log.map((_, i) => i === 0),
        `one round trip: ${JSON.stringify(log)}`,
      );
      assert.equal(log[0]!.sql.toLowerCase().startsWith('begin'), true);
      assert.equal(log.at(-1)!.sql.toLowerCase(), 'commit');
      assert.equal(Number((await a).numAffectedRows), 1);
      assert.equal(Number((await b).numAffectedRows), 1);
      assert.equal(Number((await bumped).numAffectedRows), 1, 'an expectation met answers as its statement would');
      assert.deepEqual((await read).rows.map((r) => [r.name, Number(r.value)]), [['a', 3], ['b', 2]], 'a later statement sees the earlier ones');
    });

    test('writes nothing when an expectation is not met, and says which', async (t) => {
      const { storage } = await counted(dialect, t);
      const flight = storage.flight();
      const first = flight.run(generation(storage, 'a', 1));
      flight.run(storage.db.updateTable('generations').set({ value: 2 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'absent_row' });
      flight.run(generation(storage, 'b', 1));
      const error = await flight.commit().then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(error instanceof FlightRefused, String(error));
      assert.equal(error.reason, 'absent_row');
      await assert.rejects(first, FlightRefused, 'every statement of the refused transaction fails with it');
      assert.deepEqual(await names(storage), []);
    });

    test('writes nothing when a statement fails, and rejects with the database error', async (t) => {
      const { storage } = await counted(dialect, t);
      await generation(storage, 'taken', 1).execute();
      const flight = storage.flight();
      flight.run(generation(storage, 'a', 1));
      flight.run(generation(storage, 'taken', 2));
      flight.run(generation(storage, 'b', 1));
      await assert.rejects(flight.commit(), (e: { message?: string; code?: string }) => e.code === '23505' || /UNIQUE/.test(e.message ?? ''));
      assert.deepEqual(await names(storage), ['taken']);
      // The connection is usable afterwards: nothing is left of the failed transaction.
      const next = storage.flight();
      next.run(generation(storage, 'c', 1));
      await next.commit();
      assert.deepEqual(await names(storage), ['c', 'taken']);
    });

    test('sends reads together, each answered or failed on its own', async (t) => {
      const { storage, log } = await counted(dialect, t);
      await generation(storage, 'a', 7).execute();
      const flight = storage.flight();
      const a = flight.run(storage.db.selectFrom('generations').select('value').where('name', '=', 'a'));
      const broken = flight.run(storage.db.selectFrom('no_such_table' as 'generations').selectAll());
      const count = flight.run(storage.db.selectFrom('generations').select((eb) => eb.fn.countAll<number | string>().as('n')));
      log.length = 0;
      await flight.send();
      assert.deepEqual(
        log.map((l) => l.roundTrip),
        [true, false, false],
      );
      assert.equal(Number((await a).rows[0]!.value), 7);
      await assert.rejects(broken);
      assert.equal(Number((await count).rows[0]!.n), 1);
    });

    test('counts statements awaited one after another as a round trip each', async (t) => {
      const { storage, log } = await counted(dialect, t);
      log.length = 0;
      await generation(storage, 'a', 1).execute();
      await generation(storage, 'b', 1).execute();
      assert.deepEqual(
        log.map((l) => l.roundTrip),
        [true, true],
      );
    });

    test('sends a transaction refused for the retry\'s reason once more, as amended, and answers from that sending', async (t) => {
      const { storage } = await counted(dialect, t);
      await generation(storage, 'taken', 1).execute();
      const flight = storage.flight();
      const bet = flight.run(storage.db.insertInto('generations').values({ name: 'taken', value: 9 }).onConflict((oc) => oc.column('name').doNothing()), { rows: 1, otherwise: 'bet_lost' });
      const other = flight.run(generation(storage, 'other', 1));
      const written = flight.run(generation(storage, 'by_bet', 1));
      const amended: string[] = [];
      await flight.commit({
        reason: 'bet_lost',
        amend: async (replace) => {
          amended.push('amend');
          replace(bet, undefined);
          replace(written, generation(storage, 'by_retry', 2).compile());
        },
      });
      assert.deepEqual(amended, ['amend'], 'amended once');
      assert.deepEqual(await names(storage), ['by_retry', 'other', 'taken'], 'the first sending wrote nothing; the second wrote what was amended');
      assert.equal(Number((await other).numAffectedRows), 1);
      assert.deepEqual((await bet).rows, [], 'a dropped statement answers with no rows');
      assert.equal(Number((await written).numAffectedRows), 1, 'a replaced statement answers as its replacement');
    });

    test('does not retry a refusal for another reason, nor a second refusal', async (t) => {
      const { storage } = await counted(dialect, t);
      const other = storage.flight();
      other.run(storage.db.updateTable('generations').set({ value: 2 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'absent_row' });
      let amends = 0;
      const refusal = await other.commit({ reason: 'bet_lost', amend: async () => void amends++ }).catch((e: unknown) => e);
      assert.ok(refusal instanceof FlightRefused && refusal.reason === 'absent_row');
      assert.equal(amends, 0);

      const twice = storage.flight();
      const bet = twice.run(storage.db.updateTable('generations').set({ value: 2 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'bet_lost' });
      const pending = twice.run(storage.db.updateTable('generations').set({ value: 3 }).where('name', '=', 'still_absent'), { rows: 1, otherwise: 'still_absent' });
      const again = await twice.commit({ reason: 'bet_lost', amend: async (replace) => void (amends++, replace(bet, undefined)) }).catch((e: unknown) => e);
      assert.equal(amends, 1);
      assert.ok(again instanceof FlightRefused && again.reason === 'still_absent', 'the second sending\'s refusal is the answer');
      await assert.rejects(pending, FlightRefused);
    });

    test('checks a replacement\'s own expectation in the second sending, and never sends a third even for the retry\'s reason', async (t) => {
      const { storage } = await counted(dialect, t);
      await generation(storage, 'taken', 1).execute();
      const guardedBy = (name: string, otherwise: string) => ({ query: storage.db.updateTable('generations').set({ value: 7 }).where('name', '=', name).compile(), expect: { rows: 1, otherwise } });
      let amends = 0;

      const betOn = (flight: Flight) => flight.run(storage.db.insertInto('generations').values({ name: 'taken', value: 9 }).onConflict((oc) => oc.column('name').doNothing()), { rows: 1, otherwise: 'bet_lost' });
      const read = (flight: Flight) => flight.run(storage.db.selectFrom('generations').select('name').where('name', '=', 'taken'));

      const held = storage.flight();
      const bet = betOn(held);
      const probe = read(held);
      const write = held.run(generation(storage, 'kept', 1));
      const guard = guardedBy('taken', 'guard_failed');
      await held.commit({ reason: 'bet_lost', amend: async (replace) => void (amends++, replace(bet, undefined), replace(probe, guard.query, guard.expect)) });
      assert.equal(amends, 1);
      assert.equal(Number((await probe).numAffectedRows), 1, 'the guard held: it answers for the statement it replaced');
      assert.equal(Number((await write).numAffectedRows), 1);

      const lost = storage.flight();
      const again = betOn(lost);
      const probed = read(lost);
      const unwritten = lost.run(generation(storage, 'never', 1));
      const failing = guardedBy('gone', 'bet_lost');
      const refusal = await lost.commit({ reason: 'bet_lost', amend: async (replace) => void (amends++, replace(again, undefined), replace(probed, failing.query, failing.expect)) }).catch((e: unknown) => e);
      assert.equal(amends, 2, 'amended once more, not twice');
      assert.ok(refusal instanceof FlightRefused && refusal.reason === 'bet_lost', 'a second refusal for the same reason is the answer');
      await assert.rejects(unwritten, FlightRefused);
      assert.deepEqual(await names(storage), ['kept', 'taken'], 'the refused second sending wrote nothing');
    });

    test('answers every statement with the amend\'s error when amending fails, and writes nothing', async (t) => {
      const { storage } = await counted(dialect, t);
      const flight = storage.flight();
      const bet = flight.run(storage.db.updateTable('generations').set({ value: 2 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'bet_lost' });
      const write = flight.run(generation(storage, 'a', 1));
      await assert.rejects(flight.commit({ reason: 'bet_lost', amend: async () => { throw new Error('no key'); } }), /no key/);
      await assert.rejects(bet, /no key/);
      await assert.rejects(write, /no key/);
      assert.deepEqual(await names(storage), []);
    });

    test('refuses a statement added after it was sent, an expectation outside a transaction, and a second sending', async (t) => {
      const { storage } = await counted(dialect, t);
      const flight = storage.flight();
      flight.run(generation(storage, 'a', 1));
      await flight.commit();
      assert.throws(() => flight.run(generation(storage, 'b', 1)), /already sent/);
      await assert.rejects(flight.commit(), /sent once/);
      const reads = storage.flight();
      reads.run(storage.db.deleteFrom('generations'), { rows: 1, otherwise: 'one' });
      await assert.rejects(reads.send(), /needs a transaction/);
    });
  });
}

describe('a flight on the wire (PostgreSQL)', { skip: testDialects().every((d) => d.name !== 'postgres') && 'needs TEST_DATABASE_URL' }, () => {
  test('is written whole before the first answer comes back: BEGIN to COMMIT in one round trip', async (t) => {
    const dialect = testDialects().find((d) => d.name === 'postgres')!;
    const database = await dialect.create(t);
    await migrate(database.storage);
    const upstream = new URL(database.options.databaseUrl!);
    const proxy = await startTcpProxy({ t, host: upstream.hostname, port: Number(upstream.port || 5432) });
    const through = new URL(upstream);
    through.hostname = '127.0.0.1';
    through.port = String(proxy.port);
    const storage = openStorage({ ...database.options, databaseUrl: through.href });
    t.after(() => storage.close());
    await storage.db.selectFrom('generations').selectAll().execute(); // the connection is open and idle
    const before = proxy.sent().length;

    proxy.holdReplies();
    const flight = storage.flight();
    flight.run(generation(storage, 'a', 1));
    flight.run(storage.db.updateTable('generations').set({ value: 2 }).where('name', '=', 'a'), { rows: 1, otherwise: 'a_missing' });
    flight.run(generation(storage, 'b', 1));
    const committed = flight.commit();
    // With no answer delivered, the client has still written the whole transaction, COMMIT last.
    const deadline = Date.now() + 5000;
    while (!proxy.sent().subarray(before).includes('commit') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const written = proxy.sent().subarray(before).toString('latin1');
    proxy.releaseReplies();
    await committed;
    assert.ok(written.includes('begin') && written.includes('commit'), `written before any answer: ${JSON.stringify(written.replace(/[^ -~]/g, '.'))}`);
    assert.deepEqual(await names(storage), ['a', 'b']);
  });
});
