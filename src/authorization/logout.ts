import type { Client } from '../clients/store.ts';
import type { Context } from '../context.ts';
import { verifyIdTokenHint } from '../tokens/id-token.ts';
import { subjectForClientId } from '../identity/pairwise.ts';
import type { Authentication } from './contract.ts';
import type { AuthorizationParameters } from './parameters.ts';

/**
 * RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0 §2, §3), without HTTP.
 *
 * - `id_token_hint` is verified as an ID token this server signed (its published key's one
 *   algorithm: `alg: none` or a tampered token is no hint at all), issued to a client still in
 *   service: one apply's prune disabled, or deleted, or a hint from before its cut-off, is no hint
 *   either (its tokens are dead, src/tokens/liveness.ts; its registered URIs no longer vouched
 *   for). An invalid hint is ignored for redirection and never ends a session by itself.
 * - The session ends at once when the verified hint names the person of the session (`sub`);
 *   otherwise the person confirms on a page (a cross-site page cannot log them out).
 * - The browser is redirected only to a `post_logout_redirect_uri` registered, exactly, by the
 *   client the verified hint was issued to (§3: "MUST NOT perform post-logout redirection unless
 *   ... id_token_hint"); with `state` appended. Otherwise a page says the person is signed out.
 */
export type LogoutDecision =
  | { kind: 'error'; message: string }
  /** Ask the person to confirm (their session is not the hint's, or there is no valid hint). */
  | { kind: 'confirm' }
  | { kind: 'done'; endSession: string | undefined; redirect: string | undefined };

export async function decideLogout(
  ctx: Context,
  params: AuthorizationParameters,
  input: { session: Authentication | undefined; confirmed: boolean },
): Promise<LogoutDecision> {
  let hintText: string | undefined;
  let clientIdParam: string | undefined;
  let redirectUri: string | undefined;
  let state: string | undefined;
  try {
    hintText = params.string('id_token_hint');
    clientIdParam = params.string('client_id');
    redirectUri = params.string('post_logout_redirect_uri');
    state = params.string('state');
  } catch {
    return { kind: 'error', message: 'A parameter was sent more than once.' };
  }
  const hint = hintText === undefined ? undefined : await verifyIdTokenHint(ctx.keys, ctx.config.issuer, hintText);
  const client = hint?.ok ? await ctx.clients.get(hint.claims.aud) : undefined;
  const verified = hint?.ok && client && inService(client, hint.claims.iat) ? hint.claims : undefined;
  if (verified && clientIdParam !== undefined && clientIdParam !== verified.aud) {
    return { kind: 'error', message: 'The client_id does not match the ID token hint.' };
  }

  let redirect: string | undefined;
  if (redirectUri !== undefined && verified) {
    // Exact string match against the registered post_logout_redirect_uris (§3).
    if (client?.metadata.post_logout_redirect_uris?.includes(redirectUri)) {
      redirect = state === undefined ? redirectUri : `${redirectUri}${redirectUri.includes('?') ? '&' : '?'}${new URLSearchParams({ state })}`;
    }
  }

  const session = input.session;
  if (!session) return { kind: 'done', endSession: undefined, redirect };
  // A pairwise client's hint names the person's pseudonym in its sector (OIDC Core §8.1).
  const hinted = verified ? verified.sub === (await subjectForClientId(ctx, verified.aud, session.userId)) : false;
  if (hinted || input.confirmed) return { kind: 'done', endSession: session.sessionId, redirect };
  return { kind: 'confirm' };
}

/**
 * Whether a hint's client still stands behind it: not disabled, and the hint issued after the
 * client's cut-off (a client disabled and declared again keeps its older tokens dead; `iat` has a
 * second's resolution, so the cut-off's own second counts as before it, as for access tokens).
 */
function inService(client: Client, issuedAtSeconds: number): boolean {
  if (client.disabledAt !== null) return false;
  return client.tokensValidAfter === null || issuedAtSeconds * 1000 > client.tokensValidAfter;
}
