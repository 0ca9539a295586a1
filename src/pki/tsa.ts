import { createHash, randomBytes, verify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, ExtendedKeyUsage, id_ce_extKeyUsage } from '@peculiar/asn1-x509';
import { ContentInfo, SignedData, id_signedData } from '@peculiar/asn1-cms';
import { id_ct_tstInfo, MessageImprint, PKIStatus, TimeStampReq, TimeStampResp, TSTInfo } from '@peculiar/asn1-tsp';
import { pathToAnchor } from '../certificates/path.ts';

/**
 * An RFC 3161 time-stamp client: a trusted time over a SHA-256 digest from the configured TSA
 * (CLEARANCE_TSA_URL), for signing evidence (docs/transaction-signing.md), and the offline check of
 * a stored token (`clearance audit verify-bundle`). Everything is verified here, fail closed: the
 * status, the imprint, the nonce, the CMS signature over the signed attributes, the message digest
 * of the TSTInfo, and the signer's certificate (the timeStamping EKU alone and critical, valid at
 * the stamp's genTime, of no certificate of Clearance's own CA, and on a certification path, valid
 * at genTime, up to a trusted certificate through the certificates the token carries).
 */

const sha256 = '2.16.840.1.101.3.4.2.1';
const digestNames: Record<string, string> = { [sha256]: 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512' };
const contentTypeAttribute = '1.2.840.113549.1.9.3';
const messageDigestAttribute = '1.2.840.113549.1.9.4';
const timeStampingEku = '1.3.6.1.5.5.7.3.8';
/** The DER of OBJECT IDENTIFIER id-ct-TSTInfo (1.2.840.113549.1.9.16.1.4), as the content-type attribute holds it. */
const tstInfoOidDer = Buffer.from('060b2a864886f70d0109100104', 'hex');

export class TimestampError extends Error {
  override name = 'TimestampError';
  /** The token was well formed but its signer is no TSA this Clearance trusts (not an outage). */
  readonly untrustedSigner: boolean;
  constructor(message: string, options: { untrustedSigner?: boolean } = {}) {
    super(message);
    this.untrustedSigner = options.untrustedSigner ?? false;
  }
}

/** What a stamp is checked against. */
export interface TimestampExpectation {
  digest: Uint8Array;
  /** The nonce of the request, when one was sent. */
  nonce?: Buffer;
  /**
   * The TSA anchors (CLEARANCE_TSA_TRUST): the TSA certificate is one, or chains up to one through
   * the intermediate CA certificates the token carries.
   */
  trusted: readonly X509Certificate[];
  /**
   * The certificates of Clearance's own CA. Its profiles may grant timeStamping to an agent or a
   * person, so a TSA certificate that is one of them or issued by one is refused whatever `trusted`
   * says: an operator's trust file naming that CA must not let them stamp evidence with any time.
   */
  ownCa?: readonly X509Certificate[];
}

export interface VerifiedTimestamp {
  genTime: Date;
  /** The TSA's serial number of the stamp (hex). */
  serial: string;
  policy: string;
  /** The TimeStampToken (CMS ContentInfo) DER: what evidence keeps. */
  token: Buffer;
  /** The TSA certificate that signed it (PEM). */
  signer: string;
}

/**
 * The certificates in the CLEARANCE_TSA_TRUST file (PEM, one or more), read once per file: what
 * stamps must chain to, and what evidence bundles state as the TSA anchors.
 */
export function tsaTrustPems(file: string): string[] {
  let pems = trustFiles.get(file);
  if (!pems) {
    pems = readFileSync(file, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    trustFiles.set(file, pems);
  }
  return pems;
}

const trustFiles = new Map<string, string[]>();

/** RFC 3161 §2.4.1: a request for a SHA-256 imprint, with a nonce, asking for the TSA's certificate. */
export function timestampRequest(digest: Uint8Array, nonce: Buffer): Buffer {
  if (digest.length !== 32) throw new TimestampError('a time-stamp request takes a SHA-256 digest');
  const request = new TimeStampReq({
    version: 1,
    messageImprint: new MessageImprint({ hashAlgorithm: new AlgorithmIdentifier({ algorithm: sha256 }), hashedMessage: new OctetString(digest) }),
    nonce: positive(nonce),
    certReq: true,
  });
  return Buffer.from(AsnConvert.serialize(request));
}

/** Asks the TSA at `url` for a stamp over `digest` and verifies what comes back. */
export async function requestTimestamp(url: string, digest: Uint8Array, trusted: readonly X509Certificate[], options: { timeoutMs?: number; ownCa?: readonly X509Certificate[] } = {}): Promise<VerifiedTimestamp> {
  const nonce = randomBytes(8);
  let response: Response;
  try {
    response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/timestamp-query' }, body: timestampRequest(digest, nonce), signal: AbortSignal.timeout(options.timeoutMs ?? 5000) });
  } catch (error) {
    throw new TimestampError(`the TSA did not answer: ${(error as Error).message}`);
  }
  if (!response.ok) throw new TimestampError(`the TSA answered ${response.status}`);
  return verifyTimestampResponse(Buffer.from(await response.arrayBuffer()), { digest, nonce, trusted, ...(options.ownCa ? { ownCa: options.ownCa } : {}) });
}

/** RFC 3161 §2.4.2: a response is granted (or granted with modifications) and its token verifies. */
export function verifyTimestampResponse(der: Uint8Array, expected: TimestampExpectation): VerifiedTimestamp {
  let response: TimeStampResp;
  try {
    response = AsnConvert.parse(der, TimeStampResp);
  } catch {
    throw new TimestampError('the TSA response is not a TimeStampResp');
  }
  if (response.status.status !== PKIStatus.granted && response.status.status !== PKIStatus.grantedWithMods) {
    throw new TimestampError(`the TSA refused: status ${response.status.status}${response.status.statusString ? ` (${[...response.status.statusString].join(' ')})` : ''}`);
  }
  if (!response.timeStampToken) throw new TimestampError('the TSA granted no token');
  return verifyTimestampToken(Buffer.from(AsnConvert.serialize(response.timeStampToken)), expected);
}

/** Verifies a stored TimeStampToken offline over `digest` (and the nonce, when one was sent). */
export function verifyTimestampToken(token: Uint8Array, expected: TimestampExpectation): VerifiedTimestamp {
  let signed: SignedData;
  try {
    const info = AsnConvert.parse(token, ContentInfo);
    if (info.contentType !== id_signedData) throw new TimestampError('the token is not CMS SignedData');
    signed = AsnConvert.parse(info.content, SignedData);
  } catch (error) {
    if (error instanceof TimestampError) throw error;
    throw new TimestampError('the token is not a CMS ContentInfo');
  }
  // RFC 3161 §2.4.2: the content is a TSTInfo.
  if (signed.encapContentInfo.eContentType !== id_ct_tstInfo) throw new TimestampError('the token does not carry a TSTInfo');
  // What the TSA sent is parsed as untrusted input: a malformed TSTInfo is a refused stamp, never an
  // unexpected error (the evidence endpoint answers 503 for a refused stamp, not 500).
  let tstBytes: Buffer;
  let tst: TSTInfo;
  try {
    const eContent = signed.encapContentInfo.eContent?.single ?? (signed.encapContentInfo.eContent?.any ? AsnConvert.parse(signed.encapContentInfo.eContent.any, OctetString) : undefined);
    if (!eContent) throw new TimestampError('the token has no TSTInfo');
    tstBytes = Buffer.from(eContent.buffer);
    tst = AsnConvert.parse(tstBytes, TSTInfo);
  } catch (error) {
    if (error instanceof TimestampError) throw error;
    throw new TimestampError('the token\'s TSTInfo is not DER');
  }
  const imprintAlgorithm = digestNames[tst.messageImprint.hashAlgorithm.algorithm];
  if (imprintAlgorithm !== 'sha256' || !Buffer.from(tst.messageImprint.hashedMessage.buffer).equals(Buffer.from(expected.digest))) {
    throw new TimestampError('the stamp is over another digest');
  }
  if (expected.nonce && (!tst.nonce || !Buffer.from(tst.nonce).equals(Buffer.from(positive(expected.nonce))))) throw new TimestampError('the TSA did not echo the nonce');
  if (signed.signerInfos.length !== 1) throw new TimestampError('the token has not exactly one signer');
  const signer = signed.signerInfos[0]!;
  const digestName = digestNames[signer.digestAlgorithm.algorithm];
  if (!digestName || !signer.signedAttrs?.length) throw new TimestampError('the signer has no signed attributes or an unknown digest');
  const attribute = (type: string) => signer.signedAttrs!.find((a) => a.attrType === type)?.attrValues[0];
  const contentType = attribute(contentTypeAttribute);
  const messageDigest = attribute(messageDigestAttribute);
  // RFC 5652 §11.1, §11.2: content-type is the eContentType; message-digest is the content's digest.
  if (!contentType || !Buffer.from(contentType).equals(tstInfoOidDer)) throw new TimestampError('the content-type attribute is not id-ct-TSTInfo');
  if (!messageDigest || !octets(messageDigest)?.equals(createHash(digestName).update(tstBytes).digest())) {
    throw new TimestampError('the message-digest attribute is not the TSTInfo digest');
  }
  const { certificate, parsed } = signerCertificate(signed, signer.sid.issuerAndSerialNumber?.serialNumber, signer.sid.subjectKeyIdentifier?.buffer);
  // RFC 5652 §5.4: the signature is over the DER of the signed attributes as a SET OF (tag 0x31),
  // in the order they came (DER-sorted by the signer: re-encoding them in that order is exact).
  const signedAttributes = derSet(signer.signedAttrs.map((a) => Buffer.from(AsnConvert.serialize(a))));
  if (!verify(digestName, signedAttributes, certificate.publicKey, Buffer.from(signer.signature.buffer))) throw new TimestampError('the token signature does not verify');
  checkTimeStampingOnly(parsed);
  refuseOwnCa([certificate], expected.ownCa ?? []);
  checkValidAt(certificate, tst.genTime);
  const path = trustedPath(certificate, carriedCertificates(signed), expected.trusted, tst.genTime);
  refuseOwnCa(path, expected.ownCa ?? []);
  return { genTime: tst.genTime, serial: Buffer.from(tst.serialNumber).toString('hex'), policy: tst.policy, token: Buffer.from(token), signer: certificate.toString() };
}

/** The signer's certificate among the token's, both as node:crypto's and as parsed (for its extensions). */
function signerCertificate(signed: SignedData, serial: ArrayBuffer | undefined, keyId: ArrayBuffer | undefined): { certificate: X509Certificate; parsed: Certificate } {
  for (const choice of signed.certificates ?? []) {
    if (!choice.certificate) continue;
    const found = { certificate: new X509Certificate(Buffer.from(AsnConvert.serialize(choice.certificate))), parsed: choice.certificate };
    if (serial && Buffer.from(serial).equals(Buffer.from(choice.certificate.tbsCertificate.serialNumber))) return found;
    if (keyId && ski(choice.certificate)?.equals(Buffer.from(keyId))) return found;
  }
  throw new TimestampError('the token does not carry its signer certificate (ask with certReq)');
}

/** An attribute value's OCTET STRING; undefined when it is not one (the TSA's input is untrusted). */
function octets(value: ArrayBuffer): Buffer | undefined {
  try {
    return Buffer.from(AsnConvert.parse(value, OctetString).buffer);
  } catch {
    return undefined;
  }
}

function ski(certificate: Certificate): Buffer | undefined {
  const extension = certificate.tbsCertificate.extensions?.find((e) => e.extnID === '2.5.29.14');
  return extension ? Buffer.from(AsnConvert.parse(extension.extnValue.buffer, OctetString).buffer) : undefined;
}

/**
 * RFC 3161 §2.3: the TSA's certificate MUST contain one extended key usage extension, critical,
 * whose only purpose is id-kp-timeStamping. A certificate with timeStamping beside other usages (an
 * agent's, with clientAuth), or not critical, is no TSA's, whoever issued it.
 */
function checkTimeStampingOnly(certificate: Certificate): void {
  const extensions = certificate.tbsCertificate.extensions?.filter((e) => e.extnID === id_ce_extKeyUsage) ?? [];
  if (extensions.length !== 1 || !extensions[0]!.critical || !isTimeStampingAlone(extensions[0]!.extnValue.buffer)) {
    throw new TimestampError('the signer certificate is no TSA\'s: RFC 3161 §2.3 asks for the timeStamping EKU alone, critical', { untrustedSigner: true });
  }
}

/** An ExtendedKeyUsage value (DER) naming id-kp-timeStamping and nothing else; false when it does not parse. */
function isTimeStampingAlone(der: ArrayBuffer): boolean {
  try {
    const purposes = AsnConvert.parse(der, ExtendedKeyUsage);
    return purposes.length === 1 && purposes[0] === timeStampingEku;
  } catch {
    return false;
  }
}

/**
 * A certificate of Clearance's own CA, or one it issued, never signs a stamp nor stands on its path
 * (TimestampExpectation.ownCa): neither the TSA certificate nor an intermediate above it.
 */
function refuseOwnCa(path: readonly X509Certificate[], ownCa: readonly X509Certificate[]): void {
  if (path.some((certificate) => ownCa.some((ca) => issuedBy(certificate, ca)))) {
    throw new TimestampError("the signer certificate is of Clearance's own CA, which runs no TSA: its profiles may grant timeStamping to agents and people", { untrustedSigner: true });
  }
}

/**
 * The TSA signed within its certificate's validity (RFC 5280 §4.1.2.5: a certificate vouches for
 * its key only from notBefore to notAfter): a key used after its certificate expired — or before it
 * was issued — dates nothing, whatever time it writes.
 */
function checkValidAt(certificate: X509Certificate, genTime: Date): void {
  const at = genTime.getTime();
  if (at < certificate.validFromDate.getTime() || at > certificate.validToDate.getTime()) {
    throw new TimestampError(`the stamp's genTime ${genTime.toISOString()} is outside the TSA certificate's validity (${certificate.validFromDate.toISOString()} – ${certificate.validToDate.toISOString()})`, { untrustedSigner: true });
  }
}

/**
 * The certificates the token's SignedData carries (RFC 3161 §2.4.1 certReq: the TSA's, and what it
 * chose to add). Untrusted input: one node:crypto cannot read is no candidate link, never an error.
 */
function carriedCertificates(signed: SignedData): X509Certificate[] {
  return (signed.certificates ?? []).flatMap((choice) => {
    if (!choice.certificate) return [];
    try {
      return [new X509Certificate(Buffer.from(AsnConvert.serialize(choice.certificate)))];
    } catch {
      return [];
    }
  });
}

/**
 * The certification path from the TSA certificate to a trusted one, validated as of genTime (RFC
 * 5280 §6.1, src/certificates/path.ts: each link's signature, every CA certificate on it — the
 * anchor's too — valid at genTime, basicConstraints cA, keyCertSign, pathLenConstraint), through the
 * certificates the token carries, which are untrusted: each is only a candidate link. A TSA
 * certificate the trust names itself is its own path. As of genTime, not now: a stamp verified
 * offline years later, its chain long expired, stands if it was sound when the TSA signed.
 */
function trustedPath(certificate: X509Certificate, carried: readonly X509Certificate[], trusted: readonly X509Certificate[], genTime: Date): X509Certificate[] {
  if (trusted.some((anchor) => anchor.raw.equals(certificate.raw))) return [certificate];
  const reasons: string[] = [];
  for (const anchor of trusted) {
    const outcome = pathToAnchor(certificate, [anchor], carried, genTime.getTime());
    if (outcome.ok) return outcome.path;
    reasons.push(outcome.detail);
  }
  // The first reasons only: a long trust file would make an unreadable message.
  const why = reasons.length > 0 ? `: ${reasons.slice(0, 2).join('; ')}` : '';
  throw new TimestampError(`the TSA certificate is not one this Clearance trusts, nor on a valid path up to one at the stamp's genTime${why}`, { untrustedSigner: true });
}

/** `certificate` is `authority` itself, or carries its name as issuer and its signature. */
function issuedBy(certificate: X509Certificate, authority: X509Certificate): boolean {
  return authority.raw.equals(certificate.raw) || (certificate.checkIssued(authority) && certificate.verify(authority.publicKey));
}

function derSet(items: Buffer[]): Buffer {
  const content = Buffer.concat(items);
  const length = content.length;
  const header = length < 0x80 ? [0x31, length] : length < 0x100 ? [0x31, 0x81, length] : [0x31, 0x82, length >> 8, length & 0xff];
  return Buffer.concat([Buffer.from(header), content]);
}

/**
 * A nonce as a positive DER INTEGER's content, in its one minimal form (X.690 §8.3.2): no leading
 * 0x00 byte unless the next has its high bit set, and one added when the first has. Random bytes
 * that begin with 0x00 (one nonce in 256) are otherwise a malformed INTEGER, which a TSA refuses
 * ("bad request format") — openssl ts does.
 */
function positive(bytes: Buffer): ArrayBuffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && !(bytes[start + 1]! & 0x80)) start++;
  const minimal = bytes.subarray(start);
  const content = minimal[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : Buffer.from(minimal);
  return content.buffer.slice(content.byteOffset, content.byteOffset + content.byteLength) as ArrayBuffer;
}
