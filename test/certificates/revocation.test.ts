import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { forgetRevocationAnswers, revocationStatus } from '../../src/certificates/revocation.ts';
import { makePartnerPki } from '../helpers/partner-pki.ts';

// The one revocation checker for certificates of other CAs (partners' mTLS clients, people's smart
// cards): OCSP from the certificate's AIA first, then its CRL distribution point, answers kept for
// a while, unavailability said with why.

const both = { ocsp: { cacheSeconds: 300 }, crl: { refreshSeconds: 300 }, timeoutMs: 2000 };

test('asks OCSP first, and reuses its answer for the cache lifetime', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const issued = pki.issue('bravo-connector');
  const leaf = new X509Certificate(issued.cert);
  const root = new X509Certificate(pki.rootPem);
  assert.deepEqual(await revocationStatus(both, leaf, root, Date.now()), { status: 'good', source: 'ocsp' });
  assert.deepEqual(await revocationStatus(both, leaf, root, Date.now()), { status: 'good', source: 'ocsp' });
  assert.deepEqual(pki.served, { ocsp: 1, crl: 0 });
  // Without a cache lifetime every check asks.
  await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000 }, leaf, root, Date.now());
  assert.equal(pki.served.ocsp, 2);
});

test('falls back to the CRL when the OCSP responder does not answer, and reports a revocation from either', async (t) => {
  forgetRevocationAnswers();
  const pki = await makePartnerPki(t, { name: 'Bravo' });
  const root = new X509Certificate(pki.rootPem);
  const good = new X509Certificate(pki.issue('good').cert);
  const revoked = pki.issue('revoked');
  pki.revoke(revoked);
  const silentOcsp = { ocsp: { url: 'http://127.0.0.1:9/ocsp', cacheSeconds: 0 }, crl: { refreshSeconds: 0 }, timeoutMs: 1000 };
  assert.deepEqual(await revocationStatus(silentOcsp, good, root, Date.now()), { status: 'good', source: 'crl' });
  const fromCrl = await revocationStatus(silentOcsp, new X509Certificate(revoked.cert), root, Date.now());
  assert.equal(fromCrl.status, 'revoked');
  assert.equal((fromCrl as { source: string }).source, 'crl');
  const fromOcsp = await revocationStatus({ ocsp: { cacheSeconds: 0 }, timeoutMs: 2000 }, new X509Certificate(revoked.cert), root, Date.now());
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
