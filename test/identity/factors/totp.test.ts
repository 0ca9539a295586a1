import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateSecret } from 'otplib';
import { confirmTotpEnrolment, removeTotp } from '../../../src/identity/factors/enrolment.ts';
import { factorKeys } from '../../../src/identity/factors/keys.ts';
import { beginTotpEnrolment, checkTotpCode, openPendingTotpSecret, openTotpSecret, pendingTotpEnrolment, recordTotpStep, totpFactorOf, totpUri } from '../../../src/identity/factors/totp.ts';
import { acr } from '../../../src/identity/acr.ts';
import { registerPasskey, registrationOptions } from '../../../src/identity/passkeys/registration.ts';
import { findUserByUsername } from '../../../src/identity/users.ts';
import { readSession, startSession } from '../../../src/identity/sessions.ts';
import { SealedBoxError } from '../../../src/keys/sealed-box.ts';
import { SoftwareAuthenticator } from '../../helpers/authenticator.ts';
import { testDialects } from '../../helpers/storage.ts';
import { peopleFixture } from '../fixture.ts';
import { codeAt, enrolTotp, enrollingSession } from './fixture.ts';

const t0 = Date.UTC(2025, 0, 15, 12, 0, 0);

describe('TOTP codes (RFC 6238)', () => {
  test('accept the current time step and one step either side, and nothing further', async () => {
    const secret = generateSecret();
    for (const offset of [-30_000, 0, 30_000]) {
      const check = await checkTotpCode(secret, await codeAt(secret, t0 + offset), t0, null);
      assert.ok(check.valid, `a code ${offset / 1000}s away`);
      assert.equal(check.step, Math.floor((t0 + offset) / 30_000));
    }
    for (const offset of [-90_000, -60_000, 60_000, 90_000]) {
      assert.deepEqual(await checkTotpCode(secret, await codeAt(secret, t0 + offset), t0, null), { valid: false, reason: 'wrong_code' }, `${offset / 1000}s away`);
    }
  });

  test('refuse a code of a time step already used, or of an earlier one (RFC 6238 §5.2)', async () => {
    const secret = generateSecret();
    const step = Math.floor(t0 / 30_000);
    const code = await codeAt(secret, t0);
    assert.deepEqual(await checkTotpCode(secret, code, t0, step), { valid: false, reason: 'replayed' });
    assert.deepEqual(await checkTotpCode(secret, await codeAt(secret, t0 - 30_000), t0, step), { valid: false, reason: 'replayed' });
    assert.ok((await checkTotpCode(secret, await codeAt(secret, t0 + 30_000), t0, step)).valid, 'the next step is fine');
  });

  test('refuse anything that is not six digits without throwing, and accept spaces as apps show them', async () => {
    const secret = generateSecret();
    for (const input of ['', '12345', '1234567', 'abcdef', '12 34 5', '１２３４５６', '-12345']) {
      assert.deepEqual(await checkTotpCode(secret, input, t0, null), { valid: false, reason: 'wrong_code' }, JSON.stringify(input));
    }
    const code = await codeAt(secret, t0);
    assert.ok((await checkTotpCode(secret, `${code.slice(0, 3)} ${code.slice(3)}`, t0, null)).valid);
  });

  test('provision authenticator apps with an otpauth URI naming Clearance’s host and the person', () => {
    const uri = new URL(totpUri('https://login.example.com/idp', 'alice', 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP'));
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.match(decodeURIComponent(uri.pathname), /^\/Clearance \(login\.example\.com\):alice$/);
    assert.equal(uri.searchParams.get('secret'), 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP');
    assert.equal(uri.searchParams.get('issuer'), 'Clearance (login.example.com)');
    // SHA-1, 6 digits, 30 s: the Key Uri Format's defaults, left out so every app reads them alike.
    assert.deepEqual([...uri.searchParams.keys()].sort(), ['issuer', 'secret']);
  });
});

for (const dialect of testDialects()) {
  describe(`TOTP authenticators on ${dialect.name}`, () => {
    test('keep the secret sealed under the master key, bound to its row and person', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { factorId, secret } = await enrolTotp(f, 'alice');
      assert.match(secret, /^[A-Z2-7]{32}$/, '160 bits, base32');
      const row = await f.ctx.storage.db.selectFrom('totp_factors').selectAll().where('id', '=', factorId).executeTakeFirstOrThrow();
      assert.match(row.secret, /^v2\.[0-9a-f]{16}\./);
      assert.ok(!row.secret.includes(secret));
      assert.equal(openTotpSecret(f.ctx.identity.factorKeys, row), secret);
      // Copied onto another person, or opened with another master key: it does not open.
      assert.throws(() => openTotpSecret(f.ctx.identity.factorKeys, { ...row, user_id: 'someone-else' }), SealedBoxError);
      assert.throws(() => openTotpSecret(factorKeys(Buffer.alloc(32, 7)), row), /sealed with master key/);
    });

    test('keep a pending secret bound to the session that began the enrolment: no other session reads or confirms it', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const begun = await beginTotpEnrolment(f.ctx, alice.id, enrollingSession);
      assert.ok(begun.ok);
      const { secret } = (await pendingTotpEnrolment(f.ctx, alice.id, 'alice', enrollingSession))!;
      const row = await f.ctx.storage.db.selectFrom('totp_factors').selectAll().where('id', '=', begun.id).executeTakeFirstOrThrow();
      assert.equal(openPendingTotpSecret(f.ctx.identity.factorKeys, row, enrollingSession), secret);
      assert.equal(openPendingTotpSecret(f.ctx.identity.factorKeys, row, 'another-session'), undefined);
      assert.throws(() => openTotpSecret(f.ctx.identity.factorKeys, row), SealedBoxError, 'not a confirmed one yet');
      assert.equal(await pendingTotpEnrolment(f.ctx, alice.id, 'alice', 'another-session'), undefined);
      const code = await codeAt(secret, f.clock.now());
      assert.deepEqual(await confirmTotpEnrolment(f.ctx, alice, 'another-session', code, { sourceAddress: '198.51.100.7' }), { ok: false, reason: 'not_pending' });
      assert.equal((await totpFactorOf(f.ctx, alice.id))!.confirmedAt, null);
      // Confirmed by its own session, it is sealed again for sign-ins: bound to its row and person only.
      assert.ok((await confirmTotpEnrolment(f.ctx, alice, enrollingSession, code, { sourceAddress: '198.51.100.7' })).ok);
      const confirmed = await f.ctx.storage.db.selectFrom('totp_factors').selectAll().where('id', '=', begun.id).executeTakeFirstOrThrow();
      assert.equal(openTotpSecret(f.ctx.identity.factorKeys, confirmed), secret);
    });

    test('are usable only once confirmed with a first code, which cannot be used again', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      assert.ok((await beginTotpEnrolment(f.ctx, alice.id, enrollingSession)).ok);
      const { secret, factor } = (await pendingTotpEnrolment(f.ctx, alice.id, 'alice', enrollingSession))!;
      assert.equal(factor.confirmedAt, null);
      assert.deepEqual(await confirmTotpEnrolment(f.ctx, alice, enrollingSession, '000000', { sourceAddress: '198.51.100.7' }), { ok: false, reason: 'wrong_code' });
      assert.equal((await totpFactorOf(f.ctx, alice.id))!.confirmedAt, null, 'a wrong code confirms nothing');
      const code = await codeAt(secret, f.clock.now());
      const confirmed = await confirmTotpEnrolment(f.ctx, alice, enrollingSession, code, { sourceAddress: '198.51.100.7' });
      assert.ok(confirmed.ok);
      assert.equal(confirmed.recoveryCodes!.length, 10);
      assert.equal((await totpFactorOf(f.ctx, alice.id))!.confirmedAt, f.clock.now());
      assert.equal(await pendingTotpEnrolment(f.ctx, alice.id, 'alice', enrollingSession), undefined, 'the secret is never shown again');
      assert.deepEqual(await confirmTotpEnrolment(f.ctx, alice, enrollingSession, code, { sourceAddress: '198.51.100.7' }), { ok: false, reason: 'not_pending' });
      const row = await f.ctx.storage.db.selectFrom('totp_factors').select('last_used_step').where('id', '=', factor.id).executeTakeFirstOrThrow();
      assert.equal(row.last_used_step, Math.floor(f.clock.now() / 30_000), 'the confirming code’s step counts as used');

      const [enrolled] = await f.events('user.factor_enrolled');
      assert.deepEqual(enrolled!.details, { factor: 'totp', credential: factor.id, source_address: '198.51.100.7' });
      assert.equal(enrolled!.subject, alice.id);
      const [failed] = await f.events('user.factor_failed');
      assert.deepEqual(failed!.decision, { allow: false, reasons: ['wrong_code'] });
      const text = await f.auditText();
      assert.ok(!text.includes(secret) && !text.includes(code), 'neither the secret nor a code is audited');
    });

    test('allow one authenticator per person: a new enrolment replaces a pending one, not a confirmed one', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const first = await beginTotpEnrolment(f.ctx, alice.id, enrollingSession);
      const second = await beginTotpEnrolment(f.ctx, alice.id, enrollingSession);
      assert.ok(first.ok && second.ok && first.id !== second.id);
      assert.equal((await totpFactorOf(f.ctx, alice.id))!.id, second.id);
      const bob = await enrolTotp(f, 'bob');
      assert.deepEqual(await beginTotpEnrolment(f.ctx, bob.userId, enrollingSession), { ok: false, reason: 'already_enrolled' });
      assert.equal((await totpFactorOf(f.ctx, bob.userId))!.id, bob.factorId);
    });

    test('record each accepted time step once, however many nodes try at the same time', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { factorId } = await enrolTotp(f, 'alice');
      const step = Math.floor(f.clock.now() / 30_000);
      // Concurrent connections of the pool on PostgreSQL; one after another on SQLite.
      const attempts = await Promise.all(Array.from({ length: 6 }, () => recordTotpStep(f.ctx, factorId, step, f.clock.now(), 'sign_in').executeTakeFirst()));
      assert.equal(attempts.filter((r) => Number(r.numUpdatedRows) === 1).length, 1);
      assert.equal(Number((await recordTotpStep(f.ctx, factorId, step - 1, f.clock.now(), 'sign_in').executeTakeFirst()).numUpdatedRows), 0, 'an earlier step neither');
    });

    test('removed before they were confirmed, end no session: they signed nobody in', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      const session = await startSession(f.ctx, { userId: alice.id, acr: acr.password, amr: ['pwd'], cookieHeader: undefined });
      assert.ok((await beginTotpEnrolment(f.ctx, alice.id, enrollingSession)).ok);
      assert.deepEqual(await removeTotp(f.ctx, alice, { sourceAddress: '198.51.100.7' }), { removed: true });
      assert.ok(await readSession(f.ctx, session.setCookie.split(';')[0]), 'still signed in');
      assert.deepEqual(await f.events('user.signed_out_everywhere'), []);
    });

    test('are removed with their recovery codes, and the removal is audited', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { userId, factorId } = await enrolTotp(f, 'alice');
      const alice = (await findUserByUsername(f.ctx, 'alice'))!;
      assert.deepEqual(await removeTotp(f.ctx, alice, { sourceAddress: '198.51.100.7', requestId: 'req-9' }), { removed: true });
      assert.equal(await totpFactorOf(f.ctx, userId), undefined);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', userId).execute(), []);
      assert.deepEqual(await removeTotp(f.ctx, alice, { sourceAddress: '198.51.100.7' }), { removed: false, reason: 'not_found' });
      const events = await f.events('user.factor_removed');
      assert.equal(events.length, 1);
      assert.deepEqual(events[0]!.details, {
        factor: 'totp',
        credential: factorId,
        was_confirmed: true,
        recovery_codes_removed: 10,
        sessions_ended: 0,
        refresh_tokens_revoked: 0,
        codes_discarded: 0,
        session_continued: false,
        source_address: '198.51.100.7',
      });
      const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'factor.removed').execute();
      assert.deepEqual(alerts.map((a) => [a.subject, JSON.parse(a.data).factor]), [[userId, 'totp']], 'the removal raises a factor.removed alert, once');
    });

    test('stay when they are the only factor meeting the person’s role minimum, until a passkey meets it', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } }, users: [{ username: 'tom', password: 'tom-correct-horse-1', roles: ['trader'] }] });
      const { userId, factorId } = await enrolTotp(f, 'tom');
      const tom = (await findUserByUsername(f.ctx, 'tom'))!;
      assert.deepEqual(await removeTotp(f.ctx, tom, { sourceAddress: '198.51.100.7' }), { removed: false, reason: 'last_required_factor', required: acr.multiFactor });
      assert.equal((await totpFactorOf(f.ctx, userId))!.id, factorId);
      assert.equal((await f.ctx.storage.db.selectFrom('recovery_codes').select('digest').where('user_id', '=', userId).execute()).length, 10, 'the codes stay too');
      const [refused] = await f.events('user.factor_removal_refused');
      assert.deepEqual(refused!.decision, { allow: false, reasons: ['last_required_factor'] });
      assert.deepEqual(refused!.details, { factor: 'totp', credential: factorId, required_acr: acr.multiFactor, source_address: '198.51.100.7' });
      assert.deepEqual(await f.events('user.factor_removed'), []);

      const options = await registrationOptions(f.ctx, tom, 'session-of-tom');
      const authenticator = new SoftwareAuthenticator({ origin: 'http://localhost:9000' });
      const registered = await registerPasskey(f.ctx, { person: tom, name: 'Laptop', credential: JSON.stringify(authenticator.register(options)), binding: 'session-of-tom', sourceAddress: '198.51.100.7' });
      assert.ok(registered.ok);
      assert.deepEqual(await removeTotp(f.ctx, tom, { sourceAddress: '198.51.100.7' }), { removed: true });
    });
  });
}
