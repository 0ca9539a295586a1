import { verifyRequestObject, requestObjectSkewSeconds } from '../authorization/request-object.ts';
import type { Client } from '../clients/store.ts';
import { isFapi2 } from '../clients/profile.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { decodeCompactJws } from '../jose/index.ts';
import { OAuthError } from '../oauth-error.ts';
import { hasControlCharacter } from '../parameters.ts';

/**
 * Signed authentication requests (CIBA Core §7.1.1; FAPI-CIBA §5.2.2): the parameters as the claims
 * of a JWT the client signs with a registered key, sent as `request`. Verified as a JAR request
 * object is (src/authorization/request-object.ts: allowlisted alg equal to the key's, registered
 * keys only, iss = client_id, aud = our issuer, exp and nbf, lifetime ≤ 60 min), plus §7.1.1's own
 * rules: `iat` and `jti` are required, and a `jti` is used once (remembered until the JWT could no
 * longer pass). A client registered with `backchannel_authentication_request_signing_alg` signs
 * with that algorithm only. Every failure is `invalid_request` (§13 has no request-object error).
 */

/** Whether this client's authentication requests must be signed: FAPI 2.0 clients (FAPI-CIBA §5.2.2), and clients that registered a signing alg (§4). */
export function mustSign(ctx: Pick<Context, 'config'>, client: Client): boolean {
  return isFapi2(ctx.config, client) || client.metadata.backchannel_authentication_request_signing_alg !== undefined;
}

const maxJtiLength = 128;

export async function verifySignedAuthenticationRequest(ctx: Context, client: Client, jwt: string): Promise<Record<string, unknown>> {
  const clientId = client.metadata.client_id;
  const registered = client.metadata.backchannel_authentication_request_signing_alg;
  const decoded = decodeCompactJws(jwt);
  if (decoded.ok && registered !== undefined && decoded.jws.header.alg !== registered) {
    throw invalid(`the request must be signed with ${registered} (backchannel_authentication_request_signing_alg)`);
  }
  let claims: Record<string, unknown>;
  try {
    claims = await verifyRequestObject(jwt, client, { issuer: ctx.config.issuer, clock: ctx.clock, clientKeys: ctx.clientAuthentication.clientKeys });
  } catch (error) {
    if (error instanceof OAuthError) throw invalid(error.description ?? 'the signed authentication request is invalid');
    throw error;
  }
  const { iat, jti, exp } = claims;
  // §7.1.1: iat REQUIRED, and not in the future.
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('the signed request must contain iat');
  if (iat > epochSeconds(ctx.clock) + requestObjectSkewSeconds) throw invalid('the signed request iat is in the future');
  // §7.1.1: jti REQUIRED, a unique identifier: used once.
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > maxJtiLength || hasControlCharacter(jti)) {
    throw invalid(`the signed request must contain a jti of 1-${maxJtiLength} characters`);
  }
  const fresh = await ctx.clientAuthentication.replay.use(`ciba_request:${clientId}:${jti}`, ((exp as number) + requestObjectSkewSeconds) * 1000);
  if (!fresh) throw invalid('the signed request was already used (jti)');
  return claims;
}

function invalid(description: string): OAuthError {
  return new OAuthError('invalid_request', description);
}
