import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pseudonymOf } from '../../src/audit/personal-data.ts';
import { pseudonymKeyOf, SubjectKeys } from '../../src/audit/subject-keys.ts';
import { buildApp } from '../../src/http/app.ts';
import { pairwiseKey, pairwiseSubject } from '../../src/identity/pairwise.ts';
import { keyringOf, masterKeyId } from '../../src/keys/keyring.ts';
import { MasterKeyError } from '../../src/keys/master-key.ts';
import { rootRow } from '../../src/keys/master-key-state.ts';
import { rewrap, RewrapError } from '../../src/keys/rewrap.ts';
import { open, sealedKeyIdOf } from '../../src/keys/sealed-box.ts';
import { basicAuthorization, ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { newKey, oldKey, openEverything, rewrapFixture, sealedValues, sealEverything, type RewrapFixture } from './rewrap-fixture.ts';

const oldId = masterKeyId(Buffer.from(oldKey, 'hex'));
const newId = masterKeyId(Buffer.from(newKey, 'hex'));
const rotating = { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey };

/** What a person and a relying party are known by: it must not change when the master key does. */
function identifiers(f: RewrapFixture, ctx: Parameters<RewrapFixture['masterOf']>[0]) {
  const master = f.masterOf(ctx);
  return {
    pairwise: pairwiseSubject(pairwiseKey(master), 'rp.example.com', 'user-1'),
    pseudonym: pseudonymOf(pseudonymKeyOf(master), 'source_address', '203.0.113.9'),
  };
}

async function startRefused(f: RewrapFixture, env: NodeJS.ProcessEnv): Promise<MasterKeyError> {
  const error = await f.node(env).then(
    () => assert.fail('started'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof MasterKeyError, String(error));
  assert.ok(!error.message.includes(oldKey) && !error.message.includes(newKey), 'a key is never echoed');
  return error;
}

for (const dialect of testDialects()) {
  describe(`clearance keys rewrap on ${dialect.name}`, () => {
    test('re-seals every sealed secret with the new key: the new key alone then opens everything, identifiers stay, the old key alone is refused', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const sealed = await sealEverything(f);
      const before = identifiers(f, f.ctx);
      const values = await sealedValues(f.ctx);
      assert.ok(values.every((v) => v.keyId === oldId || v.keyId === 'v1'), 'everything sealed with the old key');
      assert.deepEqual(new Set(values.map((v) => v.column)).size, 12, 'a value in every sealed column');

      // Before the rewrap, the new key alone is not this database's key.
      assert.match((await startRefused(f, { CLEARANCE_MASTER_KEY: newKey })).message, new RegExp(`sealed with master key ${oldId}.*CLEARANCE_PREVIOUS_MASTER_KEY`));

      const both = await f.node(rotating);
      assert.deepEqual(identifiers(f, both), before);
      const report = await rewrap(both, f.masterOf(both), { actor: 'cli:test', settleMs: 0 });
      assert.equal(report.fromKeyId, oldId);
      assert.equal(report.toKeyId, newId);
      assert.equal(report.resumed, false);
      // Every value re-sealed once; bob's pending enrolment (bound to his browser session) removed.
      const pending = values.filter((v) => v.column === 'totp_factors.secret').length - 1;
      assert.equal(Object.values(report.resealed).reduce((a, b) => a + b, 0), values.length - pending);
      assert.deepEqual(report.deleted, { 'totp_factors.secret': pending });
      assert.equal(await both.storage.db.selectFrom('totp_factors').select('id').where('id', '=', sealed.pendingTotpId).executeTakeFirst(), undefined);
      assert.ok((await sealedValues(both)).every((v) => v.keyId === newId), 'every box names the new key');
      assert.equal((await rootRow(both.storage.db))!.master_key_id, newId);
      // audit_keys stays append-only but for the re-sealed private part.
      await assert.rejects(both.storage.db.updateTable('audit_keys').set({ public_key: 'AAAA' }).execute(), /append-only/);
      await assert.rejects(both.storage.db.updateTable('audit_keys').set({ handover_from: null }).execute(), /append-only/);
      await assert.rejects(both.storage.db.deleteFrom('audit_keys').execute(), /append-only/);

      const newOnly = await f.node({ CLEARANCE_MASTER_KEY: newKey });
      await openEverything(f, newOnly, sealed);
      assert.deepEqual(identifiers(f, newOnly), before, 'pairwise subjects and audit pseudonyms unchanged');

      const refused = await startRefused(f, { CLEARANCE_MASTER_KEY: oldKey });
      assert.match(refused.message, new RegExp(`master key ${oldId} was replaced by ${newId} \\(clearance keys rewrap completed .*\\).*CLEARANCE_MASTER_KEY`));

      // Audited: started, progress per column, completed; key ids and counts, never a key or a secret.
      const events = await newOnly.storage.db.selectFrom('audit_events').select(['type', 'event']).where('type', 'like', 'master_key.%').execute();
      const types = events.map((e) => e.type);
      assert.equal(types[0], 'master_key.rewrap_started');
      assert.equal(types.at(-1), 'master_key.rewrap_completed');
      assert.equal(types.filter((type) => type === 'master_key.rewrap_progress').length, 12);
      const completed = JSON.parse(events.at(-1)!.event).details;
      assert.equal(completed.from_key_id, oldId);
      assert.equal(completed.to_key_id, newId);
      const text = events.map((e) => e.event).join('\n');
      for (const secret of [oldKey, newKey, sealed.webhookSecret, sealed.kycSecret, sealed.providerSecret, sealed.totp.secret, sealed.stream.authorization]) assert.ok(!text.includes(secret));
    });

    test('an interrupted rewrap resumes where it stopped and re-seals nothing twice; meanwhile the old key alone is refused', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const sealed = await sealEverything(f);
      const total = (await sealedValues(f.ctx)).length;
      const first = await f.node(rotating);
      await assert.rejects(rewrap(first, f.masterOf(first), { actor: 'cli:test', settleMs: 0, batchSize: 2, stopAfter: 5 }), RewrapError);

      const halfway = await sealedValues(first);
      assert.equal(halfway.filter((v) => v.keyId === newId).length, 5, 'five values re-sealed before the stop');
      assert.ok(halfway.some((v) => v.keyId !== newId));
      assert.match((await startRefused(f, { CLEARANCE_MASTER_KEY: oldKey })).message, new RegExp(`rotation from master key ${oldId} to ${newId} is under way`));
      // A node with both keys reads everything meanwhile.
      await openEverything(f, await f.node(rotating), sealed);

      // Run again, as from another process after a crash.
      const second = await f.node(rotating);
      const report = await rewrap(second, f.masterOf(second), { actor: 'cli:test', settleMs: 0 });
      assert.equal(report.resumed, true);
      const resealed = Object.values(report.resealed).reduce((a, b) => a + b, 0);
      const deleted = Object.values(report.deleted).reduce((a, b) => a + b, 0);
      assert.equal(resealed + deleted, total, 'each value exactly once over both runs');
      assert.equal((await second.storage.db.selectFrom('master_key_rewraps').selectAll().execute()).length, 1, 'one rewrap, resumed');
      assert.ok((await sealedValues(second)).every((v) => v.keyId === newId));
      await openEverything(f, await f.node({ CLEARANCE_MASTER_KEY: newKey }), sealed);

      // A third run finds nothing to do.
      const again = await rewrap(second, f.masterOf(second), { actor: 'cli:test', settleMs: 0 });
      assert.equal(again.resumed, false);
      assert.deepEqual(again.resealed, {});
    });

    test('nodes with both keys serve throughout: before the rewrap they seal with the old key (so old-key nodes read it), once it begins with the new one', async (t) => {
      const f = await rewrapFixture(t, dialect);
      await sealEverything(f);
      // A node restarted with both keys; another not yet restarted (the old key alone).
      const restarted = await f.node(rotating);
      const notYet = await f.node({ CLEARANCE_MASTER_KEY: oldKey });
      const staged = await new SubjectKeys(restarted.storage.db, f.masterOf(restarted), restarted.clock).resolve(['staged-subject']);
      const stagedRow = await notYet.storage.db.selectFrom('audit_subject_keys').selectAll().where('kid', '=', staged.keys.get('staged-subject')!.kid).executeTakeFirstOrThrow();
      assert.equal(sealedKeyIdOf(stagedRow.sealed_key!), oldId, 'sealed with the old key until the rewrap begins');
      const readByOld = await new SubjectKeys(notYet.storage.db, f.masterOf(notYet), notYet.clock).resolve(['staged-subject']);
      assert.ok(readByOld.keys.get('staged-subject')!.key.equals(staged.keys.get('staged-subject')!.key), 'the node with the old key alone reads it');

      // The rewrap runs from the command line while the restarted node issues tokens.
      const app = buildApp(restarted);
      t.after(() => app.close());
      const cli = await f.node(rotating);
      const token = () =>
        app.inject({ method: 'POST', url: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('broker-1', f.secrets['broker-1']!) }, payload: `grant_type=client_credentials&resource=${encodeURIComponent(ordersApi)}` });
      const running = rewrap(cli, f.masterOf(cli), { actor: 'cli:test', settleMs: 2500 });
      let served = 0;
      const deadline = Date.now() + 2000;
      while (Date.now() < deadline) {
        const response = await token();
        assert.equal(response.statusCode, 200, response.body);
        served++;
        await sleep(50);
      }
      // Within a second of the begin, the restarted node seals with the new key.
      assert.equal(keyringOf(f.masterOf(restarted))!.sealing, keyringOf(f.masterOf(restarted))!.current);
      const during = await new SubjectKeys(restarted.storage.db, f.masterOf(restarted), restarted.clock).resolve(['during-subject']);
      const report = await running;
      assert.ok(served > 10, `served ${served} token requests during the rewrap`);
      assert.ok((await sealedValues(cli)).every((v) => v.keyId === newId), 'nothing left under the old key');
      assert.equal((await token()).statusCode, 200);
      const duringRow = await cli.storage.db.selectFrom('audit_subject_keys').selectAll().where('kid', '=', during.keys.get('during-subject')!.kid).executeTakeFirstOrThrow();
      assert.equal(sealedKeyIdOf(duringRow.sealed_key!), newId);
      assert.ok(open(f.masterOf(await f.node({ CLEARANCE_MASTER_KEY: newKey })), duringRow.sealed_key!, `audit_subject_keys:${duringRow.kid}`).equals(during.keys.get('during-subject')!.key));
      assert.ok(report.completedAt > 0);
    });

    test('an existing deployment keeps its identifiers: the root is its master key\'s bytes, and stays so across a rewrap', async (t) => {
      const f = await rewrapFixture(t, dialect);
      // As a database from before the root: no root row, and it has served (it has a signing key).
      await f.ctx.storage.db.deleteFrom('master_key_root').execute();
      const upgraded = await f.node({ CLEARANCE_MASTER_KEY: oldKey });
      assert.equal((await rootRow(upgraded.storage.db))!.origin, 'master-key');
      const bare = Buffer.from(oldKey, 'hex');
      const expected = { pairwise: pairwiseSubject(pairwiseKey(bare), 'rp.example.com', 'user-1'), pseudonym: pseudonymOf(pseudonymKeyOf(bare), 'source_address', '203.0.113.9') };
      assert.deepEqual(identifiers(f, upgraded), expected, 'what the old key derived before the upgrade');
      const both = await f.node(rotating);
      await rewrap(both, f.masterOf(both), { actor: 'cli:test', settleMs: 0 });
      assert.deepEqual(identifiers(f, await f.node({ CLEARANCE_MASTER_KEY: newKey })), expected, 'and after the rotation');
    });

    test('a new database derives from a random root, sealed: not from the master key', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const row = (await rootRow(f.ctx.storage.db))!;
      assert.equal(row.origin, 'random');
      assert.equal(row.master_key_id, oldId);
      assert.notDeepEqual(identifiers(f, f.ctx).pairwise, pairwiseSubject(pairwiseKey(Buffer.from(oldKey, 'hex')), 'rp.example.com', 'user-1'));
      assert.ok(!keyringOf(f.masterOf(f.ctx))!.root.equals(Buffer.from(oldKey, 'hex')));
    });
  });
}
