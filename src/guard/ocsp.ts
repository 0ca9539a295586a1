import { createHash, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { BasicOCSPResponse, CertID, id_pkix_ocsp_basic, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request, TBSRequest } from '@peculiar/asn1-ocsp';

/**
 * The OCSP client side (RFC 6960), for the guard's check of a signer's certificate and for the
 * offline verification of evidence: a request for one certificate and a fail-closed reader of the
 * answer. Only node:crypto and the @peculiar ASN.1 schemas: no server module.
 */

/** An OCSP client's view of one certificate's status, verified. */
export interface OcspStatus {
  serial: string;
  status: 'good' | 'revoked' | 'unknown';
  revokedAt?: number;
  reason?: number;
  thisUpdate: number;
  nextUpdate?: number;
  producedAt: number;
}

export class OcspError extends Error {
  override name = 'OcspError';
}

const sha1 = '1.3.14.3.2.26';
const ocspSigning = '1.3.6.1.5.5.7.3.9';
/** id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1). */
const ocspNoCheck = '1.3.6.1.5.5.7.48.1.5';

export interface OcspReadOptions {
  /** When the answer must hold (default: its own producedAt). */
  at?: number;
  skewMs?: number;
  /**
   * Who besides the issuing CA's own key may sign the answer (RFC 6960 §4.2.2.2):
   * - `designated` (the default; Clearance's own CA: the guard, evidence bundles): only the
   *   responder certificate the CA designated — the one Clearance builds for each issuing CA
   *   (src/pki/authority.ts), issued by it for OCSPSigning with id-pkix-ocsp-nocheck. The CA puts
   *   that extension on its responder only (src/pki/build.ts); a certificate issued under a profile
   *   never carries it, whatever EKUs the profile gave (an older release let a profile give
   *   OCSPSigning: an agent holding such a certificate must not answer for the CA).
   * - `delegated` (external CAs: partners', people's; src/certificates/revocation.ts): any
   *   certificate the CA issued for OCSPSigning, the RFC's own rule — Clearance cannot know which
   *   responder another CA designated, and its delegated responders are legitimate.
   */
  responder?: 'designated' | 'delegated';
}

/** RFC 6960 §4.1: a request for one certificate (SHA-1 CertID, what every responder takes). */
export function ocspRequest(certificate: X509Certificate, issuer: X509Certificate): Buffer {
  const parsedIssuer = AsnConvert.parse(issuer.raw, Certificate);
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: sha1, parameters: null }),
    issuerNameHash: new OctetString(createHash('sha1').update(Buffer.from(AsnConvert.serialize(parsedIssuer.tbsCertificate.subject))).digest()),
    issuerKeyHash: new OctetString(keyHash(parsedIssuer, 'sha1')),
    serialNumber: AsnConvert.parse(certificate.raw, Certificate).tbsCertificate.serialNumber,
  });
  return Buffer.from(AsnConvert.serialize(new OCSPRequest({ tbsRequest: new TBSRequest({ requestList: [new Request({ reqCert: certId })] }) })));
}

/**
 * Reads a DER OCSPResponse about `certificate` and verifies it (RFC 6960 §3.2), fail closed: a
 * successful basic response whose signature verifies with the issuer's key or with a responder
 * certificate the issuer signed for OCSPSigning — the one it designated, unless `responder` is
 * `delegated` (see OcspReadOptions) — valid at `at`; it names this
 * certificate by its whole CertID under `issuer` (hash algorithm, issuer name and key hashes,
 * serial); `at` is not past its nextUpdate (with `skewMs`). The guard passes now; verify-bundle
 * passes nothing, and the answer is judged as of its own producedAt (months later it is stale, not
 * false).
 */
export function readOcspResponse(der: Uint8Array, certificate: X509Certificate, issuer: X509Certificate, options: OcspReadOptions): OcspStatus {
  let response: OCSPResponse;
  try {
    response = AsnConvert.parse(der, OCSPResponse);
  } catch {
    throw new OcspError('not an OCSP response');
  }
  if (response.responseStatus !== OCSPResponseStatus.successful) throw new OcspError(`the responder answered ${OCSPResponseStatus[response.responseStatus] ?? response.responseStatus}`);
  if (!response.responseBytes || response.responseBytes.responseType !== id_pkix_ocsp_basic) throw new OcspError('not a basic OCSP response');
  const basic = AsnConvert.parse(response.responseBytes.response.buffer, BasicOCSPResponse);
  const at = options.at ?? basic.tbsResponseData.producedAt.getTime();
  const tbs = new Uint8Array(AsnConvert.serialize(basic.tbsResponseData));
  const signers = [issuer, ...(basic.certs ?? []).map((c) => new X509Certificate(Buffer.from(AsnConvert.serialize(c))))];
  const signer = signers.find((candidate) => verifyX509Signature(basic.signatureAlgorithm.algorithm, candidate.publicKey, tbs, new Uint8Array(basic.signature)));
  if (!signer) throw new OcspError('the OCSP response signature does not verify');
  if (signer !== issuer) checkResponder(signer, issuer, at, options);
  const serial = serialHex(AsnConvert.parse(certificate.raw, Certificate).tbsCertificate.serialNumber);
  // RFC 6960 §4.1.1, §3.2 (1): the answer is about this certificate only when its whole CertID is
  // this one's — the serial AND the hashes of the issuer's name and key — under the issuer used to
  // check it. A serial is unique only per CA: a responder answering for several CAs may name
  // another CA's certificate of the same serial in the same response.
  const parsedIssuer = AsnConvert.parse(issuer.raw, Certificate);
  const single = basic.tbsResponseData.responses.find((r) => serialHex(r.certID.serialNumber) === serial && namesIssuer(r.certID, parsedIssuer));
  if (!single) throw new OcspError(`the OCSP response does not name certificate ${serial} of this issuer`);
  const nextUpdate = single.nextUpdate?.getTime();
  if (nextUpdate !== undefined && at > nextUpdate + (options.skewMs ?? 60_000)) throw new OcspError('the OCSP response is stale (past its nextUpdate)');
  const status = single.certStatus.good !== undefined ? 'good' : single.certStatus.revoked ? 'revoked' : 'unknown';
  return {
    serial,
    status,
    ...(single.certStatus.revoked ? { revokedAt: single.certStatus.revoked.revocationTime.getTime(), ...(single.certStatus.revoked.revocationReason ? { reason: Number(single.certStatus.revoked.revocationReason.reason) } : {}) } : {}),
    thisUpdate: single.thisUpdate.getTime(),
    ...(nextUpdate !== undefined ? { nextUpdate } : {}),
    producedAt: basic.tbsResponseData.producedAt.getTime(),
  };
}

/**
 * RFC 6960 §4.2.2.2: an answer not signed by the CA itself is signed by a responder the CA
 * designated, whose certificate it issued for OCSPSigning, valid at `at`.
 */
function checkResponder(signer: X509Certificate, issuer: X509Certificate, at: number, options: OcspReadOptions): void {
  if (!signer.checkIssued(issuer) || !signer.verify(issuer.publicKey)) throw new OcspError('the OCSP responder certificate is not issued by the certificate\'s CA');
  if (!(signer.keyUsage ?? []).includes(ocspSigning)) throw new OcspError('the OCSP responder certificate is not for OCSPSigning');
  // RFC 6960 §4.2.2.2 ("the CA designates ... a responder"): for Clearance's own CA, carrying the
  // EKU is not being designated — only the responder certificate the CA built for itself is.
  if ((options.responder ?? 'designated') === 'designated' && !hasExtension(signer, ocspNoCheck)) {
    throw new OcspError("the OCSP responder certificate is not the one the CA designated (its own responder's, with id-pkix-ocsp-nocheck): another certificate of the CA with OCSPSigning does not answer for it");
  }
  if (at < signer.validFromDate.getTime() - (options.skewMs ?? 60_000) || at > signer.validToDate.getTime()) throw new OcspError('the OCSP responder certificate was not valid then');
}

function hasExtension(certificate: X509Certificate, oid: string): boolean {
  return (AsnConvert.parse(certificate.raw, Certificate).tbsCertificate.extensions ?? []).some((extension) => extension.extnID === oid);
}

/** The hash algorithms a CertID may use (RFC 6960 §4.1.1 hashAlgorithm), by OID. */
const certIdHashes: Readonly<Record<string, string>> = {
  [sha1]: 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/**
 * RFC 6960 §4.1.1: whether a CertID's issuerNameHash and issuerKeyHash are those of `issuer` (its
 * DN's DER, its public key's BIT STRING value) under the CertID's own hash algorithm. An unknown
 * algorithm matches nothing: fail closed.
 */
export function namesIssuer(certId: CertID, issuer: Certificate): boolean {
  const hash = certIdHashes[certId.hashAlgorithm.algorithm];
  if (!hash) return false;
  const nameHash = createHash(hash).update(Buffer.from(AsnConvert.serialize(issuer.tbsCertificate.subject))).digest();
  return nameHash.equals(Buffer.from(certId.issuerNameHash.buffer)) && keyHash(issuer, hash).equals(Buffer.from(certId.issuerKeyHash.buffer));
}

export function keyHash(certificate: Certificate, algorithm: string): Buffer {
  return createHash(algorithm).update(Buffer.from(certificate.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey)).digest();
}

/** Lower-case hex without leading zero bytes, as pki_certificates keys serials. */
export function serialHex(serial: ArrayBuffer): string {
  return normalSerial(Buffer.from(serial).toString('hex'));
}

/** A certificate's serial as the CA keys it: lower-case hex without leading zero bytes. */
export function certificateSerial(certificate: X509Certificate): string {
  return normalSerial(certificate.serialNumber);
}

function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}

const ecdsaWithSha256 = '1.2.840.10045.4.3.2';
const ed25519 = '1.3.101.112';
const sha256WithRsa = '1.2.840.113549.1.1.11';

/** Verifies an X.509-embedded signature over `tbs` (ECDSA DER, Ed25519, RSA PKCS#1 v1.5); false for any other algorithm. */
export function verifyX509Signature(algorithm: string, publicKey: KeyObject, tbs: Uint8Array, signature: Uint8Array): boolean {
  try {
    if (algorithm === ecdsaWithSha256 || algorithm === sha256WithRsa) return verify('sha256', tbs, publicKey, signature);
    if (algorithm === ed25519) return verify(null, tbs, publicKey, signature);
  } catch {
    return false;
  }
  return false;
}
