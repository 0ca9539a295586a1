import assert from 'node:assert/strict';
import { FlightRefused } from '../../src/storage/flight.ts';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { riskAuditDetail, riskContextValue, scoreRisk, stricterOutcome } from '../../src/risk/assessment.ts';
import { assessRisk, observeRisk, type RiskSignal } from '../../src/risk/engine.ts';
import { networkOf } from '../../src/risk/network.ts';
import { defaultRiskSettings, type RiskSettings } from '../../src/risk/settings.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

const settings = (changes: Partial<RiskSettings> = {}): RiskSettings => ({ ...defaultRiskSettings, ...changes });

describe('scoring a risk assessment', () => {
  test('sums the points of the fired signals, capped at 100, and reads level and outcome off the thresholds', () => {
    assert.deepEqual(scoreRisk([], settings()), { score: 0, level: 'low', outcome: 'allow', signals: [] });
    const medium = scoreRisk([{ signal: 'new_device', points: 25 }, { signal: 'new_network', points: 15 }], settings());
    assert.equal(medium.score, 40);
    assert.equal(medium.level, 'medium');
    assert.equal(medium.outcome, 'allow');
    const high = scoreRisk([{ signal: 'new_device', points: 25 }, { signal: 'off_hours', points: 20 }, { signal: 'recent_failures', points: 20 }], settings());
    assert.equal(high.level, 'high');
    assert.equal(high.outcome, 'step_up');
    const capped = scoreRisk([{ signal: 'concurrent_networks', points: 90 }, { signal: 'velocity', points: 30 }], settings());
    assert.equal(capped.score, 100);
    assert.equal(capped.outcome, 'deny');
  });

  test('lets the stricter of two outcomes win, whichever comes first', () => {
    assert.equal(stricterOutcome('allow', 'deny'), 'deny');
    assert.equal(stricterOutcome('deny', 'allow'), 'deny');
    assert.equal(stricterOutcome('step_up', 'allow'), 'step_up');
    assert.equal(stricterOutcome('allow', 'allow'), 'allow');
  });

  test("gives Cedar the score, level and signal names, and the audit event each signal's points and reason", () => {
    const assessment = scoreRisk([{ signal: 'new_device', points: 25, detail: 'device never seen for this account' }], settings());
    assert.deepEqual(riskContextValue(assessment), { score: 25, level: 'low', signals: ['new_device'] });
    assert.deepEqual(riskAuditDetail(assessment), { score: 25, level: 'low', outcome: 'allow', signals: [{ signal: 'new_device', points: 25, detail: 'device never seen for this account' }] });
  });
});

describe('the networks the signals remember', () => {
  test('are IPv4 /24 and IPv6 /48 prefixes, an IPv4-mapped address as IPv4', () => {
    assert.equal(networkOf('192.0.2.17'), '192.0.2.0/24');
    assert.equal(networkOf('::ffff:192.0.2.200'), '192.0.2.0/24');
    assert.equal(networkOf('2001:db8:1234:5678::1'), '2001:db8:1234::/48');
    assert.equal(networkOf('2001:db8:1234:ffff:1::9'), '2001:db8:1234::/48');
  });

  test('are the same when asked again, after more addresses than the process remembers', () => {
    for (let i = 0; i < 5000; i++) assert.equal(networkOf(`10.${i >> 8}.${i & 255}.7`), `10.${i >> 8}.${i & 255}.0/24`);
    assert.equal(networkOf('192.0.2.17'), '192.0.2.0/24');
    assert.equal(networkOf('10.0.1.7'), '10.0.1.0/24');
  });
});

for (const dialect of testDialects()) {
  describe(`the risk engine on ${dialect.name}`, () => {
    const newNetwork: RiskSignal = {
      name: 'new_network',
      moments: ['issuance'],
      async evaluate(ctx, facts) {
        const seen = await ctx.risk.sightings.lastSeen(facts.principal, 'network', networkOf(facts.address!));
        return seen === undefined ? { detail: 'network never seen' } : undefined;
      },
      async observe(ctx, facts) {
        await ctx.risk.sightings.note(facts.principal, 'network', networkOf(facts.address!));
      },
    };
    const halfDevice: RiskSignal = { name: 'new_device', moments: ['login'], evaluate: () => ({ strength: 0.5 }) };

    test('runs the signals of the moment, weighs them, and remembers what it saw after a success', async (t) => {
      const { ctx } = await testContext({ t, dialect, risk: 'on' });
      const facts = { moment: 'issuance', principal: { type: 'Client', id: 'svc' }, address: '198.51.100.7' } as const;
      const first = await assessRisk(ctx, facts, [newNetwork, halfDevice]);
      assert.deepEqual(first.signals, [{ signal: 'new_network', points: 15, detail: 'network never seen' }]);
      await observeRisk(ctx, facts, [newNetwork, halfDevice]);
      assert.deepEqual((await assessRisk(ctx, { ...facts, address: '198.51.100.99' }, [newNetwork])).signals, []);
      assert.equal((await assessRisk(ctx, { ...facts, address: '203.0.113.1' }, [newNetwork])).score, 15);
      const login = await assessRisk(ctx, { moment: 'login', principal: { type: 'User', id: 'u1' } }, [newNetwork, halfDevice]);
      assert.deepEqual(login.signals, [{ signal: 'new_device', points: 13 }]);
    });

    test('shares sightings between nodes through the database, and forgets old ones', async (t) => {
      const { ctx, database, clock } = await testContext({ t, dialect, risk: 'on' });
      const other = new (ctx.risk.sightings.constructor as typeof import('../../src/risk/sightings.ts').SightingStore)(database.storage.db, clock);
      const alice = { type: 'User', id: 'alice' } as const;
      assert.equal(await other.lastSeen(alice, 'device', 'd-1'), undefined);
      await ctx.risk.sightings.note(alice, 'device', 'd-1');
      assert.equal(await other.lastSeen(alice, 'device', 'd-1'), clock.now());
      clock.advance(2 * 3600_000);
      await ctx.risk.sightings.note(alice, 'device', 'd-1');
      assert.equal(await other.lastSeen(alice, 'device', 'd-1'), clock.now(), 'the refresh after an hour reached the database');
      assert.deepEqual(await other.values(alice, 'device'), ['d-1']);
      assert.equal(await other.prune(clock.now() + 1), 1);
      assert.equal(await other.lastSeen(alice, 'device', 'd-1'), undefined);
    });

    test('reads ahead, by username, what a sign-in will ask: found sightings are cached, absences answer once and only briefly', async (t) => {
      const { ctx, database, clock } = await testContext({ t, dialect, risk: 'on' });
      const id = randomUUID();
      const now = clock.now();
      await database.storage.db
        .insertInto('users')
        .values({ id, username: 'carol', name: null, email: null, password_hash: null, desks: '[]', roles: '[]', attributes: '{}', status: 'active', failed_logins: 0, created_at: now, updated_at: now, last_login_at: null, locked_at: null })
        .execute();
      const carol = { type: 'User', id } as const;
      const other = new (ctx.risk.sightings.constructor as typeof import('../../src/risk/sightings.ts').SightingStore)(database.storage.db, clock);
      await other.note(carol, 'network', '198.51.100.0/24');
      clock.advance(1000);

      const store = ctx.risk.sightings;
      const readAhead = async () => {
        const flight = database.storage.flight();
        store.readAheadForUsername(flight, 'carol', [{ kind: 'network', value: '198.51.100.0/24' }, { kind: 'device', value: 'd-9' }], ['device', 'network']);
        await flight.send();
        await new Promise((resolve) => setImmediate(resolve));
      };
      await readAhead();
      // What the read found stands in for the reads; what it did not find answers once.
      await database.storage.db.deleteFrom('risk_sightings').execute();
      await other.note(carol, 'device', 'd-9');
      assert.equal(await store.lastSeen(carol, 'network', '198.51.100.0/24'), now, 'the sighting read ahead is in the cache');
      assert.equal(await store.anySeen(carol, 'network'), true);
      assert.equal(await store.lastSeen(carol, 'device', 'd-9'), undefined, 'the absence read ahead answers the first read');
      assert.equal(await store.lastSeen(carol, 'device', 'd-9'), clock.now(), 'and only the first: the next one reads the database');

      await readAhead();
      clock.advance(1001);
      assert.equal(await store.lastSeen(carol, 'device', 'd-9'), clock.now() - 1001, 'an absence older than a second is not trusted: the database is read');

      const flight = database.storage.flight();
      store.readAheadForUsername(flight, 'nobody', [{ kind: 'device', value: 'd-9' }], ['device']);
      await flight.send();
      assert.equal(await store.lastSeen({ type: 'User', id: 'nobody' }, 'device', 'd-9'), undefined, 'an unknown username reads nothing');
    });

    test('writes the notes of one turn in one statement, each as if noted alone', async (t) => {
      const { ctx, database, clock } = await testContext({ t, dialect, risk: 'on' });
      const dave = { type: 'User', id: 'dave' } as const;
      await ctx.risk.sightings.note(dave, 'device', 'd-1');
      clock.advance(2 * 3600_000);
      await Promise.all([ctx.risk.sightings.note(dave, 'device', 'd-1'), ctx.risk.sightings.note(dave, 'network', '203.0.113.0/24'), ctx.risk.sightings.note(dave, 'device', 'd-1')]);
      const rows = await database.storage.db.selectFrom('risk_sightings').select(['kind', 'value', 'first_seen', 'last_seen']).where('principal_id', '=', 'dave').orderBy('kind').execute();
      assert.deepEqual(
        rows.map((r) => [r.kind, r.value, Number(r.first_seen), Number(r.last_seen)]),
        [
          ['device', 'd-1', clock.now() - 2 * 3600_000, clock.now()],
          ['network', '203.0.113.0/24', clock.now(), clock.now()],
        ],
      );
    });

    test("writes the notes for a flight in that flight's transaction: remembered once it committed, and not at all when it was refused", async (t) => {
      const { ctx, database, clock } = await testContext({ t, dialect, risk: 'on' });
      const erin = { type: 'User', id: 'erin' } as const;
      const db = database.storage.db;
      const sightings = () => db.selectFrom('risk_sightings').select(['kind', 'value']).where('principal_id', '=', 'erin').orderBy('kind').execute();

      const refused = database.storage.flight();
      const lost = ctx.risk.sightings.notesFor(refused);
      await lost.note(erin, 'device', 'd-1');
      const lostLanding = lost.land();
      void refused.run(db.updateTable('generations').set({ value: 1 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'absent_row' });
      await assert.rejects(refused.commit(), FlightRefused);
      await assert.rejects(lostLanding, FlightRefused);
      assert.deepEqual(await sightings(), [], 'nothing of a refused transaction');
      assert.equal(await ctx.risk.sightings.anySeen(erin, 'device'), false, 'nor in the cache');

      const flight = database.storage.flight();
      const notes = ctx.risk.sightings.notesFor(flight);
      await Promise.all([notes.note(erin, 'device', 'd-1'), notes.note(erin, 'network', '203.0.113.0/24'), notes.note(erin, 'device', 'd-1')]);
      const landing = notes.land();
      assert.equal(flight.size, 1, 'one statement for every note');
      await flight.commit();
      await landing;
      assert.deepEqual((await sightings()).map((r) => [r.kind, r.value]), [['device', 'd-1'], ['network', '203.0.113.0/24']]);
      await db.deleteFrom('risk_sightings').execute();
      assert.equal(await ctx.risk.sightings.lastSeen(erin, 'device', 'd-1'), clock.now(), 'remembered in the cache once committed');

      const again = database.storage.flight();
      const fresh = ctx.risk.sightings.notesFor(again);
      await fresh.note(erin, 'device', 'd-1');
      await fresh.land();
      assert.equal(again.size, 0, 'a sighting noted within the hour writes nothing');
    });

    test('assesses nothing when switched off', async (t) => {
      const { ctx } = await testContext({ t, dialect, risk: 'on' });
      ctx.risk.settings = { get: async () => settings({ enabled: false }) };
      const quiet = await assessRisk(ctx, { moment: 'issuance', principal: { type: 'Client', id: 'svc' }, address: '198.51.100.7' }, [newNetwork]);
      assert.deepEqual(quiet, { score: 0, level: 'low', outcome: 'allow', signals: [] });
    });
  });
}
