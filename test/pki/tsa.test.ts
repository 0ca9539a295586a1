import assert from 'node:assert/strict';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { requestTimestamp, TimestampError, timestampRequest, verifyTimestampResponse, verifyTimestampToken } from '../../src/pki/tsa.ts';
import { forgeTimestampToken, startLocalTsa } from '../helpers/tsa.ts';
import { openssl, opensslAsync, scratch } from './fixture.ts';

// The RFC 3161 client against openssl ts acting as a local TSA, and openssl ts -verify as the
// independent checker of what the client accepted.

const digest = createHash('sha256').update('signing evidence record').digest();

test('a stamp from a local openssl TSA verifies, within seconds of now, and openssl ts -verify agrees', async (t) => {
  const tsa = await startLocalTsa(t);
  const stamp = await requestTimestamp(tsa.url, digest, [tsa.ca]);
  assert.ok(Math.abs(stamp.genTime.getTime() - Date.now()) < 10_000);
  assert.equal(stamp.policy, '1.3.6.1.4.1.59999.9.1');
  assert.match(stamp.signer, /BEGIN CERTIFICATE/);
  const token = join(tsa.dir, 'token.der');
  writeFileSync(token, stamp.token);
  const checked = await opensslAsync(['ts', '-verify', '-digest', digest.toString('hex'), '-in', token, '-token_in', '-CAfile', join(tsa.dir, 'ca.pem'), '-untrusted', join(tsa.dir, 'tsa.pem')]);
  assert.match(checked.output, /Verification: OK/);
  // Offline, later: the stored token verifies without the TSA.
  assert.equal(verifyTimestampToken(stamp.token, { digest, trusted: [tsa.ca] }).genTime.getTime(), stamp.genTime.getTime());
});

test('a nonce whose random bytes begin with zeros is sent as a minimal DER INTEGER, which the TSA accepts and echoes', async (t) => {
  const tsa = await startLocalTsa(t);
  // One random nonce in 256 begins with 0x00: sent as it was, the INTEGER is malformed and openssl refuses it.
  for (const hex of ['0001020304050607', '0000000000000001', '0080010203040506', '8001020304050607']) {
    const nonce = Buffer.from(hex, 'hex');
    const response = await fetch(tsa.url, { method: 'POST', headers: { 'content-type': 'application/timestamp-query' }, body: timestampRequest(digest, nonce) });
    assert.equal(response.status, 200, hex);
    const stamp = verifyTimestampResponse(Buffer.from(await response.arrayBuffer()), { digest, nonce, trusted: [tsa.ca] });
    assert.ok(stamp.genTime instanceof Date, hex);
  }
});

test('a stamp is refused over another digest, tampered, from an untrusted TSA, or when the TSA does not answer', async (t) => {
  const tsa = await startLocalTsa(t);
  const stamp = await requestTimestamp(tsa.url, digest, [tsa.ca]);
  const other = createHash('sha256').update('another record').digest();
  assert.throws(() => verifyTimestampToken(stamp.token, { digest: other, trusted: [tsa.ca] }), (e: TimestampError) => /another digest/.test(e.message));
  const tampered = Buffer.from(stamp.token);
  tampered[tampered.length - 10]! ^= 0x01;
  assert.throws(() => verifyTimestampToken(tampered, { digest, trusted: [tsa.ca] }), TimestampError);
  const stranger = await startLocalTsa(t);
  assert.throws(() => verifyTimestampToken(stamp.token, { digest, trusted: [stranger.ca] }), (e: TimestampError) => /not one this Clearance trusts/.test(e.message));
  // The TSA's own certificate trusted directly works; an unrelated self-signed one does not.
  assert.ok(verifyTimestampToken(stamp.token, { digest, trusted: [new X509Certificate(tsa.tsaPem)] }));
  await assert.rejects(requestTimestamp('http://127.0.0.1:9/nothing', digest, [tsa.ca], { timeoutMs: 500 }), TimestampError);
  assert.throws(() => verifyTimestampToken(Buffer.from('garbage'), { digest, trusted: [tsa.ca] }), TimestampError);
});

/** A CA made by openssl, and certificates it issues with the extended key usage `eku` (openssl's syntax). */
function opensslCa(t: Parameters<typeof scratch>[0], name: string) {
  const files = scratch(t);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];
  const run = (args: string[]) => assert.ok(openssl(args).ok, args.join(' '));
  run(['req', '-x509', ...ec, '-keyout', files.at('ca.key'), '-out', files.at('ca.pem'), '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const ca = new X509Certificate(readFileSync(files.at('ca.pem')));
  let n = 0;
  return {
    ca,
    issue(eku: string): { key: ReturnType<typeof createPrivateKey>; certificate: string } {
      const leaf = `leaf-${++n}`;
      run(['req', '-new', ...ec, '-keyout', files.at(`${leaf}.key`), '-out', files.at(`${leaf}.csr`), '-subj', `/CN=${name} ${leaf}`]);
      files.write(`${leaf}.ext`, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\nsubjectKeyIdentifier=hash\n`);
      run(['x509', '-req', '-in', files.at(`${leaf}.csr`), '-CA', files.at('ca.pem'), '-CAkey', files.at('ca.key'), '-CAcreateserial', '-out', files.at(`${leaf}.pem`), '-days', '2', '-extfile', files.at(`${leaf}.ext`)]);
      return { key: createPrivateKey(readFileSync(files.at(`${leaf}.key`))), certificate: readFileSync(files.at(`${leaf}.pem`), 'utf8') };
    },
  };
}

test('a stamp is refused unless its signer certificate has the timeStamping EKU alone and critical (RFC 3161 §2.3)', (t) => {
  const authority = opensslCa(t, 'Some CA');
  const stampBy = (eku: string) => forgeTimestampToken({ ...authority.issue(eku), digest, genTime: new Date('2020-01-01T00:00:00Z') });
  // The rule's own case: a TSA certificate as RFC 3161 §2.3 requires it verifies.
  assert.equal(verifyTimestampToken(stampBy('critical,timeStamping'), { digest, trusted: [authority.ca] }).genTime.toISOString(), '2020-01-01T00:00:00.000Z');
  // A certificate with timeStamping among others (an agent's: clientAuth too), or not critical, is no TSA's.
  assert.throws(() => verifyTimestampToken(stampBy('critical,clientAuth,timeStamping'), { digest, trusted: [authority.ca] }), (e: TimestampError) => /timeStamping EKU alone/.test(e.message));
  assert.throws(() => verifyTimestampToken(stampBy('timeStamping'), { digest, trusted: [authority.ca] }), (e: TimestampError) => /critical/.test(e.message));
  assert.throws(() => verifyTimestampToken(stampBy('clientAuth,timeStamping'), { digest, trusted: [authority.ca] }), TimestampError);
});

test("a stamp signed by a certificate of Clearance's own CA is refused, even when the TSA trust names that CA", (t) => {
  const own = opensslCa(t, 'Clearance Issuing');
  const stamp = forgeTimestampToken({ ...own.issue('critical,timeStamping'), digest, genTime: new Date('2020-01-01T00:00:00Z') });
  assert.throws(() => verifyTimestampToken(stamp, { digest, trusted: [own.ca], ownCa: [own.ca] }), (e: TimestampError) => /Clearance's own CA/.test(e.message));
  // Another CA's TSA is still trusted beside it.
  const tsaCa = opensslCa(t, 'A TSA CA');
  const real = forgeTimestampToken({ ...tsaCa.issue('critical,timeStamping'), digest, genTime: new Date() });
  assert.ok(verifyTimestampToken(real, { digest, trusted: [own.ca, tsaCa.ca], ownCa: [own.ca] }));
});

test('a token whose TSTInfo is not DER is refused as a TimestampError, never a plain parse error (the evidence answers 503, not 500)', async () => {
  const { AsnConvert, OctetString } = await import('@peculiar/asn1-schema');
  const { ContentInfo, EncapsulatedContent, EncapsulatedContentInfo, SignedData, id_signedData } = await import('@peculiar/asn1-cms');
  const { id_ct_tstInfo } = await import('@peculiar/asn1-tsp');
  const garbled = new SignedData({
    version: 3,
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_ct_tstInfo, eContent: new EncapsulatedContent({ single: new OctetString(Buffer.from('not a TSTInfo at all')) }) }),
  });
  const token = Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(garbled) })));
  assert.throws(() => verifyTimestampToken(token, { digest, trusted: [] }), (error: unknown) => error instanceof TimestampError && /TSTInfo/.test(error.message));
});
