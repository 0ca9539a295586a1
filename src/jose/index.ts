/**
 * Clearance's JOSE helpers, one home for each rule: compact-JWS decoding (RFC 7515 §7.1 under
 * RFC 8725 §3.3), the private-JWK member list and JWK thumbprints (RFC 7517, RFC 7638), what each
 * JWS algorithm name means and which key it needs (including `Ed25519`, RFC 9864 §2.2), signature
 * verification on node:crypto, and the request-independent rules of a DPoP proof (RFC 9449 §4.3).
 *
 * It imports only node: built-ins, never the server's modules nor any package, so the guard
 * library (src/guard), which ships on its own, uses it as the server does (`npm run build:guard`
 * compiles it beside the guard). Verifying tokens we signed ourselves needs our key store and
 * lives in src/tokens/own-jwt.ts, on top of this.
 */
export { decodeCompactJws, decodeJwsHeader, decodeJwt, JwsFormatError, defaultMaxJwsBytes, describe, isCanonicalBase64url, mediaType, type DecodedJws, type DecodeResult, type JwsProblem } from './compact.ts';
export { importPublicJwk, jktPattern, jwkThumbprint, privateJwkMembers, privateMemberOf, publicKeyMembers } from './jwk.ts';
export {
  algorithmsForKeyType,
  asymmetricJwsAlgorithms,
  ed25519Algorithms,
  isJwsAlgorithm,
  jwkAlgorithms,
  keyFitsAlgorithm,
  sameAlgorithm,
  withBothEd25519Names,
  type JwsAlgorithm,
} from './algorithms.ts';
export { rawToDer, verifyCompactSignature } from './signature.ts';
export {
  accessTokenHash,
  checkDpopProofJwt,
  dpopProofTyp,
  normalizeHtu,
  safeEqual,
  type CheckedDpopProof,
  type DpopProofFailure,
  type DpopProofResult,
  type DpopProofRules,
} from './dpop.ts';
