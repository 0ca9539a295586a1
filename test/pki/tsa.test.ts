import assert from 'node:assert/strict';
import { createHash, createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { requestTimestamp, TimestampError, timestampRequest, verifyTimestampResponse, verifyTimestampToken } from '../../src/pki/tsa.ts';
import { forgeTimestampToken, startLocalTsa } from '../helpers/tsa.ts';
import * as x509 from '../../src/pki/x509.ts';
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
  // Within the certificates' validity, which starts when openssl issues them (a stamp outside it is refused for that alone).
  const genTime = new Date(Math.floor(Date.now() / 1000) * 1000 + 60_000);
  const stampBy = (eku: string) => forgeTimestampToken({ ...authority.issue(eku), digest, genTime });
  // The rule's own case: a TSA certificate as RFC 3161 §2.3 requires it verifies.
  assert.equal(verifyTimestampToken(stampBy('critical,timeStamping'), { digest, trusted: [authority.ca] }).genTime.toISOString(), genTime.toISOString());
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

// The TSA certificate's path up to CLEARANCE_TSA_TRUST (RFC 5280 §6.1), at the stamp's genTime.

/** A TSA under an intermediate CA, made by openssl, answering with `openssl ts -reply`: its token carries the intermediate (and the root). */
function opensslTsaUnderIntermediate(t: Parameters<typeof scratch>[0]) {
  const files = scratch(t);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-batch'];
  const run = (args: string[]) => assert.ok(openssl(args).ok, args.join(' '));
  const caExtensions = 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n';
  run(['req', '-x509', ...ec, '-keyout', files.at('root.key'), '-out', files.at('root.pem'), '-days', '2', '-subj', '/CN=TSA Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-new', ...ec, '-keyout', files.at('intermediate.key'), '-out', files.at('intermediate.csr'), '-subj', '/CN=TSA Intermediate']);
  files.write('intermediate.ext', caExtensions);
  run(['x509', '-req', '-in', files.at('intermediate.csr'), '-CA', files.at('root.pem'), '-CAkey', files.at('root.key'), '-CAcreateserial', '-out', files.at('intermediate.pem'), '-days', '2', '-extfile', files.at('intermediate.ext')]);
  run(['req', '-new', ...ec, '-keyout', files.at('tsa.key'), '-out', files.at('tsa.csr'), '-subj', '/CN=TSA under an intermediate']);
  files.write('tsa.ext', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  run(['x509', '-req', '-in', files.at('tsa.csr'), '-CA', files.at('intermediate.pem'), '-CAkey', files.at('intermediate.key'), '-CAcreateserial', '-out', files.at('tsa.pem'), '-days', '2', '-extfile', files.at('tsa.ext')]);
  files.write('chain.pem', readFileSync(files.at('intermediate.pem'), 'utf8') + readFileSync(files.at('root.pem'), 'utf8'));
  files.write('serial', '01\n');
  files.write('tsa.cnf', ['[ tsa ]', 'default_tsa = tsa_config', '[ tsa_config ]', `dir = ${files.dir}`, 'serial = $dir/serial', 'crypto_device = builtin', 'signer_cert = $dir/tsa.pem', 'certs = $dir/chain.pem', 'signer_key = $dir/tsa.key', 'signer_digest = sha256', 'default_policy = 1.3.6.1.4.1.59999.9.1', 'digests = sha256', 'accuracy = secs:1', 'ordering = no', 'tsa_name = no', 'ess_cert_id_chain = no', 'ess_cert_id_alg = sha256', ''].join('\n'));
  return {
    files,
    root: new X509Certificate(readFileSync(files.at('root.pem'))),
    intermediate: new X509Certificate(readFileSync(files.at('intermediate.pem'))),
    /** openssl's TimeStampResp over `digest` for a query with `nonce`. */
    stamp(nonce: Buffer): Buffer {
      files.write('query.tsq', timestampRequest(digest, nonce));
      run(['ts', '-reply', '-config', files.at('tsa.cnf'), '-queryfile', files.at('query.tsq'), '-out', files.at('reply.tsr')]);
      return readFileSync(files.at('reply.tsr'));
    },
  };
}

test('a stamp of a TSA under an intermediate CA verifies when only the root is trusted, the token carrying the intermediate, and openssl ts -verify agrees', async (t) => {
  const tsa = opensslTsaUnderIntermediate(t);
  const nonce = Buffer.from('0102030405060708', 'hex');
  const stamp = verifyTimestampResponse(tsa.stamp(nonce), { digest, nonce, trusted: [tsa.root] });
  assert.ok(Math.abs(stamp.genTime.getTime() - Date.now()) < 10_000);
  tsa.files.write('token.der', stamp.token);
  const checked = await opensslAsync(['ts', '-verify', '-digest', digest.toString('hex'), '-in', tsa.files.at('token.der'), '-token_in', '-CAfile', tsa.files.at('root.pem')]);
  assert.match(checked.output, /Verification: OK/);
  // Trusting the intermediate itself (a trust file naming the TSA's issuing CA) works as before.
  assert.ok(verifyTimestampToken(stamp.token, { digest, trusted: [tsa.intermediate] }));
  // Another root, of the same name, is no anchor of this chain.
  const stranger = opensslTsaUnderIntermediate(t);
  assert.throws(() => verifyTimestampToken(stamp.token, { digest, trusted: [stranger.root] }), (e: TimestampError) => e.untrustedSigner && /not one this Clearance trusts/.test(e.message));
});

const hour = 3600_000;
const day = 24 * hour;

interface Made {
  certificate: X509Certificate;
  keys: webcrypto.CryptoKeyPair;
  key: KeyObject;
}

/** A certificate made with @peculiar/x509 (dates and constraints chosen): a CA's, or a TSA's (timeStamping alone, critical). */
async function made(subject: string, issuer: Made | undefined, options: { from: number; to: number; ca?: { pathLength?: number; keyCertSign?: boolean } | false }): Promise<Made> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = [await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)];
  if (options.ca) {
    extensions.push(new x509.BasicConstraintsExtension(true, options.ca.pathLength, true));
    extensions.push(new x509.KeyUsagesExtension(options.ca.keyCertSign === false ? x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true));
  } else {
    extensions.push(new x509.BasicConstraintsExtension(false, undefined, true));
    extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true));
    if (options.ca === undefined) extensions.push(new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.8'], true));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
    subject,
    issuer: issuer ? issuer.certificate.subject.split('\n').join(', ') : subject,
    notBefore: new Date(Date.now() + options.from),
    notAfter: new Date(Date.now() + options.to),
    publicKey: keys.publicKey,
    signingKey: (issuer?.keys ?? keys).privateKey,
    signingAlgorithm: algorithm,
    extensions,
  });
  return { certificate: new X509Certificate(Buffer.from(cert.rawData)), keys, key: KeyObject.from(keys.privateKey) };
}

/** root → intermediate → TSA, each valid from `from` to `to` (ms from now) unless told otherwise. */
async function chainOf(options: { intermediate?: { from: number; to: number; ca?: { pathLength?: number; keyCertSign?: boolean } | false }; tsa?: { from: number; to: number }; rootPathLength?: number } = {}) {
  const root = await made('CN=Chain Root', undefined, { from: -30 * day, to: 30 * day, ca: options.rootPathLength === undefined ? {} : { pathLength: options.rootPathLength } });
  const intermediate = await made('CN=Chain Intermediate', root, { from: -10 * day, to: 10 * day, ca: {}, ...options.intermediate });
  const tsa = await made('CN=Chain TSA', intermediate, { from: -5 * day, to: 5 * day, ...options.tsa });
  const stampAt = (genTime: number, chain: X509Certificate[] = [intermediate.certificate]) =>
    forgeTimestampToken({ key: tsa.key, certificate: tsa.certificate, chain, digest, genTime: new Date(genTime) });
  return { root, intermediate, tsa, stampAt };
}

test('a stamp is refused when its intermediate is not the trusted root’s, is not carried, is no CA, or breaks the root’s pathLen (RFC 5280 §6.1)', async () => {
  const good = await chainOf();
  const now = Date.now();
  assert.ok(verifyTimestampToken(good.stampAt(now), { digest, trusted: [good.root.certificate] }), 'the rule’s own case');
  const untrusted = (token: Buffer, trusted: X509Certificate[]) => assert.throws(() => verifyTimestampToken(token, { digest, trusted }), (e: TimestampError) => e.untrustedSigner && /not one this Clearance trusts/.test(e.message));
  // An intermediate of the same name under another root: the TSA's signature links to it, the root's does not.
  const other = await chainOf();
  const impostor = forgeTimestampToken({ key: other.tsa.key, certificate: other.tsa.certificate, chain: [other.intermediate.certificate], digest, genTime: new Date(now) });
  untrusted(impostor, [good.root.certificate]);
  // The intermediate left out of the token: nothing links the TSA to the root.
  untrusted(good.stampAt(now, []), [good.root.certificate]);
  // An intermediate that is no CA (basicConstraints cA false), or may not sign certificates (no keyCertSign).
  const notCa = await chainOf({ intermediate: { from: -10 * day, to: 10 * day, ca: false } });
  untrusted(notCa.stampAt(now), [notCa.root.certificate]);
  const noKeyCertSign = await chainOf({ intermediate: { from: -10 * day, to: 10 * day, ca: { keyCertSign: false } } });
  untrusted(noKeyCertSign.stampAt(now), [noKeyCertSign.root.certificate]);
  // A root allowing no intermediate CA below it (pathLen 0), and one that allows one.
  untrusted((await chainOf({ rootPathLength: 0 })).stampAt(now), []);
  const pathLenZero = await chainOf({ rootPathLength: 0 });
  untrusted(pathLenZero.stampAt(now), [pathLenZero.root.certificate]);
  const pathLenOne = await chainOf({ rootPathLength: 1 });
  assert.ok(verifyTimestampToken(pathLenOne.stampAt(now), { digest, trusted: [pathLenOne.root.certificate] }));
});

test('a stamp is refused when an intermediate of its chain had expired at genTime, whether the trust names the root or the intermediate itself', async () => {
  // The intermediate expired a day ago; the TSA certificate under it is still within its dates.
  const chain = await chainOf({ intermediate: { from: -10 * day, to: -day } });
  const now = Date.now();
  for (const anchor of [chain.root, chain.intermediate]) {
    assert.throws(() => verifyTimestampToken(chain.stampAt(now - hour), { digest, trusted: [anchor.certificate] }), (e: TimestampError) => e.untrustedSigner && /Chain Intermediate is not valid now|the anchor is not valid now/.test(e.message), anchor.certificate.subject);
  }
  // Stamped while the intermediate was valid, the same chain verifies, now as years later.
  assert.ok(verifyTimestampToken(chain.stampAt(now - 2 * day), { digest, trusted: [chain.root.certificate] }));
});

test('a stamp is refused when its genTime falls outside the TSA certificate’s validity', async () => {
  const chain = await chainOf({ tsa: { from: -day, to: day } });
  const now = Date.now();
  // The TSA's issuing CA trusted (a path of one link); the root, the path of two, is no different.
  const trusted = [chain.intermediate.certificate];
  assert.ok(verifyTimestampToken(chain.stampAt(now), { digest, trusted }));
  for (const genTime of [now + 2 * day, now - 2 * day]) {
    assert.throws(() => verifyTimestampToken(chain.stampAt(genTime), { digest, trusted }), (e: TimestampError) => e.untrustedSigner && /genTime .* outside the TSA certificate's validity/.test(e.message), new Date(genTime).toISOString());
  }
  // The same with the TSA certificate itself trusted.
  assert.throws(() => verifyTimestampToken(chain.stampAt(now + 2 * day), { digest, trusted: [chain.tsa.certificate] }), /outside the TSA certificate's validity/);
});

test("a stamp is refused when an intermediate on its TSA certificate's path is of Clearance's own CA", async () => {
  // The TSA certificate is issued by an intermediate the own CA's root signed: no own-CA certificate signed the stamp, one is on its path.
  const chain = await chainOf();
  assert.throws(
    () => verifyTimestampToken(chain.stampAt(Date.now()), { digest, trusted: [chain.root.certificate], ownCa: [chain.root.certificate] }),
    (e: TimestampError) => e.untrustedSigner && /Clearance's own CA/.test(e.message),
  );
});
