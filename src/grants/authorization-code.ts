import type { AuditEvent } from '../audit/events.ts';
import { findCode, redeemCode } from '../authorization/codes.ts';
import { isGrantActive, revokeGrant } from '../authorization/consent.ts';
import { isValidCodeVerifier, verifyS256 } from '../authorization/pkce.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { mintIdToken } from '../tokens/id-token.ts';
import { issueRefreshToken } from '../tokens/refresh-tokens.ts';
import { chooseAccessTarget, mintUserAccessToken, requireBinding, type TokenBasis } from '../tokens/user-tokens.ts';
import type { Grant, GrantResult, TokenResponse } from './grant.ts';

/**
 * RFC 6749 §4.1.3: a client exchanges an authorization code for tokens. The rules, in order:
 * 1. `code` is one of ours (unknown → invalid_grant);
 * 2. it was issued to this client (§4.1.3 "ensure that the authorization code was issued to the
 *    authenticated confidential client, or ... public client");
 * 3. it was not redeemed before: a second redemption is refused AND revokes the grant, so every
 *    token issued from the first redemption dies with it (§4.1.2 "SHOULD revoke"; RFC 9700 §4.5);
 * 4. it has not expired (60 s);
 * 5. redirect_uri is present and identical to the authorization request's (§4.1.3);
 * 6. code_verifier matches the RFC 7636 §4.1 ABNF and its S256 transform equals the challenge (§4.6);
 * 7. the grant is still active, and the chosen audience is covered (RFC 8707 §2.2);
 * 8. the code is redeemed by ONE conditional update: of parallel redemptions exactly one wins, the
 *    others are treated as reuse (step 3);
 * 9. an access token, a refresh token (clients registered for refresh_token) and, for `openid`,
 *    an ID token (OIDC Core §3.1.3.3) are issued.
 */
export const authorizationCode: Grant = {
  grantType: 'authorization_code',
  parameters: ['code', 'redirect_uri', 'code_verifier', 'resource'],
  repeatable: ['resource'],
  allowPublic: true,

  async handle({ params, client: authenticated, requestId }, ctx) {
    const clientId = authenticated.client.metadata.client_id;
    const codeValue = params.get('code');
    if (codeValue === undefined) throw new OAuthError('invalid_request', 'code is required');
    const code = await findCode(ctx, codeValue);
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
    if (!(await isGrantActive(ctx.storage.db, code.grantId))) throw invalidGrant('the grant was revoked');

    const p = code.payload;
    const basis: TokenBasis = {
      userId: code.userId,
      clientId,
      grantId: code.grantId,
      ...(p.resource !== undefined ? { resource: p.resource } : {}),
      scopes: p.scopes,
      oidcScopes: p.oidcScopes,
      authorizationDetails: p.authorizationDetails,
      authTime: p.authTime,
      acr: p.acr,
      amr: p.amr,
    };
    const target = await chooseAccessTarget(ctx, basis, params.all('resource'), undefined);
    requireBinding(target, authenticated);

    // DESIGN §7: single use is one conditional update; losing the race is a reuse.
    if (!(await redeemCode(ctx, code.id))) {
      const again = await findCode(ctx, codeValue);
      if (again && again.redeemedAt !== null) throw await reused(ctx, code, requestId);
      throw invalidGrant('authorization code expired');
    }
    await ctx.audit.record({
      type: 'code.redeemed',
      requestId,
      actor: clientId,
      subject: code.userId,
      client: clientId,
      details: { code_id: code.id, grant_id: code.grantId },
    });
    return issueTokens(ctx, authenticated, basis, target, { nonce: p.nonce, grantType: 'authorization_code' });
  },
};

/**
 * Issues the tokens of a person's authorization: the access token, a new refresh token family when
 * the client is registered for refresh_token, and an ID token when `openid` was granted.
 */
export async function issueTokens(
  ctx: Context,
  authenticated: Parameters<typeof mintUserAccessToken>[1],
  basis: TokenBasis,
  target: Parameters<typeof mintUserAccessToken>[3],
  options: { nonce?: string | undefined; grantType: 'authorization_code' | 'refresh_token'; refreshToken?: { token: string; id: string } },
): Promise<GrantResult> {
  const access = await mintUserAccessToken(ctx, authenticated, basis, target);
  let refresh = options.refreshToken;
  // Refresh tokens go to clients registered for the refresh_token grant (docs: whether offline_access
  // was requested does not matter; the registration is the operator's decision).
  if (!refresh && options.grantType === 'authorization_code' && authenticated.client.metadata.grant_types.includes('refresh_token')) {
    refresh = await issueRefreshToken(ctx, {
      grantId: basis.grantId,
      clientId: basis.clientId,
      userId: basis.userId,
      payload: {
        ...(basis.resource !== undefined ? { resource: basis.resource } : {}),
        scopes: basis.scopes,
        oidcScopes: basis.oidcScopes,
        authorizationDetails: basis.authorizationDetails,
        authTime: basis.authTime,
        acr: basis.acr,
        amr: basis.amr,
      },
    });
  }
  const idToken = basis.oidcScopes.includes('openid')
    ? await mintIdToken(ctx.keys, {
        issuer: ctx.config.issuer,
        subject: basis.userId,
        clientId: basis.clientId,
        now: epochSeconds(ctx.clock),
        authTime: basis.authTime,
        // OIDC Core §12.2: a refreshed ID token carries no nonce.
        ...(options.nonce !== undefined ? { nonce: options.nonce } : {}),
        acr: basis.acr,
        amr: basis.amr,
      })
    : undefined;
  const response: TokenResponse = {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: target.ttl,
    scope: access.scope!,
    ...(refresh ? { refresh_token: refresh.token } : {}),
    ...(idToken ? { id_token: idToken } : {}),
    // RFC 9396 §7: the granted authorization_details.
    ...(access.authorization_details ? { authorization_details: access.authorization_details } : {}),
  };
  const event: AuditEvent = {
    type: 'token.issued',
    actor: basis.clientId,
    subject: basis.userId,
    client: basis.clientId,
    issuer: access.iss,
    audience: access.aud,
    scopes: target.scopes,
    details: {
      grant_type: options.grantType,
      jti: access.jti,
      exp: access.exp,
      grant_id: basis.grantId,
      bound: access.cnf ? 'mtls' : 'none',
      oidc: idToken !== undefined,
      ...(refresh ? { refresh_id: refresh.id } : {}),
      ...(access.authorization_details ? { authorization_details: access.authorization_details } : {}),
    },
  };
  return { response, event };
}

/** Step 3: a code presented again. The grant is revoked, then invalid_grant. */
async function reused(ctx: Context, code: { id: string; grantId: string; userId: string; clientId: string }, requestId: string): Promise<OAuthError> {
  await revokeGrant(ctx, code.grantId, { actor: 'clearance', reason: 'authorization code reused', requestId });
  await ctx.audit.record({
    type: 'code.reused',
    requestId,
    actor: code.clientId,
    subject: code.userId,
    client: code.clientId,
    decision: { allow: false, reasons: ['authorization code presented more than once; grant revoked'] },
    details: { code_id: code.id, grant_id: code.grantId },
  });
  return invalidGrant('authorization code reused; its grant was revoked', 'the authorization code was already used');
}

function invalidGrant(detail: string, description = 'the authorization code is invalid, expired, or was issued to another client'): OAuthError {
  return new OAuthError('invalid_grant', description, { detail });
}
