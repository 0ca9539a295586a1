import { clientCredentials } from './client-credentials.ts';
import type { Grant } from './grant.ts';

/** Every grant the token endpoint dispatches to. */
export const grants: readonly Grant[] = [clientCredentials];

export function findGrant(grantType: string): Grant | undefined {
  return grants.find((g) => g.grantType === grantType);
}
