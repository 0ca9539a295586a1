import { isGrantActive, revokeGrant } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import {
  findRefreshToken,
  refreshTokenById,
  retryRefreshToken,
  rotateRefreshToken,
  type IssuedRefreshToken,
  type StoredRefreshToken,
} from '../tokens/refresh-tokens.ts';
import { chooseAccessTarget, requireBinding, type TokenBasis } from '../tokens/user-tokens.ts';
import { issueTokens } from './authorization-code.ts';
import type { Grant } from './grant.ts';

/**
 * RFC 6749 §6: a client exchanges a refresh token for a new access token. The rules, in order:
 * 1. `refresh_token` is one of ours (unknown → invalid_grant);
 * 2. it was issued to this client (§6: "bound to the client to which it was issued"); a
 *    confidential client has authenticated (the token endpoint requires it, §6);
 * 3. it has not expired and was not revoked; its grant is still active;
 * 4. `resource` may choose the audience among those of the grant (RFC 8707 §2.2) and `scope` may
 *    narrow, never widen (§6 → invalid_scope);
 * 5. rotation (RFC 9700 §4.14.2): the token is used by ONE conditional update and a child issued in
 *    its place, with the same scope and the family's absolute expiry;
 * 6. reuse of a used token:
 *    - public clients (token_endpoint_auth_method none): the whole grant is revoked and the request
 *      refused (RFC 9700 §4.14.2; a parallel double use gives one success and the revocation);
 *    - confidential clients: a retry with the previous token succeeds while its child has not been
 *      used yet (the response may have been lost; FAPI WG #456/#676), replacing that child; once the
 *      child was used, reuse revokes the grant as for public clients.
 */
export const refreshToken: Grant = {
  grantType: 'refresh_token',
  parameters: ['refresh_token', 'scope', 'resource'],
  repeatable: ['resource'],
  allowPublic: true,

  async handle({ params, client: authenticated, requestId }, ctx) {
    const clientId = authenticated.client.metadata.client_id;
    const value = params.get('refresh_token');
    if (value === undefined) throw new OAuthError('invalid_request', 'refresh_token is required');
    const stored = await findRefreshToken(ctx, value);
    if (!stored) throw invalidGrant('unknown refresh token');
    if (stored.clientId !== clientId) throw invalidGrant(`refresh token of ${stored.clientId} presented by ${clientId}`);
    if (stored.expiresAt <= ctx.clock.now()) throw invalidGrant('refresh token expired');
    if (stored.state === 'revoked') throw invalidGrant('refresh token revoked');
    if (stored.state === 'superseded') throw invalidGrant('refresh token was replaced by a retry before it was used');
    if (!(await isGrantActive(ctx.storage.db, stored.grantId))) throw invalidGrant('the grant was revoked');

    const p = stored.payload;
    const basis: TokenBasis = {
      userId: stored.userId,
      clientId,
      grantId: stored.grantId,
      ...(p.resource !== undefined ? { resource: p.resource } : {}),
      scopes: p.scopes,
      oidcScopes: p.oidcScopes,
      authorizationDetails: p.authorizationDetails,
      authTime: p.authTime,
      acr: p.acr,
      amr: p.amr,
    };
    const target = await chooseAccessTarget(ctx, basis, params.all('resource'), params.get('scope'));
    requireBinding(target, authenticated);

    const isPublic = authenticated.client.metadata.token_endpoint_auth_method === 'none';
    let rotation: 'rotated' | 'retried' = 'rotated';
    let child: IssuedRefreshToken | undefined = stored.state === 'active' ? await rotateRefreshToken(ctx, stored) : undefined;
    if (!child && !isPublic) {
      child = await retryRefreshToken(ctx, stored);
      rotation = 'retried';
    }
    if (!child) throw await reused(ctx, (await refreshTokenById(ctx, stored.id)) ?? stored, requestId);
    await ctx.audit.record({
      type: 'refresh.rotated',
      requestId,
      actor: clientId,
      subject: stored.userId,
      client: clientId,
      details: { refresh_id: stored.id, new_refresh_id: child.id, family_id: stored.familyId, grant_id: stored.grantId, rotation },
    });
    return issueTokens(ctx, authenticated, basis, target, { grantType: 'refresh_token', refreshToken: child });
  },
};

/** Step 6: a used refresh token presented again. The grant is revoked, then invalid_grant. */
async function reused(ctx: Context, token: StoredRefreshToken, requestId: string): Promise<OAuthError> {
  await revokeGrant(ctx, token.grantId, { actor: 'clearance', reason: 'refresh token reused', requestId });
  await ctx.audit.record({
    type: 'refresh.reused',
    requestId,
    actor: token.clientId,
    subject: token.userId,
    client: token.clientId,
    decision: { allow: false, reasons: ['refresh token presented after it was used; grant revoked'] },
    details: { refresh_id: token.id, family_id: token.familyId, grant_id: token.grantId, state: token.state },
  });
  return invalidGrant('refresh token reused; its grant was revoked', 'the refresh token was already used');
}

function invalidGrant(detail: string, description = 'the refresh token is invalid, expired, revoked, or was issued to another client'): OAuthError {
  return new OAuthError('invalid_grant', description, { detail });
}
