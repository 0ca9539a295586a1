import { clientCredentials } from './client-credentials.ts';
import { authorizationCode } from './authorization-code.ts';
import { refreshToken } from './refresh-token.ts';
import { tokenExchange } from './token-exchange.ts';
import { jwtBearer } from './jwt-bearer.ts';
import { ciba } from './ciba.ts';
import type { GrantHandler } from './grant.ts';

/** Every grant the token endpoint dispatches to. */
export const grants: readonly GrantHandler[] = [clientCredentials, authorizationCode, refreshToken, tokenExchange, jwtBearer, ciba];

export function findGrant(grantType: string): GrantHandler | undefined {
  return grants.find((g) => g.grantType === grantType);
}
