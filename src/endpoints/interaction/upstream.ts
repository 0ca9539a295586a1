import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Interaction, NextStep } from '../../authorization/contract.ts';
import type { AuditEvent } from '../../audit/events.ts';
import { assuranceOf, type Assurance } from '../../federation/upstream/assurance.ts';
import type { IdentityProvider } from '../../federation/upstream/definition.ts';
import { providerDirectory, providerForRealm } from '../../federation/upstream/directory.ts';
import { linkedPerson } from '../../federation/upstream/linking.ts';
import { mayOfferLocalLink, offerLocalLink } from '../../federation/upstream/local-link.ts';
import { auditableDetail } from '../../federation/upstream/detail.ts';
import { authorizationUrl, completeSignIn, configurationOf, UpstreamError, type UpstreamIdentity } from '../../federation/upstream/oidc.ts';
import { samlAuthorizeUrl } from '../../federation/upstream/saml.ts';
import { renewedSince, strictest, upstreamFreshness, type UpstreamAsk } from '../../federation/upstream/freshness.ts';
import { upstreamOpening } from '../../federation/upstream/opening.ts';
import { registerSamlRoutes } from './saml.ts';
import { asOidc, findProvider, providerSecret } from '../../federation/upstream/providers.ts';
import { consumeUpstreamLogin, openUpstreamLogin } from '../../federation/upstream/upstream-logins.ts';
import type { Context } from '../../context.ts';
import { acr, acrRank } from '../../identity/acr.ts';
import { completeLogin } from '../../identity/login.ts';
import { readSession } from '../../identity/sessions.ts';
import { riskDenied, type SignInRisk } from '../../identity/login-risk.ts';
import { riskAuditDetail } from '../../risk/assessment.ts';
import { guarded, seeOther, sendErrorPage } from '../../ui/respond.ts';
import { recordRefusal } from '../../audit/refusals.ts';
import { presentedBrowserId } from '../authorize/index.ts';
import type { InteractionFlow } from './flow.ts';
import type { SignInCommitted, SignInSession } from './index.ts';

/**
 * Signing in through an upstream identity provider (src/federation/upstream, docs/identity-brokering.md).
 *
 * POST /interaction/{id}/upstream (the sign-in page's "Sign in through your organisation")
 *   1. a missing or wrong CSRF token (the sign-in form's), or a cross-site Origin → 403 page;
 *   2. an unknown, expired or other browser's interaction → error page (400);
 *   2a. the step the request is at (the protocol side's nextStep, with the browser's session;
 *      src/federation/upstream/opening.ts): not a sign-in (consent, done) → 303 to the page; a
 *      step-up (reason `acr`) → 403 page and `upstream.sign_in_refused` (`step_up_not_brokered`):
 *      a step-up is the person's own factor, here;
 *   3. home-realm discovery: the work email's domain, the firm's LEI, or a provider's id names an
 *      enabled provider, else the sign-in page again (400) saying so;
 *   4. a sign-in opened at the upstream (state, nonce and PKCE verifier bound to this interaction
 *      and browser, src/federation/upstream/upstream-logins.ts; what it asks of the upstream kept
 *      with it) and 303 to its authorization endpoint (by PAR where it offers it), the email passed
 *      on as login_hint; asked: the request's max_age and prompt=login, a requirement's max age
 *      (the stricter), and prompt=login for a person present below the level the step asks.
 * GET /interaction/{id} with the request's `idp_hint` naming an enabled provider skips the page:
 *   step 4 at once (only for a first sign-in, never for a step-up).
 *
 * GET /broker/oidc/callback (the upstream's redirect back, registered there as the redirect URI)
 *   1. the `state` names an open sign-in of this browser, used once (unknown, replayed, expired or
 *      another browser's → error page 400, `upstream.sign_in_refused`);
 *   2. its interaction still open for this browser, else error page 400;
 *   3. the provider still enabled, else 403 and `upstream.sign_in_refused` (provider_disabled);
 *   4. openid-client completes the code flow: the upstream's error, iss (RFC 9207), the code with
 *      the PKCE verifier, the ID token in full (src/federation/upstream/oidc.ts); any failure → 401 page and
 *      `upstream.sign_in_refused` with why;
 *   4a. what step 4 asked met (before anyone is linked or provisioned) — the relying party's
 *      max_age and prompt=login, a requirement's max age, a renewal Clearance asked: the upstream's
 *      auth_time (a SAML AuthnInstant) given, no older than max_age allows, and for prompt=login
 *      (or max_age=0) not before the sign-in sent the person there, else 401 and
 *      `upstream.sign_in_refused` (`auth_time_missing`, `authentication_too_old`,
 *      `authentication_not_renewed`) — src/federation/upstream/freshness.ts;
 *   5. the person: linked by (issuer, subject), or provisioned just in time; an email a local
 *      person already has is never taken over (409, `email_taken`); a locked or disabled person
 *      (403) — src/federation/upstream/linking.ts;
 *   6. the level: the upstream's acr mapped and capped by the provider's declaration
 *      (src/federation/upstream/assurance.ts); the sign-in's risk (deny → refused; a step-up is met only by
 *      an upstream level of two factors or more, from an authentication the upstream made after
 *      this sign-in sent the person there: one from its earlier session sends the browser back to
 *      it with prompt=login — step 4 again, its answer then held to 4a);
 *   7. as a local sign-in from here: one transaction with the session (its source of assurance,
 *      the upstream's `sid`), the interaction's record of it and `user.login_succeeded` (method
 *      `upstream`, the provider, the source, what was asserted, whether it was capped), then 303 on.
 *
 * Logout across the federation is src/endpoints/broker/logout.ts.
 */
export interface UpstreamRoutes {
  base: string;
  flow: InteractionFlow;
  /** The sign-in page again, with the organisation form's value and error (and cookies to set). */
  showLogin(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, view: { status: number; realm?: string; error: string; setCookie?: string[] }): Promise<FastifyReply>;
  loadInteraction(request: FastifyRequest, id: string): Promise<Interaction | undefined>;
  checkedLoginForm(request: FastifyRequest<{ Params: { id: string } }>): { get(name: string): string | undefined } | undefined;
  forbidden(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  interactionGone(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  riskOf(request: FastifyRequest, interaction: Interaction): SignInRisk;
  session: SignInSession;
  signedIn: SignInCommitted;
  /** The interaction's page (GET /interaction/{id}), absolute. */
  page(id: string): string;
}

/** The redirect URI Clearance registers at every upstream OpenID Provider. */
export function upstreamRedirectUri(issuer: string): string {
  return `${issuer}/broker/oidc/callback`;
}

/** Registers the routes; returns how the sign-in page starts an upstream sign-in at once (the request's `idp_hint`). */
export function registerUpstreamRoutes(
  app: FastifyInstance,
  ctx: Context,
  routes: UpstreamRoutes,
): { startUpstream(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, step: NextStep, providerId: string, loginHint: string | undefined): Promise<FastifyReply> } {
  type Params = { Params: { id: string } };

  app.post<Params>(`${routes.base}/interaction/:id/upstream`, async (request, reply) => guarded(ctx, request, reply, async () => {
    const form = routes.checkedLoginForm(request);
    if (!form) return routes.forbidden(request, reply);
    const interaction = await routes.loadInteraction(request, request.params.id);
    if (!interaction) return routes.interactionGone(request, reply);
    // Only at a sign-in, never at a step-up (src/federation/upstream/opening.ts): what the person
    // may do here is decided by the step the request is at, not by which form they posted.
    const session = await readSession(ctx, request.headers.cookie);
    const step = await routes.flow.nextStep(ctx, interaction, session);
    const present = interaction.authentication ?? session;
    const opening = upstreamOpening(step, present, interaction.freshness);
    if (!opening.ok && opening.refused === 'no_sign_in') return seeOther(reply, routes.page(interaction.id));
    if (!opening.ok) {
      return refusal(request, reply)(403, 'step_up_not_brokered', ownFactorPage, { client: interaction.clientId, ...(present ? { subject: present.userId } : {}) }, {
        ...(step.step === 'login' && step.acr !== undefined ? { acr_asked: step.acr } : {}),
        ...(present ? { acr: present.acr } : {}),
      });
    }
    const realm = (form.get('realm') ?? '').trim().slice(0, 256);
    if (!realm) return routes.showLogin(request, reply, interaction, { status: 400, error: 'Enter your work email or your firm’s LEI.' });
    const found = providerForRealm(await providerDirectory(ctx.storage.db, ctx.clock.now()), realm);
    if (!found) {
      return routes.showLogin(request, reply, interaction, {
        status: 400,
        realm,
        error: 'No organisation’s sign-in is set up for that. Check it, or sign in with your Clearance username above.',
      });
    }
    return goUpstream(request, reply, interaction, found.provider.id, realm.includes('@') ? realm : undefined, opening.ask);
  }));

  app.get<{ Querystring: Record<string, string | string[] | undefined> }>(`${routes.base}/broker/oidc/callback`, async (request, reply) => guarded(ctx, request, reply, async () => {
    const refuse = refusal(request, reply);
    const state = single(request.query.state);
    if (state === undefined) return refuse(400, 'missing_state', startAgain);
    const login = await consumeUpstreamLogin(ctx, state, presentedBrowserId(ctx, request));
    if (!login.ok) return refuse(400, login.reason, startAgain);
    const interaction = await routes.loadInteraction(request, login.interactionId);
    if (!interaction) return routes.interactionGone(request, reply);
    const base: Partial<AuditEvent> = { requestId: request.id, client: interaction.clientId };
    const stored = asOidc(await findProvider(ctx.storage.db, login.providerId));
    if (!stored?.provider.enabled) return refuse(403, 'provider_disabled', providerOff, base, { provider: login.providerId });
    const provider = stored.provider;
    let identity;
    try {
      const config = await configurationOf(provider, providerSecret(ctx.identity.factorKeys.master, stored), ctx.clock.now());
      identity = await completeSignIn(config, callbackUrl(ctx, request), login.secrets);
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      request.log.info({ provider: provider.id, reason: error.reason, detail: error.message }, 'upstream sign-in refused');
      return refuse(401, error.reason, notVerified(provider.name), base, { provider: provider.id, issuer: provider.issuer, detail: auditableDetail(error.message) });
    }
    return finishUpstreamSignIn(request, reply, interaction, provider, identity, login.sentAt, login.asked);
  }));

  /**
   * The verified upstream identity signs the person in (steps 5–7 above, for OpenID Connect and
   * SAML alike): linked or provisioned, the level mapped and capped, the sign-in's risk, then one
   * transaction with the session, the interaction's record and `user.login_succeeded`.
   * `sentAt`: when the sign-in was opened and the browser sent to the upstream (ms); `kept`: what
   * the upstream was asked then (the sign-in's record; none from a release before it was kept).
   */
  async function finishUpstreamSignIn(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, provider: IdentityProvider, identity: UpstreamIdentity, sentAt: number, kept: UpstreamAsk | undefined): Promise<FastifyReply> {
    const refuse = refusal(request, reply);
    const base: Partial<AuditEvent> = { requestId: request.id, client: interaction.clientId };
    const about = { provider: provider.id, issuer: provider.issuer };
    // What the upstream was asked, and at least what the relying party asks (fail closed).
    const asked = strictest(interaction.freshness, kept);
    const sentAtSeconds = Math.floor(sentAt / 1000);
    // Before anyone is linked or provisioned: an authentication older than the max_age asked, one
    // from before this sign-in sent the person there when it asked prompt=login, or one of unknown
    // age, is not passed off as fresh (src/federation/upstream/freshness.ts).
    const fresh = upstreamFreshness(identity, asked, { now: Math.floor(ctx.clock.now() / 1000), sentAt: sentAtSeconds });
    if (!fresh.ok) {
      return refuse(401, fresh.reason, tooLongAgo(provider.name), base, {
        ...about,
        upstream_subject: identity.subject,
        max_age: asked?.maxAge,
        ...(asked?.login ? { prompt: 'login' } : {}),
        ...(asked?.because ? { renewal_asked_for: asked.because } : {}),
        ...(fresh.age !== undefined ? { upstream_auth_age: fresh.age } : {}),
        ...(fresh.sentAge !== undefined ? { sent_upstream_age: fresh.sentAge } : {}),
      });
    }
    const linked = await linkedPerson(ctx, provider, identity);
    if (!linked.ok) {
      const subjectOf = linked.userId !== undefined ? { subject: linked.userId } : {};
      if (linked.reason === 'email_taken' && !mayOfferLocalLink(provider, identity)) {
        return refuse(409, 'email_taken', { title: 'You already have an account here', message: `A Clearance account already uses the email address ${provider.name} gave. It is not joined to your organisation’s sign-in: ask your administrator to link the two.` }, { ...base, ...subjectOf }, { ...about, upstream_subject: identity.subject });
      }
      if (linked.reason === 'email_taken') {
        // Never taken over: the person may join the two by signing in with that account, here and
        // now (src/federation/upstream/local-link.ts), or ask an administrator to link them.
        await ctx.audit.record({
          type: 'upstream.sign_in_refused',
          ...base,
          ...subjectOf,
          decision: { allow: false, reasons: ['email_taken'] },
          details: { reason: 'email_taken', source_address: request.ip, ...about, upstream_subject: identity.subject, link_offered: true },
        });
        const browserId = presentedBrowserId(ctx, request)!;
        const offer = await offerLocalLink(ctx, { interactionId: interaction.id, browserId, provider, identity });
        return routes.showLogin(request, reply, interaction, {
          status: 409,
          error: `A Clearance account already uses the email address ${provider.name} gave, so it was not joined to your organisation’s sign-in. If it is yours, sign in with it above: the two will be joined. Otherwise ask your administrator.`,
          setCookie: [offer],
        });
      }
      if (linked.reason === 'account_not_active') return refuse(403, 'account_not_active', notActive, { ...base, ...subjectOf }, about);
      return refuse(409, linked.reason, { title: 'Your account could not be set up', message: 'No username was free for your account. Ask your administrator.' }, base, { ...about, upstream_subject: identity.subject });
    }
    const assurance = assuranceOf(provider, { ...(identity.acr !== undefined ? { acr: identity.acr } : {}), amr: identity.amr });
    const user = linked.user;
    const personBase = { ...base, subject: user.id };
    if (await ctx.risk.reactions.suspended({ type: 'User', id: user.id })) {
      return refuse(403, 'suspended', { title: 'Your account is under review', message: 'Sign-in is paused for your account while it is reviewed. Ask your administrator.' }, personBase, about);
    }
    const risk = routes.riskOf(request, interaction);
    const assessed = await risk.assess(user);
    // A risk step-up asks for a second factor: the upstream's, when it is trusted for two or more.
    if (assessed?.outcome === 'deny' || (assessed?.outcome === 'step_up' && acrRank(assurance.acr) < acrRank(acr.multiFactor))) {
      // As for a local sign-in: the refusal, `risk.denied` and its alert in one transaction.
      const reason = assessed.outcome === 'deny' ? 'risk_denied' : 'risk_step_up_unavailable';
      const refusals = ctx.storage.flight();
      const denied = riskDenied(ctx, refusals, { reason, assessment: assessed, userId: user.id, method: 'upstream', sourceAddress: request.ip, base: personBase });
      await ctx.audit.commit(refusals, [
        { type: 'upstream.sign_in_refused', ...personBase, decision: { allow: false, reasons: [reason] }, details: { reason, source_address: request.ip, ...about, risk: riskAuditDetail(assessed) } },
        denied,
      ]);
      return sendErrorPage(ctx, request, reply, { status: 401, title: 'This sign-in was not allowed', message: 'This sign-in looks unusual, so it was stopped. Try again later, or ask your administrator.' });
    }
    // ...and only from an authentication the upstream made after this sign-in sent the person
    // there: its earlier session is no step-up. The browser goes back to it with prompt=login (OIDC
    // Core §3.1.2.1: it SHOULD authenticate the person again, else MUST answer an error) — a SAML IdP
    // with ForceAuthn (SAML Core §3.4.1: it MUST authenticate the presenter directly) — and that
    // answer is held to it (4a above), so this asks once.
    if (assessed?.outcome === 'step_up' && !renewedSince(identity, sentAtSeconds)) {
      if (asked?.login) {
        // Unreachable: 4a refused a non-renewed answer to prompt=login. Fail closed all the same.
        return refuse(401, 'authentication_not_renewed', tooLongAgo(provider.name), personBase, { ...about, upstream_subject: identity.subject, prompt: 'login', renewal_asked_for: 'risk_step_up' });
      }
      request.log.info({ provider: provider.id, risk: riskAuditDetail(assessed) }, 'risk step-up through the upstream: asking it to authenticate the person again');
      return goUpstream(request, reply, interaction, provider.id, undefined, strictest(asked, { login: true, because: 'risk_step_up' }));
    }
    const flight = ctx.storage.flight();
    const completed = await completeLogin(
      ctx,
      user,
      {
        acr: assurance.acr,
        amr: assurance.amr,
        methods: ['upstream'],
        sourceAddress: request.ip,
        base: personBase,
        ...(assessed ? { risk: assessed } : {}),
        signInRisk: risk,
        details: { method: 'upstream', ...assuranceDetails(provider, assurance, identity.subject), ...(linked.provisioned ? { provisioned: true } : {}) },
      },
      flight,
      [],
      (f, verified) => routes.session(request, interaction, f, { ...verified, assurance: { provider: assurance.provider, source: assurance.source }, ...(identity.sid !== undefined ? { upstreamSid: identity.sid } : {}), ...(identity.authTime !== undefined ? { authTime: identity.authTime } : {}) }),
    );
    if ('refused' in completed) return completed.refused === 'locked' ? refuse(403, 'account_not_active', notActive, personBase, about) : refuse(403, 'account_changed', accountChangedPage, personBase, about);
    return routes.signedIn(request, reply, interaction, completed.value, risk);
  }

  /**
   * A refusal: its `upstream.sign_in_refused` event (with why) — through the refusal limiter
   * (src/audit/refusals.ts): anyone can post to the ACS or call the callback, so past 20 a minute
   * per source the rest are counted in one summary instead of flooding the log — then the page
   * saying what happened.
   */
  function refusal(request: FastifyRequest, reply: FastifyReply) {
    return async (status: number, reason: string, message: { title: string; message: string }, more: Partial<AuditEvent> = {}, details: Record<string, unknown> = {}) => {
      await recordRefusal(ctx, {
        type: 'upstream.sign_in_refused',
        requestId: request.id,
        address: request.ip,
        ...(more.client !== undefined ? { client: more.client } : {}),
        ...(more.subject !== undefined ? { subject: more.subject } : {}),
        error: 'access_denied',
        reason,
        decided: true,
        details: { source_address: request.ip, ...details },
      });
      return sendErrorPage(ctx, request, reply, { status, ...message });
    };
  }

  registerSamlRoutes(app, ctx, { base: routes.base, loadInteraction: routes.loadInteraction, interactionGone: routes.interactionGone, refusal, finish: finishUpstreamSignIn });

  /**
   * Opens a sign-in at the upstream for this interaction and sends the browser there, asking it
   * `ask` (src/federation/upstream/opening.ts), which the sign-in keeps for its answer.
   */
  async function goUpstream(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, providerId: string, loginHint: string | undefined, ask: UpstreamAsk | undefined): Promise<FastifyReply> {
    const stored = await findProvider(ctx.storage.db, providerId);
    const browserId = presentedBrowserId(ctx, request);
    if (!stored?.provider.enabled || browserId === undefined) return routes.showLogin(request, reply, interaction, { status: 400, error: 'That organisation’s sign-in is not available. Sign in with your Clearance username above.' });
    const provider = stored.provider;
    try {
      const oidcProvider = asOidc(stored);
      // Discovered first: an unreachable upstream opens no sign-in.
      const config = oidcProvider && (await configurationOf(oidcProvider.provider, providerSecret(ctx.identity.factorKeys.master, oidcProvider), ctx.clock.now()));
      const secrets = await openUpstreamLogin(ctx, { interactionId: interaction.id, providerId, browserId, ...(ask ? { asked: ask } : {}) });
      const url =
        provider.kind === 'saml'
          ? await samlAuthorizeUrl(ctx, provider, secrets, ask)
          : await authorizationUrl(config!, provider, { redirectUri: upstreamRedirectUri(ctx.config.issuer), secrets, ...(loginHint ? { loginHint } : {}), ...(ask ? { freshness: ask } : {}) });
      return seeOther(reply, url.href);
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      request.log.warn({ provider: providerId, reason: error.reason, detail: error.message }, 'upstream sign-in could not start');
      return routes.showLogin(request, reply, interaction, { status: 502, error: `${provider.name} cannot be reached at the moment. Try again in a few minutes, or sign in with your Clearance username above.` });
    }
  }

  return {
    // The request's idp_hint, at its first sign-in (index.ts): asked what that step asks.
    async startUpstream(request, reply, interaction, step, providerId, loginHint) {
      const opening = upstreamOpening(step, interaction.authentication, interaction.freshness);
      if (!opening.ok) return seeOther(reply, routes.page(interaction.id));
      return goUpstream(request, reply, interaction, providerId, loginHint, opening.ask);
    },
  };
}

/** What `user.login_succeeded` says of an upstream sign-in: the provider, the source of assurance, what was asserted and whether it was capped. */
function assuranceDetails(provider: IdentityProvider, assurance: Assurance, upstreamSubject: string): Record<string, unknown> {
  return {
    provider: provider.id,
    assurance_source: assurance.source,
    upstream_subject: upstreamSubject,
    asserted: assurance.asserted,
    ...(assurance.capped ? { capped: true, trusted_up_to: provider.acr.max } : {}),
  };
}

/** The callback's URL as the upstream sent the browser to it (the issuer's origin and path, the query as received). */
function callbackUrl(ctx: Context, request: FastifyRequest): URL {
  const query = request.url.indexOf('?');
  return new URL(`${upstreamRedirectUri(ctx.config.issuer)}${query >= 0 ? request.url.slice(query) : ''}`);
}

/** The page of a callback that names no open sign-in of this browser. */
export const startAgain = {
  title: 'This sign-in could not be completed',
  message: 'Your organisation’s sign-in did not come back to a sign-in this browser started, or it came back too late or twice. Return to the application and start again.',
};
/** The page of a sign-in through a provider disabled meanwhile. */
export const providerOff = { title: 'Sign-in through your organisation is turned off', message: 'Your organisation’s sign-in is not available here at the moment. Ask your administrator.' };
const notActive = { title: 'Your account is not active', message: 'Your account here is locked or disabled. Ask your administrator.' };
/** The page of a step-up posted to the upstream route: a step-up is the person's own factor, here. */
const ownFactorPage = {
  title: 'Continue with your own sign-in method',
  message: 'This application needs a stronger sign-in than the one you have. That step is made here, with your own passkey or authenticator app, not through your organisation. Return to the sign-in page to continue, or go back to the application.',
};
const accountChangedPage = { title: 'Your account changed', message: 'Your account changed while you were signing in (a new password, or every session ended). Sign in again.' };

/** The page of an upstream sign-in older than the application's max_age allows, not made again for its prompt=login, or of unknown age. */
function tooLongAgo(name: string): { title: string; message: string } {
  return {
    title: 'Your organisation’s sign-in was not recent enough',
    message: `This application asks for a recent sign-in, and ${name} did not show one, so you are not signed in. Return to the application and sign in again; if it happens again, tell your administrator.`,
  };
}

/** The page of an upstream answer that did not verify. */
export function notVerified(name: string): { title: string; message: string } {
  return {
    title: 'Your organisation’s sign-in could not be used',
    message: `The answer from ${name} could not be verified, so you are not signed in. Return to the application and try again; if it happens again, tell your administrator (the reference below helps them).`,
  };
}

/** Refuses a sign-in: its audit event, then the page (see `refusal` in registerUpstreamRoutes). */
export type Refuse = (status: number, reason: string, message: { title: string; message: string }, more?: Partial<AuditEvent>, details?: Record<string, unknown>) => Promise<FastifyReply>;

export function single(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
