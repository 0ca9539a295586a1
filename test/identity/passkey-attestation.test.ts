import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { acr } from '../../src/identity/acr.ts';
import { chainsToRoot, parseAttestationPolicy, readAttestationPolicy } from '../../src/identity/passkeys/attestation.ts';
import { verifyPasskeyLogin } from '../../src/identity/passkeys/login.ts';
import { removePasskey } from '../../src/identity/passkeys/manage.ts';
import { authenticationOptions } from '../../src/identity/passkeys/options.ts';
import { registerPasskey, registrationOptions } from '../../src/identity/passkeys/registration.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { SoftwareAuthenticator, type AuthenticatorOptions } from '../helpers/authenticator.ts';
import { makePki, type Pem } from '../helpers/pki.ts';
import { peopleFixture } from './fixture.ts';

const origin = 'http://localhost:9000';
const yubikey = 'ee882879-721c-4913-9775-3dfcce97072a';
const otherModel = '2fc0579f-8113-47ea-b116-bb5a8db9202a';

/** A policy file: approvers register only attested YubiKeys chained to `root`. */
function policyFile(t: TestContext, root: Pem): string {
  const pki = makePki(t);
  const file = join(pki.dir, 'attestation.yaml');
  writeFileSync(file, `roots:\n  - ${root.certFile}\nroles:\n  approver:\n    aaguids: [${yubikey.toUpperCase()}]\n`);
  return file;
}

/** An authenticator of model `aaguid` whose attestation certificate `pem` signs. */
function attestedAuthenticator(pem: Pem, aaguid: string, extra: Partial<AuthenticatorOptions> = {}): SoftwareAuthenticator {
  return new SoftwareAuthenticator({
    origin,
    aaguid,
    attestation: { certificate: new X509Certificate(pem.cert).raw, key: createPrivateKey(pem.key) },
    ...extra,
  });
}

async function approverFixture(t: TestContext) {
  const vendor = makePki(t);
  const f = await peopleFixture(t, { env: { CLEARANCE_PASSKEY_ATTESTATION: policyFile(t, vendor.ca) } });
  await f.apply({
    authentication: { role_minimums: { approver: acr.phishingResistantHardware } },
    users: [{ username: 'dana', password: 'dana-correct-horse-1', roles: ['approver'] }],
  });
  const dana = (await findUserByUsername(f.ctx, 'dana'))!;
  const register = async (authenticator: SoftwareAuthenticator, person = dana) => {
    // The test clock started before openssl issued the attestation certificate (valid from that second).
    f.clock.set(Math.max(f.clock.now(), Date.now()));
    const options = await registrationOptions(f.ctx, person, `s-${person.id}`);
    return { options, outcome: await registerPasskey(f.ctx, { person, name: 'Key', credential: JSON.stringify(authenticator.register(options)), binding: `s-${person.id}`, sourceAddress: '192.0.2.1' }) };
  };
  const signIn = async (authenticator: SoftwareAuthenticator, binding: string) =>
    verifyPasskeyLogin(f.ctx, { credential: JSON.stringify(authenticator.assert(await authenticationOptions(f.ctx, { binding }))), binding, sourceAddress: '192.0.2.1' });
  return { f, vendor, dana, register, signIn };
}

describe('passkey attestation', () => {
  test('an approver is asked for direct attestation and registers an attested key of an allowed model, which signs in at phrh', async (t) => {
    const { f, vendor, dana, register, signIn } = await approverFixture(t);
    const key = attestedAuthenticator(vendor.issueAttestation('yubikey', yubikey), yubikey);
    const { options, outcome } = await register(key);
    assert.equal(options.attestation, 'direct');
    assert.ok(outcome.ok);
    assert.equal(outcome.passkey.attested, true);
    assert.equal(outcome.passkey.aaguid, yubikey);
    assert.equal(outcome.passkey.attestationFormat, 'packed');
    const login = await signIn(key, 'ia-1');
    assert.ok(login.ok);
    assert.equal(login.acr, acr.phishingResistantHardware);
    assert.deepEqual(login.amr, ['hwk', 'user', 'mfa']);
    // The approver role asks :phrh: its last attested key cannot be removed.
    assert.deepEqual(await removePasskey(f.ctx, { userId: dana.id, passkeyId: outcome.passkey.id }), { removed: false, reason: 'last_required_factor', required: acr.phishingResistantHardware });
  });

  test('an approver may remove a passkey that is not their last approved hardware key, not that one', async (t) => {
    const { f, vendor, dana, register } = await approverFixture(t);
    const first = await register(attestedAuthenticator(vendor.issueAttestation('first', yubikey), yubikey));
    const second = await register(attestedAuthenticator(vendor.issueAttestation('second', yubikey), yubikey));
    assert.ok(first.outcome.ok && second.outcome.ok);
    assert.deepEqual(await removePasskey(f.ctx, { userId: dana.id, passkeyId: first.outcome.passkey.id }), { removed: true });
    assert.equal((await removePasskey(f.ctx, { userId: dana.id, passkeyId: second.outcome.passkey.id })).removed, false);
    // The AAGUID taken off the list: the key reaches :phr only, and stays (it is no weaker than what is left).
    f.ctx.config.passkeyAttestation = { ...f.ctx.config.passkeyAttestation!, roles: { approver: [otherModel] } };
    assert.equal((await removePasskey(f.ctx, { userId: dana.id, passkeyId: second.outcome.passkey.id })).removed, false, 'the last passkey of a phishing-resistant minimum');
  });

  test('an approver cannot register a passkey without attestation, of another model, synced, or chained to another root', async (t) => {
    const { f, vendor, register } = await approverFixture(t);
    const stranger = makePki(t);
    const cases: [string, SoftwareAuthenticator][] = [
      ['no attestation', new SoftwareAuthenticator({ origin, aaguid: yubikey })],
      ['another model', attestedAuthenticator(vendor.issueAttestation('other', otherModel), otherModel)],
      ['synced', attestedAuthenticator(vendor.issueAttestation('synced', yubikey), yubikey, { backupEligible: true })],
      ['another root', attestedAuthenticator(stranger.issueAttestation('fake', yubikey), yubikey)],
    ];
    for (const [why, authenticator] of cases) {
      const { outcome } = await register(authenticator);
      assert.deepEqual(outcome.ok ? 'registered' : outcome.reason, 'attestation_required', why);
    }
    assert.equal((await f.events('passkey.registration_failed')).length, 4);
    assert.equal((await f.events('passkey.registered')).length, 0);
  });

  test('a person without such a role registers any passkey, asked for no attestation; it signs in at phr', async (t) => {
    const { f, register, signIn } = await approverFixture(t);
    const alice = (await findUserByUsername(f.ctx, 'alice'))!;
    const passkey = new SoftwareAuthenticator({ origin });
    const { options, outcome } = await register(passkey, alice);
    assert.equal(options.attestation, 'none');
    assert.ok(outcome.ok);
    const login = await signIn(passkey, 'ia-1');
    assert.ok(login.ok);
    assert.equal(login.acr, acr.phishingResistant);
  });
});

describe('the attestation policy file', () => {
  test('reads roots from files relative to it, and AAGUIDs in any case', (t) => {
    const pki = makePki(t);
    const file = join(pki.dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ roots: ['ca.crt', pki.ca.cert], roles: { approver: { aaguids: [yubikey.toUpperCase()] } } }));
    const policy = readAttestationPolicy(file);
    assert.equal(policy.roots.length, 2);
    assert.deepEqual(policy.roles, { approver: [yubikey] });
  });

  test('refuses what it cannot use, naming the member', (t) => {
    const pki = makePki(t);
    const where = { file: 'policy.yaml', dir: pki.dir, now: new Date() };
    const refusals: [unknown, RegExp][] = [
      [{ roles: { approver: { aaguids: [yubikey] } } }, /roots: must list at least one root/],
      [{ roots: ['server.crt'], roles: { approver: { aaguids: [yubikey] } } }, /roots\[0\]: .* is not a CA certificate/],
      [{ roots: ['missing.pem'], roles: { approver: { aaguids: [yubikey] } } }, /roots\[0\]: cannot read missing.pem/],
      [{ roots: ['ca.crt'], roles: {} }, /roles: must name at least one role/],
      [{ roots: ['ca.crt'], roles: { approver: { aaguids: ['not-an-aaguid'] } } }, /roles.approver.aaguids\[0\]/],
      [{ roots: ['ca.crt'], roles: { approver: { aaguids: ['00000000-0000-0000-0000-000000000000'] } } }, /not all zeros/],
      [{ roots: ['ca.crt'], roles: { Approver: { aaguids: [yubikey] } } }, /roles.Approver: must be a lowercase role name/],
      [{ roots: ['ca.crt'], roles: { approver: { aaguids: [yubikey], mds: true } } }, /roles.approver.mds: unknown member/],
      [{ roots: ['ca.crt'], roles: { approver: { aaguids: [yubikey] } }, fetch: 'https://mds.fidoalliance.org' }, /fetch: unknown member/],
    ];
    for (const [value, message] of refusals) assert.throws(() => parseAttestationPolicy(value, where), message);
    assert.throws(() => parseAttestationPolicy({ roots: ['ca.crt'], roles: { approver: { aaguids: [yubikey] } } }, { ...where, now: new Date(Date.now() + 10 * 86400_000) }), /expired/);
  });

  test('a bad file stops the configuration, naming the variable', () => {
    assert.throws(() => loadConfig({ CLEARANCE_PASSKEY_ATTESTATION: '/nonexistent/attestation.yaml' }), (error: unknown) => error instanceof ConfigError && /^CLEARANCE_PASSKEY_ATTESTATION: /.test(error.message));
    assert.equal(loadConfig({}).passkeyAttestation, undefined);
  });

  test('a chain leads to a root only through certificates that issued each other, within their validity', (t) => {
    const vendor = makePki(t);
    const other = makePki(t);
    const leaf = new X509Certificate(vendor.issueAttestation('key', yubikey).cert).raw;
    assert.equal(chainsToRoot([leaf], [vendor.ca.cert], new Date()), true);
    assert.equal(chainsToRoot([leaf], [other.ca.cert], new Date()), false);
    assert.equal(chainsToRoot([leaf], [vendor.ca.cert], new Date(Date.now() + 10 * 86400_000)), false);
    assert.equal(chainsToRoot([], [vendor.ca.cert], new Date()), false);
    // A certificate the stranger made for itself does not become a root by being sent along.
    assert.equal(chainsToRoot([new X509Certificate(other.issueAttestation('fake', yubikey).cert).raw, new X509Certificate(other.ca.cert).raw], [vendor.ca.cert], new Date()), false);
  });
});
