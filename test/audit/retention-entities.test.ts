import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseRetention, planPrune, prune, RetentionError, withEntityParties } from '../../src/audit/retention.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { cliWorkspace } from '../helpers/cli.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';
import { auditFixture, origin, sampleEvent } from './helpers.ts';

// Retention per legal entity (docs/privacy.md "Retention per jurisdiction"): `lei:LEI=PERIOD` keeps
// a firm's events longer, and the log still only ever loses a whole sealed prefix.

const day = 86_400_000;
const brokerLei = '5493001KJTIIGC8Y1R12';
/** A LEI with a valid checksum (ISO 17442) that no legal entity here has. */
const strangerLei = '529900T8BM49AURSDO55';
const broker = { lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'rates', name: 'Rates' }] };

test('parses lei:LEI=PERIOD beside the types, and refuses an invalid LEI', () => {
  assert.deepEqual(parseRetention(`*=30d,lei:${brokerLei}=10y`), { types: {}, default: 30 * day, entities: { [brokerLei]: 10 * 365 * day } });
  assert.deepEqual(parseRetention(`lei:${brokerLei}=7y`), { types: {}, entities: { [brokerLei]: 7 * 365 * day } });
  assert.throws(() => parseRetention('*=30d,lei:5493001KJTIIGC8Y1R13=10y'), RetentionError);
  assert.throws(() => parseRetention('*=30d,lei:short=10y'), RetentionError);
});

test("resolves a firm's parties: its clients by owner_lei and its people by their desks", async (t) => {
  const { ctx } = await testContext({ t });
  await applyDocument(ctx, {
    regions: [{ id: 'eu' }],
    legal_entities: [{ lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'rates', name: 'Rates' }] }],
    clients: [
      { client_id: 'broker-oms', kind: 'service', owner_lei: brokerLei, grant_types: ['client_credentials'] },
      { client_id: 'someone-else', kind: 'service', grant_types: ['client_credentials'] },
    ],
  });
  const { id } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'bob', desks: ['rates'] }, { keep: true }));
  await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), { username: 'carol' }, { keep: true }));
  const policy = await withEntityParties(ctx, parseRetention(`*=30d,lei:${brokerLei}=10y`));
  assert.deepEqual(policy.parties, { [brokerLei]: ['broker-oms', id] });
  assert.equal(await withEntityParties(ctx, parseRetention('*=30d')).then((p) => p.parties), undefined);
});

test('refuses a LEI with a valid checksum that is no legal entity here, naming it', async (t) => {
  const { ctx } = await testContext({ t });
  await applyDocument(ctx, { regions: [{ id: 'eu' }], legal_entities: [broker] });
  await assert.rejects(withEntityParties(ctx, parseRetention(`*=30d,lei:${brokerLei}=10y,lei:${strangerLei}=7y`)), (error: unknown) => {
    assert.ok(error instanceof RetentionError);
    assert.match(error.message, new RegExp(`lei:${strangerLei}: not a legal entity of this instance`));
    assert.doesNotMatch(error.message, new RegExp(brokerLei));
    return true;
  });
});

test('clearance audit prune exits 2 on an unknown LEI, saying so, and runs with a known one', async (t) => {
  const { dir, run } = cliWorkspace(t, 'clearance-cli-retention-');
  const file = join(dir, 'entities.json');
  writeFileSync(file, JSON.stringify({ regions: [{ id: 'eu' }], legal_entities: [broker] }));
  const applied = await run('apply', '-f', file);
  assert.equal(applied.code, 0, applied.err);
  const unknown = await run('audit', 'prune', '--retention', `*=1d,lei:${strangerLei}=7y`, '--dry-run');
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /not a legal entity of this instance/);
  const known = await run('audit', 'prune', '--retention', `*=1d,lei:${brokerLei}=7y`, '--dry-run');
  assert.equal(known.code, 0, known.err);
  assert.match(known.out, /nothing to prune/);
});

for (const dialect of testDialects()) {
  describe(`retention per legal entity on ${dialect.name}`, () => {
    test("keeps a firm's events longer by stopping the prefix before the first of them, and the rest still verifies", async (t) => {
      const f = await auditFixture(dialect, t);
      // Leaf 300 is the firm's (its client acted); everything else is anyone's.
      const make = (i: number) => (i === 300 ? { ...sampleEvent(i), client: 'broker-oms', actor: 'broker-oms' } : sampleEvent(i));
      await f.fill(600, make);
      f.clock.advance(100 * day);
      await f.fill(600);
      const key = await f.keys.signingKey(origin);
      const jurisdiction = parseRetention('*=30d');
      assert.equal((await planPrune(f.db, jurisdiction, f.clock.now())).pruneBefore, 512, 'without the firm: 600 expired, down to a tile');

      const withFirm = { ...parseRetention(`*=30d,lei:${brokerLei}=10y`), parties: { [brokerLei]: ['broker-oms'] } };
      const result = await prune(f.db, withFirm, key, f.clock.now());
      assert.equal(result.pruneBefore, 256, "the cut stops at the tile before the firm's event");
      const kept = await f.db.selectFrom('audit_events').select('client').where('client', '=', 'broker-oms').execute();
      assert.equal(kept.length, 1, "the firm's event is still there");
      const record = await f.db.selectFrom('audit_prunings').select('policy').executeTakeFirstOrThrow();
      assert.deepEqual(JSON.parse(record.policy), { types: {}, default: 30 * day, entities: { [brokerLei]: 10 * 365 * day } }, 'the signed policy names periods, never the parties');
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
      assert.equal(report.prunedBefore, 256);

      // Once the firm's period is over too, the prefix goes on as before.
      f.clock.advance(11 * 365 * day);
      assert.equal((await planPrune(f.db, withFirm, f.clock.now())).pruneBefore, 1024);
    });

    test("keeps events whose actor is the firm's person, and events whose details name its LEI", async (t) => {
      const f = await auditFixture(dialect, t);
      // Leaf 300: the firm's person only acted (another client, another subject). Leaf 700: an
      // event of no party of the firm's whose details name its LEI (an address-book destination's).
      const make = (i: number) =>
        i === 300 ? { ...sampleEvent(i), actor: 'person-of-broker' } : i === 700 ? { ...sampleEvent(i), details: { lei: brokerLei, destination: 'dst-1' } } : sampleEvent(i);
      await f.fill(1200, make);
      f.clock.advance(100 * day);
      await f.fill(300);
      const now = f.clock.now();
      assert.equal((await planPrune(f.db, parseRetention('*=30d'), now)).pruneBefore, 1024, 'without the firm: 1200 expired, down to a tile');
      const firm = parseRetention(`*=30d,lei:${brokerLei}=10y`);
      assert.equal((await planPrune(f.db, { ...firm, parties: { [brokerLei]: ['person-of-broker'] } }, now)).pruneBefore, 256, 'the actor is a party: the cut stops before leaf 300');
      assert.equal((await planPrune(f.db, { ...firm, parties: { [brokerLei]: [] } }, now)).pruneBefore, 512, 'no party, but leaf 700 names the LEI');
      for (const member of ['owner_lei', 'producer_lei']) {
        const g = await auditFixture(dialect, t);
        await g.fill(600, (i) => (i === 300 ? { ...sampleEvent(i), details: { [member]: brokerLei } } : sampleEvent(i)));
        g.clock.advance(100 * day);
        await g.fill(300);
        assert.equal((await planPrune(g.db, { ...firm, parties: { [brokerLei]: [] } }, g.clock.now())).pruneBefore, 256, member);
      }
      const result = await prune(f.db, { ...firm, parties: { [brokerLei]: [] } }, await f.keys.signingKey(origin), now);
      assert.equal(result.pruneBefore, 512);
      const report = await f.verify();
      assert.equal(report.ok, true, report.problem?.message);
    });
  });
}
