import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseRetention, planPrune, prune, RetentionError, withEntityParties } from '../../src/audit/retention.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';
import { auditFixture, origin, sampleEvent } from './helpers.ts';

// Retention per legal entity (docs/privacy.md "Retention per jurisdiction"): `lei:LEI=PERIOD` keeps
// a firm's events longer, and the log still only ever loses a whole sealed prefix.

const day = 86_400_000;
const brokerLei = '5493001KJTIIGC8Y1R12';

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
  });
}
