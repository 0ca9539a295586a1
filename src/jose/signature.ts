import { constants, verify, type KeyObject } from 'node:crypto';
import type { JwsAlgorithm } from './algorithms.ts';

/** RFC 7518 §3.4: the curve, hash and R ‖ S width of each ECDSA algorithm. */
const ecdsa = { ES256: ['prime256v1', 'sha256', 64], ES384: ['secp384r1', 'sha384', 96], ES512: ['secp521r1', 'sha512', 132] } as const;

/**
 * Verifies the signature of a compact JWS (RFC 7515 §5.2 steps 7-8) with a KeyObject, for an
 * algorithm the caller has already decided from its allowlist and the key (never the token's
 * choice alone, RFC 8725 §3.1). The key must be of the algorithm's type: an EC key on its curve,
 * an Ed25519 key for EdDSA/Ed25519 (Ed448 never), RSA of at least 2048 bits (RFC 7518 §3.3, §3.5).
 *
 * This is the hot path of every private_key_jwt request and DPoP proof, so it runs node:crypto
 * synchronously instead of jose's WebCrypto path, which hops through the libuv threadpool; and it
 * hands ES256 a DER signature with a plain KeyObject, which on Node 24 is 1.6-2.4x faster than the
 * `dsaEncoding: 'ieee-p1363'` option (DESIGN §9). Structure and claims are checked by the
 * caller (`decodeCompactJws`). Never throws: a malformed signature is simply not valid.
 */
export function verifyCompactSignature(alg: JwsAlgorithm, key: KeyObject, jwt: string): boolean {
  const lastDot = jwt.lastIndexOf('.');
  if (lastDot <= 0) return false;
  const data = Buffer.from(jwt.slice(0, lastDot), 'ascii');
  const signature = Buffer.from(jwt.slice(lastDot + 1), 'base64url');
  try {
    switch (alg) {
      case 'ES256':
      case 'ES384':
      case 'ES512': {
        const [curve, hash, width] = ecdsa[alg];
        // RFC 7518 §3.4: exactly R ‖ S, each as wide as the curve's order.
        if (signature.length !== width || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== curve) return false;
        if (alg === 'ES256') return verify(hash, data, key, rawToDer(signature));
        return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, signature);
      }
      case 'EdDSA':
      case 'Ed25519':
        // RFC 8037 §3.1, RFC 9864 §2.2: the Ed25519 parameter set only.
        if (key.asymmetricKeyType !== 'ed25519') return false;
        return verify(null, data, key, signature);
      case 'PS256':
      case 'PS384':
      case 'PS512':
      case 'RS256':
      case 'RS384':
      case 'RS512': {
        if (key.asymmetricKeyType !== 'rsa' || (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return false;
        const bits = Number(alg.slice(2));
        // RFC 7518 §3.5: RSASSA-PSS with MGF1 on the same hash and a salt as long as the hash.
        if (alg.startsWith('PS')) return verify(`sha${bits}`, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: bits / 8 }, signature);
        return verify(`sha${bits}`, data, key, signature);
      }
    }
  } catch {
    return false;
  }
  return false;
}

/** Fixed-width R ‖ S (JOSE) to an ECDSA DER SEQUENCE of two INTEGERs (short-form lengths: P-256). */
export function rawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  const integer = (bytes: Buffer) => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start++;
    const trimmed = bytes.subarray(start);
    // A leading 1 bit would read as negative: DER needs a 0x00 in front.
    const body = trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const r = integer(raw.subarray(0, half));
  const s = integer(raw.subarray(half));
  return Buffer.concat([Buffer.from([0x30, r.length + s.length]), r, s]);
}
