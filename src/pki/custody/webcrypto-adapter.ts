import type { webcrypto } from 'node:crypto';
import type { CustodyKey } from './custody.ts';

type Crypto = webcrypto.Crypto;
type CryptoKey = webcrypto.CryptoKey;
type SubtleCrypto = webcrypto.SubtleCrypto;
type Algorithm = webcrypto.Algorithm;
type BufferSource = webcrypto.BufferSource;

/**
 * @peculiar/x509 signs certificates and CRLs through a WebCrypto object it is given
 * (`X509CertificateGenerator.create(params, crypto)`): it serialises the TBS structure, calls
 * `crypto.subtle.sign(algorithm, signingKey, tbs)` and wraps the result (converting an ECDSA
 * R ‖ S to DER). This adapter hands that one call to a custody key, so a CA key in a PKCS#11
 * token signs through the same code as a software one; everything else is the platform's.
 */
export function custodySigner(key: CustodyKey): { crypto: Crypto; signingKey: CryptoKey; signingAlgorithm: Algorithm } {
  const algorithm = webCryptoAlgorithm(key);
  const platform = globalThis.crypto as Crypto;
  // Node's SubtleCrypto methods refuse any `this` but the platform's: delegate with bound methods.
  const methods = ['decrypt', 'deriveBits', 'deriveKey', 'digest', 'encrypt', 'exportKey', 'generateKey', 'importKey', 'unwrapKey', 'verify', 'wrapKey'] as const;
  const subtle = Object.fromEntries(methods.map((m) => [m, (platform.subtle[m] as (...args: unknown[]) => unknown).bind(platform.subtle)])) as unknown as SubtleCrypto;
  subtle.sign = (async (_algorithm: unknown, signingKey: unknown, data: BufferSource) => {
    if (signingKey !== stand_in) throw new TypeError('the custody signer signs only with its own key');
    const bytes = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    const signature = await key.sign(bytes);
    return signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength);
  }) as SubtleCrypto['sign'];
  const crypto = {
    subtle,
    getRandomValues: platform.getRandomValues.bind(platform),
    randomUUID: platform.randomUUID.bind(platform),
  } as unknown as Crypto;
  // Only `algorithm` is read from the key by the generators; the object is never exported.
  const stand_in = { algorithm, type: 'private', extractable: false, usages: ['sign'] } as unknown as CryptoKey;
  return { crypto, signingKey: stand_in, signingAlgorithm: algorithm };
}

function webCryptoAlgorithm(key: CustodyKey): Algorithm {
  switch (key.type) {
    case 'EC-P256':
      return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as Algorithm;
    case 'Ed25519':
      return { name: 'Ed25519' };
    case 'RSA-3072':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as Algorithm;
  }
}
