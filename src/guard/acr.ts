/**
 * Clearance's authentication levels as a resource server reads them from a token's `acr`: the
 * ladder, weakest first (the server's src/identity/acr.ts, which this copy must equal — a test
 * holds them together; the guard imports nothing of the server). A requirement is met by the
 * level it names or any above it.
 */
export const acrLadder = ['urn:clearance:acr:pwd', 'urn:clearance:acr:mfa', 'urn:clearance:acr:phr', 'urn:clearance:acr:phrh'] as const;

/** Values tokens issued before the ladder carry, and the rung each stands for. */
const legacy: Readonly<Record<string, string>> = { 'urn:clearance:acr:1fa': 'urn:clearance:acr:pwd' };

/** The rung of a value (0 = password), -1 for a value not on the ladder. */
export function acrRank(value: unknown): number {
  if (typeof value !== 'string') return -1;
  return (acrLadder as readonly string[]).indexOf(legacy[value] ?? value);
}

/** Whether a token's `acr` meets a required level. A value off the ladder meets nothing. */
export function acrSatisfies(achieved: unknown, required: string): boolean {
  const need = acrRank(required);
  return need >= 0 && acrRank(achieved) >= need;
}
