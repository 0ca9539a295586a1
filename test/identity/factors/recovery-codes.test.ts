import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { regenerateRecoveryCodes } from '../../../src/identity/factors/enrolment.ts';
import { factorKeys } from '../../../src/identity/factors/keys.ts';
import {
  matchRecoveryCode,
  newRecoveryCode,
  normalizeRecoveryCode,
  recoveryCodeDigest,
  recoveryCodesOf,
  useRecoveryCode,
} from '../../../src/identity/factors/recovery-codes.ts';
import { findUserByUsername } from '../../../src/identity/users.ts';
import { testDialects } from '../../helpers/storage.ts';
import { peopleFixture } from '../fixture.ts';
import { enrolTotp } from './fixture.ts';

const keys = factorKeys(Buffer.alloc(32, 1));

describe('recovery codes', () => {
  test('carry 80 random bits in four groups of four base32 letters', () => {
    const codes = new Set(Array.from({ length: 200 }, newRecoveryCode));
    assert.equal(codes.size, 200);
    for (const code of codes) assert.match(code, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/);
  });

  test('are read as typed: any case, with or without dashes and spaces; anything else is no code', () => {
    assert.equal(normalizeRecoveryCode(' ABCD-efgh ijkl-MNOP '), 'abcdefghijklmnop');
    for (const input of ['', 'abcd-efgh-ijkl', 'abcd-efgh-ijkl-mnop-q', 'abcd-efgh-ijkl-mno0', '123456']) assert.equal(normalizeRecoveryCode(input), undefined, input);
  });

  test('are stored as a keyed digest bound to the person', () => {
    const code = 'abcdefghijklmnop';
    const digest = recoveryCodeDigest(keys, 'user-1', code);
    assert.match(digest, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(!digest.includes(code));
    assert.notEqual(recoveryCodeDigest(keys, 'user-2', code), digest, 'another person’s digest');
    assert.notEqual(recoveryCodeDigest(factorKeys(Buffer.alloc(32, 2)), 'user-1', code), digest, 'another master key’s digest');
  });

  test('match only the person’s own stored codes, and tell a used one apart', () => {
    const stored = [
      { digest: recoveryCodeDigest(keys, 'user-1', 'aaaabbbbccccdddd'), usedAt: null },
      { digest: recoveryCodeDigest(keys, 'user-1', 'eeeeffffgggghhhh'), usedAt: 5 },
    ];
    assert.deepEqual(matchRecoveryCode(keys, 'user-1', 'AAAA-BBBB-CCCC-DDDD', stored), { digest: stored[0]!.digest, state: 'unused' });
    assert.deepEqual(matchRecoveryCode(keys, 'user-1', 'eeee-ffff-gggg-hhhh', stored), { digest: stored[1]!.digest, state: 'used' });
    assert.equal(matchRecoveryCode(keys, 'user-2', 'aaaa-bbbb-cccc-dddd', stored), undefined);
    assert.equal(matchRecoveryCode(keys, 'user-1', 'zzzz-zzzz-zzzz-zzzz', stored), undefined);
    assert.equal(matchRecoveryCode(keys, 'user-1', '', stored), undefined);
  });
});

for (const dialect of testDialects()) {
  describe(`recovery codes on ${dialect.name}`, () => {
    test('are ten at enrolment, stored only as digests', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, recoveryCodes } = await enrolTotp(f, 'alice');
      assert.equal(recoveryCodes.length, 10);
      assert.equal(new Set(recoveryCodes).size, 10);
      const stored = await recoveryCodesOf(f.ctx, userId);
      assert.equal(stored.length, 10);
      const rows = JSON.stringify(await f.ctx.storage.db.selectFrom('recovery_codes').selectAll().execute());
      for (const code of recoveryCodes) {
        assert.ok(!rows.includes(code) && !rows.includes(normalizeRecoveryCode(code)!), 'no code in the table');
        assert.equal(matchRecoveryCode(f.ctx.identity.factorKeys, userId, code, stored)?.state, 'unused');
      }
      const [generated] = await f.events('user.recovery_codes_generated');
      assert.equal(generated!.details!.count, 10);
      const text = await f.auditText();
      assert.ok(recoveryCodes.every((code) => !text.includes(code)), 'no code in the audit log');
    });

    test('are used once, however many requests try at the same time', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, recoveryCodes } = await enrolTotp(f, 'alice');
      const digest = recoveryCodeDigest(f.ctx.identity.factorKeys, userId, normalizeRecoveryCode(recoveryCodes[0]!)!);
      const attempts = await Promise.all(Array.from({ length: 5 }, () => useRecoveryCode(f.ctx, userId, digest, f.clock.now()).executeTakeFirst()));
      assert.equal(attempts.filter((r) => Number(r.numUpdatedRows) === 1).length, 1);
    });

    test('are regenerated on request, the old ones void — but never for a privileged role', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, recoveryCodes } = await enrolTotp(f, 'alice');
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const again = await regenerateRecoveryCodes(f.ctx, alice, { sourceAddress: '198.51.100.7' });
      assert.ok(again.ok);
      const stored = await recoveryCodesOf(f.ctx, userId);
      assert.equal(stored.length, 10);
      assert.equal(matchRecoveryCode(f.ctx.identity.factorKeys, userId, recoveryCodes[0]!, stored), undefined, 'an old code no longer matches');
      assert.equal(matchRecoveryCode(f.ctx.identity.factorKeys, userId, again.recoveryCodes[0]!, stored)?.state, 'unused');
      assert.equal((await f.events('user.recovery_codes_generated')).length, 2);

      assert.deepEqual(await regenerateRecoveryCodes(f.ctx, { ...alice, roles: ['approver', 'trader'] }, { sourceAddress: '198.51.100.7' }), { ok: false, reason: 'privileged_role' });
      const bob = (await findUserByUsername(f.ctx, 'bob'))!;
      assert.deepEqual(await regenerateRecoveryCodes(f.ctx, bob, { sourceAddress: '198.51.100.7' }), { ok: false, reason: 'no_authenticator' });
    });

    test('are not given to a person holding a privileged role', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ users: [{ username: 'carol', password: 'carol-approves-all-day', roles: ['approver'] }] });
      const carol = await enrolTotp(f, 'carol');
      assert.deepEqual(carol.recoveryCodes, []);
      assert.deepEqual(await recoveryCodesOf(f.ctx, carol.userId), []);
      assert.deepEqual(await f.events('user.recovery_codes_generated'), []);
    });
  });
}
