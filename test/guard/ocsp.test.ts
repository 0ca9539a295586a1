import assert from 'node:assert/strict';
import { createHash, KeyObject, sign, X509Certificate, type webcrypto } from 'node:crypto';
import { describe, test } from 'node:test';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { BasicOCSPResponse, CertID, CertStatus, id_pkix_ocsp_basic, KeyHash, OCSPResponse, OCSPResponseStatus, ResponderID, ResponseBytes, ResponseData, RevokedInfo, SingleResponse } from '@peculiar/asn1-ocsp';
import { OcspError, readOcspResponse } from '../../src/guard/ocsp.ts';
import * as x509 from '../../src/pki/x509.ts';

// The OCSP reader's match of an answer to the certificate asked about (RFC 6960 §4.1.1, §3.2): the
// whole CertID — hash algorithm, issuer name and key hashes, serial — under the issuer actually
// used, never the serial alone. Responses are made here, signed by the issuer's own key, so only
// the CertID differs between them. And who may sign an answer (RFC 6960 §4.2.2.2): for Clearance's
// own CA the CA or the responder it designated; for an external CA any responder it delegated to.

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const now = Date.now();

interface Ca {
  node: X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

async function keys(): Promise<webcrypto.CryptoKeyPair> {
  return (await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function certificate(subject: string, issuer: Ca | undefined, serialNumber: string, own?: webcrypto.CryptoKeyPair, extensions: x509.Extension[] = []): Promise<Ca> {
  const pair = own ?? (await keys());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject,
    issuer: issuer ? issuer.node.subject.split('\n').reverse().join(', ') : subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 24 * 3600_000),
    publicKey: pair.publicKey,
    signingKey: (issuer?.keys ?? pair).privateKey,
    signingAlgorithm: algorithm,
    extensions: issuer ? extensions : [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { node: new X509Certificate(Buffer.from(cert.rawData)), keys: pair };
}

/** id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1). */
const noCheck = '1.3.6.1.5.5.7.48.1.5';

const oids = { sha1: '1.3.14.3.2.26', sha256: '2.16.840.1.101.3.4.2.1', md5: '1.2.840.113549.2.5' };

/** A CertID for `leaf` as if issued by `issuer`, its hashes made with `hash` (the OID names `named`). */
function certId(leaf: X509Certificate, issuer: X509Certificate, hash: 'sha1' | 'sha256' = 'sha1', named: keyof typeof oids = hash): CertID {
  const parsed = AsnConvert.parse(issuer.raw, Certificate);
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: oids[named], parameters: null }),
    issuerNameHash: new OctetString(createHash(hash).update(Buffer.from(AsnConvert.serialize(parsed.tbsCertificate.subject))).digest()),
    issuerKeyHash: new OctetString(createHash(hash).update(Buffer.from(parsed.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)).digest()),
    serialNumber: AsnConvert.parse(leaf.raw, Certificate).tbsCertificate.serialNumber,
  });
}

/** A basic OCSP response of these single answers, signed with `signer`'s key, carrying `certs`. */
function response(signer: Ca, answers: { id: CertID; revoked?: true }[], certs: X509Certificate[] = []): Buffer {
  const data = new ResponseData({
    responderID: new ResponderID({ byKey: new KeyHash(createHash('sha1').update(Buffer.from(AsnConvert.parse(signer.node.raw, Certificate).tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)).digest()) }),
    producedAt: new Date(now),
    responses: answers.map(
      (a) =>
        new SingleResponse({
          certID: a.id,
          certStatus: a.revoked ? new CertStatus({ revoked: new RevokedInfo({ revocationTime: new Date(now - 60_000) }) }) : new CertStatus({ good: null }),
          thisUpdate: new Date(now - 60_000),
          nextUpdate: new Date(now + 3600_000),
        }),
    ),
  });
  const tbs = Buffer.from(AsnConvert.serialize(data));
  const basic = new BasicOCSPResponse({
    tbsResponseData: data,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
    signature: new Uint8Array(sign('sha256', tbs, KeyObject.from(signer.keys.privateKey))).buffer,
    ...(certs.length ? { certs: certs.map((c) => AsnConvert.parse(c.raw, Certificate)) } : {}),
  });
  return Buffer.from(
    AsnConvert.serialize(new OCSPResponse({ responseStatus: OCSPResponseStatus.successful, responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }) })),
  );
}

describe('the OCSP reader (src/guard/ocsp.ts)', () => {
  test('takes the answer whose whole CertID is the certificate’s, not another CA’s certificate of the same serial listed first', async () => {
    const bravo = await certificate('CN=Bravo CA', undefined, '01');
    const alpha = await certificate('CN=Alpha CA', undefined, '02');
    const leaf = (await certificate('CN=bravo-connector', bravo, '1000')).node;
    const twin = (await certificate('CN=alpha-connector', alpha, '1000')).node;
    // One response (signed by Bravo's CA) about two certificates of serial 1000: Alpha's good, Bravo's revoked.
    const both = response(bravo, [{ id: certId(twin, alpha.node) }, { id: certId(leaf, bravo.node), revoked: true }]);
    assert.equal(readOcspResponse(both, leaf, bravo.node, { at: now }).status, 'revoked');
    // A response naming only Alpha's certificate of that serial says nothing of Bravo's.
    const other = response(bravo, [{ id: certId(twin, alpha.node) }]);
    assert.throws(() => readOcspResponse(other, leaf, bravo.node, { at: now }), (error: Error) => error instanceof OcspError && /does not name certificate 1000 of this issuer/.test(error.message));
  });

  test('refuses a CertID with the issuer’s name and another key, or a hash algorithm it does not know; takes SHA-256 CertIDs', async () => {
    const bravo = await certificate('CN=Bravo CA', undefined, '01');
    const leaf = (await certificate('CN=bravo-connector', bravo, '1000')).node;
    // A look-alike CA: Bravo's name, another key.
    const lookalike = await certificate('CN=Bravo CA', undefined, '03');
    assert.throws(() => readOcspResponse(response(bravo, [{ id: certId(leaf, lookalike.node) }]), leaf, bravo.node, { at: now }), OcspError);
    assert.throws(() => readOcspResponse(response(bravo, [{ id: certId(leaf, bravo.node, 'sha1', 'md5') }]), leaf, bravo.node, { at: now }), OcspError);
    assert.equal(readOcspResponse(response(bravo, [{ id: certId(leaf, bravo.node, 'sha256') }]), leaf, bravo.node, { at: now }).status, 'good');
    assert.equal(readOcspResponse(response(bravo, [{ id: certId(leaf, bravo.node) }]), leaf, bravo.node, { at: now }).status, 'good');
  });

  test('for Clearance’s own CA, takes the CA key or the responder it designated, never another certificate of the CA for OCSPSigning (RFC 6960 §4.2.2.2)', async () => {
    const ca = await certificate('CN=Test Workloads Issuing', undefined, '01');
    const leaf = (await certificate('CN=algo-7', ca, '1000')).node;
    const forOcsp = new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.ocspSigning], false);
    // What src/pki/build.ts gives the responder it builds for the CA: OCSPSigning and id-pkix-ocsp-nocheck.
    const designated = await certificate('CN=OCSP responder for Test Workloads Issuing', ca, '2000', undefined, [forOcsp, new x509.Extension(noCheck, false, new Uint8Array([0x05, 0x00]))]);
    // An agent's certificate of the same CA whose profile granted ocsp_signing.
    const agent = await certificate('CN=algo-9', ca, '3000', undefined, [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.ocspSigning], false)]);
    const revoked = [{ id: certId(leaf, ca.node), revoked: true as const }];
    const good = [{ id: certId(leaf, ca.node) }];
    assert.equal(readOcspResponse(response(ca, revoked), leaf, ca.node, { at: now }).status, 'revoked');
    assert.equal(readOcspResponse(response(designated, revoked, [designated.node]), leaf, ca.node, { at: now }).status, 'revoked');
    assert.throws(
      () => readOcspResponse(response(agent, good, [agent.node]), leaf, ca.node, { at: now }),
      (error: Error) => error instanceof OcspError && /not the one the CA designated/.test(error.message),
    );
    // id-pkix-ocsp-nocheck without OCSPSigning is no responder either.
    const markedOnly = await certificate('CN=marked', ca, '4000', undefined, [new x509.Extension(noCheck, false, new Uint8Array([0x05, 0x00]))]);
    assert.throws(() => readOcspResponse(response(markedOnly, good, [markedOnly.node]), leaf, ca.node, { at: now }), OcspError);
  });

  test('for an external CA, an RFC 6960 delegated responder — any certificate it issued for OCSPSigning — is still taken', async () => {
    const bravo = await certificate('CN=Bravo CA', undefined, '01');
    const leaf = (await certificate('CN=bravo-connector', bravo, '1000')).node;
    const delegated = await certificate('CN=Bravo OCSP', bravo, '2000', undefined, [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.ocspSigning], false)]);
    const answer = response(delegated, [{ id: certId(leaf, bravo.node) }], [delegated.node]);
    assert.equal(readOcspResponse(answer, leaf, bravo.node, { at: now, responder: 'delegated' }).status, 'good');
    // Not for OCSPSigning: refused either way.
    const plain = await certificate('CN=Bravo other', bravo, '3000', undefined, [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false)]);
    assert.throws(() => readOcspResponse(response(plain, [{ id: certId(leaf, bravo.node) }], [plain.node]), leaf, bravo.node, { at: now, responder: 'delegated' }), OcspError);
  });
});
