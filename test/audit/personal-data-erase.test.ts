import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EraseError, eraseSubject } from '../../src/audit/erase.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { placeHold } from '../../src/audit/holds.ts';
import { canonicalAddress, pseudonymOf, sealedFieldsOf } from '../../src/audit/personal-data.ts';
import { personalViews, pseudonymKeyOf } from '../../src/audit/subject-keys.ts';
import type { Context } from '../../src/context.ts';
import { verifyLogin } from '../../src/identity/login.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { peopleFixture } from '../identity/fixture.ts';
import { testDialects } from '../helpers/storage.ts';

// Erasure against legal holds placed or events sealed while it runs, and addresses spelled in
// several ways naming one pseudonymous subject (src/audit/erase.ts, personal-data.ts; docs/privacy.md "Erasure").

const masterKeyOf = (ctx: Context) => resolveMasterKey(ctx.config).key;

async function stored(ctx: Context, type: string): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
}

for (const dialect of testDialects()) {
  describe(`erasure while the log is being written, on ${dialect.name}`, () => {
    test('an event under a held txn, sealed with the cached key between the scan and the erasing transaction, refuses the erasure and nothing is destroyed', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.ctx.audit.record({ type: 'user.logged_out', subject: 'bob-id', details: { source_address: '192.0.2.1' } });
      await placeHold(f.ctx, { txn: 'trade-7', matterRef: 'CASE-7' }, 'compliance-1');
      // Nothing of bob's is under the held txn when the log is scanned; then a node seals one there.
      const afterScan = () => f.ctx.audit.record({ type: 'token.issued', txn: 'trade-7', subject: 'bob-id', client: 'web', details: { source_address: '192.0.2.2' } });
      await assert.rejects(eraseSubject(f.ctx, 'bob-id', { actor: 'dpo', requestId: 'req-9' }, { afterScan }), (error: EraseError) => error instanceof EraseError && error.holds.length === 1 && /CASE-7/.test(error.message));
      const [late] = await stored(f.ctx, 'token.issued');
      const keys = await f.ctx.storage.db.selectFrom('audit_subject_keys').select(['kid', 'sealed_key', 'erased_at']).where('subject', '=', 'bob-id').execute();
      assert.equal(keys.length, 1);
      assert.equal(sealedFieldsOf(late!)!.kid, keys[0]!.kid, 'the late event was sealed under the key the erasure would destroy');
      assert.ok(keys[0]!.sealed_key !== null && keys[0]!.erased_at === null, 'nothing was destroyed');
      assert.equal((await f.events('audit.subject_erased')).length, 0);
      const [refused] = await f.events('audit.erasure_refused');
      assert.equal(refused!.actor, 'dpo');
      assert.equal(refused!.subject, 'bob-id');
      assert.deepEqual(refused!.decision, { allow: false, reasons: ['legal_hold'] });
      assert.equal(refused!.details!.reason, 'legal_hold');
      assert.equal((refused!.details!.holds as string[]).length, 1);
    });

    test('an event sealed between the scan and the erasing transaction, under no hold, is erased and counted with the rest', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.ctx.audit.record({ type: 'user.logged_out', subject: 'carol-id', details: { source_address: '192.0.2.3' } });
      const afterScan = () => f.ctx.audit.record({ type: 'user.logged_out', subject: 'carol-id', details: { source_address: '192.0.2.4' } });
      const erased = await eraseSubject(f.ctx, 'carol-id', { actor: 'dpo' }, { afterScan });
      assert.equal(erased.events, 2);
      const events = await stored(f.ctx, 'user.logged_out');
      const { views } = await personalViews(f.ctx.storage.db, masterKeyOf(f.ctx), events, true);
      assert.deepEqual(events.map((e) => views.get(e.id)!.status), ['erased', 'erased']);
    });
  });

  describe(`an address nobody is named for, spelled in several ways, on ${dialect.name}`, () => {
    test('is one pseudonymous subject when recorded and when erased: IPv4-mapped, upper case and uncompressed IPv6 included', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const attempt = (sourceAddress: string) => verifyLogin(f.ctx, { username: 'nobody', password: 'guess', sourceAddress, requestId: 'req-1', clientId: 'trading-ui' });
      for (const address of ['::ffff:203.0.113.7', '203.0.113.7', '2001:DB8:0:0:0:0:0:7', '2001:db8::7']) assert.equal((await attempt(address)).ok, false);
      const failed = await stored(f.ctx, 'user.login_failed');
      assert.equal(failed.length, 4);
      const subjects = await f.ctx.storage.db.selectFrom('audit_subject_keys').select(['kid', 'subject']).execute();
      const subjectOf = new Map(subjects.map((row) => [row.kid, row.subject]));
      const [v4mapped, v4, v6upper, v6] = failed.map((event) => subjectOf.get(sealedFieldsOf(event)!.kid));
      assert.equal(v4mapped, v4, 'an IPv4-mapped address is its IPv4 address');
      assert.equal(v6upper, v6, 'an IPv6 address in any spelling is its canonical form');
      assert.notEqual(v4, v6);

      // Typed at erasure in yet another spelling: the same subject, both events erased.
      const pseudonymKey = pseudonymKeyOf(masterKeyOf(f.ctx));
      const erased = await eraseSubject(f.ctx, pseudonymOf(pseudonymKey, 'source_address', '2001:0DB8:0000::0007'), { actor: 'dpo' });
      assert.equal(erased.subject, v6);
      assert.equal(erased.events, 2);
      assert.equal((await eraseSubject(f.ctx, pseudonymOf(pseudonymKey, 'source_address', '::FFFF:CB00:7107'), { actor: 'dpo' })).events, 2);
      const { views } = await personalViews(f.ctx.storage.db, masterKeyOf(f.ctx), failed, true);
      assert.ok(failed.every((event) => views.get(event.id)!.status === 'erased'));
    });
  });
}

describe('canonical network addresses', () => {
  test('are the IPv4 address of an IPv4-mapped one, RFC 5952 text for IPv6, and anything else as it is', () => {
    assert.equal(canonicalAddress('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(canonicalAddress('::FFFF:CB00:7107'), '203.0.113.7');
    assert.equal(canonicalAddress('2001:0DB8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(canonicalAddress('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first of two equal runs of zeros is compressed (RFC 5952 §4.2.3)');
    assert.equal(canonicalAddress('0:0:0:0:0:0:0:1'), '::1');
    assert.equal(canonicalAddress('FE80::1%eth0'), 'fe80::1%eth0', 'the zone is kept');
    assert.equal(canonicalAddress(' 198.51.100.7 '), '198.51.100.7');
    assert.equal(canonicalAddress('unknown'), 'unknown');
  });
});
