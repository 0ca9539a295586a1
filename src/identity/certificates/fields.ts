import { createHash, type X509Certificate } from 'node:crypto';
import { certificateSerial } from '../../guard/ocsp.ts';
import * as x509 from '../../pki/x509.ts';
import type { MappingRule, MappingSource } from './settings.ts';

/**
 * What a person's certificate says, read with @peculiar/x509 (node:crypto's X509Certificate prints
 * SANs as one lossy string): the names mapping rules read, its policies, whether it may
 * authenticate a TLS client, and how the audit log names it.
 */

/** RFC 5280 §4.2.1.12: TLS WWW client authentication. */
const clientAuth = '1.3.6.1.5.5.7.3.2';
/** RFC 5280 §4.2.1.12: any extended key usage. */
const anyExtendedKeyUsage = '2.5.29.37.0';
const commonName = '2.5.4.3';
const serialNumber = '2.5.4.5';
/** PKCS #9 emailAddress in a subject DN (legacy; RFC 5280 §4.1.2.6 prefers the SAN). */
const emailAddress = '1.2.840.113549.1.9.1';

/** How audit events name a certificate: never its subject (personal data in a permanent log). */
export interface CertificateFacts {
  serial: string;
  /** The issuer's DN, one line. */
  issuer: string;
  /** RFC 8705 §3.1 style: base64url SHA-256 of the DER certificate. */
  sha256: string;
}

export function certificateFacts(certificate: X509Certificate): CertificateFacts {
  return { serial: certificateSerial(certificate), issuer: certificate.issuer.split('\n').join(', '), sha256: createHash('sha256').update(certificate.raw).digest('base64url') };
}

/** The certificate parsed for its extensions. */
export function parsed(certificate: X509Certificate): x509.X509Certificate {
  return new x509.X509Certificate(certificate.raw);
}

/** The certificate policy OIDs it carries (RFC 5280 §4.2.1.4). */
export function certificatePolicies(certificate: x509.X509Certificate): string[] {
  return [...(certificate.getExtension(x509.CertificatePolicyExtension)?.policies ?? [])];
}

/**
 * Whether the certificate may authenticate a TLS client: an end entity (not a CA, RFC 5280
 * §4.2.1.9), with `digitalSignature` when it states its key usages (§4.2.1.3: TLS client
 * authentication signs the handshake), and `clientAuth` (or any) when it states extended ones
 * (§4.2.1.12). A smart card's certificate may add others (Microsoft's smart card logon).
 */
export function usableForClientAuth(node: X509Certificate, certificate: x509.X509Certificate): boolean {
  if (node.ca) return false;
  const usages = certificate.getExtension(x509.KeyUsagesExtension);
  if (usages && (usages.usages & x509.KeyUsageFlags.digitalSignature) === 0) return false;
  const extended = node.keyUsage;
  if (extended && extended.length > 0 && !extended.includes(clientAuth) && !extended.includes(anyExtendedKeyUsage)) return false;
  return true;
}

/** The values a mapping source reads from the certificate, as written there. */
export function fieldValues(certificate: x509.X509Certificate, source: MappingSource): string[] {
  const names = () => certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  switch (source) {
    case 'san_email':
      return names().filter((n) => n.type === 'email').map((n) => n.value);
    case 'san_upn':
      // Microsoft's user principal name, an otherName of type 1.3.6.1.4.1.311.20.2.3.
      return names().filter((n) => n.type === 'upn').map((n) => n.value);
    case 'subject_cn':
      return certificate.subjectName.getField(commonName);
    case 'subject_serial_number':
      return certificate.subjectName.getField(serialNumber);
    case 'subject_email':
      return certificate.subjectName.getField(emailAddress);
  }
}

/**
 * What a rule reads from the certificate: its field's values, kept to the rule's domains, reduced
 * to their local part when it asks; trimmed, at most 254 characters, distinct.
 */
export function ruleValues(certificate: x509.X509Certificate, rule: MappingRule): string[] {
  const values = new Set<string>();
  for (const raw of fieldValues(certificate, rule.certificate)) {
    const value = raw.trim();
    if (value.length === 0 || value.length > 254) continue;
    const at = value.lastIndexOf('@');
    if (rule.domains && (at < 1 || !rule.domains.includes(value.slice(at + 1).toLowerCase()))) continue;
    if (rule.local_part) {
      if (at < 1) continue;
      values.add(value.slice(0, at));
    } else {
      values.add(value);
    }
  }
  return [...values];
}
