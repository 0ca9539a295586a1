import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { forgetRevocationAnswers, revocationStatus } from '../../src/certificates/revocation.ts';
import { makePartnerPki } from '../helpers/partner-pki.ts';

// The one revocation checker for certificates of other CAs (partners' mTLS clients, people's smart
// cards): OCSP from the certificate's AIA first, then its CRL distribution point, answers kept for
// a while, unavailability said with why.

/** The test CAs answer on loopback: a partner that allows the private network. */
const loopback = { allowPrivateNetwork: true, privateNetworkSetting: 'partner bravo’s profile' };
const both = { ocsp: { cacheSeconds: 300 }, crl: { refreshSeconds: 300 }, timeoutMs: 2000, ...loopback };

test('asks OCSP first, and reuses its answer for the cache lifetime', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const issued = pki.issue('bravo-connector');
  const leaf = new X509Certificate(issued.cert);
  const root = new X509Certificate(pki.rootPem);
  assert.deepEqual(await revocationStatus(both, leaf, root, Date.now()), { status: 'good', source: 'ocsp' });
  assert.deepEqual(await revocationStatus(both, leaf, root, Date.now()), { status: 'good', source: 'ocsp' });
  assert.deepEqual(pki.served, { ocsp: 1, crl: 0, rootOcsp: 0, rootCrl: 0 });
  // Without a cache lifetime every check asks.
  await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000, ...loopback }, leaf, root, Date.now());
  assert.equal(pki.served.ocsp, 2);
});

test('falls back to the CRL when the OCSP responder does not answer, and reports a revocation from either', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const root = new X509Certificate(pki.rootPem);
  const good = new X509Certificate(pki.issue('good').cert);
  const revoked = pki.issue('revoked');
  pki.revoke(revoked);
  const silentOcsp = { ocsp: { url: 'http://127.0.0.1:9/ocsp', cacheSeconds: 0 }, crl: { refreshSeconds: 0 }, timeoutMs: 1000, ...loopback };
  assert.deepEqual(await revocationStatus(silentOcsp, good, root, Date.now()), { status: 'good', source: 'crl' });
  const fromCrl = await revocationStatus(silentOcsp, new X509Certificate(revoked.cert), root, Date.now());
  assert.equal(fromCrl.status, 'revoked');
  assert.equal((fromCrl as { source: string }).source, 'crl');
  const fromOcsp = await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000, ...loopback }, new X509Certificate(revoked.cert), root, Date.now());
  assert.equal(fromOcsp.status, 'revoked');
  assert.equal((fromOcsp as { source: string }).source, 'ocsp');
});

test('with neither source answering, the answer is unavailable and says why for each', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const leaf = new X509Certificate(pki.issue('bravo-connector').cert);
  pki.down = true;
  const answer = await revocationStatus(both, leaf, new X509Certificate(pki.rootPem), Date.now());
  assert.equal(answer.status, 'unavailable');
  assert.match((answer as { detail: string }).detail, /^OCSP: the OCSP responder answered 503; CRL: the CRL distribution point answered 503$/);
});

test('takes a CRL only when it covers the certificate in full: not a delta, indirect, some-reasons or CA-only CRL, nor another distribution point’s', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const root = new X509Certificate(pki.rootPem);
  const leaf = new X509Certificate(pki.issue('bravo-connector').cert);
  const crlOnly = { crl: { refreshSeconds: 0 }, timeoutMs: 2000, ...loopback };
  const check = async (extensions: string | undefined) => {
    // A CRL refused when fetched leaves the one held before in use until its nextUpdate: none is held.
    forgetRevocationAnswers();
    pki.crlExtensions = extensions;
    return revocationStatus(crlOnly, leaf, root, Date.now());
  };
  // RFC 5280 §5.2.5 with nothing left out, and one of end entities only: they cover it.
  assert.deepEqual(await check(`issuingDistributionPoint = critical,@idp\n[ idp ]\nfullname = URI:${pki.crlUrl}`), { status: 'good', source: 'crl' });
  assert.deepEqual(await check('issuingDistributionPoint = critical,@idp\n[ idp ]\nonlyuser = TRUE'), { status: 'good', source: 'crl' });
  for (const [what, extensions, why] of [
    ['CA certificates only', 'issuingDistributionPoint = critical,@idp\n[ idp ]\nonlyCA = TRUE', /does not cover this certificate: it holds CA certificates only/],
    ['some reasons only', 'issuingDistributionPoint = critical,@idp\n[ idp ]\nonlysomereasons = keyCompromise', /covers only some revocation reasons/],
    ['indirect', 'issuingDistributionPoint = critical,@idp\n[ idp ]\nindirectCRL = TRUE', /is an indirect CRL/],
    ['another distribution point', 'issuingDistributionPoint = critical,@idp\n[ idp ]\nfullname = URI:http://127.0.0.1:9/other.crl', /the CRL of another distribution point/],
    ['a delta CRL', '2.5.29.27 = critical,ASN1:INTEGER:1', /is a delta CRL/],
    ['a critical extension not understood', '1.3.6.1.4.1.99999.1 = critical,ASN1:NULL', /critical extension not understood/],
  ] as const) {
    const answer = await check(extensions);
    assert.equal(answer.status, 'unavailable', what);
    assert.match((answer as { detail: string }).detail, why, what);
  }
});

test('takes a CRL only when its signature verifies with the key of the certificate’s issuer, whatever name it carries', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  // Another CA of the very same name, with its own key, serving its own CRL.
  const twin = await makePartnerPki(t, { name: 'Bravo' });
  assert.equal(new X509Certificate(twin.rootPem).subject, new X509Certificate(pki.rootPem).subject);
  const leaf = new X509Certificate(pki.issue('bravo-connector').cert);
  const answer = await revocationStatus({ crl: { url: twin.crlUrl, refreshSeconds: 0 }, timeoutMs: 2000, ...loopback }, leaf, new X509Certificate(pki.rootPem), Date.now());
  assert.equal(answer.status, 'unavailable');
  assert.match((answer as { detail: string }).detail, /the CRL’s signature does not verify with the issuing CA’s key/);
});

test('answers for an issuing CA certificate from its root’s OCSP responder and CRL', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Charlie', intermediate: true });
  const root = new X509Certificate(pki.rootPem);
  const issuing = new X509Certificate(pki.intermediatePem!);
  assert.deepEqual(await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000, ...loopback }, issuing, root, Date.now()), { status: 'good', source: 'ocsp' });
  pki.revokeIssuingCa();
  assert.equal((await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000, ...loopback }, issuing, root, Date.now())).status, 'revoked');
  assert.equal((await revocationStatus({ crl: { refreshSeconds: 0 }, timeoutMs: 2000, ...loopback }, issuing, root, Date.now())).status, 'revoked');
  assert.deepEqual([pki.served.rootOcsp, pki.served.rootCrl], [2, 1]);
});

test('fetches what a certificate names under the SSRF rules: a private address only where the partner allows the private network', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const root = new X509Certificate(pki.rootPem);
  const leaf = new X509Certificate(pki.issue('bravo-connector').cert);
  const closed = { ocsp: { cacheSeconds: 0 }, crl: { refreshSeconds: 0 }, timeoutMs: 2000, allowPrivateNetwork: false, privateNetworkSetting: 'partner bravo’s profile' };
  const answer = await revocationStatus(closed, leaf, root, Date.now());
  assert.equal(answer.status, 'unavailable');
  assert.equal((answer as { refused?: true }).refused, true, 'refused by the rules: no soft fail rides it out');
  assert.match(
    (answer as { detail: string }).detail,
    /^OCSP: 127\.0\.0\.1, a loopback address; partner bravo’s profile does not allow the private network \(allow_private_network\); CRL: 127\.0\.0\.1, a loopback address; partner bravo’s profile does not allow the private network \(allow_private_network\)$/,
  );
  assert.deepEqual(pki.served, { ocsp: 0, crl: 0, rootOcsp: 0, rootCrl: 0 }, 'nothing was sent');
  // A URL the operator configured is the operator's word: it may be on the private network.
  assert.deepEqual(await revocationStatus({ crl: { url: pki.crlUrl, refreshSeconds: 0 }, timeoutMs: 2000, allowPrivateNetwork: false, privateNetworkSetting: 'partner bravo’s profile' }, leaf, root, Date.now()), { status: 'good', source: 'crl' });
});

test('never fetches from the cloud metadata service, whoever names it and whatever the profile allows', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const resolve = async () => [{ address: '169.254.169.254', family: 4 as const }];
  const configured = { ocsp: { url: 'http://ocsp.bravo.example/', cacheSeconds: 0 }, timeoutMs: 2000, ...loopback, resolve };
  const answer = await revocationStatus(configured, new X509Certificate(pki.issue('c').cert), new X509Certificate(pki.rootPem), Date.now());
  assert.deepEqual(answer, { status: 'unavailable', detail: 'ocsp.bravo.example resolves to 169.254.169.254, a cloud metadata service address, which is never fetched', refused: true });
});

test('follows no redirect from a responder or a distribution point', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const server = createServer((_req, res) => res.writeHead(302, { location: pki.crlUrl }).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/crl`;
  const answer = await revocationStatus({ crl: { url, refreshSeconds: 0 }, timeoutMs: 2000, ...loopback }, new X509Certificate(pki.issue('c').cert), new X509Certificate(pki.rootPem), Date.now());
  assert.deepEqual(answer, { status: 'unavailable', detail: 'the CRL distribution point answered 302' });
  assert.equal(pki.served.crl, 0);
});

test('takes the answer of a partner CA’s delegated OCSP responder: a certificate the CA issued for OCSPSigning (RFC 6960 §4.2.2.2)', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const root = new X509Certificate(pki.rootPem);
  const good = new X509Certificate(pki.issue('good').cert);
  const revoked = pki.issue('revoked');
  pki.revoke(revoked);
  // The partner's responder: its own key and certificate, EKU OCSPSigning, without id-pkix-ocsp-nocheck.
  const ca = join(pki.dir, 'root');
  const at = (name: string) => join(pki.dir, name);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(at('responder.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\n');
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch', '-keyout', at('responder.key'), '-out', at('responder.csr'), '-subj', '/CN=Bravo OCSP Responder']);
  run(['ca', '-batch', '-config', join(ca, 'ca.cnf'), '-in', at('responder.csr'), '-out', at('responder.crt'), '-extfile', at('responder.ext'), '-days', '2', '-notext']);
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      writeFileSync(at('request.der'), Buffer.concat(chunks));
      run(['ocsp', '-index', join(ca, 'index.txt'), '-CA', join(ca, 'ca.crt'), '-rsigner', at('responder.crt'), '-rkey', at('responder.key'), '-reqin', at('request.der'), '-respout', at('response.der'), '-nmin', '5']);
      response.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(readFileSync(at('response.der')));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const delegated = { ocsp: { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ocsp`, cacheSeconds: 0 }, timeoutMs: 5000, ...loopback };
  assert.deepEqual(await revocationStatus(delegated, good, root, Date.now()), { status: 'good', source: 'ocsp' });
  assert.equal((await revocationStatus(delegated, new X509Certificate(revoked.cert), root, Date.now())).status, 'revoked');
});
