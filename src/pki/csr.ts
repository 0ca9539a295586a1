import { createPublicKey, type KeyObject } from 'node:crypto';
import * as x509 from './x509.ts';
import { SubjectAlternativeNameExtension } from './x509.ts';
import type { CsrKeyType } from './profiles.ts';
import type { SanEntry } from './names.ts';

export class CsrError extends Error {
  override name = 'CsrError';
}

export interface CheckedCsr {
  /** SPKI DER of the key the certificate will certify. */
  spki: Buffer;
  publicKey: KeyObject;
  keyType: CsrKeyType;
  /** The SANs the CSR asks for (the CA decides; these must be among what it gives). */
  requestedSans: SanEntry[];
}

/** Largest CSR accepted (a P-256 CSR is ~400 bytes, an RSA-4096 one ~1.7 kB). */
const maxCsrLength = 16_384;

/**
 * Parses a PKCS#10 request (PEM or base64 DER) and checks its proof of possession: the request is
 * signed with the private key of the public key it carries (RFC 2986 §3), so nobody obtains a
 * certificate for a key they do not hold.
 */
export async function readCsr(text: unknown): Promise<CheckedCsr> {
  if (typeof text !== 'string' || text.length === 0) throw new CsrError('csr is required: a PKCS#10 request in PEM or base64 DER');
  if (text.length > maxCsrLength) throw new CsrError(`csr is longer than ${maxCsrLength} characters`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    const trimmed = text.trim();
    csr = new x509.Pkcs10CertificateRequest(trimmed.startsWith('-----') ? trimmed : Buffer.from(trimmed, 'base64'));
  } catch {
    throw new CsrError('csr is not a PKCS#10 certificate request');
  }
  let publicKey: KeyObject;
  const spki = Buffer.from(csr.publicKey.rawData);
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new CsrError('csr carries a public key this CA cannot read');
  }
  let signed = false;
  try {
    signed = await csr.verify();
  } catch {
    signed = false;
  }
  // RFC 2986 §3: the signature over the request info proves possession of the private key.
  if (!signed) throw new CsrError('csr signature does not verify with its own public key (no proof of possession)');
  return { spki, publicKey, keyType: keyTypeOf(publicKey), requestedSans: requestedSans(csr) };
}

export function keyTypeOf(key: KeyObject): CsrKeyType {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'prime256v1') return 'EC-P256';
      if (details.namedCurve === 'secp384r1') return 'EC-P384';
      break;
    case 'ed25519':
      return 'Ed25519';
    case 'rsa':
      checkRsaExponent(details.publicExponent);
      if (details.modulusLength === 2048 || details.modulusLength === 3072 || details.modulusLength === 4096) return `RSA-${details.modulusLength}` as CsrKeyType;
      break;
  }
  throw new CsrError(`csr key type ${key.asymmetricKeyType}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength}` : ''} is not supported`);
}

/**
 * FIPS 186-4 Appendix B.3.1 (1)(b): an RSA public exponent is odd and 2^16 < e < 2^256. A small one
 * (3) is what e=3 signature forgeries against lax PKCS#1 v1.5 verifiers need; e = 1 is no key at
 * all — anyone "signs" with it, and its holder could disown every signature the certificate vouches
 * for. The CA certifies neither.
 */
function checkRsaExponent(exponent: bigint | undefined): void {
  if (exponent === undefined || exponent % 2n === 0n || exponent <= 1n << 16n || exponent >= 1n << 256n) {
    throw new CsrError(`csr key is RSA with public exponent ${exponent ?? 'unknown'}: this CA certifies RSA keys only with an odd exponent above 65536 (65537)`);
  }
}

function requestedSans(csr: x509.Pkcs10CertificateRequest): SanEntry[] {
  const found = csr.getExtension('2.5.29.17');
  if (!found) return [];
  const extension = new SubjectAlternativeNameExtension(found.rawData);
  const out: SanEntry[] = [];
  for (const name of extension.names.items) {
    if (name.type === 'dns' || name.type === 'url' || name.type === 'email') out.push({ type: name.type === 'url' ? 'uri' : name.type, value: name.value });
    else throw new CsrError(`csr asks for a ${name.type} subject alternative name, which no profile gives`);
  }
  return out;
}
