import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { userinfoAudience } from '../authorization/scopes.ts';
import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { resolveIssuingMandate, userParties } from '../mandates/issuance.ts';
import { refusedFor, type Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import type { PresentedKeys, SenderBinding } from '../tokens/binding.ts';
import { mintIdToken } from '../tokens/id-token.ts';
import { subjectForClient } from '../identity/pairwise.ts';
import { issueAccessToken, settleIssuance, type IssuedAccessToken } from '../tokens/issue.ts';
import { issueRefreshToken, newRefreshFamilyId, type IssuedRefreshToken } from '../tokens/refresh-tokens.ts';
import { kidOfCompact } from '../keys/jws.ts';
import { grantedPayload, type AccessTarget, type TokenBasis } from '../tokens/user-tokens.ts';
import type { GrantResult, TokenResponse } from './grant.ts';
import { insufficientUserAuthentication, roleMinimumUnmet } from './step-up.ts';
import { recordUses } from '../policy/first-use.ts';
import { usesOf } from '../policy/issuance.ts';
import { approvalDigest, entriesToApprove } from '../jose/approval-digest.ts';
import { OAuthError } from '../oauth-error.ts';
import type { cibaGrantType } from '../clients/metadata.ts';
import { refuseFrozenActChain } from '../ciba/act-chain.ts';

/**
 * What a grant writes when it issues tokens, added to the flight of `issuePersonTokens`'
 * transaction (the code's redemption, the refresh token's rotation): its audit events, on rotation
 * the refresh token that goes with the response, and `lostIf`, the refusal of that flight which
 * means the grant lost (the code was redeemed meanwhile, the refresh token used). Undefined: there
 * is nothing to try in a flight (go straight to `TokenRetry`). `signedKid`: the key that signed the
 * response's tokens, which a refresh token written with them records (src/keys/compromise.ts).
 */
export type TokenWrite = (flight: Flight, signedKid: string) => { events: AuditEvent[]; refresh?: IssuedRefreshToken; lostIf: string } | undefined;

/**
 * What a grant writes instead, in an ordinary transaction, when its flight lost: undefined when it
 * lost again, else as TokenWrite (a confidential client's refresh retry, src/grants/refresh-token.ts).
 */
export type TokenRetry = (trx: Transaction<Database>, signedKid: string) => Promise<{ events: AuditEvent[]; refresh?: IssuedRefreshToken } | undefined>;

/** How `issuePersonTokens` is asked: the grant's proof of possession, its write, and what its events add. */
export interface PersonTokenOptions {
  keys: PresentedKeys;
  nonce?: string | undefined;
  grantType: 'authorization_code' | 'refresh_token' | typeof cibaGrantType;
  requestId: string;
  write: TokenWrite;
  retry?: TokenRetry;
  /** The step-up the authorization concluded (a code's), named by the token's event. */
  stepUpId?: string;
  /** Details the grant adds to `token.issued` (a CIBA request's approval id and evidence digests). */
  details?: Record<string, unknown>;
  /** The token request's source address, for the risk signals. */
  address?: string;
  /** The token presented for these (a refresh token's family), for `concurrent_networks`. */
  presented?: { token: string; byHolder: boolean };
  /** The family of the refresh token presented (the refresh grant): the access token names it (`refresh_family`). */
  refreshFamily?: string;
}

/**
 * Issues the tokens of a person's authorization (the code and refresh grants):
 * 0. the person's role minimum (src/identity/role-requirements.ts): an authentication below it gets
 *    `insufficient_user_authentication` with the acr_values to authorize again with (RFC 9470);
 * 1. a mandate the person asked to act under: theirs (or their firm's), in force, granting the
 *    scopes (src/mandates/issuance.ts) — not for the userinfo audience, which no mandate governs;
 * 2. the access token through the one issuance path (src/tokens/issue.ts: binding, FAPI, the
 *    decision point, claims, signature), with the person's grant_id, auth_time, acr and amr, the
 *    refresh family it goes with (`refresh_family`: the refreshed one, or the one step 4 opens —
 *    revoking the family ends the token, RFC 7009 §2.1), and the sign-in's risk signals for the
 *    decision point (`Issuance.loginRisk`);
 * 3. an ID token when `openid` was granted (OIDC Core §3.1.3.3; §12.2: a refreshed one has no nonce);
 * 4. ONE transaction runs the grant's `write` (the code's redemption, the refresh token's
 *    rotation), inserts a new refresh token family on code redemption for a client registered for
 *    refresh_token, adds the token's instrument classes and accounts to the person's first-use
 *    history (src/policy/first-use.ts), and records the grant's events and `token.issued` with its decisions — so
 *    everything that justifies the response is durable before it leaves, and nothing is written
 *    when the write lost (then: undefined, and the signed tokens are dropped unseen, their
 *    transfers' daily-limit reservations taken back as on any failure here). The
 *    transaction is one flight (one round trip, storage/flight.ts): the write's condition is the
 *    database's to check; when it lost, the grant's `retry` (if any) decides again in an ordinary
 *    transaction.
 */
export async function issuePersonTokens(
  ctx: Context,
  authenticated: AuthenticatedClient,
  basis: TokenBasis,
  target: AccessTarget,
  options: PersonTokenOptions,
): Promise<GrantResult | undefined> {
  // The person's roles may ask more than the grant's authentication achieved (raised since, or a
  // role given since): no tokens until they authenticate at that level (RFC 9470).
  const minimum = await roleMinimumUnmet(ctx, basis.userId, basis.acr);
  if (minimum !== undefined) {
    throw await insufficientUserAuthentication(
      ctx,
      { triggers: ['role_minimum'], acr: minimum },
      { subject: basis.userId, clientId: basis.clientId, requestId: options.requestId, grantType: options.grantType, acrBefore: basis.acr, grantId: basis.grantId },
    );
  }
  // A CIBA token's act chain (and a refresh of one): the issuance path sees no delegation for a person's token.
  if (basis.ciba?.act) await refuseFrozenActChain(ctx, { subject: { type: 'User', id: basis.userId }, clientId: basis.clientId, audience: target.audience, scopes: target.scopes, requestId: options.requestId, grantType: options.grantType, txn: basis.ciba.txn }, basis.ciba.act);
  const userinfo = target.audience === userinfoAudience(ctx.config.issuer);
  // The family opened here gets its id now, before the access token that names it is signed.
  const newFamily = opensRefreshFamily(authenticated, basis, options) ? newRefreshFamilyId() : undefined;
  const refreshFamily = newFamily ?? options.refreshFamily;
  const mandate =
    basis.mandate !== undefined && !userinfo
      ? await resolveIssuingMandate(ctx, basis.mandate, { grantees: await userParties(ctx, basis.userId), offeredScopes: target.scopes, scopeRequested: true })
      : undefined;
  const access = await issueAccessToken(ctx, {
    grantType: options.grantType,
    requestId: options.requestId,
    client: authenticated,
    keys: options.keys,
    target,
    sub: basis.userId,
    principal: { type: 'User', id: basis.userId },
    scopes: target.scopes,
    authorizationDetails: target.authorizationDetails,
    ...(mandate ? { mandate: mandate.version } : {}),
    claims: {
      grant_id: basis.grantId,
      // RFC 7009 §2.1: revoking its refresh family ends this token (src/tokens/liveness.ts).
      ...(refreshFamily !== undefined ? { refresh_family: refreshFamily } : {}),
      auth_time: basis.authTime,
      acr: basis.acr,
      amr: basis.amr,
      ...approvedDigest(basis, target),
      // A CIBA request's second persons (src/approvals/claims.ts) and its login_hint_token's chain.
      ...(basis.ciba && basis.ciba.approvals.length > 0 ? { approvals: basis.ciba.approvals } : {}),
      ...(basis.ciba?.act ? { act: basis.ciba.act } : {}),
      // The managed device the person signed in from (never a factor: amr is the person's own).
      ...(basis.deviceId !== undefined ? { device_id: basis.deviceId } : {}),
      // The upstream identity provider that signed the person in: the source of assurance of acr and amr.
      ...(basis.assurance !== undefined ? { assurance_source: basis.assurance.source } : {}),
    },
    // The trade's txn: the one the authorization request started (src/transactions/txn.ts), under
    // which an approval's evidence is filed too; else an approved order is one transaction from the
    // person's approval on (its id), so `audit export --txn` holds the evidence. A CIBA request is
    // one transaction whatever the audience: its approval request's id.
    ...(basis.ciba ? { txn: basis.ciba.txn } : basis.txn !== undefined && !userinfo ? { txn: basis.txn } : basis.approval && !userinfo ? { txn: basis.approval.id } : {}),
    ...(options.address !== undefined ? { address: options.address } : {}),
    // For the risk engine: the token presented to get this one, and the signals of the sign-in the
    // grant was made from (kept with its code and refresh tokens).
    ...(options.presented || basis.loginRisk !== undefined
      ? { risk: { ...(options.presented ? { presented: options.presented } : {}), ...(basis.loginRisk !== undefined ? { loginRisk: basis.loginRisk } : {}) } }
      : {}),
  });
  // A token carrying transfers: its reservations are taken back when nothing is issued after all
  // (the write lost, or anything below failed) — src/tokens/issue.ts `settleIssuance`.
  return settleIssuance(access, () => writeTokens(ctx, authenticated, basis, target, options, access, newFamily));
}

/**
 * Whether this issuance opens a refresh family: the code (or CIBA) grant, for a client registered
 * for the refresh_token grant (docs: whether offline_access was requested does not matter; the
 * registration is the operator's decision). A CIBA token with second persons' approvals gets none:
 * each approval is for this one token, and a refresh family would carry it (and lift an @approval
 * forbid) for its whole life (docs/approvals.md).
 */
function opensRefreshFamily(authenticated: AuthenticatedClient, basis: TokenBasis, options: PersonTokenOptions): boolean {
  const approvedBySecondPersons = basis.ciba !== undefined && basis.ciba.approvals.length > 0;
  return options.grantType !== 'refresh_token' && authenticated.client.metadata.grant_types.includes('refresh_token') && !approvedBySecondPersons;
}

/**
 * Steps 3 and 4 of `issuePersonTokens`, once the access token is signed: the ID token and the one
 * transaction. `newFamily`: the id of the refresh family it opens (the access token names it), if any.
 */
async function writeTokens(
  ctx: Context,
  authenticated: AuthenticatedClient,
  basis: TokenBasis,
  target: AccessTarget,
  options: PersonTokenOptions,
  access: IssuedAccessToken,
  newFamily: string | undefined,
): Promise<GrantResult | undefined> {
  const idToken = basis.oidcScopes.includes('openid')
    ? await mintIdToken(ctx.keys, {
        issuer: ctx.config.issuer,
        // OIDC Core §8.1: a pairwise client is told the person's pseudonym in its sector (src/identity/pairwise.ts).
        subject: subjectForClient(ctx, authenticated.client.metadata, basis.userId),
        clientId: basis.clientId,
        now: epochSeconds(ctx.clock),
        authTime: basis.authTime,
        ...(options.nonce !== undefined ? { nonce: options.nonce } : {}),
        acr: basis.acr,
        amr: basis.amr,
        ...(basis.assurance !== undefined ? { assuranceSource: basis.assurance.source } : {}),
      })
    : undefined;
  // RFC 9449 §5, RFC 8705 §4: a public client's refresh token is bound to the key it used.
  const publicClient = authenticated.client.metadata.token_endpoint_auth_method === 'none';
  // The key that signed this response's tokens (the access token, else the ID token; '' for a
  // reference token alone): its refresh token records it, so revoking that key as compromised
  // revokes the family (src/keys/compromise.ts).
  const signedKid = kidOfCompact(access.response.access_token) ?? (idToken !== undefined ? kidOfCompact(idToken) : undefined) ?? '';
  const family = (familyId: string) => ({ ...refreshInput(basis, publicClient ? access.binding.cnf : undefined), accessKid: signedKid, familyId });
  const events = (writeEvents: AuditEvent[], refresh: IssuedRefreshToken | undefined): AuditEvent[] => {
    const issued: AuditEvent = {
      ...access.event,
      details: {
        ...access.event.details,
        grant_id: basis.grantId,
        oidc: idToken !== undefined,
        ...(refresh ? { refresh_id: refresh.id } : {}),
        ...(options.stepUpId !== undefined ? { step_up_id: options.stepUpId } : {}),
        ...options.details,
        ...(access.claims.authorization_details_digest !== undefined && basis.approval ? { approval_id: basis.approval.id } : {}),
      },
    };
    return [...writeEvents, ...access.decisions, issued];
  };
  let written: { refresh: IssuedRefreshToken | undefined } | undefined;
  const flight = ctx.storage.flight();
  const write = options.write(flight, signedKid);
  // The instrument classes and accounts this token lets the person use join their first-use
  // history (src/policy/first-use.ts), in the transaction that issues it.
  const uses = usesOf(target.authorizationDetails);
  if (write) {
    void recordUses(flight, ctx, basis.userId, uses);
    const refresh = newFamily !== undefined ? await issueRefreshToken(ctx, family(newFamily), flight) : write.refresh;
    try {
      await ctx.audit.commit(flight, events(write.events, refresh));
      written = { refresh };
    } catch (error) {
      if (!refusedFor(error, write.lostIf)) throw error;
    }
  }
  const retry = options.retry;
  if (!written && retry) {
    written = await ctx.audit.recordWith(async (trx) => {
      const again = await retry(trx, signedKid);
      if (!again) return { value: undefined, events: [] };
      await recordUses(trx, ctx, basis.userId, uses);
      const refresh = newFamily !== undefined ? await issueRefreshToken(ctx, family(newFamily), trx) : again.refresh;
      return { value: { refresh }, events: events(again.events, refresh) };
    });
  }
  if (!written) return undefined;
  const response: TokenResponse = {
    ...access.response,
    ...(written.refresh ? { refresh_token: written.refresh.token } : {}),
    ...(idToken ? { id_token: idToken } : {}),
  };
  return { response, observe: access.observe };
}

/**
 * What-you-see-is-what-you-sign: the `authorization_details_digest` claim of a token whose
 * authorization the person approved with a passkey (src/approvals) — when the token carries the
 * approved entries (a business token; a userinfo token carries none). The digest is computed again
 * from the entries the token carries: an approval of other entries than these is refused
 * (invalid_grant), never carried.
 */
function approvedDigest(basis: TokenBasis, target: AccessTarget): { authorization_details_digest?: string } {
  if (!basis.approval) return {};
  const entries = entriesToApprove(target.authorizationDetails);
  if (entries.length === 0) return {};
  if (approvalDigest(entries) !== basis.approval.digest) throw new OAuthError('invalid_grant', 'the authorization_details differ from those the person approved');
  return { authorization_details_digest: basis.approval.digest };
}

function refreshInput(basis: TokenBasis, cnf: SenderBinding['cnf']): Parameters<typeof issueRefreshToken>[1] {
  return {
    grantId: basis.grantId,
    clientId: basis.clientId,
    userId: basis.userId,
    payload: { ...grantedPayload(basis), ...(cnf ? { cnf } : {}) },
  };
}
