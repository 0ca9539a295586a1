import { findProvider } from '../federation/upstream/providers.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { liveUnder, personStandingIn, type PersonStanding } from '../identity/lifecycle.ts';
import { issuanceReadAhead } from '../risk/read-ahead.ts';
import { OAuthError } from '../oauth-error.ts';
import {
  findRefreshToken,
  refreshTokenById,
  retryRefreshToken,
  rotateRefreshTokenIn,
  type IssuedRefreshToken,
  type StoredRefreshToken,
} from '../tokens/refresh-tokens.ts';
import { chooseAccessTarget, tokenBasis } from '../tokens/user-tokens.ts';
import { defineGrant } from './grant.ts';
import { issuePersonTokens } from './person-tokens.ts';
import { revokeOnReuse } from './reuse.ts';
import { refreshKey } from '../risk/signals/concurrent-networks.ts';

/**
 * RFC 6749 §6: a client exchanges a refresh token for a new access token. The rules, in order:
 * 1. `refresh_token` is present (invalid_request) and one of ours (unknown → invalid_grant);
 * 2. it was issued to this client (§6: "bound to the client to which it was issued"); a
 *    confidential client has authenticated (the token endpoint requires it, §6);
 * 3. it has not expired, was not revoked, and was not superseded (replaced by a retry's child
 *    before it was used); its grant is still active; its person may still hold tokens and it was
 *    issued after the person's cut-off (src/identity/lifecycle.ts); the tokens issued with it were
 *    not signed by a key revoked as compromised (src/keys/compromise.ts revokes such families; this
 *    refuses one a node wrote in the moment before it learned of the revocation);
 * 4. a public client's refresh token bound to a DPoP key or a certificate (RFC 9449 §5, RFC 8705 §4)
 *    is used only with a proof of that key or that certificate (else invalid_grant, and the token
 *    is not consumed);
 * 5. `resource` may choose the audience among those of the grant (RFC 8707 §2.2) and `scope` may
 *    narrow, never widen (§6 → invalid_scope); the grant's `openid`/`offline_access` may be sent
 *    again (they belong to the grant, not to a resource: src/tokens/user-tokens.ts);
 * 6. the tokens (src/grants/person-tokens.ts): the mandate rechecked, the access token through the
 *    one issuance path (bound to the request's proof or certificate; a bearer token refused for a
 *    sender-constrained resource or FAPI 2.0; the decision point) naming the token's family
 *    (`refresh_family`: revoking the family ends it, RFC 7009 §2.1), an ID token for `openid`;
 * 7. rotation (RFC 9700 §4.14.2): the token is used by ONE conditional update and a child issued in
 *    its place, with the same scope and the family's absolute expiry — in one transaction with the
 *    events `refresh.rotated` and `token.issued`;
 * 8. reuse of a used token:
 *    - public clients (token_endpoint_auth_method none): the whole grant is revoked and the request
 *      refused (RFC 9700 §4.14.2; a parallel double use gives one success and the revocation);
 *    - confidential clients: a retry with the previous token — concurrent or later (a lost
 *      response; FAPI WG #456/#676) — succeeds while its child has not been used yet, and gets that
 *      same child (src/tokens/refresh-tokens.ts: one rotation, every duplicate the same refresh
 *      token, the grant untouched); once the child was used, reuse revokes the grant as for public
 *      clients.
 */
export const refreshToken = defineGrant({
  grantType: 'refresh_token',
  parameters: ['refresh_token', 'scope', 'resource'],
  repeatable: ['resource'],
  allowPublic: true,

  async handle({ params, client: authenticated, requestId, dpop, address }, ctx) {
    const clientId = authenticated.client.metadata.client_id;
    const value = params.get('refresh_token');
    if (value === undefined) throw new OAuthError('invalid_request', 'refresh_token is required');
    // The person's standing (step below) and what the issuance decides on are read with the token.
    let standing: Promise<PersonStanding | undefined> = Promise.resolve(undefined);
    const issuanceAhead = await issuanceReadAhead(ctx);
    const stored = await findRefreshToken(ctx, value, (flight, personId) => {
      standing = personStandingIn(flight, ctx.storage.db, personId);
      issuanceAhead(flight, personId);
    });
    if (!stored) throw invalidGrant('unknown refresh token');
    if (stored.clientId !== clientId) throw invalidGrant(`refresh token of ${stored.clientId} presented by ${clientId}`);
    if (stored.expiresAt <= ctx.clock.now()) throw invalidGrant('refresh token expired');
    if (stored.state === 'revoked') throw invalidGrant('refresh token revoked');
    if (stored.state === 'superseded') throw invalidGrant('refresh token was replaced by a retry before it was used');
    // Read with the token (findRefreshToken): the grant is still active.
    if (!stored.grantActive) throw invalidGrant('the grant was revoked');
    // RFC 9700 §4.14.2: a locked, disabled, deleted or signed-out person's tokens were revoked with
    // the change; this refuses one that slipped through all the same (src/identity/lifecycle.ts).
    if (!liveUnder(await standing, stored.createdAt)) throw invalidGrant('the person may no longer hold tokens');
    if (stored.accessKid && (await ctx.keys.isCompromised(stored.accessKid))) throw invalidGrant('the tokens issued with it were signed by a compromised key');
    // RFC 9449 §5, RFC 8705 §4: a bound refresh token needs a proof of its key, or its certificate.
    const bound = stored.payload.cnf;
    if (bound?.jkt !== undefined && dpop?.jkt !== bound.jkt) {
      throw invalidGrant(dpop ? 'DPoP proof key differs from the refresh token\'s' : 'DPoP-bound refresh token without a DPoP proof', 'the refresh token is bound to a DPoP key; send a proof of that key');
    }
    if (bound?.['x5t#S256'] !== undefined && authenticated.certificateThumbprint !== bound['x5t#S256']) {
      throw invalidGrant(authenticated.certificateThumbprint ? 'client certificate differs from the refresh token\'s' : 'certificate-bound refresh token without a client certificate', 'the refresh token is bound to a client certificate; present that certificate');
    }

    const p = stored.payload;
    // A grant an upstream identity provider's sign-in made lives no longer than that provider is
    // trusted: disabled (apply's enabled: false), its refresh tokens issue nothing more.
    if (p.assurance !== undefined && !(await findProvider(ctx.storage.db, p.assurance.provider))?.provider.enabled) {
      throw invalidGrant('the upstream identity provider of the sign-in is disabled', 'the sign-in this refresh token came from is no longer accepted; sign in again');
    }
    const basis = tokenBasis({ userId: stored.userId, clientId, grantId: stored.grantId }, p);
    const target = await chooseAccessTarget(ctx, basis, params.all('resource'), params.get('scope'));

    const isPublic = authenticated.client.metadata.token_endpoint_auth_method === 'none';
    const rotated = (child: IssuedRefreshToken, rotation: 'rotated' | 'retried'): AuditEvent => ({
      type: 'refresh.rotated',
      requestId,
      actor: clientId,
      subject: stored.userId,
      client: clientId,
      details: { refresh_id: stored.id, new_refresh_id: child.id, family_id: stored.familyId, grant_id: stored.grantId, rotation },
    });
    const issued = await issuePersonTokens(ctx, authenticated, basis, target, {
      keys: { dpop, certificateThumbprint: authenticated.certificateThumbprint },
      grantType: 'refresh_token',
      requestId,
      ...(address !== undefined ? { address } : {}),
      // concurrent_networks: the family is the token its holder presents, rotation after rotation.
      presented: { token: refreshKey(stored.familyId), byHolder: true },
      // The access token names the family: revoking it ends this token too (RFC 7009 §2.1).
      refreshFamily: stored.familyId,
      // DESIGN §7: the rotation is one conditional update; losing the race is a reuse, or a retry.
      write: (flight, signedKid) => {
        if (stored.state !== 'active') return undefined;
        const child = rotateRefreshTokenIn(flight, ctx, stored, value, signedKid);
        return { events: [rotated(child, 'rotated')], refresh: child, lostIf: 'refresh_token_not_active' };
      },
      retry: isPublic
        ? undefined
        : async (trx, signedKid) => {
            const child = await retryRefreshToken(ctx, stored, value, trx, signedKid);
            return child && { events: [rotated(child, 'retried')], refresh: child };
          },
    });
    if (!issued) throw await reused(ctx, (await refreshTokenById(ctx, stored.id)) ?? stored, requestId);
    return issued;
  },
});

/** Step 8: a used refresh token presented again revokes its grant (src/grants/reuse.ts), then invalid_grant. */
function reused(ctx: Context, token: StoredRefreshToken, requestId: string): Promise<OAuthError> {
  return revokeOnReuse(ctx, {
    kind: 'refresh',
    grantId: token.grantId,
    userId: token.userId,
    clientId: token.clientId,
    requestId,
    details: { refresh_id: token.id, family_id: token.familyId, state: token.state },
  });
}

function invalidGrant(detail: string, description = 'the refresh token is invalid, expired, revoked, or was issued to another client'): OAuthError {
  return new OAuthError('invalid_grant', description, { detail });
}
