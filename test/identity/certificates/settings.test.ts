import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { executePersonCertificates, personCertificateAuthorities, planPersonCertificates } from '../../../src/identity/certificates/settings.ts';
import { Validator } from '../../../src/validation.ts';
import { testContext, testDialects } from '../../helpers/storage.ts';
import { hardwarePolicy, makePersonPki } from '../../helpers/person-pki.ts';
import { applyDocument, tradingAgentProfile } from '../../pki/fixture.ts';
import { applyPersonCertificates, problemsOf } from './fixture.ts';

// Apply's `person_certificates` (docs/certificate-sign-in.md): what it accepts, what it refuses
// (every problem at its path), and that its authorities are the whole list.

const email = [{ certificate: 'san_email', person: 'email' }];

for (const dialect of testDialects()) {
  describe(`on ${dialect.name}`, () => {
  test('an authority list is stored whole: unchanged when applied again, an authority left out is removed', async (t) => {
    const { ctx } = await testContext({ t, dialect });
    const first = await makePersonPki(t);
    const second = await makePersonPki(t, { name: 'Second Person CA' });
    const authority = (name: string, pem: string) => ({ name, certificates: pem, hardware_policy_oids: [hardwarePolicy], revocation: { method: 'crl' }, mapping: email });
    const plan = async (section: unknown) => {
      const v = new Validator();
      const planned = await planPersonCertificates(ctx, v, 'person_certificates', section);
      assert.deepEqual(v.problems, []);
      return ctx.storage.db.transaction().execute((trx) => executePersonCertificates(trx, ctx.clock.now(), planned!));
    };
    assert.deepEqual(await plan({ authorities: [authority('desk-cards', first.caPem), authority('ops-cards', second.caPem)] }), [
      { kind: 'person_certificate_authority', id: 'desk-cards', outcome: 'created' },
      { kind: 'person_certificate_authority', id: 'ops-cards', outcome: 'created' },
    ]);
    assert.deepEqual(await plan({ authorities: [authority('desk-cards', first.caPem)] }), [
      { kind: 'person_certificate_authority', id: 'desk-cards', outcome: 'unchanged' },
      { kind: 'person_certificate_authority', id: 'ops-cards', outcome: 'removed' },
    ]);
    const [loaded] = await personCertificateAuthorities(ctx);
    assert.equal(loaded!.definition.name, 'desk-cards');
    assert.equal(loaded!.definition.software_certificates, 'single_factor', 'the default');
    assert.deepEqual(loaded!.definition.revocation, { method: 'crl', timeout_ms: 2000, refresh_seconds: 3600, on_unavailable: 'refuse' }, 'hard fail by default');
    assert.equal(loaded!.anchors.length, 1);
  });

  test('an external CA needs its revocation checked, CA certificates only, and one meaning per CA', async (t) => {
    const { ctx } = await testContext({ t, dialect });
    const pki = await makePersonPki(t);
    const person = pki.issue('alice', { san: 'email:alice@broker.example.com' });
    const problems = await problemsOf(ctx, {
      authorities: [
        { name: 'no-revocation', certificates: pki.caPem, mapping: email },
        { name: 'not-a-ca', certificates: person.cert, revocation: { method: 'crl' }, mapping: email },
        { name: 'ocsp-bad', certificates: (await makePersonPki(t, { name: 'Third CA' })).caPem, revocation: { method: 'ocsp', refresh_seconds: 60, url: 'ftp://ocsp.example' }, mapping: email },
        { name: 'Bad Name', certificates: 'not PEM', revocation: { method: 'crl', on_unavailable: 'maybe', allow_private_network: 'yes' }, mapping: [] },
        { name: 'both', clearance_profile: 'x', certificates: pki.caPem, mapping: email },
        { name: 'cards', certificates: pki.caPem, revocation: { method: 'crl' }, mapping: email },
        { name: 'cards', certificates: pki.caPem, revocation: { method: 'ocsp' }, mapping: email },
      ],
    });
    assert.deepEqual(problems, [
      'person_certificates.authorities[0].revocation: is required for an external CA: method ocsp or crl',
      'person_certificates.authorities[1].certificates: certificate 1 (CN=alice) is not a CA certificate',
      'person_certificates.authorities[2].revocation.url: must be an http or https URL',
      'person_certificates.authorities[2].revocation.refresh_seconds: is for crl: every OCSP sign-in asks the responder',
      'person_certificates.authorities[3].name: must be 1 to 40 of a-z, 0-9 and -, starting with a letter',
      'person_certificates.authorities[3].certificates: must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----)',
      'person_certificates.authorities[3].revocation.on_unavailable: must be one of refuse, allow',
      'person_certificates.authorities[3].revocation.allow_private_network: must be true or false',
      'person_certificates.authorities[3].mapping: must not be empty',
      'person_certificates.authorities[4]: needs exactly one of certificates (an external CA) and clearance_profile (Clearance’s own CA)',
      'person_certificates.authorities[4].clearance_profile: "x" is not a certificate profile (declare it under certificate_profiles)',
      'person_certificates.authorities[4].revocation: is required for an external CA: method ocsp or crl',
      'person_certificates.authorities[6].name: "cards" is also defined at person_certificates.authorities[5]',
      'person_certificates.authorities[6].certificates: holds a CA certificate that person_certificates.authorities[5] holds too',
    ]);
  });

  test('Clearance’s own CA is named by a profile that authenticates clients and is never a device profile', async (t) => {
    const { ctx } = await testContext({ t, dialect });
    await applyDocument(ctx, {
      certificate_profiles: [
        { ...tradingAgentProfile, name: 'person-smartcard', san: { email: ['{holder}@broker.example.com'] }, name_constraints: { email: ['broker.example.com'] } },
        { ...tradingAgentProfile, name: 'managed-device', kind: 'device' },
        { ...tradingAgentProfile, name: 'signing-only', ekus: ['email_protection'], client_auth: false },
      ],
    });
    assert.deepEqual(
      await problemsOf(ctx, {
        authorities: [
          { name: 'devices', clearance_profile: 'managed-device', mapping: email },
          { name: 'signing', clearance_profile: 'signing-only', mapping: email },
          { name: 'ours', clearance_profile: 'person-smartcard', revocation: { method: 'crl' }, mapping: email },
        ],
      }),
      [
        'person_certificates.authorities[0].clearance_profile: "managed-device" is a device profile: a device certificate never signs a person in',
        'person_certificates.authorities[1].clearance_profile: "signing-only" does not give client_auth among its ekus',
        'person_certificates.authorities[2].revocation: is not set for Clearance’s own CA: its certificates are checked against its own status at once',
      ],
    );
    await applyPersonCertificates(ctx, { authorities: [{ name: 'ours', clearance_profile: 'person-smartcard', hardware_policy_oids: [hardwarePolicy], mapping: email }] });
    assert.equal((await personCertificateAuthorities(ctx))[0]!.definition.clearance_profile, 'person-smartcard');
  });

  test('mapping rules and hardware policies are checked: a local part needs its domains, and refusing software needs a hardware policy', async (t) => {
    const { ctx } = await testContext({ t, dialect });
    const pki = await makePersonPki(t);
    assert.deepEqual(
      await problemsOf(ctx, {
        authorities: [
          {
            name: 'cards',
            certificates: pki.caPem,
            revocation: { method: 'ocsp', timeout_ms: 50 },
            software_certificates: 'refuse',
            hardware_policy_oids: ['not.an.oid'],
            mapping: [
              { certificate: 'san_upn', person: 'username', local_part: true },
              { certificate: 'subject_dn', person: 'email', local_part: true, domains: ['Corp.Example'] },
            ],
          },
          { name: 'software', certificates: (await makePersonPki(t, { name: 'Other CA' })).caPem, revocation: { method: 'crl' }, software_certificates: 'refuse', mapping: email },
        ],
        colour: 'blue',
      }),
      [
        'person_certificates.colour: is not a recognised field',
        'person_certificates.authorities[0].hardware_policy_oids[0]: must be a dotted OID',
        'person_certificates.authorities[0].revocation.timeout_ms: must be from 100 to 10000',
        'person_certificates.authorities[0].mapping[0].domains: is required with local_part: the domains whose local parts are usernames',
        'person_certificates.authorities[0].mapping[1].certificate: must be one of san_email, san_upn, subject_cn, subject_serial_number, subject_email',
        'person_certificates.authorities[0].mapping[1].local_part: reads a username: an email is matched whole',
        'person_certificates.authorities[1].hardware_policy_oids: names no policy, and software certificates are refused: no certificate could sign anyone in',
      ],
    );
  });
  });
}
