/**
 * The reads ahead of a person's issuance (src/risk/read-ahead.ts): what the decision reads about
 * the person travels in the flight that reads what names them (a code), and the decision then
 * finds it in memory. Every dialect.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { findUserByUsername } from '../../src/identity/users.ts';
import { assessRisk } from '../../src/risk/engine.ts';
import { issuanceReadAhead } from '../../src/risk/read-ahead.ts';
import { metricsRegistry } from '../../src/metrics.ts';
import { defaultRiskSettings } from '../../src/risk/settings.ts';
import { peopleFixture, type PeopleFixture } from '../identity/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { hit, nextUtc, tokyoDesk, useRiskSettings } from './fixture.ts';

for (const dialect of testDialects()) {
  describe(`reading ahead for a person's issuance on ${dialect.name}`, () => {
    /** Nina on the Tokyo desk with a verified KYC record; the clock on a Tuesday at 12:00 UTC, 21:00 in Tokyo: off hours at her desk. */
    async function fixture(t: Parameters<typeof peopleFixture>[0]): Promise<PeopleFixture & { nina: string }> {
      const f = await peopleFixture(t, { dialect });
      f.clock.set(nextUtc(f.clock.now(), 2, 12));
      await f.apply(tokyoDesk);
      await f.apply({ users: [{ username: 'nina', password: 'nina-staple-horse-93', desks: ['tokyo-fx'], kyc: { status: 'verified' } }] });
      // The KYC cache is loaded (its legal entities), as on a node that has served a request.
      await f.ctx.risk.kyc.get({ type: 'LegalEntity', id: 'none' });
      return Object.assign(f, { nina: (await findUserByUsername(f.ctx, 'nina'))!.id });
    }

    /** Reads ahead for `personId` in a flight of its own, as the code's read does. */
    async function readAhead(f: PeopleFixture, personId: string): Promise<number> {
      const flight = f.ctx.storage.flight();
      (await issuanceReadAhead(f.ctx))(flight, sql<string>`${personId}`);
      const statements = flight.size;
      await flight.send();
      return statements;
    }

    test('reads the KYC record and the desks of the person: the decision and the off_hours signal then find them without reading', async (t) => {
      const f = await fixture(t);
      useRiskSettings(f.ctx);
      assert.equal(await readAhead(f, f.nina), 2, 'two statements, sent with the code');
      // Changed behind the caches' backs (no generation bump): what was read ahead is what they answer.
      await f.ctx.storage.db.deleteFrom('kyc_records').where('principal_id', '=', f.nina).execute();
      await f.ctx.storage.db.updateTable('users').set({ desks: '[]' }).where('id', '=', f.nina).execute();
      assert.equal((await f.ctx.risk.kyc.get({ type: 'User', id: f.nina }))?.status, 'verified');
      const assessed = await assessRisk(f.ctx, { moment: 'issuance', principal: { type: 'User', id: f.nina }, clientId: 'trading-ui' });
      assert.equal(hit(assessed, 'off_hours')?.detail, '21:00 on ISO weekday 2 at desk tokyo-fx');
      // A KYC change (here: the reload it causes) drops what was read before it.
      f.ctx.risk.kyc.invalidate();
      assert.equal(await f.ctx.risk.kyc.get({ type: 'User', id: f.nina }), undefined);
    });

    test('reads no KYC record ahead on a node whose KYC cache has not loaded yet (its first load would drop it)', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ users: [{ username: 'nina', password: 'nina-staple-horse-93', kyc: { status: 'verified' } }] });
      const nina = (await findUserByUsername(f.ctx, 'nina'))!.id;
      assert.equal(await readAhead(f, nina), 0, 'no statement while the cache is unloaded');
      assert.equal((await f.ctx.risk.kyc.get({ type: 'User', id: nina }))?.status, 'verified', 'read when asked');
      assert.equal(await readAhead(f, nina), 1, 'read ahead once it has loaded');
    });

    test('keeps the absence of a KYC record, and caches nothing for a code that names no one', async (t) => {
      const f = await fixture(t);
      await f.ctx.storage.db.deleteFrom('kyc_records').where('principal_id', '=', f.nina).execute();
      await readAhead(f, f.nina);
      await f.ctx.storage.db.insertInto('kyc_records').values({ principal_type: 'User', principal_id: f.nina, status: 'frozen', previous_status: null, level: null, provider: null, review_due: null, evidence_ref: null, declared: null, version: 1, updated_at: f.clock.now(), updated_by: 'test' }).execute();
      assert.equal(await f.ctx.risk.kyc.get({ type: 'User', id: f.nina }), undefined, 'the absence read ahead answers');
      // A code nobody holds names no person: its reads answer a null person, and the caches are left as they were.
      const flight = f.ctx.storage.flight();
      const ahead = await issuanceReadAhead(f.ctx);
      ahead(flight, f.ctx.storage.db.selectFrom('authorization_codes').select('user_id').where('code_hash', '=', 'no-such-code').$asScalar());
      await flight.send();
      assert.equal(await f.ctx.risk.kyc.get({ type: 'User', id: f.nina }), undefined, "nina's absence, cached before, is still what answers");
      f.ctx.risk.kyc.invalidate();
      assert.equal((await f.ctx.risk.kyc.get({ type: 'User', id: f.nina }))?.status, 'frozen', 'until a reload reads her record');
    });

    test('counts a read ahead that failed, caching nothing from it, but not one whose transaction was refused', async (t) => {
      const f = await fixture(t);
      useRiskSettings(f.ctx);
      const failures = async () => {
        const metric = await metricsRegistry.getSingleMetric('clearance_read_ahead_failures_total')!.get();
        return Object.fromEntries(metric.values.map((v) => [String(v.labels.read), v.value]));
      };
      const before = await failures();
      const flight = f.ctx.storage.flight();
      (await issuanceReadAhead(f.ctx))(flight, sql<string>`(select no_such_column from users)`);
      await flight.send();
      const after = await failures();
      assert.equal((after.kyc ?? 0) - (before.kyc ?? 0), 1);
      assert.equal((after.desks ?? 0) - (before.desks ?? 0), 1);

      const refused = f.ctx.storage.flight();
      (await issuanceReadAhead(f.ctx))(refused, sql<string>`${f.nina}`);
      void refused.run(f.ctx.storage.db.updateTable('generations').set({ value: 1 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'code_used' });
      await assert.rejects(refused.commit());
      assert.deepEqual(await failures(), after, 'a refused transaction read nothing: no failure');
    });

    test('reads no desks when off_hours does not run at issuance', async (t) => {
      const f = await fixture(t);
      useRiskSettings(f.ctx, { weights: { ...defaultRiskSettings.weights, off_hours: 0 } });
      assert.equal(await readAhead(f, f.nina), 1, 'the KYC record only');
      useRiskSettings(f.ctx, { enabled: false });
      assert.equal(await readAhead(f, f.nina), 1);
    });
  });
}
