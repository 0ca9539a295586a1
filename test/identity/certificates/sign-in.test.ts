import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { acr } from '../../../src/identity/acr.ts';
import { requestCertificate, type IssuedCertificate } from '../../../src/pki/issuance.ts';
import { revokeCertificate } from '../../../src/pki/revocation.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../../authorization/fixture.ts';
import { approveAndRedeem, get, Jar, locationPath } from '../../endpoints/people-browser.ts';
import { hardwarePolicy, makePersonPki, softwarePolicy, type PersonPki } from '../../helpers/person-pki.ts';
import { applyDocument, initTestCa, opensslCsr, scratch, tradingAgentProfile } from '../../pki/fixture.ts';
import { testDialects, type TestDialect } from '../../helpers/storage.ts';
import { applyPersonCertificates, certificateSignIn, countEvents, lastEvent } from './fixture.ts';

// Certificate sign-in for people (issue 22 item 6, docs/certificate-sign-in.md) over HTTP: the
// browser's client certificate reaches Clearance in the header of the TLS-terminating proxy
// (RFC 9440), believed only from CLEARANCE_TRUSTED_PROXIES; certificates are made by openssl
// (`openssl ca`), their revocation served as a CRL and by `openssl ocsp`.

const proxyEnv = { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1' };

async function harness(t: TestContext, dialect: TestDialect, env: NodeJS.ProcessEnv = proxyEnv) {
  const f = await codeFlowFixture(t, { risk: 'off', env, dialect });
  const pki = await makePersonPki(t);
  const alice = await f.user('alice'); // alice@broker.example.com
  return { f, pki, alice };
}

/** One external authority: the firm's smart-card CA, its people mapped by their SAN email. */
function smartCards(pki: PersonPki, revocation: Record<string, unknown> = { method: 'crl' }, more: Record<string, unknown> = {}) {
  return {
    authorities: [
      {
        name: 'broker-smartcards',
        certificates: pki.caPem,
        hardware_policy_oids: [hardwarePolicy],
        // The test CA answers on loopback: the authority allows the private network.
        revocation: { allow_private_network: true, ...revocation },
        mapping: [
          { certificate: 'san_email', person: 'email' },
          { certificate: 'san_upn', person: 'username', domains: ['corp.broker.example'], local_part: true },
        ],
        ...more,
      },
    ],
  };
}

const aliceCard = (pki: PersonPki, name = 'alice-card') => pki.issue(name, { subject: '/O=Broker Ltd/CN=Alice Trader', san: 'email:alice@broker.example.com', policies: [hardwarePolicy] });

/** The sign-in with `header`, which must succeed; the tokens the client then gets. */
async function signsIn(f: CodeFlowFixture, header: string) {
  const { id, verifier, jar, response } = await certificateSignIn(f, header);
  assert.equal(response.statusCode, 303, response.body);
  return approveAndRedeem(f, jar, id, verifier, response);
}

/** The sign-in with `header`, which must be refused with `status` on the sign-in page; the page. */
async function refused(f: CodeFlowFixture, header: string | undefined, status: number): Promise<string> {
  const { response, jar } = await certificateSignIn(f, header);
  assert.equal(response.statusCode, status, response.body);
  assert.match(response.body, /Sign in with your smart card/, 'the sign-in page again');
  assert.equal(jar.cookies.has('clearance_session'), false, 'no session');
  return response.body;
}

for (const dialect of testDialects()) {
  describe(`on ${dialect.name}`, () => {
  test('a person signs in with a smart card and no password, and the tokens say phishing-resistant hardware with amr sc, hwk, pin, mfa', async (t) => {
    const { f, pki, alice } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const card = aliceCard(pki);
    const { idToken, accessToken } = await signsIn(f, card.header);
    assert.equal(idToken.sub, alice);
    assert.equal(idToken.acr, acr.phishingResistantHardware);
    assert.deepEqual(idToken.amr, ['sc', 'hwk', 'pin', 'mfa']);
    assert.equal(accessToken.acr, acr.phishingResistantHardware);
    const event = await lastEvent(f.ctx, 'user.login_succeeded');
    assert.equal(event.subject, alice);
    assert.deepEqual(event.decision?.reasons, ['certificate']);
    assert.equal(event.details.method, 'certificate');
    assert.equal(event.details.authority, 'broker-smartcards');
    assert.equal(event.details.hardware, true);
    assert.equal(event.details.revocation, 'good');
    assert.equal(event.details.via, 'proxy');
    assert.deepEqual(event.details.certificate, { serial: card.serial.replace(/^(00)+/, ''), issuer: 'O=Broker Ltd, CN=Broker Person CA', sha256: card.sha256 });
    assert.equal(JSON.stringify(event).includes('Alice Trader'), false, 'the certificate’s subject is never in the audit log');
    assert.equal(pki.served.crl, 1, 'the CRL was fetched');
  });

  test('a software certificate signs in at the lowest level with amr swk, and is refused where the authority accepts smart cards only', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const soft = pki.issue('alice-soft', { san: 'otherName:1.3.6.1.4.1.311.20.2.3;UTF8:alice@corp.broker.example', policies: [softwarePolicy] });
    const { idToken } = await signsIn(f, soft.header);
    assert.equal(idToken.acr, acr.password, 'one factor');
    assert.deepEqual(idToken.amr, ['swk']);
    assert.equal((await lastEvent(f.ctx, 'user.login_succeeded')).details.hardware, false);

    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'crl' }, { software_certificates: 'refuse' }));
    assert.match(await refused(f, soft.header, 401), /Only a certificate on a smart card signs you in here/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['software_refused']);
  });

  test('a certificate from a CA nobody trusts is refused with a page that says so, and audited', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const stranger = await makePersonPki(t, { name: 'Someone Else CA' });
    const forged = stranger.issue('forged', { san: 'email:alice@broker.example.com', policies: [hardwarePolicy] });
    assert.match(await refused(f, forged.header, 401), /not from an authority that signs people in here/);
    const event = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(event.decision?.reasons, ['untrusted']);
    assert.equal(event.details.method, 'certificate');
    assert.equal(event.subject, undefined, 'nobody is named: the certificate was never mapped');
    assert.equal((event.details.certificate as { sha256: string }).sha256, forged.sha256);
  });

  test('a revoked certificate is refused once the CA’s CRL lists it, and the CRL is fetched again after refresh_seconds', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'crl', refresh_seconds: 60 }));
    const card = aliceCard(pki);
    await signsIn(f, card.header);
    pki.revoke(card);
    // The CRL this node holds is its issuer's word until refresh_seconds (and never past its nextUpdate).
    await signsIn(f, card.header);
    f.clock.advance(61_000);
    assert.match(await refused(f, card.header, 401), /Your certificate has been revoked/);
    const event = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(event.decision?.reasons, ['revoked']);
    assert.equal(event.details.authority, 'broker-smartcards');
    assert.equal(pki.served.crl, 2);
  });

  test('with OCSP a revocation counts from the responder’s next answer, and an unreachable responder refuses the sign-in unless the authority soft-fails', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'ocsp', timeout_ms: 2000 }));
    const card = aliceCard(pki);
    await signsIn(f, card.header);

    pki.down = true;
    assert.match(await refused(f, card.header, 503), /could not be checked just now/);
    const unavailable = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(unavailable.decision?.reasons, ['revocation_unavailable']);
    assert.match(String(unavailable.details.detail), /503/);

    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'ocsp', on_unavailable: 'allow' }));
    const { idToken } = await signsIn(f, card.header);
    assert.equal(idToken.acr, acr.phishingResistantHardware);
    const soft = await lastEvent(f.ctx, 'user.login_succeeded');
    assert.equal(soft.details.revocation, 'unavailable', 'a soft-failed check is on the record');

    pki.down = false;
    pki.revoke(card);
    assert.match(await refused(f, card.header, 401), /Your certificate has been revoked/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['revoked']);
    assert.equal(pki.served.ocsp, 2);
  });

  test('a CRL or responder the certificate names on a private address is never asked unless the authority allows the private network; a url the operator configured is', async (t) => {
    const { f, pki } = await harness(t, dialect);
    const card = aliceCard(pki);
    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'crl', allow_private_network: false }));
    assert.match(await refused(f, card.header, 503), /could not be checked just now/);
    const event = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(event.decision?.reasons, ['revocation_unavailable']);
    assert.equal(event.details.detail, '127.0.0.1, a loopback address; the revocation setting of person certificate authority broker-smartcards does not allow the private network (allow_private_network)');
    assert.equal(pki.served.crl, 0, 'the CRL was never fetched');
    // Soft fail rides out an outage, not a responder Clearance's own rules refuse to ask.
    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'crl', on_unavailable: 'allow', allow_private_network: false }));
    assert.match(await refused(f, card.header, 503), /could not be checked just now/);
    assert.equal(pki.served.crl, 0);

    await applyPersonCertificates(f.ctx, smartCards(pki, { method: 'crl', url: pki.crlUrl, allow_private_network: false }));
    await signsIn(f, card.header);
    assert.equal(pki.served.crl, 1);
  });

  test('a certificate header from an address that is not the configured proxy is refused and audited, and never read', async (t) => {
    const { f, pki } = await harness(t, dialect, { CLEARANCE_CLIENT_CERT_HEADER: 'x-client-cert', CLEARANCE_TRUSTED_PROXIES: '10.9.8.7' });
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const card = aliceCard(pki);
    assert.match(await refused(f, card.header, 400), /did not reach Clearance through its trusted proxy/);
    const event = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(event.decision?.reasons, ['proxy_header_untrusted']);
    assert.equal(event.details.source_address, '127.0.0.1');
    assert.equal(event.details.certificate, undefined, 'the forged certificate is not read');
    assert.equal(pki.served.crl, 0);
  });

  test('no certificate gives the sign-in page again saying so; without an authority the page offers no smart card', async (t) => {
    const { f, pki } = await harness(t, dialect);
    const jar = new Jar();
    const { page } = await certificateSignIn(f, undefined, jar);
    assert.doesNotMatch(page.body, /smart card/, 'not offered while no authority is declared');
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const before = await countEvents(f.ctx, 'user.login_failed');
    assert.match(await refused(f, undefined, 400), /Your browser did not present a certificate/);
    assert.equal(await countEvents(f.ctx, 'user.login_failed'), before, 'nothing was tried: no event');
    // An empty list turns it off again.
    await applyPersonCertificates(f.ctx, { authorities: [] });
    const { response } = await certificateSignIn(f, aliceCard(pki).header);
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /not set up here/);
  });

  test('the mapping must name exactly one active person: unknown, shared and locked accounts all get one message', async (t) => {
    const { f, pki, alice } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const nobody = pki.issue('nobody', { san: 'email:nobody@broker.example.com', policies: [hardwarePolicy] });
    const unknownPage = await refused(f, nobody.header, 401);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['unmapped']);

    // Two people with one email: the certificate names neither.
    await f.apply({ users: [{ username: 'dana', email: 'desk@broker.example.com' }, { username: 'erik', email: 'Desk@broker.example.com' }] });
    const shared = pki.issue('shared', { san: 'email:desk@broker.example.com', policies: [hardwarePolicy] });
    const sharedPage = await refused(f, shared.header, 401);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['ambiguous']);

    await f.ctx.storage.db.updateTable('users').set({ status: 'locked', lock_reason: 'admin' }).where('id', '=', alice).execute();
    const lockedPage = await refused(f, aliceCard(pki).header, 401);
    const locked = await lastEvent(f.ctx, 'user.login_failed');
    assert.deepEqual(locked.decision?.reasons, ['locked']);
    assert.equal(locked.subject, alice);

    const message = (body: string) => /<div id="form-error" class="error" role="alert">([^<]*)<\/div>/.exec(body)?.[1];
    assert.equal(message(unknownPage), 'Your certificate could not be used to sign you in. Ask your administrator, or choose another way to sign in below.');
    assert.equal(message(sharedPage), message(unknownPage));
    assert.equal(message(lockedPage), message(unknownPage));
  });

  test('an expired certificate and one not for client authentication are refused', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const old = pki.issue('old', { san: 'email:alice@broker.example.com', policies: [hardwarePolicy], fromHours: -48, toHours: -24 });
    assert.match(await refused(f, old.header, 401), /Your certificate has expired/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['expired']);
    const server = pki.issue('server', { san: 'email:alice@broker.example.com', policies: [hardwarePolicy], eku: 'serverAuth' });
    assert.match(await refused(f, server.header, 401), /not one that can be used to sign in/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['not_for_client_auth']);
    assert.equal(pki.served.crl, 0, 'nothing is asked of the CA for a certificate refused on its face');
  });

  test('Clearance’s own CA signs people in by profile, refuses a revocation at once, and never takes a device or a workload certificate for a person', async (t) => {
    const { f, alice } = await harness(t, dialect);
    await initTestCa(f.ctx);
    const personProfile = { ...tradingAgentProfile, name: 'person-smartcard', policies: [hardwarePolicy], subject: 'CN={holder}, O=Example Broker', san: { email: ['{holder}@broker.example.com'] }, name_constraints: { email: ['broker.example.com'] } };
    const deviceProfile = { ...tradingAgentProfile, name: 'managed-device', kind: 'device', san: { email: ['{holder}@broker.example.com'] }, name_constraints: { email: ['broker.example.com'] } };
    await applyDocument(f.ctx, { certificate_profiles: [personProfile, deviceProfile, tradingAgentProfile] });
    await applyPersonCertificates(f.ctx, { authorities: [{ name: 'clearance-smartcards', clearance_profile: 'person-smartcard', hardware_policy_oids: [hardwarePolicy], mapping: [{ certificate: 'san_email', person: 'email' }] }] });
    f.clock.advance(2000);
    const files = scratch(t);
    const issue = async (holder: string, profile: string) => {
      const issued = (await requestCertificate(f.ctx, { profile, csr: opensslCsr(files, `${profile}-${holder}`).csrPem, holder, requestedBy: 'test', requesterType: 'client' })) as IssuedCertificate;
      const { X509Certificate } = await import('node:crypto');
      return { ...issued, header: `:${new X509Certificate(issued.certificatePem).raw.toString('base64')}:` };
    };

    const card = await issue('alice', 'person-smartcard');
    const { idToken } = await signsIn(f, card.header);
    assert.equal(idToken.sub, alice);
    assert.equal(idToken.acr, acr.phishingResistantHardware);
    assert.equal((await lastEvent(f.ctx, 'user.login_succeeded')).details.revocation, 'clearance');

    // AMENDMENTS: a device certificate identifies a device, never a person — even one whose names map to her.
    const workstation = await issue('alice', 'managed-device');
    assert.match(await refused(f, workstation.header, 401), /identifies this computer, not you/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['device_certificate']);
    const workload = await issue('algo-7', 'trading-agent');
    assert.match(await refused(f, workload.header, 401), /not one that signs a person in/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['not_a_person_profile']);

    await revokeCertificate(f.ctx, { serial: card.serial, reason: 'keyCompromise', actor: 'test' });
    assert.match(await refused(f, card.header, 401), /Your certificate has been revoked/);
    assert.deepEqual((await lastEvent(f.ctx, 'user.login_failed')).decision?.reasons, ['revoked']);
  });

  test('the sign-in page offers the smart card, and a person who signed in with one reaches consent like any other', async (t) => {
    const { f, pki } = await harness(t, dialect);
    await applyPersonCertificates(f.ctx, smartCards(pki));
    const { id, page, response, jar } = await certificateSignIn(f, aliceCard(pki).header);
    assert.match(page.body, new RegExp(`<form method="post" action="/interaction/${id}/certificate">`));
    assert.equal(locationPath(f, response), `/interaction/${id}`);
    const consent = await get(f, `/interaction/${id}`, jar);
    assert.equal(consent.statusCode, 200);
    assert.match(consent.body, /Alice Trader/);
  });
  });
}
