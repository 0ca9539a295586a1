import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { describe, test } from 'node:test';
import { acr } from '../../src/identity/acr.ts';
import { deleteUser } from '../../src/identity/lifecycle.ts';
import { verifyPersonAssertion } from '../../src/identity/passkeys/assertion.ts';
import { issueChallenge } from '../../src/identity/passkeys/challenges.ts';
import { verifyPasskeyLogin } from '../../src/identity/passkeys/login.ts';
import { removePasskey, renamePasskey } from '../../src/identity/passkeys/manage.ts';
import { authenticationOptions, decoyCredentials } from '../../src/identity/passkeys/options.ts';
import { registerPasskey, registrationOptions } from '../../src/identity/passkeys/registration.ts';
import { listPasskeys } from '../../src/identity/passkeys/store.ts';
import { readSession, startSession } from '../../src/identity/sessions.ts';
import { findUserByUsername, type User } from '../../src/identity/users.ts';
import { reinstate } from '../../src/risk/anomalies/store.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { testDialects } from '../helpers/storage.ts';
import { enrolTotp } from './factors/fixture.ts';
import { peopleFixture, type PeopleFixture } from './fixture.ts';

const origin = 'http://localhost:9000'; // the test context's issuer
const address = '198.51.100.7';

/** Registers a passkey for `username` with `authenticator` (a new one unless given); fails the test if refused. */
async function enrol(f: PeopleFixture, username: string, authenticator = new SoftwareAuthenticator({ origin }), name = 'Laptop') {
  const person = (await findUserByUsername(f.ctx, username))!;
  const options = await registrationOptions(f.ctx, person, `session-of-${username}`);
  const outcome = await registerPasskey(f.ctx, { person, name, credential: JSON.stringify(authenticator.register(options)), binding: `session-of-${username}`, sourceAddress: address });
  assert.ok(outcome.ok, outcome.ok ? '' : outcome.reason);
  return { person, authenticator, passkey: outcome.passkey };
}

/** A sign-in assertion for interaction `binding` (username-less unless `username`). */
async function assertion(f: PeopleFixture, authenticator: SoftwareAuthenticator, binding: string, options: { username?: string; bend?: Parameters<SoftwareAuthenticator['assert']>[1] } = {}) {
  const request = await authenticationOptions(f.ctx, { binding, ...(options.username !== undefined ? { username: options.username } : {}) });
  return JSON.stringify(authenticator.assert(request, options.bend));
}

const attempt = (credential: string, binding = 'ia-1') => ({ credential, binding, sourceAddress: address, requestId: 'req-1', clientId: 'trading-ui' });

for (const dialect of testDialects()) {
  describe(`passkeys on ${dialect.name}`, () => {
    test('a registered passkey signs its person in without a username, at phr with hwk, user and mfa', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person, authenticator, passkey } = await enrol(f, 'alice');
      assert.equal(passkey.aaguid, '00000000-0000-0000-0000-000000000000');
      assert.equal(passkey.attestationFormat, 'none');
      assert.equal(passkey.attested, false);
      f.clock.advance(1000);
      const outcome = await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1')));
      assert.ok(outcome.ok);
      assert.equal(outcome.user.id, person.id);
      assert.equal(outcome.acr, acr.phishingResistant);
      assert.deepEqual(outcome.amr, ['hwk', 'user', 'mfa']);
      const [stored] = await listPasskeys(f.ctx, person.id);
      assert.equal(stored!.signCount, 1);
      assert.equal(stored!.lastUsedAt, f.clock.now());
      const [event] = await f.events('user.login_succeeded');
      assert.deepEqual(event!.details, { factor: 'passkey', method: 'passkey', credential: passkey.credentialId, source_address: address, amr: ['hwk', 'user', 'mfa'], acr: acr.phishingResistant });
      const [registered] = await f.events('passkey.registered');
      assert.equal(registered!.details!.credential, passkey.credentialId);
      assert.doesNotMatch(await f.auditText(), new RegExp(Buffer.from(passkey.publicKey).toString('base64url').slice(0, 40)));
    });

    test('a synced passkey signs in with swk', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator, passkey } = await enrol(f, 'alice', new SoftwareAuthenticator({ origin, backupEligible: true, counterStep: 0 }));
      assert.equal(passkey.backupEligible, true);
      const outcome = await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1')));
      assert.ok(outcome.ok);
      assert.deepEqual(outcome.amr, ['swk', 'user', 'mfa']);
      // A counter that stays 0 is no regression (authenticators without a counter).
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-2'), 'ia-2'))).ok);
    });

    test('a person suspended pending review by an anomaly cannot sign in with a passkey until reinstated', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person, authenticator } = await enrol(f, 'alice');
      await f.ctx.storage.db
        .insertInto('risk_suspensions')
        .values({ id: 'suspension-1', principal_type: 'User', principal_id: person.id, anomaly_id: 'anomaly-1', suspended_at: f.clock.now(), reinstated_at: null, reinstated_by: null, note: null })
        .execute();
      f.ctx.risk.reactions.invalidate();
      assert.deepEqual(await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1'))), { ok: false, reason: 'invalid_credentials' });
      assert.deepEqual((await f.events('user.login_failed')).at(-1)!.decision?.reasons, ['suspended']);
      assert.ok(await reinstate(f.ctx, 'suspension-1', { actor: 'admin', client: 'admin-ops' }));
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-2'), 'ia-2'))).ok);
    });

    test('a challenge is answered once: the same assertion posted again fails', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator } = await enrol(f, 'alice');
      const credential = await assertion(f, authenticator, 'ia-1');
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(credential))).ok);
      assert.deepEqual(await verifyPasskeyLogin(f.ctx, attempt(credential)), { ok: false, reason: 'invalid_credentials' });
      const failed = await f.events('user.login_failed');
      assert.deepEqual(failed.map((e) => e.decision!.reasons), [['challenge_unknown']]);
    });

    test('a challenge of another interaction, or an expired one, is not accepted', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator } = await enrol(f, 'alice');
      assert.equal((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1'), 'ia-2'))).ok, false);
      const late = await assertion(f, authenticator, 'ia-3');
      f.clock.advance(5 * 60_000 + 1);
      assert.equal((await verifyPasskeyLogin(f.ctx, attempt(late, 'ia-3'))).ok, false);
      assert.deepEqual((await f.events('user.login_failed')).map((e) => e.decision!.reasons), [['challenge_unknown'], ['challenge_unknown']]);
    });

    test('a signature counter that does not grow is refused and audited as passkey.counter_regressed', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator, passkey, person } = await enrol(f, 'alice');
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1', { bend: { signCount: 7 } })))).ok);
      const outcome = await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-2', { bend: { signCount: 5 } }), 'ia-2'));
      assert.deepEqual(outcome, { ok: false, reason: 'invalid_credentials' });
      const [regressed] = await f.events('passkey.counter_regressed');
      assert.equal(regressed!.subject, person.id);
      assert.deepEqual(regressed!.details, { credential: passkey.credentialId, stored_count: 7, presented_count: 5 });
      assert.deepEqual((await f.events('user.login_failed')).map((e) => e.decision!.reasons), [['counter_regressed']]);
      assert.equal((await listPasskeys(f.ctx, person.id))[0]!.signCount, 7);
    });

    test('refuses an assertion without user verification, for another origin, or for another RP ID', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator } = await enrol(f, 'alice');
      const bends = [{ userVerified: false }, { origin: 'http://localhost:9001' }, { origin: 'http://evil.example' }, { rpId: 'evil.example' }, { crossOrigin: true }, { type: 'webauthn.create' }];
      for (const [i, bend] of bends.entries()) {
        const outcome = await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, `ia-${i}`, { bend }), `ia-${i}`));
        assert.equal(outcome.ok, false, JSON.stringify(bend));
      }
      assert.deepEqual(
        (await f.events('user.login_failed')).map((e) => e.decision!.reasons[0]),
        ['user_not_verified', 'wrong_origin', 'wrong_origin', 'wrong_rp_id', 'cross_origin', 'wrong_type'],
      );
    });

    test('after a username, only that person’s passkeys can answer', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const alice = await enrol(f, 'alice');
      const bob = await enrol(f, 'bob');
      const options = await authenticationOptions(f.ctx, { binding: 'ia-1', username: 'Alice' });
      assert.deepEqual(options.allowCredentials?.map((c) => c.id), [alice.passkey.credentialId]);
      assert.equal(options.userVerification, 'required');
      // Bob answers the challenge issued for Alice.
      const outcome = await verifyPasskeyLogin(f.ctx, attempt(JSON.stringify(bob.authenticator.assert({ ...options, allowCredentials: [] }))));
      assert.equal(outcome.ok, false);
      assert.deepEqual((await f.events('user.login_failed'))[0]!.decision!.reasons, ['wrong_person']);
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, alice.authenticator, 'ia-2', { username: 'alice' }), 'ia-2'))).ok);
    });

    test('a username-less sign-in needs the user handle, and it must be the passkey’s person’s', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator } = await enrol(f, 'alice');
      const bob = (await findUserByUsername(f.ctx, 'bob'))!;
      assert.equal((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1', { bend: { userHandle: null } })))).ok, false);
      assert.equal((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-2', { bend: { userHandle: Buffer.from(bob.id).toString('base64url') } }), 'ia-2'))).ok, false);
      assert.deepEqual((await f.events('user.login_failed')).map((e) => e.decision!.reasons[0]), ['user_handle_missing', 'wrong_person']);
      // After a username the person is known: no user handle is needed (a U2F key sends none).
      assert.ok((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-3', { username: 'alice', bend: { userHandle: null } }), 'ia-3'))).ok);
    });

    test('a username nobody holds, or one without passkeys, gets decoys shaped like a person’s, the same each time', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await enrol(f, 'alice');
      const real = await authenticationOptions(f.ctx, { binding: 'ia-1', username: 'alice' });
      const unknown = await authenticationOptions(f.ctx, { binding: 'ia-2', username: 'mallory' });
      const again = await authenticationOptions(f.ctx, { binding: 'ia-3', username: 'mallory' });
      const withoutPasskeys = await authenticationOptions(f.ctx, { binding: 'ia-4', username: 'bob' });
      assert.deepEqual(Object.keys(unknown).sort(), Object.keys(real).sort());
      assert.deepEqual(unknown.allowCredentials, again.allowCredentials);
      assert.deepEqual(unknown.allowCredentials, decoyCredentials(f.ctx.identity.passkeyDecoyKey, 'mallory').map((c) => ({ ...c, type: 'public-key' })));
      assert.deepEqual(withoutPasskeys.allowCredentials, decoyCredentials(f.ctx.identity.passkeyDecoyKey, 'bob').map((c) => ({ ...c, type: 'public-key' })));
      assert.equal(Buffer.from(unknown.allowCredentials![0]!.id, 'base64url').length, Buffer.from(real.allowCredentials![0]!.id, 'base64url').length);
      assert.notEqual(unknown.challenge, again.challenge);
    });

    test('a person manages their passkeys: rename and remove are audited with the credential id', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person, passkey } = await enrol(f, 'alice');
      assert.equal(await renamePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id, name: 'Phone' }), true);
      assert.equal((await listPasskeys(f.ctx, person.id))[0]!.name, 'Phone');
      const bob = (await findUserByUsername(f.ctx, 'bob'))!;
      assert.equal(await renamePasskey(f.ctx, { userId: bob.id, passkeyId: passkey.id, name: 'Mine' }), false, 'another person’s passkey');
      assert.deepEqual(await removePasskey(f.ctx, { userId: bob.id, passkeyId: passkey.id }), { removed: false, reason: 'not_found' });
      assert.deepEqual(await removePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id }), { removed: true });
      assert.deepEqual(await listPasskeys(f.ctx, person.id), []);
      assert.deepEqual((await f.events('passkey.renamed')).map((e) => e.details), [{ credential: passkey.credentialId, passkey: passkey.id, name: 'Phone' }]);
      assert.deepEqual((await f.events('passkey.removed')).map((e) => e.details), [
        { credential: passkey.credentialId, passkey: passkey.id, sessions_ended: 0, refresh_tokens_revoked: 0, codes_discarded: 0, session_continued: false },
      ]);
      const alerts = await f.ctx.storage.db.selectFrom('alerts').selectAll().where('type', '=', 'factor.removed').execute();
      assert.deepEqual(alerts.map((a) => [a.subject, JSON.parse(a.data).factor]), [[person.id, 'passkey']], 'the removal raises a factor.removed alert');
    });

    test('a removal signs the person out everywhere but in the session removing it, which goes on under a new id as the same sign-in', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person, passkey } = await enrol(f, 'alice');
      const level = { acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'] };
      const other = await startSession(f.ctx, { userId: person.id, ...level, cookieHeader: undefined });
      const remover = await startSession(f.ctx, { userId: person.id, ...level, cookieHeader: undefined });
      f.clock.advance(60_000);
      const outcome = await removePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id, keepSession: remover.authentication.sessionId });
      assert.ok(outcome.removed && outcome.setCookie);
      assert.equal(await readSession(f.ctx, other.setCookie.split(';')[0]), undefined, 'the other session ended');
      assert.equal(await readSession(f.ctx, remover.setCookie.split(';')[0]), undefined, 'the old id ended too');
      const continued = await readSession(f.ctx, outcome.setCookie.split(';')[0]);
      assert.ok(continued);
      assert.notEqual(continued.sessionId, remover.authentication.sessionId);
      assert.deepEqual({ ...continued, sessionId: '' }, { ...remover.authentication, sessionId: '' }, 'the same sign-in: auth_time, acr, amr');
      const [before, after] = await f.ctx.storage.db.selectFrom('sessions').select(['id', 'expires_at', 'end_reason']).where('id', 'in', [remover.authentication.sessionId, continued.sessionId]).orderBy('created_at').execute();
      assert.equal(Number(after!.expires_at), Number(before!.expires_at), 'it lives no longer');
      assert.equal(before!.end_reason, 'rotated');
      const [event] = await f.events('passkey.removed');
      assert.equal(event!.details!.sessions_ended, 1);
      assert.equal(event!.details!.session_continued, true);
      assert.deepEqual((await f.events('user.signed_out_everywhere')).map((e) => e.details!.via), ['factor-removed']);
    });

    test('the last passkey of a person who has no password cannot be removed: nothing would sign them in', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person, passkey } = await enrol(f, 'alice');
      await f.ctx.storage.db.updateTable('users').set({ password_hash: null }).where('id', '=', person.id).execute();
      assert.deepEqual(await removePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id }), { removed: false, reason: 'last_sign_in_factor' });
      assert.equal((await listPasskeys(f.ctx, person.id)).length, 1);
      const [event] = await f.events('passkey.removal_refused');
      assert.deepEqual(event!.decision!.reasons, ['last_sign_in_factor']);
      assert.deepEqual(await f.events('user.signed_out_everywhere'), [], 'nothing ended');
    });

    test('the last passkey of a person whose role asks a phishing-resistant level cannot be removed; a second one can', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({
        authentication: { role_minimums: { admin: acr.phishingResistant, trader: acr.multiFactor } },
        users: [{ username: 'carol', password: 'carol-correct-horse-1', roles: ['admin'] }],
      });
      const first = await enrol(f, 'carol');
      const refused = await removePasskey(f.ctx, { userId: first.person.id, passkeyId: first.passkey.id });
      assert.deepEqual(refused, { removed: false, reason: 'last_required_factor', required: acr.phishingResistant });
      const [event] = await f.events('passkey.removal_refused');
      assert.deepEqual(event!.details, { credential: first.passkey.credentialId, passkey: first.passkey.id, required_acr: acr.phishingResistant });
      const second = await enrol(f, 'carol', new SoftwareAuthenticator({ origin }), 'Spare');
      assert.deepEqual(await removePasskey(f.ctx, { userId: first.person.id, passkeyId: first.passkey.id }), { removed: true });
      assert.equal((await removePasskey(f.ctx, { userId: first.person.id, passkeyId: second.passkey.id })).removed, false);
    });

    test('a role whose minimum a password and a second factor meet does not hold on to passkeys when the person has an authenticator', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } }, users: [{ username: 'tom', password: 'tom-correct-horse-1', roles: ['trader'] }] });
      const { person, passkey } = await enrol(f, 'tom');
      await enrolTotp(f, 'tom');
      assert.deepEqual(await removePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id }), { removed: true });
    });

    test('the only passkey of a person without an authenticator, whose role asks two factors, cannot be removed', async (t) => {
      const f = await peopleFixture(t, { dialect });
      await f.apply({ authentication: { role_minimums: { trader: acr.multiFactor } }, users: [{ username: 'tom', password: 'tom-correct-horse-1', roles: ['trader'] }] });
      const { person, passkey } = await enrol(f, 'tom');
      // Removed, it would leave tom's password as his strongest factor: it alone would then enrol the next one.
      assert.deepEqual(await removePasskey(f.ctx, { userId: person.id, passkeyId: passkey.id }), { removed: false, reason: 'last_required_factor', required: acr.multiFactor });
      assert.equal((await listPasskeys(f.ctx, person.id)).length, 1);
    });

    test('deleting a person deletes their passkeys', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { person } = await enrol(f, 'alice');
      assert.equal(await deleteUser(f.ctx, 'alice', { actor: 'admin' }), true);
      assert.deepEqual(await listPasskeys(f.ctx, person.id), []);
      assert.equal((await f.events('user.deleted'))[0]!.details!.passkeys_removed, 1);
    });

    test('a locked person cannot sign in with a passkey', async (t) => {
      const f = await peopleFixture(t, { dialect });
      const { authenticator } = await enrol(f, 'alice');
      await f.apply({ users: [{ username: 'alice', status: 'locked' }] });
      assert.equal((await verifyPasskeyLogin(f.ctx, attempt(await assertion(f, authenticator, 'ia-1')))).ok, false);
      assert.deepEqual((await f.events('user.login_failed')).map((e) => e.decision!.reasons), [['locked']]);
    });
  });
}

describe('passkey registration', () => {
  test('refuses a response for another origin, RP ID, without user verification, or replayed', async (t) => {
    const f = await peopleFixture(t);
    const person = (await findUserByUsername(f.ctx, 'alice'))! as User;
    const authenticator = new SoftwareAuthenticator({ origin });
    const register = async (bend: Parameters<SoftwareAuthenticator['register']>[1]) => {
      const options = await registrationOptions(f.ctx, person, 's1');
      return registerPasskey(f.ctx, { person, name: 'Key', credential: JSON.stringify(authenticator.register(options, bend)), binding: 's1', sourceAddress: address });
    };
    for (const bend of [{ origin: 'http://localhost:9001' }, { rpId: 'example.com' }, { userVerified: false }, { crossOrigin: true }]) {
      assert.equal((await register(bend)).ok, false, JSON.stringify(bend));
    }
    const options = await registrationOptions(f.ctx, person, 's1');
    assert.equal(options.authenticatorSelection?.userVerification, 'required');
    assert.equal(options.authenticatorSelection?.residentKey, 'required');
    assert.equal(options.attestation, 'none');
    assert.equal(options.rp.id, 'localhost');
    const response = JSON.stringify(authenticator.register(options));
    assert.ok((await registerPasskey(f.ctx, { person, name: 'Key', credential: response, binding: 's1', sourceAddress: address })).ok);
    const replay = await registerPasskey(f.ctx, { person, name: 'Key', credential: response, binding: 's1', sourceAddress: address });
    assert.equal(replay.ok, false);
    assert.deepEqual(
      (await f.events('passkey.registration_failed')).map((e) => e.decision!.reasons[0]),
      ['verification_failed', 'verification_failed', 'verification_failed', 'cross_origin', 'challenge_unknown'],
    );
  });

  test('a challenge issued to one person’s session does not register a passkey for another', async (t) => {
    const f = await peopleFixture(t);
    const alice = (await findUserByUsername(f.ctx, 'alice'))!;
    const bob = (await findUserByUsername(f.ctx, 'bob'))!;
    const options = await registrationOptions(f.ctx, alice, 's1');
    const outcome = await registerPasskey(f.ctx, { person: bob, name: 'Key', credential: JSON.stringify(new SoftwareAuthenticator({ origin }).register(options)), binding: 's1', sourceAddress: address });
    assert.deepEqual(outcome.ok ? undefined : outcome.reason, 'wrong_person');
  });

  test('refuses an attestation format it cannot verify offline before verifying anything', async (t) => {
    const f = await peopleFixture(t);
    const person = (await findUserByUsername(f.ctx, 'alice'))!;
    const options = await registrationOptions(f.ctx, person, 's1');
    const response = new SoftwareAuthenticator({ origin }).register(options) as { response: { attestationObject: string } };
    // The same object with fmt "android-key" (whose chain check could fetch CRLs the certificate names).
    const object = Buffer.from(response.response.attestationObject, 'base64url');
    const index = object.indexOf(Buffer.from('\x64none', 'latin1'));
    const swapped = Buffer.concat([object.subarray(0, index), Buffer.from('\x6bandroid-key', 'latin1'), object.subarray(index + 5)]);
    response.response.attestationObject = swapped.toString('base64url');
    const outcome = await registerPasskey(f.ctx, { person, name: 'Key', credential: JSON.stringify(response), binding: 's1', sourceAddress: address });
    assert.deepEqual(outcome.ok ? undefined : outcome.reason, 'unsupported_attestation');
  });
});

describe('assertions for other ceremonies (approvals)', () => {
  test('verifyPersonAssertion checks a caller’s challenge and returns evidence that verifies offline', async (t) => {
    const f = await peopleFixture(t);
    const { person, authenticator, passkey } = await enrol(f, 'alice');
    const digest = createHash('sha256').update('{"type":"order"}').digest('base64url');
    const response = JSON.stringify(authenticator.assert({ challenge: digest, rpId: 'localhost', allowCredentials: [{ id: passkey.credentialId }] }));
    const verdict = await verifyPersonAssertion(f.ctx, { userId: person.id, expectedChallenge: digest, response });
    assert.ok(verdict.ok);
    const e = verdict.evidence;
    assert.equal(e.credentialId, passkey.credentialId);
    const signed = Buffer.concat([Buffer.from(e.authenticatorData, 'base64url'), createHash('sha256').update(Buffer.from(e.clientDataJSON, 'base64url')).digest()]);
    const key = createPublicKey({ key: Buffer.from(e.spki, 'base64url'), format: 'der', type: 'spki' });
    assert.equal(verify('sha256', signed, key, Buffer.from(e.signature, 'base64url')), true);
    assert.equal(JSON.parse(Buffer.from(e.clientDataJSON, 'base64url').toString()).challenge, digest);
    // Another challenge, or another person, fails.
    assert.deepEqual(await verifyPersonAssertion(f.ctx, { userId: person.id, expectedChallenge: 'other', response }).then((v) => !v.ok && v.reason), 'wrong_challenge');
    const bob = (await findUserByUsername(f.ctx, 'bob'))!;
    assert.deepEqual(await verifyPersonAssertion(f.ctx, { userId: bob.id, expectedChallenge: digest, response }).then((v) => !v.ok && v.reason), 'wrong_person');
  });

  test('issued challenges are stored only as their SHA-256', async (t) => {
    const f = await peopleFixture(t);
    const challenge = await issueChallenge(f.ctx, { purpose: 'login_discoverable', binding: 'ia-1', userId: null });
    const rows = await f.ctx.storage.db.selectFrom('passkey_challenges').selectAll().execute();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.id, createHash('sha256').update(challenge).digest('base64url'));
    assert.doesNotMatch(JSON.stringify(rows), new RegExp(challenge));
  });
});
