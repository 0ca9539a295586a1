import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { findCode, redeemCode } from '../authorization/codes.ts';
import { revokeGrantIn } from '../authorization/consent.ts';
import { isValidCodeVerifier, verifyS256 } from '../authorization/pkce.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { mintIdToken } from '../tokens/id-token.ts';
import type { Database } from '../storage/schema.ts';
import { issueRefreshToken, type IssuedRefreshToken } from '../tokens/refresh-tokens.ts';
import { chooseAccessTarget, mintUserAccessToken, requireBinding, tokenBasis, type TokenBasis } from '../tokens/user-tokens.ts';
import { isFapi2 } from '../clients/profile.ts';
import { userinfoAudience } from '../authorization/scopes.ts';
import { authorizeIssuance } from '../policy/issuance.ts';
import { resolveIssuingMandate, userParties } from '../mandates/issuance.ts';
import { senderBinding, type SenderBinding } from '../tokens/binding.ts';
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
 * 7a. a code bound to a DPoP key (RFC 9449 §10: PAR's proof or `dpop_jkt`) needs a proof of that
 *    key (else invalid_grant); the access token is bound to the proof's key or the client
 *    certificate, and a bearer token is refused for a sender-constrained resource or FAPI 2.0;
 * 8. the code is redeemed by ONE conditional update: of parallel redemptions exactly one wins, the
 *    others are treated as reuse (step 3);
 * 9. an access token, a refresh token (clients registered for refresh_token) and, for `openid`,
 *    an ID token (OIDC Core §3.1.3.3) are issued. The redemption, the refresh token and the events
 *    `code.redeemed` and `token.issued` are one transaction: all durable before the response.
 */
export const authorizationCode: Grant = {
  grantType: 'authorization_code',
  parameters: ['code', 'redirect_uri', 'code_verifier', 'resource'],
  repeatable: ['resource'],
  allowPublic: true,

  async handle({ params, client: authenticated, requestId, dpop }, ctx) {
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
    // Read with the code (findCode): the grant is still active.
    if (!code.grantActive) throw invalidGrant('the grant was revoked');

    const p = code.payload;
    const basis = tokenBasis({ userId: code.userId, clientId, grantId: code.grantId }, p);
    // RFC 9449 §10: the code is bound to the key of PAR's proof or dpop_jkt; the proof here must be of it.
    if (p.dpopJkt !== undefined && dpop?.jkt !== p.dpopJkt) {
      throw invalidGrant(dpop ? 'DPoP proof key differs from the key the code is bound to' : 'code bound to a DPoP key, no DPoP proof', 'the authorization code is bound to a DPoP key; send a proof of that key');
    }
    const target = await chooseAccessTarget(ctx, basis, params.all('resource'), undefined);
    const binding = senderBinding({ dpop, certificateThumbprint: authenticated.certificateThumbprint });
    requireBinding(target, binding, isFapi2(ctx.config, authenticated.client));

    const issued = await issueTokens(ctx, authenticated, basis, target, {
      binding,
      nonce: p.nonce,
      grantType: 'authorization_code',
      requestId,
      // DESIGN §7: single use is one conditional update; losing the race is a reuse.
      write: async (trx) => {
        if (!(await redeemCode(ctx, code.id, trx))) return undefined;
        const redeemed: AuditEvent = {
          type: 'code.redeemed',
          requestId,
          actor: clientId,
          subject: code.userId,
          client: clientId,
          details: { code_id: code.id, grant_id: code.grantId },
        };
        return { events: [redeemed] };
      },
    });
    if (!issued) {
      const again = await findCode(ctx, codeValue);
      if (again && again.redeemedAt !== null) throw await reused(ctx, code, requestId);
      throw invalidGrant('authorization code expired');
    }
    return issued;
  },
};

/**
 * What a grant writes when it issues tokens (in `issueTokens`' transaction): undefined when it
 * lost (a code already redeemed, a refresh token already used), else its audit events and, on
 * rotation, the refresh token that goes with the response.
 */
export type TokenWrite = (trx: Transaction<Database>) => Promise<{ events: AuditEvent[]; refresh?: IssuedRefreshToken } | undefined>;

/**
 * Issues the tokens of a person's authorization: the access token, a new refresh token family when
 * the client is registered for refresh_token (code redemption), and an ID token when `openid` was
 * granted. The tokens are signed first; then ONE transaction runs the grant's `write` (the code's
 * redemption, the refresh token's rotation), inserts the new family's first refresh token, and
 * records the grant's events with `token.issued`, so everything that justifies the response is
 * durable before it leaves and nothing is written when the write lost (then: undefined, and the
 * signed tokens are dropped unseen).
 */
export async function issueTokens(
  ctx: Context,
  authenticated: Parameters<typeof mintUserAccessToken>[1],
  basis: TokenBasis,
  target: Parameters<typeof mintUserAccessToken>[3],
  options: { binding: SenderBinding; nonce?: string | undefined; grantType: 'authorization_code' | 'refresh_token'; requestId: string; write: TokenWrite },
): Promise<GrantResult | undefined> {
  // A mandate the person asked to act under: theirs (or their firm's), in force, granting the scopes.
  const userinfo = target.audience === userinfoAudience(ctx.config.issuer);
  const mandate = basis.mandate !== undefined && !userinfo ? await resolveIssuingMandate(ctx, basis.mandate, { grantees: await userParties(ctx, basis.userId), offeredScopes: target.scopes, scopeRequested: true }) : undefined;
  // The decision point allows each scope and authorization_details entry (src/policy/issuance.ts).
  const decisions = await authorizeIssuance(ctx, {
    subject: { type: 'User', id: basis.userId },
    clientId: basis.clientId,
    audience: target.audience,
    scopes: target.scopes,
    authorizationDetails: target.authorizationDetails,
    acr: basis.acr,
    ...(mandate ? { mandate: mandate.version } : {}),
    requestId: options.requestId,
    grantType: options.grantType,
  });
  const access = await mintUserAccessToken(ctx, authenticated, basis, target, options.binding, mandate ? { id: mandate.version.id, v: mandate.version.version } : undefined);
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
  // Refresh tokens go to clients registered for the refresh_token grant (docs: whether offline_access
  // was requested does not matter; the registration is the operator's decision).
  const newFamily = options.grantType === 'authorization_code' && authenticated.client.metadata.grant_types.includes('refresh_token');
  const written = await ctx.audit.recordWith(async (trx) => {
    const write = await options.write(trx);
    if (!write) return { value: undefined, events: [] };
    // RFC 9449 §5, RFC 8705 §4: a public client's refresh token is bound to the key it used.
    const publicClient = authenticated.client.metadata.token_endpoint_auth_method === 'none';
    const refresh = newFamily ? await issueRefreshToken(ctx, refreshInput(basis, publicClient ? options.binding.cnf : undefined), trx) : write.refresh;
    return { value: { refresh }, events: [...write.events, ...decisions, issuedEvent(basis, target, access, idToken, refresh, options)] };
  });
  if (!written) return undefined;
  const refresh = written.refresh;
  const response: TokenResponse = {
    access_token: access.token,
    token_type: options.binding.tokenType,
    expires_in: target.ttl,
    scope: access.scope!,
    ...(refresh ? { refresh_token: refresh.token } : {}),
    ...(idToken ? { id_token: idToken } : {}),
    // RFC 9396 §7: the granted authorization_details.
    ...(access.authorization_details ? { authorization_details: access.authorization_details } : {}),
  };
  return { response };
}

function refreshInput(basis: TokenBasis, cnf: SenderBinding['cnf']): Parameters<typeof issueRefreshToken>[1] {
  return {
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
      ...(basis.mandate !== undefined ? { mandate: basis.mandate } : {}),
      ...(cnf ? { cnf } : {}),
    },
  };
}

/** The `token.issued` event of an access token issued from a person's authorization. */
function issuedEvent(
  basis: TokenBasis,
  target: Parameters<typeof mintUserAccessToken>[3],
  access: Awaited<ReturnType<typeof mintUserAccessToken>>,
  idToken: string | undefined,
  refresh: IssuedRefreshToken | undefined,
  options: { binding: SenderBinding; grantType: 'authorization_code' | 'refresh_token'; requestId: string },
): AuditEvent {
  return {
    type: 'token.issued',
    requestId: options.requestId,
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
      bound: options.binding.kind,
      oidc: idToken !== undefined,
      ...(refresh ? { refresh_id: refresh.id } : {}),
      ...(access.authorization_details ? { authorization_details: access.authorization_details } : {}),
    },
  };
}

/** Step 3: a code presented again. The grant is revoked (one transaction with both events), then invalid_grant. */
async function reused(ctx: Context, code: { id: string; grantId: string; userId: string; clientId: string }, requestId: string): Promise<OAuthError> {
  await ctx.audit.recordWith(async (trx) => {
    const revoked = await revokeGrantIn(trx, ctx.clock.now(), code.grantId, { actor: 'clearance', reason: 'authorization code reused', requestId });
    const event: AuditEvent = {
      type: 'code.reused',
      requestId,
      actor: code.clientId,
      subject: code.userId,
      client: code.clientId,
      decision: { allow: false, reasons: ['authorization code presented more than once; grant revoked'] },
      details: { code_id: code.id, grant_id: code.grantId },
    };
    return { value: undefined, events: [...(revoked ? [revoked] : []), event] };
  });
  return invalidGrant('authorization code reused; its grant was revoked', 'the authorization code was already used');
}

function invalidGrant(detail: string, description = 'the authorization code is invalid, expired, or was issued to another client'): OAuthError {
  return new OAuthError('invalid_grant', description, { detail });
}
