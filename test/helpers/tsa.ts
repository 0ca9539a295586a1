/** The local openssl TSA of the agent demo (demo/local-tsa.ts), for tests. */
export { startLocalTsa, type LocalTsa } from '../../demo/local-tsa.ts';
import { createHash, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { createServer } from 'node:http';
import type { TestContext } from 'node:test';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { Attribute, CertificateChoices, CertificateSet, ContentInfo, DigestAlgorithmIdentifiers, EncapsulatedContent, EncapsulatedContentInfo, id_signedData, IssuerAndSerialNumber, SignedData, SignerIdentifier, SignerInfo, SignerInfos } from '@peculiar/asn1-cms';
import { id_ct_tstInfo, MessageImprint, PKIStatus, PKIStatusInfo, TimeStampReq, TimeStampResp, TSTInfo } from '@peculiar/asn1-tsp';

/**
 * A TimeStampToken signed by whoever holds `key` and `certificate`, at whatever `genTime` they
 * choose: a well-formed RFC 3161 token (CMS SignedData over a TSTInfo, content-type and
 * message-digest signed attributes, the signer certificate included, and `chain`'s after it) that
 * only the verifier's rules about the signer's certificate can refuse. `nonce` is the request's
 * INTEGER content, echoed.
 */
export function forgeTimestampToken(input: { key: KeyObject; certificate: string | X509Certificate; digest: Uint8Array; genTime: Date; nonce?: ArrayBuffer; chain?: readonly (string | X509Certificate)[] }): Buffer {
  const certificate = AsnConvert.parse(new X509Certificate(input.certificate.toString()).raw, Certificate);
  // Intermediate certificates the TSA sends beside its own, as a TSA under an intermediate CA does.
  const chain = (input.chain ?? []).map((c) => AsnConvert.parse(new X509Certificate(c.toString()).raw, Certificate));
  const sha256 = new AlgorithmIdentifier({ algorithm: '2.16.840.1.101.3.4.2.1' });
  const tstInfo = new TSTInfo({
    version: 1,
    policy: '1.3.6.1.4.1.59999.9.66',
    messageImprint: new MessageImprint({ hashAlgorithm: sha256, hashedMessage: new OctetString(input.digest) }),
    serialNumber: new Uint8Array(randomBytes(8)).buffer,
    genTime: input.genTime,
    ordering: false,
    ...(input.nonce ? { nonce: input.nonce } : {}),
  });
  const tstBytes = Buffer.from(AsnConvert.serialize(tstInfo));
  const attributes = [
    // RFC 5652 §11.1: content-type, the DER of OBJECT IDENTIFIER id-ct-TSTInfo.
    new Attribute({ attrType: '1.2.840.113549.1.9.3', attrValues: [new Uint8Array(Buffer.from('060b2a864886f70d0109100104', 'hex')).buffer] }),
    // RFC 5652 §11.2: message-digest, the TSTInfo's SHA-256.
    new Attribute({ attrType: '1.2.840.113549.1.9.4', attrValues: [AsnConvert.serialize(new OctetString(createHash('sha256').update(tstBytes).digest()))] }),
  ];
  const signedAttributes = Buffer.concat(attributes.map((a) => Buffer.from(AsnConvert.serialize(a))));
  const header = signedAttributes.length < 0x80 ? [0x31, signedAttributes.length] : [0x31, 0x81, signedAttributes.length];
  const signature = sign('sha256', Buffer.concat([Buffer.from(header), signedAttributes]), input.key);
  const signed = new SignedData({
    version: 3,
    digestAlgorithms: new DigestAlgorithmIdentifiers([sha256]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_ct_tstInfo, eContent: new EncapsulatedContent({ single: new OctetString(tstBytes) }) }),
    certificates: new CertificateSet([certificate, ...chain].map((c) => new CertificateChoices({ certificate: c }))),
    signerInfos: new SignerInfos([
      new SignerInfo({
        version: 1,
        sid: new SignerIdentifier({ issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: certificate.tbsCertificate.issuer, serialNumber: certificate.tbsCertificate.serialNumber }) }),
        digestAlgorithm: sha256,
        signedAttrs: attributes,
        signatureAlgorithm: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
        signature: new OctetString(signature),
      }),
    ]),
  });
  return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signed) })));
}

/**
 * A "TSA" at a loopback URL that answers every request with a token forged by `signer()` (its
 * key and certificate, read at each request) at `genTime`: what a holder of a certificate with the
 * timeStamping EKU can put behind CLEARANCE_TSA_URL, or on the path to an http one.
 */
export async function startForgedTsa(t: Pick<TestContext, 'after'>, signer: () => { key: KeyObject; certificate: string; genTime: Date }): Promise<{ url: string; requests: number }> {
  const tsa = { url: '', requests: 0 };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      tsa.requests++;
      const query = AsnConvert.parse(Buffer.concat(chunks), TimeStampReq);
      const { key, certificate, genTime } = signer();
      const token = forgeTimestampToken({ key, certificate, genTime, digest: new Uint8Array(query.messageImprint.hashedMessage.buffer), ...(query.nonce ? { nonce: query.nonce } : {}) });
      const answer = new TimeStampResp({ status: new PKIStatusInfo({ status: PKIStatus.granted }), timeStampToken: AsnConvert.parse(token, ContentInfo) });
      response.writeHead(200, { 'content-type': 'application/timestamp-reply' }).end(Buffer.from(AsnConvert.serialize(answer)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  tsa.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/tsa`;
  return tsa;
}
