/**
 * JWS algorithm names (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864) and which key each needs. The
 * allowlists themselves belong to their users (client assertions, DPoP, partner profiles, the
 * guard); this is what an algorithm means. Dependency-free: the guard imports it too.
 */

/**
 * Every asymmetric JWS algorithm any allowlist in Clearance may name. `none` and the MACs (HS*)
 * are not among them and never will be (RFC 8725 §3.1, §3.2: a public key is never a secret).
 */
export const asymmetricJwsAlgorithms = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;
export type JwsAlgorithm = (typeof asymmetricJwsAlgorithms)[number];

/** True for a name in `asymmetricJwsAlgorithms` (compared exactly: algorithm names are case-sensitive, RFC 7515 §4.1.1). */
export function isJwsAlgorithm(alg: unknown): alg is JwsAlgorithm {
  return typeof alg === 'string' && (asymmetricJwsAlgorithms as readonly string[]).includes(alg);
}

/**
 * The two names of one algorithm: `EdDSA` (RFC 8037 §3.1, polymorphic, here only ever with an
 * Ed25519 key) and `Ed25519`, its fully-specified name (RFC 9864 §2.2), which oauth4webapi and
 * openid-client 6 send for Ed25519 keys. With an OKP Ed25519 key both produce and verify the
 * very same signature, so wherever one is accepted the other is too. Ed448 is never accepted
 * under either name.
 */
export const ed25519Algorithms = ['EdDSA', 'Ed25519'] as const;

/** True when `a` and `b` name the same algorithm: equal, or both names of EdDSA over Ed25519. */
export function sameAlgorithm(a: unknown, b: unknown): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  if (a === b) return true;
  const ed = ed25519Algorithms as readonly string[];
  return ed.includes(a) && ed.includes(b);
}

/**
 * An allowlist with both names of EdDSA over Ed25519 wherever it names one of them (the other
 * right after it), so that an operator's `[ES256, EdDSA]` accepts what openid-client sends.
 */
export function withBothEd25519Names<T extends string>(algorithms: readonly T[]): (T | (typeof ed25519Algorithms)[number])[] {
  const out: (T | (typeof ed25519Algorithms)[number])[] = [];
  for (const alg of algorithms) {
    if (out.includes(alg)) continue;
    out.push(alg);
    const other = alg === 'EdDSA' ? 'Ed25519' : alg === 'Ed25519' ? 'EdDSA' : undefined;
    if (other !== undefined && !(algorithms as readonly string[]).includes(other)) out.push(other);
  }
  return out;
}

/**
 * The algorithms a public JWK's type can verify (RFC 7518 §3.3-3.5, RFC 8037 §3.1, RFC 9864
 * §2.2): EC P-256 → ES256, P-384 → ES384, P-521 → ES512; OKP Ed25519 → EdDSA and Ed25519 (never
 * Ed448); RSA → PS* and RS* (its size is checked on the imported key). Empty for anything else.
 * The JWK's own `alg` is not consulted here (see `jwkAlgorithms`).
 */
export function algorithmsForKeyType(jwk: Record<string, unknown>): JwsAlgorithm[] {
  if (jwk.kty === 'EC') return jwk.crv === 'P-256' ? ['ES256'] : jwk.crv === 'P-384' ? ['ES384'] : jwk.crv === 'P-521' ? ['ES512'] : [];
  if (jwk.kty === 'OKP') return jwk.crv === 'Ed25519' ? [...ed25519Algorithms] : [];
  if (jwk.kty === 'RSA') return ['PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'];
  return [];
}

/**
 * The algorithms a registered JWK may verify with (RFC 7517 §4.2-4.4): those of its type, none
 * when `use` is not `sig` or `key_ops` lacks `verify`, and only its own `alg` (under either name
 * of EdDSA over Ed25519) when it names one.
 */
export function jwkAlgorithms(jwk: Record<string, unknown>): JwsAlgorithm[] {
  const forSignatures = (jwk.use === undefined || jwk.use === 'sig') && (jwk.key_ops === undefined || (Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify')));
  if (!forSignatures) return [];
  return algorithmsForKeyType(jwk).filter((alg) => jwk.alg === undefined || sameAlgorithm(jwk.alg, alg));
}

/** True when `jwk`'s type can verify `alg` (RFC 9449 §4.3 (6): a proof key of the type its alg needs). */
export function keyFitsAlgorithm(alg: string, jwk: Record<string, unknown>): boolean {
  return (algorithmsForKeyType(jwk) as string[]).includes(alg);
}
