import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { adminAudience } from '../../admin/authorize.ts';
import { auditEventTypes, type StoredAuditEvent } from '../../audit/events.ts';
import type { PersonalView } from '../../audit/personal-data.ts';
import type { EventProof, SignedCheckpoint } from '../../audit/proofs.ts';
import { callAdmin, type AdminAnswer } from '../../console/admin-api.ts';
import { hopsOf } from '../../console/chain.ts';
import { consoleAssertion, consoleClientId, consoleRedirectUri } from '../../console/client.ts';
import { checkEventProof, type ProofCheck } from '../../console/proof-check.ts';
import { consoleMinimumAcr, consoleRolesOf, consoleScopesOf } from '../../console/roles.ts';
import { consoleCookies, newSignIn, type ConsoleSession, type ConsoleSignIn } from '../../console/session.ts';
import type { Context } from '../../context.ts';
import { acrRank } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { resolveMasterKey } from '../../keys/master-key.ts';
import { safeEqual } from '../../jose/index.ts';
import { revokeClientAccessToken } from '../../tokens/revoke-access-token.ts';
import { consoleAuditPage, consoleConfirmPage, consoleEventPage, consoleHomePage, consoleRefusedPage, consoleSignedOutPage, consoleTxnPage, type AuditFilters, type AuditView, type Confirmation } from '../../ui/console.ts';
import { consoleDirectoryPage, type DirectorySection, type KeyInventory } from '../../ui/console-directory.ts';
import { consoleDashboardPage, dashboardRanges, type DashboardRange } from '../../ui/console-dashboard.ts';
import { consoleApprovalsPage, type ListedApproval } from '../../ui/console-approvals.ts';
import type { ReviewView } from '../../approvals/break-glass/reviews.ts';
import { consoleReviewsPage } from '../../ui/console-reviews.ts';
import { consolePartnerPage, type PartnerView } from '../../ui/console-partner.ts';
import type { DriftView } from '../../federation/drift/view.ts';
import { consoleMandatePage, consolePolicyPage, type MandatePageView, type PolicyVersionView, type SimulationView } from '../../ui/console-changes.ts';
import type { Activity } from '../../audit/activity.ts';
import { guarded, seeOther, sendPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { authenticationKey } from '../../keys/master-key.ts';

/**
 * The console (docs/console.md): pages for administrators, compliance officers, approvers and
 * auditors, signed in through Clearance's own authorization code flow (PKCE S256, state, nonce) as
 * the registered confidential client `clearance-console` (src/console/client.ts), in two steps:
 *
 * GET /console/sign-in → /authorize (scope openid): who is signing in. Their console roles
 *   (src/console/roles.ts) decide the scopes and the level to ask for; none → a refusal page.
 * → /authorize again (scope: the roles' admin API scopes, resource <issuer>/admin, an essential
 *   `acr` claim of the roles' minimum, phishing-resistant for admin, approver and compliance):
 *   Clearance steps the person up if their session is weaker (or the sign-in ends refused), and
 *   asks consent the first time.
 * GET /console/callback: state checked in constant time against the sealed sign-in cookie; the
 *   code redeemed at the token endpoint with the console's private_key_jwt and the PKCE verifier;
 *   the ID token verified (issuer, audience, nonce, signature); the same person as in step one; the
 *   level reached at least the minimum. The token is kept sealed in an HttpOnly cookie until it
 *   expires (five minutes; then the console signs in again, silently while the Clearance session
 *   lasts).
 *
 * Pages: /console/dashboard, /console/approvals (and POST /approvals/{id}/decision), /console/reviews
 * (and POST /reviews/{id}/close), /console/policies/{version} (and POST …/activate),
 * /console/mandates/{id} (and POST …/revoke), /console/partners/{id}, /console/audit (and /audit/events/{id}), /console/txn, /console/bundle,
 * /console/directory. A GET that puts something on the person's record (a reveal, an export, a read
 * of people — the approvals, the reviews, a mandate, the directory's mandates and people — or of
 * the audit log — the explorer's events, a transaction's, an event's proof, a policy version's
 * replay) acts at once only for the console's own link (Fetch Metadata, `fetchSiteOf`); otherwise a
 * form of the console's confirms it (POST …/reveal, /console/bundle, and the page's own path:
 * `pageRecordingReads`).
 * Every page reads through the admin API with that token (src/console/admin-api.ts): no page sees
 * anything the person's token could not. POST /console/sign-out (CSRF-checked) revokes it
 * and forgets it; a person no longer active, or whose console roles changed, is signed out of the
 * console at their next page.
 */
export const consoleEndpoint: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);
    const consoleBase = `${base}/console`;
    const masterKey = resolveMasterKey(ctx.config).key;
    // The cookies are sealed with a key of their own, derived from the master key that seals now:
    // read at each request, since a rewrap changes it (and so ends console sessions; docs/keys.md).
    const cookieKeyOf = () => authenticationKey(masterKey, 'clearance console cookies v1');
    const api = (session: ConsoleSession, url: string) => callAdmin(app, session, { method: 'GET', url: `${base}${url}` });

    /** The signed-in console, or a redirect to sign in (back to this page afterwards). */
    async function signedIn(request: FastifyRequest, reply: FastifyReply, page: (session: ConsoleSession) => Promise<FastifyReply>): Promise<FastifyReply> {
      return guarded(ctx, request, reply, async () => {
        const session = await currentSession(request, reply);
        if (!session) return seeOther(reply, `${consoleBase}/sign-in?return=${encodeURIComponent(request.url.slice(base.length))}`);
        return page(session);
      });
    }

    /**
     * The console session of this request while its person still holds it: active, with the very
     * console roles it was opened for. The token's scopes were chosen from the roles at sign-in and
     * the admin API does not re-read roles, so a role taken away (or a person no longer active)
     * would otherwise keep its console for the token's lifetime: the session ends here instead (its
     * token revoked, the cookie cleared), and signing in again reads the roles anew. One read by
     * primary key per page.
     */
    async function currentSession(request: FastifyRequest, reply: FastifyReply): Promise<ConsoleSession | undefined> {
      const session = consoleCookies.readSession(ctx, cookieKeyOf(), request.headers.cookie);
      if (!session) return undefined;
      const user = await findUser(ctx, session.userId);
      if (user && user.status === 'active' && sameRoles(consoleRolesOf(user.roles), session.roles)) return session;
      await revokeToken(request, session);
      reply.header('set-cookie', consoleCookies.clearSession(ctx));
      return undefined;
    }

    /**
     * Ends the console's token as the revocation endpoint does for the client it was issued to
     * (RFC 7009 §2.1, the same step: src/tokens/revoke-access-token.ts), in this request: a copy of
     * the sealed cookie then reads nothing more, since every page reads through the admin API,
     * which refuses a revoked token. An expired token has nothing left to revoke; the cookie is
     * cleared all the same.
     */
    async function revokeToken(request: FastifyRequest, session: ConsoleSession): Promise<void> {
      await revokeClientAccessToken(ctx, consoleClientId, session.accessToken, request.id);
    }

    app.get(consoleBase, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const session = await currentSession(request, reply);
        if (!session) return sendPage(reply, { status: 200, csp: 'static', page: consoleSignedOutPage(base) });
        return sendPage(reply, { status: 200, csp: 'ownForm', page: consoleHomePage(base, session) });
      }),
    );

    app.get<{ Querystring: { return?: string; fresh?: string } }>(`${consoleBase}/sign-in`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const signIn = newSignIn(ctx, 'identify', safeReturn(request.query.return));
        // `fresh`: the person signs in again even with a Clearance session (OIDC Core §3.1.2.1
        // prompt=login), for what asks a recent authentication (an approval's decision).
        return redirectToAuthorize(reply, signIn, { scope: 'openid', ...(request.query.fresh === '1' ? { prompt: 'login' } : {}) });
      }),
    );

    app.get<{ Querystring: Record<string, string | undefined> }>(`${consoleBase}/callback`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const signIn = consoleCookies.readSignIn(ctx, cookieKeyOf(), request.headers.cookie);
        const { state, code, error } = request.query;
        // RFC 6749 §10.12: the response must answer the request this browser made.
        if (!signIn || typeof state !== 'string' || !safeEqual(state, signIn.state)) return refused(reply, 400, 'Sign-in expired', 'This sign-in was not started here, or took too long. Start again.');
        if (error !== undefined || typeof code !== 'string') return refused(reply, 403, 'Sign-in refused', `Clearance refused the sign-in (${String(error ?? 'no code')}).`);
        const tokens = await redeem(code, signIn);
        if (!tokens) return refused(reply, 502, 'Sign-in failed', 'The code could not be redeemed. Start again.');
        const user = await findUser(ctx, tokens.sub);
        const roles = consoleRolesOf(user?.roles ?? []);
        if (!user || user.status !== 'active' || roles.length === 0) {
          return refused(reply, 403, 'No console role', 'Your account has none of the console roles (admin, compliance, approver, auditor). Ask an administrator if you need one.');
        }
        const minimum = consoleMinimumAcr(roles);
        if (signIn.phase === 'identify') {
          const next: ConsoleSignIn = { ...newSignIn(ctx, 'authorize', signIn.returnTo), userId: user.id };
          // An essential acr claim (OIDC Core §5.5.1.1), not acr_values: Clearance must reach the level or refuse.
          const claims = JSON.stringify({ id_token: { acr: { essential: true, values: [minimum] } } });
          return redirectToAuthorize(reply, next, { scope: ['openid', ...consoleScopesOf(roles)].join(' '), resource: adminAudience(ctx.config.issuer), claims });
        }
        if (signIn.userId !== user.id) return refused(reply, 403, 'Sign-in refused', 'Another person signed in during this sign-in. Start again.');
        // AMENDMENTS: below the roles' minimum the console is never shown (Clearance stepped up or refused).
        if (acrRank(tokens.acr) < acrRank(minimum)) return refused(reply, 403, 'A stronger sign-in is needed', `Your roles need a sign-in at ${minimum}; this one reached ${tokens.acr ?? 'no level'}.`);
        const session: ConsoleSession = {
          accessToken: tokens.accessToken,
          expiresAt: ctx.clock.now() + tokens.expiresIn * 1000,
          userId: user.id,
          username: user.username,
          roles,
          scopes: tokens.scope.split(' ').filter((s) => s !== 'openid'),
          acr: tokens.acr ?? '',
          csrf: createHash('sha256').update(tokens.accessToken).digest('base64url'),
        };
        reply.header('set-cookie', [consoleCookies.writeSession(ctx, cookieKeyOf(), session), consoleCookies.clearSignIn(ctx)]);
        return seeOther(reply, `${base}${signIn.returnTo}`);
      }),
    );

    app.post(`${consoleBase}/sign-out`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const session = consoleCookies.readSession(ctx, cookieKeyOf(), request.headers.cookie);
        if (session && !formAllowed(request, session)) {
          return refused(reply, 403, 'This form has expired', 'Nothing was changed. Open the console again and retry.');
        }
        if (session) await revokeToken(request, session);
        reply.header('set-cookie', consoleCookies.clearSession(ctx));
        return sendPage(reply, { status: 200, csp: 'static', page: consoleSignedOutPage(base, 'You are signed out of the console. Your Clearance sign-in itself is unchanged: end it from your account page.') });
      }),
    );

    app.get<{ Querystring: { range?: string } }>(`${consoleBase}/dashboard`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        const range: DashboardRange = Object.hasOwn(dashboardRanges, request.query.range ?? '') ? (request.query.range as DashboardRange) : '24h';
        const { ms, bucket } = dashboardRanges[range];
        const now = ctx.clock.now();
        const activity = await api(session, `/admin/audit/activity?since=${now - ms}&bucket=${bucket}`);
        const refusal = refusalOf(activity);
        return sendPage(reply, {
          status: refusal?.status ?? 200,
          csp: 'ownForm',
          page: consoleDashboardPage(base, session, refusal ? { range, error: refusal.message } : { range, activity: activity.json as unknown as Activity }),
        });
      }),
    );

    // The requests name people (who asked, for whom): GET /admin/approvals records its read (people.reviewed).
    pageRecordingReads('/approvals', {
      scope: 'approvals:decide',
      carried: ['decided'],
      confirmation: () => ({ title: 'Show the approvals waiting for you?', act: 'Showing them puts a read of the people they name on your record (people.reviewed).', button: 'Show the approvals', section: 'approvals' }),
      nothingRead: 'Nothing was read. Open the approvals again and retry.',
      render: async (reply, session, _params, query) => {
        const listed = await api(session, '/admin/approvals');
        const refusal = refusalOf(listed);
        const notice = query.decided === 'approve' ? 'Your approval is recorded.' : query.decided === 'deny' ? 'Your denial is recorded.' : undefined;
        return sendPage(reply, {
          status: refusal?.status ?? 200,
          csp: 'ownForm',
          page: consoleApprovalsPage(base, session, refusal ? { error: refusal.message } : { approvals: listed.json.approvals as ListedApproval[], ...(notice ? { notice } : {}) }),
        });
      },
    });

    app.post<{ Params: { id: string } }>(`${consoleBase}/approvals/:id/decision`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was decided. Open the approvals again and retry.');
        const decision = request.form?.get('decision');
        const reason = request.form?.get('reason')?.trim();
        const answer = await callAdmin(app, session, {
          method: 'POST',
          url: `${base}/admin/approvals/${encodeURIComponent(request.params.id)}/decision`,
          body: { decision: decision ?? '', ...(reason ? { reason } : {}) },
        });
        if (answer.status === 200) return seeOther(reply, `${consoleBase}/approvals?decided=${decision === 'deny' ? 'deny' : 'approve'}`);
        // The admin API's refusal, in its words; an old sign-in is asked to sign in again.
        const stale = stepUpAsked(answer);
        const listed = await api(session, '/admin/approvals');
        return sendPage(reply, {
          status: stale ? 401 : (refusalOf(answer)?.status ?? 400),
          csp: 'ownForm',
          page: consoleApprovalsPage(base, session, {
            error: stale ? 'Your sign-in is more than 5 minutes old: a decision needs a fresh one.' : `Not decided: ${String(answer.json.error_description ?? answer.json.error ?? answer.status)}`,
            signInAgain: stale,
            ...(listed.status === 200 ? { approvals: listed.json.approvals as ListedApproval[] } : {}),
          }),
        });
      }),
    );

    // A review leads to who asked for the activation, and names who closed it: GET /admin/break-glass/reviews records its read.
    pageRecordingReads('/reviews', {
      scope: 'admin:read',
      carried: ['closed'],
      confirmation: () => ({ title: 'Show the break-glass reviews?', act: 'Showing them puts a read of the people they lead to on your record (people.reviewed).', button: 'Show the reviews', section: 'reviews' }),
      nothingRead: 'Nothing was read. Open the reviews again and retry.',
      render: async (reply, session, _params, query) => {
        const listed = await api(session, '/admin/break-glass/reviews');
        const refusal = refusalOf(listed);
        const mayClose = session.scopes.includes('reviews:close');
        return sendPage(reply, {
          status: refusal?.status ?? 200,
          csp: 'ownForm',
          page: consoleReviewsPage(base, session, refusal ? { mayClose, error: refusal.message } : { mayClose, reviews: listed.json.reviews as ReviewView[], ...(query.closed === '1' ? { notice: 'The review is closed.' } : {}) }),
        });
      },
    });

    app.post<{ Params: { id: string } }>(`${consoleBase}/reviews/:id/close`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was closed. Open the reviews again and retry.');
        const answer = await callAdmin(app, session, {
          method: 'POST',
          url: `${base}/admin/break-glass/reviews/${encodeURIComponent(request.params.id)}/close`,
          body: { note: request.form?.get('note') ?? '' },
        });
        if (answer.status === 200) return seeOther(reply, `${consoleBase}/reviews?closed=1`);
        // The admin API's refusal in its words: not compliance, not independent, too weak, closed already.
        const listed = await api(session, '/admin/break-glass/reviews');
        return sendPage(reply, {
          status: refusalOf(answer)!.status,
          csp: 'ownForm',
          page: consoleReviewsPage(base, session, {
            mayClose: session.scopes.includes('reviews:close'),
            error: `Not closed: ${refusalOf(answer)!.message}`,
            ...(listed.status === 200 ? { reviews: listed.json.reviews as ReviewView[] } : {}),
          }),
        });
      }),
    );

    // Its replay of the recorded decisions (GET /admin/policies/{version}/simulation) records its
    // read (audit.read); its text, its diff and its activation are shown in any case.
    pageRecordingReads('/policies/:version', {
      scope: 'admin:read',
      carried: ['against', 'done'],
      nothingRead: 'Nothing was replayed. Open the policy set again and retry.',
      render: (reply, session, params, query, recorded) =>
        policyPage(reply, session, params.version ?? '', query.against, query.done === 'activated' ? { notice: 'Activated: every node evaluates it from its next decision.' } : {}, recorded ? 'replay' : query),
    });

    app.post<{ Params: { version: string } }>(`${consoleBase}/policies/:version/activate`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was activated. Open the policy set again and retry.');
        const version = encodeURIComponent(request.params.version);
        const answer = await callAdmin(app, session, { method: 'POST', url: `${base}/admin/policies/${version}/activate` });
        if (answer.status === 200) return seeOther(reply, `${consoleBase}/policies/${version}?done=activated`);
        // An activation asks a recent phishing-resistant sign-in (RFC 9470 step-up), and the console
        // renews its token without one: the person is asked to sign in again, as for an approval's
        // decision, and brought back to the version.
        if (stepUpAsked(answer)) {
          return policyPage(reply, session, request.params.version, undefined, { error: `Not activated: ${String(answer.json.error_description)}`, status: 401, signInAgain: `/console/policies/${request.params.version}` }, 'replay');
        }
        return policyPage(reply, session, request.params.version, undefined, { error: `Not activated: ${refusalOf(answer)!.message}`, status: refusalOf(answer)!.status }, 'replay');
      }),
    );

    app.get<{ Params: { id: string } }>(`${consoleBase}/partners/:id`, async (request, reply) =>
      signedIn(request, reply, async (session) => partnerPage(reply, session, request.params.id, false)),
    );

    // The check fetches the partner's published metadata and keys: a form (CSRF-checked), so that
    // no other site can make a signed-in browser set it off.
    app.post<{ Params: { id: string } }>(`${consoleBase}/partners/:id/check`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was checked. Open the partner again and retry.');
        return partnerPage(reply, session, request.params.id, true);
      }),
    );

    // A mandate names its grantee and who signed, accepted or revoked it: GET /admin/mandates/{id} records its read.
    pageRecordingReads('/mandates/:id', {
      scope: 'admin:read',
      carried: ['done'],
      confirmation: () => ({ title: 'Show the mandate?', act: 'Showing it puts a read of the people it names on your record (people.reviewed).', button: 'Show the mandate', section: 'directory' }),
      nothingRead: 'Nothing was read. Open the mandate again and retry.',
      render: (reply, session, params, query) => mandatePage(reply, session, params.id ?? '', query.done === 'revoked' ? { notice: 'Revoked: its tokens are inactive from now on.' } : {}),
    });

    app.post<{ Params: { id: string } }>(`${consoleBase}/mandates/:id/revoke`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was revoked. Open the mandate again and retry.');
        const id = encodeURIComponent(request.params.id);
        const answer = await callAdmin(app, session, { method: 'POST', url: `${base}/admin/mandates/${id}/revoke`, body: { reason: request.form?.get('reason')?.trim() ?? '', revoked_by: session.username } });
        if (answer.status === 200) return seeOther(reply, `${consoleBase}/mandates/${id}?done=revoked`);
        return mandatePage(reply, session, request.params.id, { error: `Not revoked: ${refusalOf(answer)!.message}`, status: refusalOf(answer)!.status });
      }),
    );

    // GET /admin/audit/events records its read (audit.read); the log's status does not, but the
    // page is its search: the whole page is the confirmation.
    pageRecordingReads('/audit', {
      scope: 'audit:read',
      carried: [...auditFilterNames, 'after'],
      confirmation: () => ({ title: 'Show the audit events?', act: 'Showing them puts a read of the audit log on your record (audit.read).', button: 'Show the events' }),
      nothingRead: 'Nothing was read. Open the audit log again and retry.',
      render: async (reply, session, _params, asked) => {
        const filters = auditFilters(asked);
        const query = new URLSearchParams(Object.entries(filters).filter((entry): entry is [string, string] => Boolean(entry[1])));
        if (asked.after) query.set('after', asked.after);
        query.set('limit', '100');
        const [events, checkpoint, key, status] = await Promise.all([api(session, `/admin/audit/events?${query}`), api(session, '/admin/audit/checkpoints/latest'), api(session, '/admin/audit/key'), api(session, '/admin/audit/status')]);
        const refusal = refusalOf(events);
        return sendPage(reply, {
          status: refusal?.status ?? 200,
          csp: 'ownForm',
          page: consoleAuditPage(base, session, {
            filters,
            eventTypes: auditEventTypes,
            events: refusal ? [] : (events.json.events as { leafIndex: number | null; event: StoredAuditEvent }[]),
            ...(!refusal && typeof events.json.next === 'string' ? { next: events.json.next } : {}),
            ...(checkpoint.status === 200 ? { checkpoint: checkpoint.json as unknown as SignedCheckpoint } : {}),
            ...(key.status === 200 ? { key: key.json as { key_id: string } } : {}),
            ...(status.status === 200 ? { lastVerify: status.json.last_verify as AuditView['lastVerify'] } : {}),
            ...(refusal ? { error: refusal.message } : {}),
          }),
        });
      },
    });

    // An event's proof (GET /admin/audit/events/{id}/proof) records its read (audit.read). Personal
    // fields are decrypted only when asked (`reveal=personal`), and the API checks the role and
    // records the read as revealing (docs/privacy.md); asked from anywhere but the console, the
    // confirmation is the reveal's own form.
    pageRecordingReads('/audit/events/:id', {
      scope: 'audit:read',
      carried: ['reveal'],
      confirmation: (asked) =>
        asked.reveal === 'personal'
          ? { title: 'Reveal personal data?', act: 'Revealing this event’s personal fields is recorded in your name (audit.read).', button: 'Reveal personal data', action: '/audit/events/:id/reveal' }
          : { title: 'Show the audit event?', act: 'Showing it and its proof puts a read of the audit log on your record (audit.read).', button: 'Show the event' },
      nothingRead: 'Nothing was read. Open the event again and retry.',
      render: (reply, session, params, asked) => eventPage(reply, session, params.id ?? '', asked.reveal === 'personal'),
    });

    // The reveal confirmed on the console's own form (its CSRF token): no other site can post it.
    app.post<{ Params: { id: string } }>(`${consoleBase}/audit/events/:id/reveal`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was revealed. Open the event again and retry.');
        return eventPage(reply, session, request.params.id, true);
      }),
    );

    // A transaction's events (GET /admin/audit/events) and each one's proof record their reads
    // (audit.read); the search without a txn reads nothing.
    pageRecordingReads('/txn', {
      scope: 'audit:read',
      carried: ['txn'],
      confirmation: (asked) => (txnOf(asked) ? { title: 'Show the transaction?', act: 'Showing its chain puts a read of its audit events and their proofs on your record (audit.read).', button: 'Show the chain', section: 'txn' } : undefined),
      nothingRead: 'Nothing was read. Open the transaction again and retry.',
      render: async (reply, session, _params, asked) => {
        const txn = txnOf(asked);
        // Without audit:read the API will refuse every txn: say so before a search is typed.
        if (!session.scopes.includes('audit:read')) return sendPage(reply, { status: 403, csp: 'ownForm', page: consoleTxnPage(base, session, { hops: [], checks: new Map(), error: 'Your roles do not allow this: reading the audit log needs audit:read.' }) });
        if (!txn) return sendPage(reply, { status: 200, csp: 'ownForm', page: consoleTxnPage(base, session, { hops: [], checks: new Map() }) });
        const events = await api(session, `/admin/audit/events?txn=${encodeURIComponent(txn)}&limit=500`);
        const refusal = refusalOf(events);
        if (refusal) return sendPage(reply, { status: refusal.status, csp: 'ownForm', page: consoleTxnPage(base, session, { txn, hops: [], checks: new Map(), error: refusal.message }) });
        const listed = events.json.events as { leafIndex: number | null; event: StoredAuditEvent }[];
        const checks = await proofChecks(session, listed);
        const firms = await firmsOf(session);
        return sendPage(reply, { status: 200, csp: 'ownForm', page: consoleTxnPage(base, session, { txn, hops: hopsOf(listed.map((e) => e.event), (client) => firms.get(client)), checks }) });
      },
    });

    // Listing the people (GET /admin/access-review) and the mandates (GET /admin/mandates) are
    // reads on the person's record (people.reviewed); the other lists are shown in any case.
    pageRecordingReads('/directory', {
      scope: 'admin:read',
      nothingRead: 'Nothing was read. Open the directory again and retry.',
      render: (reply, session, _params, _query, recorded) => directoryPage(reply, session, recorded),
    });

    app.get<{ Querystring: Record<string, string | undefined> }>(`${consoleBase}/bundle`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        // An export is recorded in the person's name (audit.exported): never set off by another site's link.
        const site = fetchSiteOf(request);
        if (site === 'another-site') return sendPage(reply, { status: 403, csp: 'static', page: consoleRefusedPage(base, 'No bundle', 'A bundle is downloaded from the console’s own pages, not from a link on another site. Open the audit log and download it there.') });
        const filters = auditFilters(request.query);
        if (site === 'unknown') {
          return confirmFirst(reply, session, {
            title: 'Download the evidence bundle?',
            act: 'The export is recorded in your name (audit.exported).',
            action: `${consoleBase}/bundle`,
            fields: { ...filters },
            button: 'Download the evidence bundle',
          });
        }
        return bundleDownload(reply, session, filters);
      }),
    );

    // The export confirmed on the console's own form (its CSRF token): no other site can post it.
    app.post(`${consoleBase}/bundle`, async (request, reply) =>
      signedIn(request, reply, async (session) => {
        if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', 'Nothing was exported. Open the audit log again and retry.');
        const form = request.form;
        return bundleDownload(reply, session, auditFilters(Object.fromEntries(auditFilterNames.map((name) => [name, form?.get(name)]))));
      }),
    );

    /** An event's page: its bytes and its inclusion proof checked here; its personal fields revealed when `reveal`. */
    async function eventPage(reply: FastifyReply, session: ConsoleSession, id: string, reveal: boolean): Promise<FastifyReply> {
      const [proof, key] = await Promise.all([api(session, `/admin/audit/events/${encodeURIComponent(id)}/proof${reveal ? '?reveal=personal' : ''}`), api(session, '/admin/audit/key')]);
      if (proof.status === 200) {
        const found = proof.json as unknown as EventProof;
        const check = key.status === 200 ? checkEventProof(found, key.json as { key_id: string; public_key: string }) : ({ verified: false, reason: 'the audit key could not be read' } as const);
        const personal = proof.json.personal as PersonalView | undefined;
        return sendPage(reply, { status: 200, csp: 'ownForm', page: consoleEventPage(base, session, { event: JSON.parse(found.event) as StoredAuditEvent, canonical: found.event, check, ...(personal ? { personal } : {}) }) });
      }
      // Not sealed yet, unknown, or not the person's to read: the API's own words.
      const refusal = refusalOf(proof)!;
      return sendPage(reply, { status: refusal.status, csp: 'ownForm', page: consoleRefusedPage(base, 'Audit event', refusal.message) });
    }

    /** The directory, each list read with the person's token; the mandates and the people only when `readPeople` (reads on the record). */
    async function directoryPage(reply: FastifyReply, session: ConsoleSession, readPeople: boolean): Promise<FastifyReply> {
      const [clients, resourceServers, partners, entities, agents, policies, keys, destinations, mandates, people] = await Promise.all(
        ['/admin/clients', '/admin/resource-servers', '/admin/partners', '/admin/entities', '/admin/agents', '/admin/policies', '/admin/keys', '/admin/transfer-destinations', ...(readPeople ? ['/admin/mandates', '/admin/access-review'] : [])].map((url) => api(session, url)),
      );
      const rows = <T>(answer: AdminAnswer, member: string): DirectorySection<T> => {
        const refusal = refusalOf(answer);
        return refusal ? { refused: refusal.message } : { rows: (answer.json[member] ?? []) as T[] };
      };
      return sendPage(reply, {
        status: 200,
        csp: 'ownForm',
        page: consoleDirectoryPage(base, session, {
          clients: rows(clients!, 'clients'),
          resourceServers: rows(resourceServers!, 'resource_servers'),
          partners: rows(partners!, 'partners'),
          entities: rows(entities!, 'legal_entities'),
          agents: rows(agents!, 'agents'),
          mandates: mandates ? rows(mandates, 'mandates') : { confirmFirst: true },
          policies: rows(policies!, 'policies'),
          people: people ? rows(people, 'people') : { confirmFirst: true },
          destinations: rows(destinations!, 'destinations'),
          keys: refusalOf(keys!) ? { refused: refusalOf(keys!)!.message } : { inventory: keys!.json as unknown as KeyInventory },
        }),
      });
    }

    /** An evidence bundle of `filters`, read with the person's token (the API records the export). */
    async function bundleDownload(reply: FastifyReply, session: ConsoleSession, filters: AuditFilters): Promise<FastifyReply> {
      const query = new URLSearchParams(Object.entries(filters).filter((entry): entry is [string, string] => Boolean(entry[1])));
      const bundle = await api(session, `/admin/audit/bundle?${query}`);
      const refusal = refusalOf(bundle);
      if (refusal) return sendPage(reply, { status: refusal.status, csp: 'static', page: consoleRefusedPage(base, 'No bundle', refusal.message) });
      return reply
        .code(200)
        .headers({
          'content-type': 'application/json',
          'content-disposition': String(bundle.headers['content-disposition'] ?? 'attachment; filename="evidence.json"'),
          'cache-control': 'no-store',
          'clearance-unsealed-events': String(bundle.headers['clearance-unsealed-events'] ?? '0'),
        })
        .send(bundle.text);
    }

    /**
     * A console page some of whose admin-API reads the API puts on the person's record — as
     * `people.reviewed` (approval requests, break-glass reviews, mandates, the people) or as
     * `audit.read` (events, proofs, a policy version's replay): its GET `path` and the POST of its
     * confirmation. The console cookie rides along on another site's link (SameSite=Lax), so the
     * GET makes those reads at once only for the console's own link or a typed address
     * (`fetchSiteOf`: `console`). Another site's link and a browser without Fetch Metadata get
     * the page's confirmation, or what else the page shows when it has none for this request,
     * with a form of the console's (its CSRF token, which no other site has) posting to `path`,
     * which makes them. A token without `scope` is refused by the API, which then records nothing:
     * its page is read at once and says so.
     */
    function pageRecordingReads(path: string, page: RecordedReadsPage): void {
      // A parameter given twice is an array in the query: only a single value is carried.
      const carriedOf = (value: (name: string) => unknown) => Object.fromEntries((page.carried ?? []).map((name) => [name, single(value(name))]));
      const pathOf = (template: string, params: Record<string, string>) => `${consoleBase}${template.replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(params[name] ?? ''))}`;
      app.get<{ Params: Record<string, string>; Querystring: Record<string, string | undefined> }>(`${consoleBase}${path}`, async (request, reply) =>
        signedIn(request, reply, async (session) => {
          const query = carriedOf((name) => request.query[name]);
          if (fetchSiteOf(request) === 'console' || !session.scopes.includes(page.scope)) return page.render(reply, session, request.params, query, true);
          const confirmation = page.confirmation?.(query);
          if (!confirmation) return page.render(reply, session, request.params, query, false);
          const { action = path, ...words } = confirmation;
          return confirmFirst(reply, session, { ...words, action: pathOf(action, request.params), fields: query });
        }),
      );
      // Confirmed on the console's own form: no other site can post it.
      app.post<{ Params: Record<string, string> }>(`${consoleBase}${path}`, async (request, reply) =>
        signedIn(request, reply, async (session) => {
          if (!formAllowed(request, session)) return refused(reply, 403, 'This form has expired', page.nothingRead);
          return page.render(reply, session, request.params, carriedOf((name) => request.form?.get(name)), true);
        }),
      );
    }

    /**
     * A GET whose browser sent no Fetch Metadata (`unknown`) cannot be told from another site's
     * link, which the SameSite=Lax cookie rides along on: what it asks to put on the person's
     * record is not done, but offered as a form of the console's own (its CSRF token), which no
     * other site can submit. Fail closed, one click more for such a browser. Another site's link
     * gets the same form for the reads on the record (`pageRecordingReads`).
     */
    function confirmFirst(reply: FastifyReply, session: ConsoleSession, confirmation: Confirmation): FastifyReply {
      return sendPage(reply, { status: 200, csp: 'ownForm', page: consoleConfirmPage(base, session, confirmation) });
    }

    /** Client → its firm's name (and LEI), from the directory — when the person's token may read it (admin:read). */
    async function firmsOf(session: ConsoleSession): Promise<Map<string, string>> {
      const firms = new Map<string, string>();
      if (!session.scopes.includes('admin:read')) return firms;
      const [clients, entities] = await Promise.all([api(session, '/admin/clients'), api(session, '/admin/entities')]);
      if (clients.status !== 200 || entities.status !== 200) return firms;
      const names = new Map(((entities.json.legal_entities ?? []) as { lei: string; name: string }[]).map((e) => [e.lei, e.name]));
      for (const client of (clients.json.clients ?? []) as { client_id: string; owner_lei?: string }[]) {
        if (client.owner_lei) firms.set(client.client_id, `${names.get(client.owner_lei) ?? 'unknown firm'} (${client.owner_lei})`);
      }
      return firms;
    }

    /** Each sealed event's inclusion proof, checked here against the audit key (at most 200). */
    async function proofChecks(session: ConsoleSession, listed: { leafIndex: number | null; event: StoredAuditEvent }[]): Promise<Map<string, ProofCheck>> {
      const checks = new Map<string, ProofCheck>();
      const key = await api(session, '/admin/audit/key');
      for (const { leafIndex, event } of listed.slice(0, 200)) {
        if (leafIndex === null) continue;
        const proof = await api(session, `/admin/audit/events/${encodeURIComponent(event.id)}/proof`);
        checks.set(
          event.id,
          proof.status !== 200 ? { verified: false, reason: String(proof.json.error_description ?? proof.json.error ?? proof.status) } : key.status !== 200 ? { verified: false, reason: 'the audit key could not be read' } : checkEventProof(proof.json as unknown as EventProof, key.json as { key_id: string; public_key: string }),
        );
      }
      return checks;
    }

    /** A partner's page: its profile and drift, and the check when asked for. */
    async function partnerPage(reply: FastifyReply, session: ConsoleSession, partnerId: string, runCheck: boolean): Promise<FastifyReply> {
      const id = encodeURIComponent(partnerId);
      const [list, drift, check] = await Promise.all([api(session, '/admin/partners'), api(session, `/admin/partners/${id}/drift`), runCheck ? api(session, `/admin/partners/${id}/check`) : undefined]);
      const refusal = refusalOf(list) ?? refusalOf(drift);
      const profile = ((list.json.partners ?? []) as PartnerView['profile'][]).find((p) => p?.id === partnerId);
      if (refusal || !profile) return sendPage(reply, { status: refusal?.status ?? 404, csp: 'ownForm', page: consolePartnerPage(base, session, { error: refusal?.message ?? 'No such partner.' }) });
      const checked = check === undefined ? {} : check.status === 200 ? { check: check.json as unknown as NonNullable<PartnerView['check']> } : { error: refusalOf(check)!.message };
      return sendPage(reply, { status: 200, csp: 'ownForm', page: consolePartnerPage(base, session, { profile, drift: drift.json as unknown as DriftView, ...checked }) });
    }

    /**
     * A policy set version's page: its text, its diff, its simulation — each read with the person's
     * token. The simulation (a read on the record) is run when `replay`; otherwise the page offers
     * the form that runs it, carrying `replay`'s fields (what the GET asked).
     */
    async function policyPage(reply: FastifyReply, session: ConsoleSession, version: string, against: string | undefined, outcome: { notice?: string; error?: string; status?: number; signInAgain?: string }, replay: 'replay' | Record<string, string | undefined>): Promise<FastifyReply> {
      const path = `/admin/policies/${encodeURIComponent(version)}`;
      const [policy, list, simulation] = await Promise.all([api(session, path), api(session, '/admin/policies'), replay === 'replay' ? api(session, `${path}/simulation?last=1000`) : undefined]);
      const refusal = refusalOf(policy);
      if (refusal) return sendPage(reply, { status: refusal.status, csp: 'ownForm', page: consolePolicyPage(base, session, { versions: [], error: refusal.message }) });
      const versions = ((list.json.policies ?? []) as { version: string; active: boolean }[]);
      const other = against ?? versions.find((v) => v.active && v.version !== version)?.version ?? versions.find((v) => v.version !== version)?.version;
      const compared = other !== undefined && other !== version ? await api(session, `/admin/policies/${encodeURIComponent(other)}`) : undefined;
      return sendPage(reply, {
        status: outcome.status ?? 200,
        csp: 'ownForm',
        page: consolePolicyPage(base, session, {
          policy: policy.json as unknown as PolicyVersionView,
          versions: versions.map((v) => v.version),
          ...(compared?.status === 200 ? { against: { version: other!, text: String(compared.json.text) } } : {}),
          ...(simulation === undefined ? { replayOnConfirm: replay as Record<string, string | undefined> } : simulation.status === 200 ? { simulation: simulation.json as unknown as SimulationView } : { simulationError: refusalOf(simulation)!.message }),
          ...(outcome.notice ? { notice: outcome.notice } : {}),
          ...(outcome.error ? { error: outcome.error } : {}),
          ...(outcome.signInAgain ? { signInAgain: outcome.signInAgain } : {}),
        }),
      });
    }

    /** A mandate's page: every version and what each changed. */
    async function mandatePage(reply: FastifyReply, session: ConsoleSession, id: string, outcome: { notice?: string; error?: string; status?: number }): Promise<FastifyReply> {
      const mandate = await api(session, `/admin/mandates/${encodeURIComponent(id)}`);
      const refusal = refusalOf(mandate);
      if (refusal) return sendPage(reply, { status: refusal.status, csp: 'ownForm', page: consoleMandatePage(base, session, { error: refusal.message }) });
      return sendPage(reply, {
        status: outcome.status ?? 200,
        csp: 'ownForm',
        page: consoleMandatePage(base, session, { mandate: mandate.json as unknown as MandatePageView['mandate'] & object, ...(outcome.notice ? { notice: outcome.notice } : {}), ...(outcome.error ? { error: outcome.error } : {}) }),
      });
    }

    /** A console form's POST: its CSRF token (derived from the session's token) and, when sent, the same origin. */
    function formAllowed(request: FastifyRequest, session: ConsoleSession): boolean {
      const token = request.form?.get('csrf_token');
      const origin = request.headers.origin;
      return typeof token === 'string' && safeEqual(token, session.csrf) && (origin === undefined || origin === 'null' || origin === new URL(ctx.config.issuer).origin);
    }

    function redirectToAuthorize(reply: FastifyReply, signIn: ConsoleSignIn, parameters: Record<string, string>): FastifyReply {
      const url = new URL(`${ctx.config.issuer}/authorize`);
      const challenge = createHash('sha256').update(signIn.verifier).digest('base64url');
      for (const [name, value] of Object.entries({ ...parameters, client_id: consoleClientId, response_type: 'code', redirect_uri: consoleRedirectUri(ctx.config.issuer), state: signIn.state, nonce: signIn.nonce, code_challenge: challenge, code_challenge_method: 'S256' })) {
        url.searchParams.set(name, value);
      }
      reply.header('set-cookie', consoleCookies.writeSignIn(ctx, cookieKeyOf(), signIn));
      return seeOther(reply, url.href);
    }

    /** The code redeemed at Clearance's own token endpoint, over the same pipeline as any client; the ID token verified. */
    async function redeem(code: string, signIn: ConsoleSignIn): Promise<{ sub: string; accessToken: string; expiresIn: number; scope: string; acr: string | undefined } | undefined> {
      const response = await app.inject({
        method: 'POST',
        url: `${base}/token`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: consoleRedirectUri(ctx.config.issuer),
          code_verifier: signIn.verifier,
          client_id: consoleClientId,
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: consoleAssertion(ctx.config.issuer, masterKey, ctx.clock.now()),
        }).toString(),
      });
      if (response.statusCode !== 200) {
        ctx.log.warn({ status: response.statusCode, error: safeError(response.body) }, 'console: the code was not redeemed');
        return undefined;
      }
      const body = JSON.parse(response.body) as { access_token?: string; id_token?: string; expires_in?: number; scope?: string };
      if (typeof body.access_token !== 'string' || typeof body.id_token !== 'string') return undefined;
      try {
        const { payload } = await jwtVerify(body.id_token, createLocalJWKSet(await ctx.keys.jwks()), { issuer: ctx.config.issuer, audience: consoleClientId, currentDate: new Date(ctx.clock.now()) });
        // OIDC Core §3.1.3.7: the nonce of this sign-in, or the ID token is not ours to use.
        if (typeof payload.nonce !== 'string' || !safeEqual(payload.nonce, signIn.nonce) || typeof payload.sub !== 'string') return undefined;
        return { sub: payload.sub, accessToken: body.access_token, expiresIn: Number(body.expires_in ?? 300), scope: body.scope ?? '', acr: typeof payload.acr === 'string' ? payload.acr : undefined };
      } catch (error) {
        ctx.log.warn({ err: { message: (error as Error).message } }, 'console: the ID token did not verify');
        return undefined;
      }
    }

    function refused(reply: FastifyReply, status: number, title: string, message: string): FastifyReply {
      reply.header('set-cookie', consoleCookies.clearSignIn(ctx));
      return sendPage(reply, { status, csp: 'static', page: consoleRefusedPage(base, title, message) });
    }
  },
};

/** A console page whose admin-API reads are on the person's record (people.reviewed, audit.read): `pageRecordingReads`. */
interface RecordedReadsPage {
  /** The admin API scope of those reads. */
  scope: string;
  /** The query parameters the page reads (what it asks, what it says after an act), kept by the confirmation's form. */
  carried?: readonly string[];
  /**
   * For a page with nothing to show without those reads: the whole page is this confirmation of
   * what the GET asked (`action`, a path under /console like the page's, where its form posts when
   * not the page's own path). Undefined when this request makes none of those reads.
   */
  confirmation?: (asked: Record<string, string | undefined>) => (Pick<Confirmation, 'title' | 'act' | 'button' | 'section'> & { action?: string }) | undefined;
  /** What the refusal of an expired confirmation says. */
  nothingRead: string;
  /** The page, with the reads on the record only when `recorded`. */
  render: (reply: FastifyReply, session: ConsoleSession, params: Record<string, string>, query: Record<string, string | undefined>, recorded: boolean) => Promise<FastifyReply>;
}

/**
 * Where a browser says a request came from (Fetch Metadata, W3C "Fetch Metadata Request Headers"
 * §2.1 Sec-Fetch-Site). The console cookie is SameSite=Lax, so it rides along on a top-level GET
 * from anywhere: the GETs that put something on the person's record (revealing personal data,
 * reading people, exporting a bundle) act at once only for `console` — a request from the
 * console itself (`same-origin`) or typed by the person (`none`). `another-site` (`cross-site`,
 * `same-site`) is another site's page or link; `unknown` is a browser that sends no Fetch
 * Metadata (or a value it does not define), which cannot be told from another site's link.
 */
type FetchSite = 'console' | 'another-site' | 'unknown';

function fetchSiteOf(request: FastifyRequest): FetchSite {
  const site = request.headers['sec-fetch-site'];
  if (site === 'same-origin' || site === 'none') return 'console';
  if (site === 'cross-site' || site === 'same-site') return 'another-site';
  return 'unknown';
}

/** The same console roles, whatever their order. */
function sameRoles(now: readonly string[], then: readonly string[]): boolean {
  return now.length === then.length && now.every((role) => then.includes(role));
}

/**
 * A path under /console to return to after signing in; anything else is the console's home. A
 * segment may hold a dot (a policy set version, `2026-01.1`) but not begin with one: no `.` or
 * `..` segment leads out of /console.
 */
function safeReturn(value: string | undefined): string {
  return typeof value === 'string' && /^\/console(\/(?!\.)[A-Za-z0-9._-]*)*(\?[A-Za-z0-9=&%._~+-]*)?$/.test(value) ? value : '/console';
}

/**
 * The admin API asked for a new sign-in (RFC 9470 §3 insufficient_user_authentication: a level or
 * an age the console's token does not meet), which the console's renewal cannot give: the person
 * signs in again (/console/sign-in?fresh=1, prompt=login, then the roles' level).
 */
function stepUpAsked(answer: AdminAnswer): boolean {
  return answer.status === 401 && answer.json.error === 'insufficient_user_authentication';
}

/** A query parameter's or a form field's one value: none when absent or given more than once. */
function single(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The transaction a query or a form asks for, when it names one. */
function txnOf(asked: Record<string, string | undefined>): string | undefined {
  const txn = asked.txn?.trim();
  return txn ? txn : undefined;
}

/** The audit log's search fields, of a query or of a form. */
const auditFilterNames = ['txn', 'subject', 'client', 'type', 'decision', 'since', 'until'] as const;

function auditFilters(query: Record<string, string | undefined>): AuditFilters {
  const filters: AuditFilters = {};
  for (const name of auditFilterNames) {
    const value = query[name];
    if (typeof value === 'string' && value.trim() !== '') filters[name] = value.trim();
  }
  return filters;
}

/** An admin API refusal in words for the page (its own description), with its status. */
function refusalOf(answer: AdminAnswer): { status: number; message: string } | undefined {
  if (answer.status >= 200 && answer.status < 300) return undefined;
  if (answer.status === 403) return { status: 403, message: `Your roles do not allow this: ${String(answer.json.error_description ?? answer.json.error ?? 'refused')}` };
  if (answer.status === 401) return { status: 401, message: 'Your console sign-in has ended. Sign in again.' };
  return { status: answer.status >= 500 ? 502 : answer.status, message: String(answer.json.error_description ?? answer.json.error ?? `the admin API answered ${answer.status}`) };
}

/** The OAuth error code of a refusal body, for the log: never the description's echo of input. */
function safeError(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : undefined;
  } catch {
    return undefined;
  }
}
