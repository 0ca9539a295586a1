import type { FastifyReply, FastifyRequest } from 'fastify';
import { describeGrant, getGrant, listGrants, revokeGrant } from '../../authorization/consent.ts';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import { clearSessionCookie, endSession, readSession } from '../../identity/sessions.ts';
import { findUser } from '../../identity/users.ts';
import { accountPage, signedOutAccountPage, type AccountGrant } from '../../ui/account.ts';
import { csrfBinding, csrfToken } from '../../ui/csrf.ts';
import { passkeyScriptSources } from '../../ui/assets.ts';
import { registerPasskey, registrationOptions } from '../../identity/passkeys/registration.ts';
import { removePasskey, renamePasskey } from '../../identity/passkeys/manage.ts';
import { listPasskeys, passkeyAcr, passkeyName } from '../../identity/passkeys/store.ts';
import { acr, acrSatisfies } from '../../identity/acr.ts';
import type { User } from '../../identity/users.ts';
import { sendJson } from '../../http/json.ts';
import { sendError } from '../../http/errors.ts';
import { OAuthError } from '../../oauth-error.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { accountApprovalRoutes } from './approvals.ts';
import { accountFactorRoutes, accountFactorsView } from './factors.ts';
import { factorGate, refusedChange } from './factor-gate.ts';
import { checkedForm, forbidden, signedInForm } from './forms.ts';
import { accountRecoveryRoutes, mayOpenOwnRecovery } from './recovery.ts';

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
 * code was used: kept until a session made with the authenticator or a passkey shows them, never
 * dismissed by a recovery-code session); /account/totp… and /account/recovery-codes manage them
 * (factors.ts).
 *
 * Every passkey change below follows the one rule for changing factors (factor-gate.ts,
 * src/identity/factor-changes.ts): a session made with the person's strongest factor (one of their
 * passkeys when they have one, their authenticator app when that is their strongest, else any),
 * not with a recovery code, through an upstream identity provider nor with a smart card, at most
 * 15 minutes ago.
 * From another session → 403 page saying what to do (JSON for the
 * options), and the account page shows the passkeys without their forms. Whoever has only the
 * password, or the password and a recovery code, cannot add a passkey of their own to reach a
 * phishing-resistant level, nor remove the person's.
 *
 * POST /account/passkeys/options (JSON, for the page's passkey script)
 *   1. a foreign Origin, no valid session, or a missing or wrong CSRF token → 403 `access_denied`
 *      JSON, nothing changes;
 *   2. registrationOptions: the creation options of a passkey for this person, with a new
 *      challenge bound to this session (attestation `direct` when the person's role requires
 *      attested hardware); no-store.
 *
 * POST /account/passkeys (name, credential)
 *   1. as for revoke;
 *   2. a name that is empty, longer than 64 characters or holds control characters → this page,
 *      400, nothing changes;
 *   3. registerPasskey (the challenge consumed once, origin, RP ID, user verification, the
 *      attestation policy; `passkey.registered` or `passkey.registration_failed`): refused → this
 *      page with the reason, 400; else 303 to /account.
 *
 * POST /account/passkeys/{id}/rename (name)
 *   1. as for revoke; 2. a bad name → 400 as above;
 *   3. renamePasskey (`passkey.renamed`): not one of the person's passkeys → 404 page; 303.
 *
 * POST /account/passkeys/{id}/remove
 *   1. as for revoke;
 *   2. removePasskey: not one of the person's passkeys → 404 page; the last passkey of a person
 *      whose role asks a phishing-resistant level (src/identity/role-requirements.ts), or the only
 *      factor of theirs meeting a two-step minimum, or the last passkey of a person who has no
 *      password (nothing left to sign in with) → this page saying why, 409, nothing removed
 *      (`passkey.removal_refused`); else `passkey.removed`, and the person is signed out
 *      everywhere but here (every other session, refresh token and access token ends: the passkey
 *      was perhaps lost), this session going on under a new cookie; 303.
 *
 * POST /account/recovery — the person asks for a recovery of what they lost (./recovery.ts).
 *
 * /account/approvals… : the requests the person may decide, approved with a passkey or denied
 * with a reason (approvals.ts).
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
        return showAccount(request, reply, session, user, { status: 200 });
      }),
    );

    /** The account page of `user`, with an error when a change was refused. */
    async function showAccount(request: FastifyRequest, reply: FastifyReply, session: Authentication, user: User, view: { status: number; error?: string }): Promise<FastifyReply> {
      const grants: AccountGrant[] = [];
      for (const grant of await listGrants(ctx, { userId: user.id, active: true })) {
        const described = await describeGrant(ctx, grant);
        grants.push({ id: grant.id, clientId: grant.clientId, createdAt: grant.createdAt, updatedAt: grant.updatedAt, ...described });
      }
      const passkeys = (await listPasskeys(ctx, user.id)).map((p) => ({
        id: p.id,
        name: p.name,
        createdAt: p.createdAt,
        lastUsedAt: p.lastUsedAt,
        synced: p.backupEligible,
        hardware: passkeyAcr(p, ctx.config.passkeyAttestation) === acr.phishingResistantHardware,
      }));
      const gate = await factorGate(ctx, session);
      const { factors, notices } = await accountFactorsView(ctx, session, user, gate);
      const passkeysLocked = gate.refused('passkeys');
      const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
      return sendPage(reply, {
        status: view.status,
        csp: 'ownForm',
        scripts: passkeyScriptSources(ctx.config.issuer),
        page: accountPage({
          base,
          csrfToken: csrfToken(csrf.secret, session.sessionId, 'account'),
          signedInAs: user.name ?? user.username,
          username: user.username,
          grants,
          passkeys,
          ...(passkeysLocked ? { passkeysLocked } : {}),
          factors,
          notices,
          recoveryAllowed: mayOpenOwnRecovery(session),
          ...(view.error ? { error: view.error } : {}),
        }),
        ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
      });
    }

    /** What this session must do before changing the person's passkeys (factor-gate.ts), or undefined when it may. */
    const tooWeak = async (checked: { session: Authentication }) => (await factorGate(ctx, checked.session)).refused('passkeys');
    const weakSession = (request: FastifyRequest, reply: FastifyReply, message: string) => refusedChange(ctx, request, reply, 'passkeys', message);

    const passkeyNotFound = (request: FastifyRequest, reply: FastifyReply) =>
      sendErrorPage(ctx, request, reply, { status: 404, title: 'No such passkey', message: 'This passkey does not exist or was already removed. Nothing was changed.' });
    const badName = 'Give the passkey a name of 1 to 64 characters.';

    app.post(`${accountPath}/passkeys/options`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const checked = await signedInForm(ctx, request);
        if (!checked) return sendError(reply, new OAuthError('access_denied', 'the form could not be checked; reload the page'));
        if (await tooWeak(checked)) return sendError(reply, new OAuthError('access_denied', 'sign in with your strongest factor, not a recovery code, to add a passkey'));
        return sendJson(reply, await registrationOptions(ctx, checked.user, checked.session.sessionId));
      }),
    );

    app.post(`${accountPath}/passkeys`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const checked = await signedInForm(ctx, request);
        if (!checked) return forbidden(ctx, request, reply);
        const weak = await tooWeak(checked);
        if (weak) return weakSession(request, reply, weak);
        const { session, user, form } = checked;
        const name = passkeyName(form.get('name'));
        if (!name) return showAccount(request, reply, session, user, { status: 400, error: badName });
        const outcome = await registerPasskey(ctx, {
          person: user,
          name,
          credential: form.get('credential'),
          binding: session.sessionId,
          requestId: request.id,
          sourceAddress: request.ip,
        });
        if (!outcome.ok) return showAccount(request, reply, session, user, { status: 400, error: outcome.message });
        return seeOther(reply, accountUrl);
      }),
    );

    app.post<{ Params: { id: string } }>(`${accountPath}/passkeys/:id/rename`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const checked = await signedInForm(ctx, request);
        if (!checked) return forbidden(ctx, request, reply);
        const weak = await tooWeak(checked);
        if (weak) return weakSession(request, reply, weak);
        const name = passkeyName(checked.form.get('name'));
        if (!name) return showAccount(request, reply, checked.session, checked.user, { status: 400, error: badName });
        if (!(await renamePasskey(ctx, { userId: checked.user.id, passkeyId: request.params.id, name, requestId: request.id }))) return passkeyNotFound(request, reply);
        return seeOther(reply, accountUrl);
      }),
    );

    app.post<{ Params: { id: string } }>(`${accountPath}/passkeys/:id/remove`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const checked = await signedInForm(ctx, request);
        if (!checked) return forbidden(ctx, request, reply);
        const weak = await tooWeak(checked);
        if (weak) return weakSession(request, reply, weak);
        const outcome = await removePasskey(ctx, { userId: checked.user.id, passkeyId: request.params.id, requestId: request.id, keepSession: checked.session.sessionId });
        if (!outcome.removed && outcome.reason === 'not_found') return passkeyNotFound(request, reply);
        if (!outcome.removed && outcome.reason === 'last_sign_in_factor') {
          return showAccount(request, reply, checked.session, checked.user, {
            status: 409,
            error: 'This passkey is the only way you have to sign in (you have no password), so removing it would lock you out of your account. Add another passkey first, then remove this one.',
          });
        }
        if (!outcome.removed) {
          return showAccount(request, reply, checked.session, checked.user, {
            status: 409,
            error: acrSatisfies(outcome.required, acr.phishingResistant)
              ? 'This is the last passkey your role requires, so it cannot be removed. Add another passkey first, then remove this one.'
              : 'Your role needs two-step sign-in, and this passkey is the only factor you have that gives it, so it cannot be removed. Add another passkey or an authenticator app first, then remove this one.',
          });
        }
        // Every other session of the person ended with the passkey; this one goes on under a new id.
        if (outcome.setCookie) reply.header('set-cookie', outcome.setCookie);
        return seeOther(reply, accountUrl);
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
    accountRecoveryRoutes(app, ctx);
    accountApprovalRoutes(app, ctx);

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
