import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { EraseError, eraseSubject } from '../../src/audit/erase.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { placeHold } from '../../src/audit/holds.ts';
import { sealNow } from '../../src/audit/lifecycle.ts';
import { hasPersonalFields, openPersonalFields, PersonalDataError, pseudonymOf, sealedFieldsOf, sealPersonalFields } from '../../src/audit/personal-data.ts';
import { decryptEventsUnaudited, personalViews, pseudonymKeyOf, SubjectKeys } from '../../src/audit/subject-keys.ts';
import { verifyStore } from '../../src/audit/verify.ts';
import { ManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { verifyLogin, type LoginAttempt } from '../../src/identity/login.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { openStorage } from '../../src/storage/database.ts';
import { noticesFor } from '../../src/storage/notices.ts';
import { FlightRefused } from '../../src/storage/flight.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { alicePassword, bobPassword, peopleFixture } from '../identity/fixture.ts';
import { testDatabaseUrl, testDialects } from '../helpers/storage.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Issue 24 item 4: personal fields of audit events encrypted under a per-subject key; erasure by
// destroying the key; the log still verifies (docs/privacy.md).

const from = (username: string, password: string, sourceAddress = '198.51.100.7'): LoginAttempt => ({ username, password, sourceAddress, requestId: 'req-1', clientId: 'trading-ui' });

async function storedEvents(ctx: Context, type: string): Promise<{ text: string; event: StoredAuditEvent }[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((row) => ({ text: row.event, event: JSON.parse(row.event) as StoredAuditEvent }));
}

/** The real verification of the whole log (what `clearance audit verify` runs), after sealing what is recorded. */
async function verifyWholeLog(ctx: Context) {
  const masterKey = resolveMasterKey(ctx.config).key;
  await sealNow(ctx, masterKey);
  return verifyStore(ctx.storage.db, { keys: await new AuditKeys(ctx.storage.db, masterKey, ctx.clock).publicKeys() });
}

const masterKeyOf = (ctx: Context) => resolveMasterKey(ctx.config).key;

/**
 * A key for `subject` made by another node (or before a restart), so this node's cache does not
 * hold it, and a flight that already carries a statement of its own (a row named `row`).
 */
async function keyMadeElsewhere(f: { ctx: Context }, subject: string, row: string) {
  const db = f.ctx.storage.db;
  const elsewhere = (await new SubjectKeys(db, masterKeyOf(f.ctx), f.ctx.clock).resolve([subject])).keys.get(subject)!;
  const flight = f.ctx.storage.flight();
  const own = flight.run(db.insertInto('generations').values({ name: row, value: 1 }));
  return { elsewhere, flight, own };
}

for (const dialect of testDialects()) {
  describe(`personal data in the audit log on ${dialect.name}`, () => {
    test("stores a sign-in's source address encrypted under the person's key: the stored event has no clear address, and the log verifies", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const outcome = await verifyLogin(f.ctx, from('alice', alicePassword));
      assert.ok(outcome.ok);
      const { text, event } = (await storedEvents(f.ctx, 'user.login_succeeded'))[0]!;
      assert.ok(!text.includes('198.51.100.7'), 'the canonical event (the Merkle leaf) holds no clear address');
      assert.equal(event.details!.source_address, undefined);
      const sealed = sealedFieldsOf(event)!;
      assert.deepEqual(sealed.fields, ['source_address']);
      assert.match(sealed.kid, /^psk_/);
      assert.equal(event.details!.factor, 'password', 'the non-personal facts stay in the clear');
      const key = await f.ctx.storage.db.selectFrom('audit_subject_keys').selectAll().where('kid', '=', sealed.kid).executeTakeFirstOrThrow();
      assert.equal(key.subject, outcome.user.id, "the key is the person's (the event's subject)");
      assert.ok(key.sealed_key && !key.sealed_key.includes(sealed.kid), 'the key is stored sealed by the master key');

      const report = await verifyWholeLog(f.ctx);
      assert.equal(report.ok, true, JSON.stringify(report.problem));
      const [opened] = await decryptEventsUnaudited(f.ctx.storage.db, masterKeyOf(f.ctx), [event]);
      assert.equal(opened!.details!.source_address, '198.51.100.7');
      assert.equal(opened!.details!.personal, undefined);
    });

    test('leaves an event without personal fields as recorded, and refuses a component recording the reserved member', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.ctx.audit.record({ type: 'token.issued', client: 'c', subject: 'c', details: { jti: 'j-1' } });
      const { event } = (await storedEvents(f.ctx, 'token.issued'))[0]!;
      assert.deepEqual(event.details, { jti: 'j-1' });
      await assert.rejects(f.ctx.audit.record({ type: 'token.issued', subject: 'u', details: { personal: { kid: 'x' } } }), TypeError);
    });

    test("seals a failed sign-in of an unknown user under the pseudonym of its address, since it names no one", async (t) => {
      const f = await peopleFixture(t, { dialect });
      assert.equal((await verifyLogin(f.ctx, from('nobody', 'guess', '203.0.113.9'))).ok, false);
      const { text, event } = (await storedEvents(f.ctx, 'user.login_failed'))[0]!;
      assert.ok(!text.includes('203.0.113.9') && !text.includes('nobody'));
      const key = await f.ctx.storage.db.selectFrom('audit_subject_keys').select('subject').where('kid', '=', sealedFieldsOf(event)!.kid).executeTakeFirstOrThrow();
      assert.equal(key.subject, pseudonymOf(pseudonymKeyOf(masterKeyOf(f.ctx)), 'source_address', '203.0.113.9'));
    });

    test('refuses to erase a subject a legal hold covers — on the subject, or on a txn of one of their events — and names the hold', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = await verifyLogin(f.ctx, from('alice', alicePassword));
      assert.ok(alice.ok);
      await placeHold(f.ctx, { subject: alice.user.id, matterRef: 'CASE-1' }, 'compliance-1');
      await assert.rejects(eraseSubject(f.ctx, alice.user.id, { actor: 'dpo' }), (error: EraseError) => error instanceof EraseError && error.holds.length === 1 && /CASE-1/.test(error.message));

      await f.ctx.audit.record({ type: 'token.issued', txn: 'trade-9', subject: 'bob-id', client: 'web', details: { source_address: '192.0.2.1' } });
      await placeHold(f.ctx, { txn: 'trade-9', matterRef: 'CASE-2' }, 'compliance-1');
      await assert.rejects(eraseSubject(f.ctx, 'bob-id', { actor: 'dpo' }), /CASE-2/);
      const keys = await f.ctx.storage.db.selectFrom('audit_subject_keys').select(['sealed_key', 'erased_at']).execute();
      assert.ok(keys.every((k) => k.sealed_key !== null && k.erased_at === null), 'nothing was destroyed');
      assert.equal((await f.events('audit.subject_erased')).length, 0);
    });

    test('An erased subject’s events still verify and no longer reveal the person', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const bob = await verifyLogin(f.ctx, from('bob', bobPassword, '198.51.100.23'));
      assert.ok(bob.ok);
      await verifyLogin(f.ctx, from('bob', 'wrong', '198.51.100.24'));
      const alice = await verifyLogin(f.ctx, from('alice', alicePassword, '198.51.100.7'));
      assert.ok(alice.ok);
      assert.equal((await verifyWholeLog(f.ctx)).ok, true);

      const erased = await eraseSubject(f.ctx, bob.user.id, { actor: 'dpo-1', reason: 'Art. 17 request REQ-77' });
      assert.equal(erased.events, 2, "bob's sign-in and his failed attempt");
      assert.deepEqual(erased.generations, [1]);

      const tombstone = await f.ctx.storage.db.selectFrom('audit_subject_keys').selectAll().where('subject', '=', bob.user.id).executeTakeFirstOrThrow();
      assert.equal(tombstone.sealed_key, null, 'the key bytes are gone');
      assert.equal(tombstone.erased_by, 'dpo-1');
      assert.equal(tombstone.erase_reason, 'Art. 17 request REQ-77');
      assert.ok(tombstone.erased_at);

      const [recorded] = await f.events('audit.subject_erased');
      assert.equal(recorded!.actor, 'dpo-1');
      assert.deepEqual(recorded!.details, { subject_id: bob.user.id, generations: [1], events: 2 }, 'the subject id and the count, nothing personal, not the reason');

      const report = await verifyWholeLog(f.ctx);
      assert.equal(report.ok, true, 'the whole log still verifies: the leaves cover the ciphertext');

      const events = [...(await storedEvents(f.ctx, 'user.login_succeeded')), ...(await storedEvents(f.ctx, 'user.login_failed'))].map((e) => e.event);
      const bobs = events.filter((e) => e.subject === bob.user.id);
      assert.equal(bobs.length, 2);
      const { views } = await personalViews(f.ctx.storage.db, masterKeyOf(f.ctx), events, true);
      for (const event of bobs) assert.deepEqual(views.get(event.id), { status: 'erased', fields: ['source_address'], erased_at: Number(tombstone.erased_at) });
      const aliceView = views.get(events.find((e) => e.subject === alice.user.id)!.id);
      assert.deepEqual(aliceView, { status: 'revealed', subject: alice.user.id, fields: { source_address: '198.51.100.7' } }, "another person's fields are untouched");
      const readable = await decryptEventsUnaudited(f.ctx.storage.db, masterKeyOf(f.ctx), bobs);
      assert.ok(readable.every((e) => !JSON.stringify(e).includes('198.51.100.2')), 'no reader gets the address back');

      await assert.rejects(eraseSubject(f.ctx, bob.user.id, { actor: 'dpo-1' }), /erased already/);
    });

    test("writes a subject's first key in the transaction of its first event, and none when that transaction is refused", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const db = f.ctx.storage.db;
      const event = { type: 'user.logged_out', subject: 'person-first', details: { source_address: '192.0.2.60' } } as const;
      const refused = f.ctx.storage.flight();
      void refused.run(db.updateTable('generations').set({ value: 1 }).where('name', '=', 'absent'), { rows: 1, otherwise: 'absent_row' });
      await assert.rejects(f.ctx.audit.commit(refused, [event]), (e: FlightRefused) => e instanceof FlightRefused && e.reason === 'absent_row');
      assert.equal((await db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', 'person-first').execute()).length, 0, 'no key without its event');

      await f.ctx.audit.commit(f.ctx.storage.flight(), [event]);
      const keys = await db.selectFrom('audit_subject_keys').select(['kid', 'generation']).where('subject', '=', 'person-first').execute();
      assert.deepEqual(keys.map((k) => Number(k.generation)), [1]);
      const [stored] = (await storedEvents(f.ctx, 'user.logged_out')).map((e) => e.event);
      assert.equal(sealedFieldsOf(stored!)!.kid, keys[0]!.kid);
      const [opened] = await decryptEventsUnaudited(db, masterKeyOf(f.ctx), [stored!]);
      assert.equal(opened!.details!.source_address, '192.0.2.60');
    });

    test("sends a transaction again under the subject's key when the subject had one this node did not hold, writing its statements once", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const db = f.ctx.storage.db;
      const { elsewhere, flight, own } = await keyMadeElsewhere(f, 'person-known', 'written-once');
      await f.ctx.audit.commit(flight, [{ type: 'user.logged_out', subject: 'person-known', details: { source_address: '192.0.2.61' } }]);
      assert.equal(Number((await own).numAffectedRows), 1, "the caller's statement is answered from the sending that committed");
      assert.deepEqual((await db.selectFrom('generations').select('value').where('name', '=', 'written-once').execute()).map((r) => Number(r.value)), [1]);
      const keys = await db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', 'person-known').execute();
      assert.deepEqual(keys.map((k) => k.kid), [elsewhere.kid], 'no second key');
      const stored = (await storedEvents(f.ctx, 'user.logged_out')).map((e) => e.event);
      assert.equal(stored.length, 1, 'one event');
      assert.equal(sealedFieldsOf(stored[0]!)!.kid, elsewhere.kid, "sealed under the subject's key");
      const [opened] = await decryptEventsUnaudited(db, masterKeyOf(f.ctx), stored);
      assert.equal(opened!.details!.source_address, '192.0.2.61');
      // Cached now (the key the refused transaction read): the next event costs no bet.
      const next = f.ctx.storage.flight();
      await f.ctx.audit.commit(next, [{ type: 'user.logged_out', subject: 'person-known', details: { source_address: '192.0.2.62' } }]);
      // The event's insert (and on PostgreSQL the audit writers' lock): no key read, no key insert.
      assert.equal(next.size, dialect.name === 'postgres' ? 2 : 1, 'no key read, no key insert');
      assert.equal(sealedFieldsOf((await storedEvents(f.ctx, 'user.logged_out'))[1]!.event)!.kid, elsewhere.kid);
    });

    test("refuses the second sending, writing nothing, when the key its bet read was erased before it", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const db = f.ctx.storage.db;
      const { elsewhere, flight, own } = await keyMadeElsewhere(f, 'person-erased', 'never-written');
      // An erasure that commits between the refused sending and the second one.
      const commit = flight.commit.bind(flight);
      flight.commit = (retry) =>
        commit(retry && {
          reason: retry.reason,
          amend: async (replace, firstAnswer) => {
            await retry.amend(replace, firstAnswer);
            await db.updateTable('audit_subject_keys').set({ sealed_key: null, erased_at: f.ctx.clock.now(), erased_by: 'dpo' }).where('kid', '=', elsewhere.kid).execute();
          },
        });
      await assert.rejects(f.ctx.audit.commit(flight, [{ type: 'user.logged_out', subject: 'person-erased', details: { source_address: '192.0.2.63' } }]), (e: FlightRefused) => e instanceof FlightRefused && e.reason === 'audit_subject_key_erased');
      await assert.rejects(own, FlightRefused);
      assert.equal((await db.selectFrom('generations').select('name').where('name', '=', 'never-written').execute()).length, 0, "the caller's statement is not written");
      assert.equal((await storedEvents(f.ctx, 'user.logged_out')).length, 0, 'no event sealed under an erased key');
    });

    test("a subject's first events committed at once on one node make one bet: the later waits for it and finds the key", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const event = (address: string) => ({ type: 'user.logged_out', subject: 'person-twice', details: { source_address: address } }) as const;
      const flights = [f.ctx.storage.flight(), f.ctx.storage.flight()];
      await Promise.all(flights.map((flight, i) => f.ctx.audit.commit(flight, [event(`192.0.2.7${i}`)])));
      // The event's insert (and on PostgreSQL the audit writers' lock), beside a bet's key read and key insert.
      const alone = dialect.name === 'postgres' ? 2 : 1;
      assert.deepEqual(flights.map((flight) => flight.size).sort(), [alone, alone + 2], 'one flight bet, the other found the key');
      const keys = await f.ctx.storage.db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', 'person-twice').execute();
      assert.equal(keys.length, 1);
      assert.deepEqual((await storedEvents(f.ctx, 'user.logged_out')).map((e) => sealedFieldsOf(e.event)!.kid), [keys[0]!.kid, keys[0]!.kid]);
    });

    test('a subject recorded again after an erasure gets a new key generation, never the destroyed key', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const bob = await verifyLogin(f.ctx, from('bob', bobPassword));
      assert.ok(bob.ok);
      await eraseSubject(f.ctx, bob.user.id, { actor: 'dpo' });
      assert.ok((await verifyLogin(f.ctx, from('bob', bobPassword, '198.51.100.99'))).ok);
      const [first, second] = (await storedEvents(f.ctx, 'user.login_succeeded')).map((e) => e.event);
      assert.notEqual(sealedFieldsOf(second!)!.kid, sealedFieldsOf(first!)!.kid);
      const keys = await f.ctx.storage.db.selectFrom('audit_subject_keys').select(['generation', 'sealed_key']).where('subject', '=', bob.user.id).orderBy('generation').execute();
      assert.deepEqual(keys.map((k) => [Number(k.generation), k.sealed_key !== null]), [[1, false], [2, true]]);
      const [opened] = await decryptEventsUnaudited(f.ctx.storage.db, masterKeyOf(f.ctx), [second!]);
      assert.equal(opened!.details!.source_address, '198.51.100.99');
    });
  });
}

describe('sealing personal fields', () => {
  const key = { kid: 'psk_test', key: randomBytes(32) };
  const stored = (id: string, address: string): StoredAuditEvent => ({ type: 'user.login_succeeded', subject: 'u', v: 1, id, time: 1, node: 'n', details: { factor: 'password', source_address: address } });

  test('an event without a personal field costs a scan of its details’ names, and is found by it when it has one', () => {
    assert.equal(hasPersonalFields({ details: { jti: 'x', client: 'y' } }), false);
    assert.equal(hasPersonalFields({}), false);
    assert.equal(hasPersonalFields({ details: { user_agent: 'Mozilla/5.0' } }), true);
  });

  test('binds a ciphertext to its event: moved onto another event, it does not open', () => {
    const a = sealPersonalFields(stored('e-a', '192.0.2.1'), key);
    const b = sealPersonalFields(stored('e-b', '192.0.2.2'), key);
    assert.deepEqual(openPersonalFields(a, key.key), { source_address: '192.0.2.1' });
    assert.throws(() => openPersonalFields({ ...b, details: a.details }, key.key), PersonalDataError);
    assert.throws(() => openPersonalFields(a, randomBytes(32)), PersonalDataError, 'nor with another subject’s key');
  });
});

describe('subject keys on two nodes (PostgreSQL)', { skip: testDatabaseUrl ? false : 'TEST_DATABASE_URL is not set' }, () => {
  async function twoNodes(t: TestContext) {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-subject-keys-'));
    const database = await testDialects().find((d) => d.name === 'postgres')!.create();
    const config = loadConfig({ CLEARANCE_DATA_DIR: dir });
    const clock = new ManualClock();
    const a = await openContext(config, { clock, log: createLogger('silent'), storage: database.storage });
    const b = await openContext(config, { clock, log: createLogger('silent'), storage: database.connect() });
    t.after(async () => {
      for (const ctx of [a, b]) await (ctx.audit as { close?: () => Promise<void> }).close?.();
      await database.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });
    return { a, b, clock, masterKey: masterKeyOf(a), database };
  }

  test("two nodes creating the same subject's key at once agree on one key", async (t) => {
    const { a, b, clock, masterKey } = await twoNodes(t);
    for (let round = 0; round < 5; round++) {
      const subject = `person-${round}`;
      const nodes = [new SubjectKeys(a.storage.db, masterKey, clock), new SubjectKeys(b.storage.db, masterKey, clock), new SubjectKeys(a.storage.db, masterKey, clock), new SubjectKeys(b.storage.db, masterKey, clock)];
      const got = await Promise.all(nodes.map((keys) => keys.resolve([subject]).then((r) => r.keys.get(subject)!)));
      assert.equal(new Set(got.map((k) => k.kid)).size, 1, 'one kid');
      assert.ok(got.every((k) => k.key.equals(got[0]!.key)), 'the same key bytes');
      const rows = await a.storage.db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', subject).execute();
      assert.equal(rows.length, 1, 'one row');
    }
    // And through the recorders of both nodes at once: every event opens with the one key.
    await Promise.all([a, b, a, b].map((ctx, i) => ctx.audit.record({ type: 'user.logged_out', subject: 'person-x', details: { source_address: `192.0.2.${i}` } })));
    const rows = await a.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.logged_out').execute();
    const events = rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
    assert.equal(new Set(events.map((e) => sealedFieldsOf(e)!.kid)).size, 1);
    const opened = await decryptEventsUnaudited(a.storage.db, masterKey, events);
    assert.deepEqual(opened.map((e) => e.details!.source_address).sort(), ['192.0.2.0', '192.0.2.1', '192.0.2.2', '192.0.2.3']);
  });

  test("two nodes betting at once on a new subject's first key agree on one key, and each flight's own statements are written once", async (t) => {
    const { a, b, masterKey } = await twoNodes(t);
    for (let round = 0; round < 5; round++) {
      const subject = `person-bet-${round}`;
      await Promise.all(
        [a, b, a, b].map((ctx, i) => {
          const flight = ctx.storage.flight();
          void flight.run(ctx.storage.db.insertInto('generations').values({ name: `bet-${round}-${i}`, value: 1 }));
          return ctx.audit.commit(flight, [{ type: 'user.logged_out', subject, details: { source_address: `192.0.2.${i}` } }]);
        }),
      );
      const keys = await a.storage.db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', subject).execute();
      assert.equal(keys.length, 1, 'one key');
      const events = (await a.storage.db.selectFrom('audit_events').select('event').where('subject', '=', subject).execute()).map((row) => JSON.parse(row.event) as StoredAuditEvent);
      assert.equal(events.length, 4);
      assert.ok(events.every((e) => sealedFieldsOf(e)!.kid === keys[0]!.kid), 'every event under that key');
      const opened = await decryptEventsUnaudited(a.storage.db, masterKey, events);
      assert.deepEqual(opened.map((e) => e.details!.source_address).sort(), ['192.0.2.0', '192.0.2.1', '192.0.2.2', '192.0.2.3']);
      assert.equal((await a.storage.db.selectFrom('generations').select('name').where('name', 'like', `bet-${round}-%`).execute()).length, 4, "each flight's own statement once");
    }
  });

  test("after an erasure on one node, the other stops using its cached key: its next event gets a new generation", async (t) => {
    const { a, b, clock, masterKey } = await twoNodes(t);
    await b.audit.record({ type: 'user.logged_out', subject: 'person-e', details: { source_address: '192.0.2.50' } });
    const before = await b.storage.db.selectFrom('audit_subject_keys').select('kid').where('subject', '=', 'person-e').executeTakeFirstOrThrow();
    await eraseSubject(a, 'person-e', { actor: 'dpo' });
    // Node B learns of it through the generation bump: at once on a change notice, here at its next check.
    clock.advance(1_001);
    await b.audit.record({ type: 'user.logged_out', subject: 'person-e', details: { source_address: '192.0.2.51' } });
    const rows = await b.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.logged_out').orderBy('seq').execute();
    const [first, second] = rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
    assert.equal(sealedFieldsOf(first!)!.kid, before.kid);
    assert.notEqual(sealedFieldsOf(second!)!.kid, before.kid, 'never the destroyed key');
    const opened = await decryptEventsUnaudited(a.storage.db, masterKey, [first!, second!]);
    assert.equal(opened[0]!.details!.source_address, undefined, 'the erased event stays erased');
    assert.equal(opened[1]!.details!.source_address, '192.0.2.51');
  });

  test('with change notices, the other node drops the destroyed key as soon as the erasure commits, without waiting for its next check', async (t) => {
    const { a, clock, masterKey, database } = await twoNodes(t);
    const listening = openStorage({ ...database.options, listenForChanges: true });
    t.after(() => listening.close());
    const keysB = new SubjectKeys(listening.db, masterKey, clock);
    const recorderB = new AuditRecorder(listening.db, { clock, node: 'node-b', personalData: keysB });
    t.after(() => recorderB.close());
    for (let i = 0; i < 100 && !noticesFor(listening.db)?.listening; i++) await sleep(20);
    assert.ok(noticesFor(listening.db)?.listening, 'node B listens for change notices');
    await recorderB.record({ type: 'user.logged_out', subject: 'person-n', details: { source_address: '192.0.2.60' } });
    assert.ok(keysB.peek('person-n'), 'node B caches the key');
    await eraseSubject(a, 'person-n', { actor: 'dpo' });
    // The clock does not move: only the notice can tell node B.
    for (let i = 0; i < 100 && keysB.peek('person-n'); i++) await sleep(10);
    assert.equal(keysB.peek('person-n'), undefined, 'the notice dropped the key');
    await recorderB.record({ type: 'user.logged_out', subject: 'person-n', details: { source_address: '192.0.2.61' } });
    const rows = await a.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'user.logged_out').orderBy('seq').execute();
    const [first, second] = rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
    assert.notEqual(sealedFieldsOf(second!)!.kid, sealedFieldsOf(first!)!.kid);
  });
});

