/**
 * A failed sign-in's event, count and lockout (src/identity/failed-login.ts) when the account moved
 * since it was read: the flight that bets on the count as read is refused, and the failure is
 * counted on the live count instead — once, with the lockout decided from it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { AuditEvent } from '../../src/audit/events.ts';
import { recordFailedLogin, type FailureCount, type FailureStatements } from '../../src/identity/failed-login.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { testDialects } from '../helpers/storage.ts';
import { peopleFixture, type PeopleFixture } from './fixture.ts';

const source = '198.51.100.9';

function wrongPassword(subject: string): AuditEvent {
  return { type: 'user.login_failed', subject, decision: { allow: false, reasons: ['wrong_password'] }, details: { factor: 'password', source_address: source } };
}

async function account(f: PeopleFixture, username: string): Promise<FailureCount> {
  return f.ctx.storage.db.selectFrom('users').select(['id', 'failed_logins', 'status']).where('username', '=', username).executeTakeFirstOrThrow();
}

for (const dialect of testDialects()) {
  describe(`a failed sign-in on ${dialect.name}`, () => {
    test('is counted on top of the failures counted since its account was read, and locks from that live count', async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ policy: { lockoutThreshold: 4 } });
      const asRead = await account(f, 'alice');
      // Two other failures commit after this one read the account (count 0).
      for (let i = 0; i < 2; i++) await recordFailedLogin(f.ctx, await account(f, 'alice'), wrongPassword(asRead.id), { subject: asRead.id }, source);
      await recordFailedLogin(f.ctx, asRead, wrongPassword(asRead.id), { subject: asRead.id }, source);
      assert.equal(await f.failedLogins('alice'), 3, 'counted once, on top of the two');
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'active');
      // The fourth, read before the third counted: the live count reaches the threshold and locks.
      await recordFailedLogin(f.ctx, asRead, wrongPassword(asRead.id), { subject: asRead.id }, source);
      assert.equal(await f.failedLogins('alice'), 4);
      assert.equal((await findUserByUsername(f.ctx, 'alice'))!.status, 'locked');
      const locked = await f.events('user.locked');
      assert.equal(locked.length, 1);
      assert.deepEqual(locked[0]!.details, { consecutive_failures: 4, source_address: source });
      assert.equal((await f.events('user.login_failed')).length, 4, 'every failure audited once');
    });

    test("counts a failure an administrator's lock overtook, and neither locks nor audits a lockout again", async (t) => {
      const f = await peopleFixture(t, { dialect });
      f.policy({ policy: { lockoutThreshold: 1 } });
      const asRead = await account(f, 'alice');
      await f.apply({ users: [{ username: 'alice', status: 'locked' }] });
      await recordFailedLogin(f.ctx, asRead, wrongPassword(asRead.id), { subject: asRead.id }, source);
      assert.equal(await f.failedLogins('alice'), 1);
      const row = await f.ctx.storage.db.selectFrom('users').select(['status', 'lock_reason']).where('id', '=', asRead.id).executeTakeFirstOrThrow();
      assert.deepEqual({ ...row }, { status: 'locked', lock_reason: 'admin' });
      assert.deepEqual((await f.events('user.locked')).map((e) => e.decision!.reasons), [['admin']], "the administrator's lock only");
      assert.equal((await f.events('user.login_failed')).length, 1);
    });

    test("adds what the caller adds after the lockout's statements, in the same transaction, on either way", async (t) => {
      const f = await peopleFixture(t, { dialect });
      const asRead = await account(f, 'bob');
      const seen: number[] = [];
      const also = async (statements: FailureStatements) => {
        const { rows } = await statements.run(f.ctx.storage.db.selectFrom('users').select('failed_logins').where('id', '=', asRead.id));
        seen.push(Number(rows[0]!.failed_logins));
        return seen.length;
      };
      assert.equal(await recordFailedLogin(f.ctx, asRead, wrongPassword(asRead.id), { subject: asRead.id }, source, also), 1);
      // Read before the first counted: refused, then counted live.
      assert.equal(await recordFailedLogin(f.ctx, asRead, wrongPassword(asRead.id), { subject: asRead.id }, source, also), 2);
      assert.deepEqual(seen, [1, 2], 'each saw its own count');
    });
  });
}
