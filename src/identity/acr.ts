/**
 * Clearance's authentication levels: the `acr` values it asserts (OIDC Core §2) on one ladder,
 * weakest first, and the RFC 8176 `amr` values that name how a person authenticated. A request
 * for a level (`acr_values`, an essential `acr` claim, a role's minimum, a step-up policy) is met
 * by that level or any above it. docs/authentication.md describes the ladder.
 */
export const acr = {
  /** A password alone. */
  password: 'urn:clearance:acr:pwd',
  /** Two factors, at least one of them not phishing-resistant (password + TOTP). */
  multiFactor: 'urn:clearance:acr:mfa',
  /** Phishing-resistant: a passkey with user verification, its origin checked by the browser. */
  phishingResistant: 'urn:clearance:acr:phr',
  /** Phishing-resistant on a hardware authenticator whose attestation and AAGUID were verified. */
  phishingResistantHardware: 'urn:clearance:acr:phrh',
} as const;

export type Acr = (typeof acr)[keyof typeof acr];

/** The ladder, weakest first: `acrValuesSupported` in discovery, in this order. */
export const acrLadder: readonly Acr[] = [acr.password, acr.multiFactor, acr.phishingResistant, acr.phishingResistantHardware];

/**
 * Values sessions, codes and refresh tokens stored before the ladder existed, and the rung each
 * stands for (a password-only login asserted `urn:clearance:acr:1fa`).
 */
const legacy: Readonly<Record<string, Acr>> = { 'urn:clearance:acr:1fa': acr.password };

/** RFC 8176 §2 method references Clearance records. */
export const amr = {
  password: 'pwd',
  oneTimePassword: 'otp',
  hardwareKey: 'hwk',
  softwareKey: 'swk',
  /** User presence/verification at the authenticator (a passkey's UV). */
  user: 'user',
  /** A smart card: a person's certificate whose key is on a hardware token (src/identity/certificates). */
  smartCard: 'sc',
  /** A PIN that unlocks a key on the device (a smart card's, which its certificate policy requires). */
  pin: 'pin',
  multiFactor: 'mfa',
  /**
   * A one-time recovery code stood in for the second factor (src/identity/factors/recovery-codes.ts).
   * RFC 8176 registers no value for a look-up secret, and `otp` would let a relying party that asks
   * for one believe an authenticator was used. OIDC Core §2 (`amr`) leaves the meaning of values to
   * agreement between the parties, so this one is a collision-resistant URN in Clearance's namespace.
   */
  recoveryCode: 'urn:clearance:amr:recovery-code',
  /**
   * The person was signed in by an upstream identity provider (src/federation/upstream): RFC 8176 registers no
   * value for federation. The upstream's own values follow only where the provider is trusted for
   * the level they stand for (src/federation/upstream/assurance.ts).
   */
  upstream: 'urn:clearance:amr:upstream',
} as const;

/** The rung of an acr value on the ladder (0 = password); -1 for a value Clearance does not assert. */
export function acrRank(value: string | undefined): number {
  if (value === undefined) return -1;
  return acrLadder.indexOf((legacy[value] ?? value) as Acr);
}

/** Whether an achieved level meets a required one: the same rung or above. Unknown values meet nothing. */
export function acrSatisfies(achieved: string | undefined, required: string): boolean {
  const need = acrRank(required);
  const have = acrRank(achieved);
  return need >= 0 && have >= need;
}

/** The strongest of some levels (undefined when none is on the ladder). */
export function strongestAcr(values: Iterable<string | undefined>): Acr | undefined {
  let best = -1;
  for (const value of values) best = Math.max(best, acrRank(value));
  return best >= 0 ? acrLadder[best] : undefined;
}

/** Whether a value is one Clearance asserts (a rung of the ladder). */
export function isKnownAcr(value: string): value is Acr {
  return acrLadder.includes(value as Acr);
}
