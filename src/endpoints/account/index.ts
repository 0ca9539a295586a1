import type { FastifyReply, FastifyRequest } from 'fastify';
import { describeGrant, getGrant, listGrants, revokeGrant } from '../../authorization/consent.ts';
import type { Context } from '../../context.ts';
import { clearSessionCookie, endSession, readSession } from '../../identity/sessions.ts';
import { findUser } from '../../identity/users.ts';
import { accountPage, signedOutAccountPage, type AccountGrant } from '../../ui/account.ts';
import { csrfBinding, csrfToken } from '../../ui/csrf.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { accountFactorRoutes, accountFactorsView } from './factors.ts';
import { checkedForm, forbidden } from './forms.ts';

/**
 * A person's account area (people side): the consent they gave, and revoking it themselves
 * (the admin side is /admin/grants). Every answer is an HTML page or a 303 to /account; nothing
 * here redirects anywhere else.
 *
 * GET /account
 *   1. no valid session (readSession) → a page that says to sign in through an application; no
 *      form, no redirect (a sign-in form here would have no authorization request to return to);
 *   2. the person's active grants, newest first, each in the consent page's words with a Revoke
 *      form, and a Sign out form; both carry a CSRF token bound to this browser and this session.
 *
 * POST /account/grants/{id}/revoke
 *   1. a foreign Origin, no valid session, or a missing or wrong CSRF token → 403 page, nothing
 *      changes;
 *   2. a grant that is unknown, revoked already, or another person's → 404 page, nothing changes
 *      (the same page for all three: a grant id says nothing about whose it is);
 *   3. revokeGrant (reason "revoked by the user", actor the person's id; it records
 *      `consent.revoked`): its refresh tokens fail and its access tokens are inactive at
 *      introspection and userinfo from now on; 303 to /account.
 *
 * GET /account also shows the person's two-step sign-in and the notices kept for them (a recovery
 * code was used: shown once); /account/totp… and /account/recovery-codes manage them (factors.ts).
 *
 * POST /account/logout
 *   1. no valid session → the cookie is cleared and 303 to /account (there is nothing to end);
 *   2. a foreign Origin or a missing or wrong CSRF token → 403 page, the session stays;
 *   3. endSession (`user.logged_out`), the cookie is cleared, 303 to /account.
 */
export const account: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);
    const accountPath = `${base}/account`;
    const accountUrl = `${ctx.config.issuer}/account`;

    app.get(accountPath, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const session = await readSession(ctx, request.headers.cookie);
        const user = session && (await findUser(ctx, session.userId));
        if (!session || !user) return sendPage(reply, { status: 200, csp: 'static', page: signedOutAccountPage(base) });
        const grants: AccountGrant[] = [];
        for (const grant of await listGrants(ctx, { userId: user.id, active: true })) {
          const described = await describeGrant(ctx, grant);
          grants.push({ id: grant.id, clientId: grant.clientId, createdAt: grant.createdAt, updatedAt: grant.updatedAt, ...described });
        }
        const { factors, notices } = await accountFactorsView(ctx, session, user);
        const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
        return sendPage(reply, {
          status: 200,
          csp: 'ownForm',
          page: accountPage({
            base,
            csrfToken: csrfToken(csrf.secret, session.sessionId, 'account'),
            signedInAs: user.name ?? user.username,
            username: user.username,
            grants,
            factors,
            notices,
          }),
          ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
        });
      }),
    );

    app.post<{ Params: { id: string } }>(`${accountPath}/grants/:id/revoke`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const session = await readSession(ctx, request.headers.cookie);
        if (!session || !checkedForm(ctx, request, session)) return forbidden(ctx, request, reply);
        const id = request.params.id;
        const grant = grantIdPattern.test(id) ? await getGrant(ctx, id) : undefined;
        if (!grant || grant.revokedAt !== null || grant.userId !== session.userId) {
          return sendErrorPage(ctx, request, reply, {
            status: 404,
            title: 'No such permission',
            message: 'This permission does not exist or was already revoked. Nothing was changed.',
          });
        }
        await revokeGrant(ctx, grant.id, { actor: session.userId, reason: 'revoked by the user', requestId: request.id });
        return seeOther(reply, accountUrl);
      }),
    );

    accountFactorRoutes(app, ctx);

    app.post(`${accountPath}/logout`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const session = await readSession(ctx, request.headers.cookie);
        if (!session) {
          reply.header('set-cookie', clearSessionCookie(ctx));
          return seeOther(reply, accountUrl);
        }
        if (!checkedForm(ctx, request, session)) return forbidden(ctx, request, reply);
        await endSession(ctx, session.sessionId);
        reply.header('set-cookie', clearSessionCookie(ctx));
        return seeOther(reply, accountUrl);
      }),
    );
  },
};

/** Grant ids are UUIDs; anything not shaped like one is unknown without a lookup. */
const grantIdPattern = /^[A-Za-z0-9-]{1,64}$/;
