import type { Context } from '../../context.ts';
import { cookieValues, serializeCookie } from '../../identity/cookies.ts';
import { cookieName, cookieScope } from '../../identity/sessions.ts';
import { isUniqueViolation } from '../../storage/faults.ts';
import type { IdentityProvider } from './definition.ts';
import { mappedClaims } from './linking.ts';
import type { UpstreamIdentity } from './oidc.ts';
import { consumeUpstreamLogin, openUpstreamLogin, upstreamLoginTtlMs } from './upstream-logins.ts';

/**
 * Linking an upstream identity to an existing local person by that person's own sign-in
 * (docs/identity-brokering.md "Linking"): when an upstream sign-in is refused because its email is
 * a local person's (`email_taken`) — and the email is in the upstream's own declared domains
 * (`mayOfferLocalLink`) —, the verified upstream identity is kept — as a single-use,
 * ten-minute sign-in record bound to this interaction and browser, its state in an HttpOnly cookie
 * — and the sign-in page asks the person to sign in with their Clearance account. When they do, in
 * this interaction and browser, and their account's email is the one the upstream gave, the
 * identity is linked to them (`user.linked`, by the person themselves): from then on the upstream
 * signs them in. Proving both identities is what links them; the email match keeps a pending link
 * from attaching to whoever else signs in in the same browser.
 */

export const pendingLinkCookieName = 'clearance_link';

/**
 * Whether the person may be offered to join the two by their own sign-in: the email the upstream
 * gave is in one of the domains its declaration owns (an upstream speaks for its own firm's people
 * only: a partner's IdP naming a broker's address must not make the broker's person link the
 * partner's identity to themselves by signing in), and the upstream did not say it is unverified
 * (OIDC `email_verified`). Otherwise only an administrator links.
 */
export function mayOfferLocalLink(provider: IdentityProvider, identity: UpstreamIdentity): boolean {
  const email = mappedClaims(provider, identity).email;
  if (email === null || identity.claims.email_verified === false || identity.claims.email_verified === 'false') return false;
  return provider.domains.includes(email.slice(email.lastIndexOf('@') + 1));
}

/** Keeps the verified identity for the person's own sign-in; the Set-Cookie that carries its state. */
export async function offerLocalLink(
  ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config'>,
  link: { interactionId: string; browserId: string; provider: IdentityProvider; identity: UpstreamIdentity },
): Promise<string> {
  const email = mappedClaims(link.provider, link.identity).email;
  const result = JSON.stringify({ link: true, issuer: link.identity.issuer, subject: link.identity.subject, email });
  const secrets = await openUpstreamLogin(ctx, { interactionId: link.interactionId, providerId: link.provider.id, browserId: link.browserId, result });
  const scope = cookieScope(ctx.config.issuer);
  return serializeCookie(cookieName(pendingLinkCookieName, scope), secrets.state, { path: scope.path, secure: scope.secure, sameSite: 'Lax', maxAge: upstreamLoginTtlMs / 1000 });
}

/** The Set-Cookie that removes the pending-link cookie. */
export function clearPendingLink(ctx: Pick<Context, 'config'>): string {
  const scope = cookieScope(ctx.config.issuer);
  return serializeCookie(cookieName(pendingLinkCookieName, scope), '', { path: scope.path, secure: scope.secure, sameSite: 'Lax', maxAge: 0 });
}

/**
 * After a local sign-in committed in `interactionId`: when this browser carries a pending link of
 * that interaction whose email is the signed-in person's, links it (`user.linked`). Returns the
 * Set-Cookie that clears the pending link, or undefined when the browser carried none.
 */
export async function completeLocalLink(
  ctx: Pick<Context, 'storage' | 'clock' | 'identity' | 'config' | 'audit'>,
  request: { cookieHeader: string | undefined; browserId: string | undefined; interactionId: string; requestId: string },
  personId: string,
): Promise<string | undefined> {
  const state = cookieValues(request.cookieHeader, cookieName(pendingLinkCookieName, cookieScope(ctx.config.issuer)))[0];
  if (state === undefined) return undefined;
  const taken = await consumeUpstreamLogin(ctx, state, request.browserId);
  if (!taken.ok || taken.interactionId !== request.interactionId || taken.result === undefined) return clearPendingLink(ctx);
  const pending = JSON.parse(taken.result) as { link?: boolean; issuer: string; subject: string; email: string | null };
  const person = await ctx.storage.db.selectFrom('users').select(['id', 'email']).where('id', '=', personId).executeTakeFirst();
  if (!pending.link || !person || pending.email === null || person.email === null || pending.email !== person.email.toLowerCase()) return clearPendingLink(ctx);
  const now = ctx.clock.now();
  try {
    await ctx.audit.recordWith(async (trx) => {
      await trx
        .insertInto('user_links')
        .values({ issuer: pending.issuer, subject: pending.subject, user_id: person.id, provider_id: taken.providerId, linked_by: 'local_sign_in', created_at: now, last_login_at: null })
        .execute();
      return {
        value: undefined,
        events: [{ type: 'user.linked', requestId: request.requestId, actor: person.id, subject: person.id, details: { provider: taken.providerId, issuer: pending.issuer, upstream_subject: pending.subject, via: 'local_sign_in' } }],
      };
    });
  } catch (error) {
    // Linked meanwhile (to them or to someone else): nothing to add.
    if (!isUniqueViolation(error)) throw error;
  }
  return clearPendingLink(ctx);
}
