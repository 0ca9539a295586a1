import { createHash } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Certificate, CRLReason, Extension, Name } from '@peculiar/asn1-x509';
import {
  BasicOCSPResponse,
  CertID,
  CertStatus,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
  KeyHash,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
} from '@peculiar/asn1-ocsp';
import type { CustodyKey } from '../custody/custody.ts';
import type { StatusAnswer } from '../status.ts';
import { signatureAlgorithmOf, x509Signature } from './signature.ts';
import { keyHash, serialHex } from '../../guard/ocsp.ts';

/** A CA this responder answers for: its certificate (DER) and id. */
export interface ResponderIssuer {
  id: string;
  certificate: Uint8Array;
}

export interface ResponderSetup {
  issuers: ResponderIssuer[];
  /** The delegated responder of an issuer (RFC 6960 §4.2.2.2): its certificate (DER) and key. */
  responderFor(issuerId: string): Promise<{ certificate: Uint8Array; key: CustodyKey }>;
  status(issuerId: string, serialHex: string): Promise<StatusAnswer>;
  now: Date;
  /** nextUpdate = thisUpdate + this. */
  validitySeconds: number;
}

/** Most certificates one request may ask about. */
export const maxRequestsPerQuery = 10;
const sha1 = '1.3.14.3.2.26';
const sha256 = '2.16.840.1.101.3.4.2.1';
const hashNames: Record<string, string> = { [sha1]: 'sha1', [sha256]: 'sha256' };

/**
 * An RFC 6960 OCSP responder, free of HTTP: the DER OCSPResponse for a DER OCSPRequest. Every
 * CertID is answered (at most 10); one whose issuer name and key hashes (SHA-1 or SHA-256) match
 * none of the CAs it serves, or whose serial the CA never issued, is `unknown` — never `good`
 * (RFC 6960 §2.2). A nonce (RFC 8954: 1 to 32 bytes) is echoed. The response is signed by the
 * issuer's delegated responder (EKU OCSPSigning, id-pkix-ocsp-nocheck), identified by key hash,
 * with its certificate included. A request that does not parse is `malformedRequest`; one about no
 * CA this responder serves is `unauthorized` (RFC 6960 §2.3), both unsigned.
 */
export async function answerOcsp(requestDer: Uint8Array, setup: ResponderSetup): Promise<Buffer> {
  let request: OCSPRequest;
  try {
    request = AsnConvert.parse(requestDer, OCSPRequest);
  } catch {
    return unsigned(OCSPResponseStatus.malformedRequest);
  }
  const list = request.tbsRequest.requestList ?? [];
  if (list.length === 0 || list.length > maxRequestsPerQuery) return unsigned(OCSPResponseStatus.malformedRequest);
  const nonce = request.tbsRequest.requestExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
  if (nonce && !validNonce(nonce)) return unsigned(OCSPResponseStatus.malformedRequest);
  const issuers = setup.issuers.map((issuer) => ({ ...issuer, parsed: AsnConvert.parse(issuer.certificate, Certificate) }));
  const matched = list.map((entry) => issuers.find((issuer) => issuedBy(entry.reqCert, issuer.parsed)));
  const serving = matched.find((m) => m !== undefined);
  if (!serving) return unsigned(OCSPResponseStatus.unauthorized);
  const thisUpdate = setup.now;
  const nextUpdate = new Date(setup.now.getTime() + setup.validitySeconds * 1000);
  const responses: SingleResponse[] = [];
  for (const [i, entry] of list.entries()) {
    const issuer = matched[i];
    // Only the serving CA's certificates are answered in this response (it is signed for that CA).
    const answer: StatusAnswer = issuer && issuer.id === serving.id ? await setup.status(issuer.id, serialHex(entry.reqCert.serialNumber)) : { status: 'unknown' };
    responses.push(new SingleResponse({ certID: entry.reqCert, certStatus: certStatus(answer), thisUpdate, nextUpdate }));
  }
  const responder = await setup.responderFor(serving.id);
  const responderCertificate = AsnConvert.parse(responder.certificate, Certificate);
  const data = new ResponseData({
    responderID: new ResponderID({ byKey: new KeyHash(keyHash(responderCertificate, 'sha1')) }),
    producedAt: setup.now,
    responses,
    ...(nonce ? { responseExtensions: [nonce] } : {}),
  });
  const tbs = new Uint8Array(AsnConvert.serialize(data));
  const basic = new BasicOCSPResponse({
    tbsResponseData: data,
    signatureAlgorithm: signatureAlgorithmOf(responder.key),
    signature: await x509Signature(responder.key, tbs),
    certs: [responderCertificate],
  });
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
  });
  return Buffer.from(AsnConvert.serialize(response));
}

function unsigned(status: OCSPResponseStatus): Buffer {
  return Buffer.from(AsnConvert.serialize(new OCSPResponse({ responseStatus: status })));
}

/** RFC 8954 §2.1: the nonce is an OCTET STRING of 1 to 32 octets inside the extension value. */
function validNonce(extension: Extension): boolean {
  try {
    const inner = AsnConvert.parse(extension.extnValue.buffer, OctetString);
    return inner.byteLength >= 1 && inner.byteLength <= 32;
  } catch {
    return false;
  }
}

/** RFC 6960 §4.1.1: the hashes of the issuer's DN and of its public key (the BIT STRING's value). */
export function issuedBy(certId: CertID, issuer: Certificate): boolean {
  const name = hashNames[certId.hashAlgorithm.algorithm];
  if (!name) return false;
  const nameHash = createHash(name).update(Buffer.from(AsnConvert.serialize(issuer.tbsCertificate.subject as Name))).digest();
  return nameHash.equals(Buffer.from(certId.issuerNameHash.buffer)) && keyHash(issuer, name).equals(Buffer.from(certId.issuerKeyHash.buffer));
}

function certStatus(answer: StatusAnswer): CertStatus {
  if (answer.status === 'good') return new CertStatus({ good: null });
  if (answer.status === 'revoked') {
    return new CertStatus({ revoked: new RevokedInfo({ revocationTime: new Date(answer.revocation.revokedAt), revocationReason: new CRLReason(answer.revocation.reason) }) });
  }
  return new CertStatus({ unknown: null });
}
