import type { AuditEvent } from '../audit/events.ts';
import { findCode, redeemCodeIn } from '../authorization/codes.ts';
import { isValidCodeVerifier, verifyS256 } from '../authorization/pkce.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { issuanceReadAhead } from '../risk/read-ahead.ts';
import { chooseAccessTarget, tokenBasis } from '../tokens/user-tokens.ts';
import { defineGrant } from './grant.ts';
import { issuePersonTokens } from './person-tokens.ts';
import { revokeOnReuse } from './reuse.ts';

/**
 * RFC 6749 §4.1.3: a client exchanges an authorization code for tokens. The rules, in order:
 * 1. `code` is present (invalid_request) and one of ours (unknown → invalid_grant);
 * 2. it was issued to this client (§4.1.3 "ensure that the authorization code was issued to the
 *    authenticated confidential client, or ... public client");
 * 3. it was not redeemed before: a second redemption is refused AND revokes the grant, so every
 *    token issued from the first redemption dies with it (§4.1.2 "SHOULD revoke"; RFC 9700 §4.5);
 * 4. it has not expired (60 s);
 * 5. redirect_uri is present and identical to the authorization request's (§4.1.3);
 * 6. code_verifier matches the RFC 7636 §4.1 ABNF and its S256 transform equals the challenge (§4.6);
 * 7. the grant is still active;
 * 8. a code bound to a DPoP key (RFC 9449 §10: PAR's proof or `dpop_jkt`) needs a proof of that
 *    key (else invalid_grant);
 * 9. the audience: the authorization's resource, or userinfo for `openid`, once (RFC 8707 §2.2);
 * 10. the tokens (src/grants/person-tokens.ts): the mandate rechecked, the access token through the
 *    one issuance path (bound to the proof's key or the client certificate; a bearer token refused
 *    for a sender-constrained resource or FAPI 2.0; the decision point) and, for `openid`, an ID
 *    token (OIDC Core §3.1.3.3) — signed, not yet sent;
 * 11. ONE transaction: the code is redeemed by ONE conditional update — of parallel redemptions
 *    exactly one wins, the others are treated as reuse (step 3) and nothing else is written — then
 *    a refresh token (clients registered for refresh_token) and the events `code.redeemed` and
 *    `token.issued`: all durable before the response.
 */
export const authorizationCode = defineGrant({
  grantType: 'authorization_code',
  parameters: ['code', 'redirect_uri', 'code_verifier', 'resource'],
  repeatable: ['resource'],
  allowPublic: true,

  async handle({ params, client: authenticated, requestId, dpop, address }, ctx) {
    const clientId = authenticated.client.metadata.client_id;
    const codeValue = params.get('code');
    if (codeValue === undefined) throw new OAuthError('invalid_request', 'code is required');
    const code = await findCode(ctx, codeValue, await issuanceReadAhead(ctx));
    if (!code) throw invalidGrant('unknown authorization code');
    if (code.clientId !== clientId) throw invalidGrant(`code of ${code.clientId} presented by ${clientId}`);
    if (code.redeemedAt !== null) throw await reused(ctx, code, requestId);
    if (code.expiresAt <= ctx.clock.now()) throw invalidGrant('authorization code expired');
    const redirectUri = params.get('redirect_uri');
    // RFC 6749 §4.1.3: redirect_uri is REQUIRED when it was in the request (always), and identical.
    if (redirectUri !== code.redirectUri) throw invalidGrant(redirectUri === undefined ? 'redirect_uri missing' : 'redirect_uri differs');
    const verifier = params.get('code_verifier');
    // RFC 7636 §4.5, §4.6: the verifier is required; it must have the §4.1 form and match.
    if (verifier === undefined) throw invalidGrant('code_verifier missing', 'code_verifier is required');
    if (!isValidCodeVerifier(verifier)) throw invalidGrant('code_verifier outside the RFC 7636 ABNF', 'code_verifier is malformed');
    if (!verifyS256(verifier, code.codeChallenge)) throw invalidGrant('code_verifier does not match the code_challenge', 'code_verifier does not match');
    // Read with the code (findCode): the grant is still active.
    if (!code.grantActive) throw invalidGrant('the grant was revoked');

    const p = code.payload;
    const basis = tokenBasis({ userId: code.userId, clientId, grantId: code.grantId }, p);
    // RFC 9449 §10: the code is bound to the key of PAR's proof or dpop_jkt; the proof here must be of it.
    if (p.dpopJkt !== undefined && dpop?.jkt !== p.dpopJkt) {
      throw invalidGrant(dpop ? 'DPoP proof key differs from the key the code is bound to' : 'code bound to a DPoP key, no DPoP proof', 'the authorization code is bound to a DPoP key; send a proof of that key');
    }
    const target = await chooseAccessTarget(ctx, basis, params.all('resource'), undefined);

    const issued = await issuePersonTokens(ctx, authenticated, basis, target, {
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      nonce: p.nonce,
      grantType: 'authorization_code',
      ...(p.stepUpId !== undefined ? { stepUpId: p.stepUpId } : {}),
      requestId,
      ...(address !== undefined ? { address } : {}),
      // DESIGN §7: single use is one conditional update; losing the race is a reuse.
      write: (flight) => {
        redeemCodeIn(flight, ctx, code.id);
        const redeemed: AuditEvent = {
          type: 'code.redeemed',
          requestId,
          actor: clientId,
          subject: code.userId,
          client: clientId,
          details: { code_id: code.id, grant_id: code.grantId },
        };
        return { events: [redeemed], lostIf: 'code_not_redeemable' };
      },
    });
    if (!issued) {
      const again = await findCode(ctx, codeValue);
      if (again && again.redeemedAt !== null) throw await reused(ctx, code, requestId);
      throw invalidGrant('authorization code expired');
    }
    return issued;
  },
});

/** Step 3: a code presented again revokes its grant (src/grants/reuse.ts), then invalid_grant. */
function reused(ctx: Context, code: { id: string; grantId: string; userId: string; clientId: string }, requestId: string): Promise<OAuthError> {
  return revokeOnReuse(ctx, { kind: 'code', grantId: code.grantId, userId: code.userId, clientId: code.clientId, requestId, details: { code_id: code.id } });
}

function invalidGrant(detail: string, description = 'the authorization code is invalid, expired, or was issued to another client'): OAuthError {
  return new OAuthError('invalid_grant', description, { detail });
}
