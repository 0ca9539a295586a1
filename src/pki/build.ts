import { randomBytes } from 'node:crypto';
import * as x509 from './x509.ts';
import { Extension } from './x509.ts';
import type { CustodyKey } from './custody/custody.ts';
import { custodySigner } from './custody/webcrypto-adapter.ts';

/** id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): a delegated responder's own status is not checked. */
const ocspNoCheckOid = '1.3.6.1.5.5.7.48.1.5';

/**
 * A fresh serial number: 16 random bytes (RFC 5280 §4.1.2.2: positive, at most 20 octets; CA/B
 * Forum asks for 64 bits of randomness), with the top bits set to 01 so it is positive and its hex
 * form has no leading zero that an encoder would drop.
 */
export function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = 0x40 | (bytes[0]! & 0x3f);
  return bytes.toString('hex');
}

export interface CertificateRequest {
  serial: string;
  subject: string;
  /** SPKI DER of the certified key. */
  publicKey: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  extensions: Extension[];
}

/** Signs a certificate with a custody key; `issuer` is null for a self-signed root. */
export async function signCertificate(request: CertificateRequest, issuer: x509.X509Certificate | null, issuerKey: CustodyKey): Promise<x509.X509Certificate> {
  const { crypto, signingKey, signingAlgorithm } = custodySigner(issuerKey);
  const subjectKey = new x509.PublicKey(request.publicKey);
  const extensions = [...request.extensions, await x509.SubjectKeyIdentifierExtension.create(subjectKey, false, crypto)];
  // RFC 5280 §4.2.1.1: the AKI is the issuer's SKI (for a root, its own).
  const issuerKeyId = issuer ? skiOf(issuer) : (extensions.at(-1) as x509.SubjectKeyIdentifierExtension).keyId;
  extensions.push(new x509.AuthorityKeyIdentifierExtension(issuerKeyId, false));
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: request.serial,
      subject: request.subject,
      issuer: issuer ? issuer.subjectName : request.subject,
      notBefore: request.notBefore,
      notAfter: request.notAfter,
      publicKey: subjectKey,
      signingKey,
      signingAlgorithm,
      extensions,
    },
    crypto,
  );
}

/** PEM that ends with a newline, so certificates concatenate into a chain file. */
export function pemOf(certificate: x509.X509Certificate): string {
  return `${certificate.toString('pem').trimEnd()}\n`;
}

export function skiOf(certificate: x509.X509Certificate): string {
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`certificate ${certificate.subject} has no subject key identifier`);
  return ski.keyId;
}

/** Extensions of a CA certificate: CA, path length, certificate and CRL signing. */
export function caExtensions(pathLength: number): Extension[] {
  return [
    // RFC 5280 §4.2.1.9: basicConstraints MUST be critical in CA certificates.
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
}

/**
 * Extensions of the delegated OCSP responder's certificate (RFC 6960 §4.2.2.2): the only
 * certificate the CA gives OCSPSigning and id-pkix-ocsp-nocheck. The guard knows the responder the
 * CA designated by that extension (src/guard/ocsp.ts): a certificate issued under a profile never
 * carries it (leafExtensions below; a CSR's extensions are never copied), nor OCSPSigning
 * (src/pki/profiles.ts reserves it).
 */
export function ocspResponderExtensions(): Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.ocspSigning], false),
    // The value of id-pkix-ocsp-nocheck is NULL (05 00).
    new Extension(ocspNoCheckOid, false, new Uint8Array([0x05, 0x00])),
  ];
}

/** Extensions of an end-entity certificate issued under a profile. */
export function leafExtensions(input: {
  ekuOids: string[];
  policies: string[];
  sans: { type: 'dns' | 'uri' | 'email'; value: string }[];
  crlUrl: string;
  ocspUrl: string;
  caIssuersUrl: string;
  keyEncipherment: boolean;
}): Extension[] {
  const usage = x509.KeyUsageFlags.digitalSignature | (input.keyEncipherment ? x509.KeyUsageFlags.keyEncipherment : 0);
  const extensions: Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usage, true),
    new x509.ExtendedKeyUsageExtension(input.ekuOids as x509.ExtendedKeyUsageType[], false),
  ];
  if (input.sans.length > 0) {
    // RFC 5280 §4.2.1.6: critical when the subject is empty.
    extensions.push(new x509.SubjectAlternativeNameExtension(input.sans.map((s) => ({ type: (s.type === 'uri' ? 'url' : s.type) as x509.GeneralNameType, value: s.value })), false));
  }
  if (input.policies.length > 0) extensions.push(new x509.CertificatePolicyExtension(input.policies, false));
  extensions.push(new x509.CRLDistributionPointsExtension([input.crlUrl], false));
  extensions.push(new x509.AuthorityInfoAccessExtension({ ocsp: input.ocspUrl, caIssuers: input.caIssuersUrl }, false));
  return extensions;
}
