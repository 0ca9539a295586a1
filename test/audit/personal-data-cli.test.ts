import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { sealedFieldsOf } from '../../src/audit/personal-data.ts';
import { personalViews } from '../../src/audit/subject-keys.ts';
import { loadConfig } from '../../src/config.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { cliWorkspace } from '../helpers/cli.ts';

// `clearance audit erase-subject` (src/cli/commands/audit.ts, src/audit/erase.ts; docs/privacy.md).

describe('clearance audit erase-subject', () => {
  test('is refused under a legal hold, erases a person and an address nobody is named for, and the real verify still passes', async (t) => {
    const w = cliWorkspace(t, 'clearance-cli-erase-');
    assert.match((await w.run('audit', '--help')).out, /erase-subject \(SUBJECT \| --address ADDR\)/);
    const ctx = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    await ctx.audit.record({ type: 'user.login_succeeded', subject: 'person-1', details: { factor: 'password', source_address: '198.51.100.1' } });
    await ctx.audit.record({ type: 'user.login_succeeded', subject: 'person-2', details: { factor: 'password', source_address: '198.51.100.2' } });
    await ctx.audit.record({ type: 'client.auth_failed', client: 'broker-1', details: { source_address: '203.0.113.66' } });
    await ctx.storage.close();

    assert.equal((await w.run('audit', 'hold', 'place', '--subject', 'person-2', '--matter', 'CASE-7')).code, 0);
    const held = await w.run('audit', 'erase-subject', 'person-2', '--reason', 'Art. 17');
    assert.equal(held.code, 1);
    assert.match(held.err, /not erased: a legal hold covers person-2: hold-[^ ]+ \(matter CASE-7\)/);

    const erased = await w.run('audit', 'erase-subject', 'person-1', '--reason', 'Art. 17 request REQ-1');
    assert.equal(erased.code, 0, erased.err);
    assert.match(erased.out, /erased person-1: key generation\(s\) 1 destroyed; the personal fields of 1 event\(s\)/);
    const address = await w.run('audit', 'erase-subject', '--address', '203.0.113.66');
    assert.equal(address.code, 0, address.err);
    assert.match(address.out, /erased anon:[0-9a-f]{32}: .* of 1 event\(s\)/);
    assert.equal((await w.run('audit', 'erase-subject', 'person-1')).code, 2, 'erased already: nothing to do');
    assert.equal((await w.run('audit', 'erase-subject')).code, 2);

    assert.equal((await w.run('audit', 'seal')).code, 0);
    const verified = await w.run('audit', 'verify');
    assert.equal(verified.code, 0, verified.err);
    assert.match(verified.out, /audit log intact/);

    const after = await openContext(loadConfig(w.env), { log: createLogger('silent') });
    try {
      const rows = await after.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['user.login_succeeded', 'client.auth_failed']).orderBy('seq').execute();
      const events = rows.map((row) => JSON.parse(row.event) as StoredAuditEvent);
      assert.ok(events.every((e) => sealedFieldsOf(e) !== undefined));
      const { views } = await personalViews(after.storage.db, resolveMasterKey(after.config).key, events, true);
      assert.deepEqual(events.map((e) => views.get(e.id)!.status), ['erased', 'revealed', 'erased']);
      const recorded = await after.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'audit.subject_erased').execute();
      assert.equal(recorded.length, 2);
      assert.ok(recorded.every((r) => !r.event.includes('REQ-1') && !r.event.includes('203.0.113.66')), 'nothing personal, not the reason');
    } finally {
      await after.storage.close();
    }
  });
});
