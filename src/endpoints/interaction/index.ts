import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication, ConsentRequest, Interaction, NextStep, UpstreamAssurance } from '../../authorization/contract.ts';
import * as interactions from '../../authorization/interactions.ts';
import type { Context } from '../../context.ts';
import { readLoginAccount, verifyLogin } from '../../identity/login.ts';
import { readSignInSightingsAhead, signInRisk, type SignInRisk } from '../../identity/login-risk.ts';
import type { RiskAssessment } from '../../risk/assessment.ts';
import { clearPendingCookie, readPendingSignIn, startPendingSignIn, type PendingSignIn } from '../../identity/factors/pending.ts';
import { verifySecondFactor, type SecondFactorProof } from '../../identity/factors/second-step.ts';
import { holdsPrivilegedRole } from '../../identity/roles.ts';
import { verifyPasskeyLogin } from '../../identity/passkeys/login.ts';
import { managedDevice } from '../../pki/devices.ts';
import { authenticationOptions } from '../../identity/passkeys/options.ts';
import { methodsReaching, signInMethodsOf } from '../../identity/methods.ts';
import { readSession, readSessionOfPerson, startSession, type SessionPerson, type StartedSession } from '../../identity/sessions.ts';
import { findUser, normalizeUsername } from '../../identity/users.ts';
import { consentPage } from '../../ui/consent.ts';
import { csrfBinding, csrfField, csrfToken, csrfTokenValid, type CsrfPurpose } from '../../ui/csrf.ts';
import { loginPage, type LevelAsked, type SteppingUp } from '../../ui/login.ts';
import { secondFactorPage } from '../../ui/second-factor.ts';
import type { Flight } from '../../storage/flight.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { passkeyScriptSources } from '../../ui/assets.ts';
import { sendJson } from '../../http/json.ts';
import { sendError } from '../../http/errors.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { rateLimitHeaders } from '../../risk/limits/refusal.ts';
import { presentedBrowserId } from '../authorize/index.ts';
import type { InteractionFlow } from './flow.ts';
import { registerUpstreamRoutes } from './upstream.ts';
import { certificateAction, registerCertificateRoute } from './certificate.ts';
import { personCertificateAuthorities } from '../../identity/certificates/settings.ts';
import { completeLocalLink, pendingLinkCookieName } from '../../federation/upstream/local-link.ts';
import { providerDirectory, providerForRealm } from '../../federation/upstream/directory.ts';

/**
 * Where a person logs in and consents during an authorization request (the people side of
 * src/authorization/contract.ts). Every answer is an HTML page or a 303; nothing here ever
 * redirects to the client: the protocol side does that from /authorize/resume/{id}.
 *
 * GET /interaction/{id}
 *   1. an unknown or expired interaction, or one another browser started (loadInteraction) →
 *      error page (400), no redirect;
 *   2. the session of the cookie (readSession) is passed to the protocol's nextStep:
 *      login → the sign-in page for the level it asks (NextStep.acr; src/ui/login.ts) — the same
 *      page for everyone until the person has authenticated; once they have (in this request, or
 *      by the session) and are below it (reason `acr`), the step-up page: how they signed in,
 *      what is needed, only their own methods that reach it; consent → the consent page;
 *      done → 303 to resume.
 *
 * POST /interaction/{id}/login
 *   1. a missing or wrong CSRF token, or a cross-site Origin → 403 page, nothing changes;
 *   2. an unknown or expired interaction, or another browser's → error page (400);
 *   3. an empty username or password → the sign-in page again, 400;
 *   3a. the person's rate limit (attempts naming the account, src/risk/limits): over it → the
 *      sign-in page again, 429 with Retry-After and the RateLimit fields, no password work;
 *   4. verifyLogin (throttle, Argon2id, lockout, the sign-in's risk — signInRisk: the address,
 *      the client, the browser's device cookie —, audit): throttled → 429 with Retry-After; a
 *      risk step-up a person without a second factor meets only with their passkey → the sign-in
 *      page asking for it, 401; any other failure (a risk denial too) → the sign-in page with one
 *      generic message, 401;
 *   5. a person with a second factor (src/identity/factors): no session yet — a pending sign-in
 *      bound to this browser (cookie) and this interaction, opened in the password's transaction,
 *      and 303 to /interaction/{id}/second-factor;
 *   6. a new session (the id rotates: the browser's old session ends; it keeps the sign-in's risk
 *      assessment), recorded on the interaction — one transaction with the login's user update and
 *      audit event —, the device cookie when the browser had none that verified, and 303
 *      (never 307, RFC 9700 §4.12) to where the protocol's nextStep sends the person now: the
 *      consent page (/interaction/{id}) when consent is needed, else /authorize/resume/{id}; an
 *      interaction that ended meanwhile → error page, no cookie.
 *
 * GET /interaction/{id}/second-factor
 *   1. an unknown or expired interaction, or another browser's → error page (400);
 *   2. no open pending sign-in of this browser for this interaction → 303 to /interaction/{id}
 *      (the password again);
 *   3. the page for the authenticator's code, and a recovery code (not for a privileged role).
 *
 * POST /interaction/{id}/second-factor
 *   1–2. as for login;
 *   3. no open pending sign-in of this browser for this interaction (expired, used, ended by too
 *      many wrong codes or a lock) → the sign-in page (401), its cookie cleared;
 *   4. neither a code nor a recovery code → the page again, 400;
 *   5. verifySecondFactor (throttle, one use per TOTP step and per recovery code, failures counted
 *      toward lockout, audit): throttled → 429; a recovery code of a privileged role → 403; wrong →
 *      the page again with one generic message, 401, or the sign-in page once the pending sign-in
 *      ended;
 *   6. as 6. of login: the session (acr mfa, the password step's risk assessment) starts, the
 *      pending cookie is cleared, the device cookie given, 303 on.
 *
 * POST /interaction/{id}/passkey/options (JSON, for the sign-in page's passkey script)
 *   1. a missing or wrong CSRF token (the sign-in form's), or a cross-site Origin → 403
 *      `access_denied` JSON; an unknown, expired or other browser's interaction → 400
 *      `invalid_request` JSON;
 *   2. authenticationOptions: the request options of a WebAuthn assertion with a new challenge
 *      bound to this interaction — for any of the person's passkeys when no username is sent,
 *      for that username's passkeys (or decoys: no account enumeration) when one is; no-store.
 *
 * POST /interaction/{id}/passkey
 *   1–2. as for login;
 *   3. verifyPasskeyLogin (throttle, the challenge consumed once, the assertion's origin, RP ID,
 *      user verification, signature and counter, the sign-in's risk, audit): throttled → 429; any
 *      failure (a risk denial too) → the sign-in page with one generic message, 401;
 *   4. as step 5 of login: the session at the passkey's level (acr `urn:clearance:acr:phr`, or
 *      `:phrh` for attested hardware), recorded on the interaction in the sign-in's transaction.
 *
 * POST /interaction/{id}/certificate ("Sign in with your smart card", shown while apply's
 *   `person_certificates` names an authority): the browser's client certificate checked and
 *   mapped to a person, then as step 5 of login — ./certificate.ts has its rules.
 *
 * POST /interaction/{id}/decline ("Go back to the application", on the sign-in page)
 *   1–2. as for login (the sign-in form's CSRF token);
 *   3. unless the step is a login at a required level (NextStep.acr, not voluntary) → 303 to the
 *      page, nothing changes;
 *   4. declineAuthentication, then 303 to resume, which ends the request with
 *      unmet_authentication_requirements (OIDC Core §5.5.1.1).
 *
 * POST /interaction/{id}/consent
 *   1–2. as for login;
 *   3. decision is approve or deny, else 400;
 *   4. the person must still have a session, and the same person who logged in during this
 *      interaction; else the sign-in page (401) or an error page (403);
 *   5. approving a request whose order entries policy asks the person to approve with a passkey
 *      (what-you-see-is-what-you-sign, src/approvals): the form's `credential` must answer the
 *      ceremony (flow.approve), else the consent page again (400) and nothing is approved;
 *   6. decideConsent, then 303 to /authorize/resume/{id}.
 *
 * POST /interaction/{id}/approval/options (the consent page's script)
 *   a CSRF-checked form of this browser and interaction, a session of the person → the WebAuthn
 *   request options of a new approval ceremony (challenge = digest of the entries ‖ nonce), JSON,
 *   no-store; else the registered OAuth error as JSON.
 *
 * Each request reads its interaction once (loadInteraction) and passes it to the protocol side's
 * other calls, which reuse that record. It is read with the request's other reads — the session,
 * or the account of a login — in one flight (one round trip), and a login's writes are one more.
 */
export function interactionEndpoint(flow: InteractionFlow): Endpoint {
  return {
    register(app, ctx) {
      const base = issuerPath(ctx.config.issuer);
      const paths = {
        login: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/login`,
        passkey: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/passkey`,
        consent: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/consent`,
        decline: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/decline`,
        upstream: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/upstream`,
        secondFactor: (id: string) => `${base}/interaction/${encodeURIComponent(id)}/second-factor`,
        secondFactorPage: (id: string) => `${ctx.config.issuer}/interaction/${encodeURIComponent(id)}/second-factor`,
        resume: (id: string) => `${ctx.config.issuer}/authorize/resume/${encodeURIComponent(id)}`,
        page: (id: string) => `${ctx.config.issuer}/interaction/${encodeURIComponent(id)}`,
      };
      type Params = { Params: { id: string } };

      // What the other ways of signing in share with this file's (./upstream.ts, ./certificate.ts):
      // the interaction and form checks, the sign-in's risk, the session and its commit.
      const signInParts = {
        base,
        loadInteraction: (request: FastifyRequest, id: string) => loadInteraction(ctx, flow, request, id),
        checkedLoginForm: (request: FastifyRequest<Params>) => checkedForm(ctx, request, 'login'),
        forbidden: (request: FastifyRequest, reply: FastifyReply) => forbidden(ctx, request, reply),
        interactionGone: (request: FastifyRequest, reply: FastifyReply) => interactionGone(ctx, request, reply),
        riskOf: (request: FastifyRequest, interaction: Interaction) => riskOf(request, interaction),
        session: (request: FastifyRequest, interaction: Interaction, flight: Flight, login: SignInLogin) => session(request, interaction, flight, login),
        signedIn: (request: FastifyRequest, reply: FastifyReply, interaction: Interaction, value: { started: StartedSession; recorded: Promise<boolean> }, risk: SignInRisk) =>
          signedIn(request, reply, interaction, value, risk),
      };

      // Signing in through an upstream identity provider (./upstream.ts): the organisation form and the callback.
      const upstream = registerUpstreamRoutes(app, ctx, {
        ...signInParts,
        flow,
        page: paths.page,
        showLogin: (request, reply, interaction, view) =>
          showLogin(ctx, request, reply, interaction, { status: view.status, organisation: { ...(view.realm !== undefined ? { realm: view.realm } : {}), error: view.error }, ...(view.setCookie ? { setCookie: view.setCookie } : {}) }),
      });

      // Signing in with a client certificate, a smart card (./certificate.ts).
      registerCertificateRoute(app, ctx, { ...signInParts, showLogin: (request, reply, interaction, view) => showLogin(ctx, request, reply, interaction, view) });

      app.get<Params>(`${base}/interaction/:id`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const [interaction, presenting] = await loadInteractionWith(ctx, flow, request, (flight) => readSessionOfPerson(ctx, request.headers.cookie, flight));
          if (!interaction) return interactionGone(ctx, request, reply);
          const present = await presenting;
          const session = present?.authentication;
          const step = await flow.nextStep(ctx, interaction, session);
          switch (step.step) {
            case 'done':
              return seeOther(reply, paths.resume(interaction.id));
            case 'login': {
              // The request's idp_hint names the person's organisation: straight there — for a first
              // sign-in only (a step-up is the person's own, on this page; a sign-in asked again for
              // freshness shows the page, so an upstream that ignores max_age cannot loop the browser).
              const hinted = step.reason === 'no_session' && interaction.hints?.idp !== undefined ? providerForRealm(await providerDirectory(ctx.storage.db, ctx.clock.now()), interaction.hints.idp) : undefined;
              if (hinted && hinted.provider.id === interaction.hints?.idp) return upstream.startUpstream(request, reply, interaction, step, hinted.provider.id, interaction.hints.login);
              return showLogin(ctx, request, reply, interaction, { status: 200, notice: loginNotices[step.reason] }, { step, session });
            }
            case 'consent':
              return showConsent(request, reply, interaction, step.consent, present?.person, { status: 200 });
          }
        }),
      );

      app.post<Params>(`${base}/interaction/:id/login`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'login');
          if (!form) return forbidden(ctx, request, reply);
          const username = form.get('username') ?? '';
          const password = form.get('password') ?? '';
          const complete = Boolean(username.trim() && password);
          // The account is read with the interaction (it is checked first all the same).
          const [interaction, account] = await loadInteractionWith(ctx, flow, request, (flight) => {
            if (!complete) return undefined;
            const account = readLoginAccount(ctx, username, flight);
            readSignInSightingsAhead(ctx, flight, { username: account.username, address: request.ip, cookieHeader: request.headers.cookie });
            return account;
          });
          if (!interaction) return interactionGone(ctx, request, reply);
          if (!complete) {
            return showLogin(ctx, request, reply, interaction, { status: 400, username, error: 'Enter your username and your password.' });
          }
          // The person's rate limit (src/risk/limits): sign-in attempts naming this account, any
          // outcome, before the password is looked at; over it, the page again with 429.
          const limited = await ctx.risk.limits.limiter.person(normalizeUsername(username));
          if (limited) {
            return showLogin(ctx, request, reply, interaction, {
              status: 429,
              username,
              error: 'Too many sign-in attempts for this account. Wait a moment, then try again.',
              headers: rateLimitHeaders(limited),
            });
          }
          // A success starts the session (its id rotates) and records it on the interaction, in the
          // login's transaction with its audit event: statements added to its flight, answered
          // once it has committed (`recorded`).
          const risk = riskOf(request, interaction);
          const outcome = await verifyLogin(
            ctx,
            { username, password, sourceAddress: request.ip, requestId: request.id, clientId: interaction.clientId, risk, ...(await deviceOf(request)) },
            (flight, login) => session(request, interaction, flight, login),
            account,
            // The password of a person with a second factor: no session yet, the second step next.
            (flight, login) => startPendingSignIn(ctx, flight, { userId: login.user.id, interaction, cookieHeader: request.headers.cookie, risk: login.risk }),
          );
          if (!outcome.ok && outcome.reason === 'second_factor_required') {
            reply.header('set-cookie', [outcome.value.setCookie]);
            return seeOther(reply, paths.secondFactorPage(interaction.id));
          }
          if (!outcome.ok && outcome.reason === 'throttled') {
            return showLogin(ctx, request, reply, interaction, {
              status: 429,
              username,
              error: 'Too many failed sign-in attempts. Wait a few minutes, then try again.',
              headers: { 'retry-after': String(outcome.retryAfterSeconds) },
            });
          }
          if (!outcome.ok && outcome.reason === 'passkey_required') {
            // The risk of this sign-in asks more than a password; the person's passkey is what they have.
            return showLogin(ctx, request, reply, interaction, { status: 401, username, error: 'This sign-in needs more than your password. Sign in with your passkey.' });
          }
          if (!outcome.ok) {
            return showLogin(ctx, request, reply, interaction, { status: 401, username, error: 'The username or password is not correct.' });
          }
          return signedIn(request, reply, interaction, outcome.value, risk);
        }),
      );

      app.get<Params>(`${base}/interaction/:id/second-factor`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const [interaction, reading] = await loadInteractionWith(ctx, flow, request, (flight) => readPendingSignIn(ctx, request.headers.cookie, request.params.id, flight));
          if (!interaction) return interactionGone(ctx, request, reply);
          const pending = await reading;
          if (!pending) return seeOther(reply, paths.page(interaction.id));
          return showSecondFactor(ctx, request, reply, interaction, pending, { status: 200 });
        }),
      );

      app.post<Params>(`${base}/interaction/:id/second-factor`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'second_factor');
          if (!form) return forbidden(ctx, request, reply);
          const [interaction, reading] = await loadInteractionWith(ctx, flow, request, (flight) => readPendingSignIn(ctx, request.headers.cookie, request.params.id, flight));
          if (!interaction) return interactionGone(ctx, request, reply);
          const pending = await reading;
          const startAgain = (notice: string) =>
            showLogin(ctx, request, reply, interaction, { status: 401, notice, headers: {}, setCookie: [clearPendingCookie(ctx)] });
          if (!pending) return startAgain('Your sign-in took too long or was interrupted. Enter your password again.');
          const recoveryCode = (form.get('recovery_code') ?? '').trim().slice(0, 64);
          const code = (form.get('code') ?? '').trim().slice(0, 32);
          const proof: SecondFactorProof | undefined = recoveryCode ? { kind: 'recovery_code', code: recoveryCode } : code ? { kind: 'totp', code } : undefined;
          if (!proof) return showSecondFactor(ctx, request, reply, interaction, pending, { status: 400, error: 'Enter the code your authenticator app shows.' });
          // As a login: the session starts and is recorded on the interaction in the factor's transaction.
          const risk = riskOf(request, interaction);
          const outcome = await verifySecondFactor(ctx, { pending, proof, sourceAddress: request.ip, requestId: request.id, clientId: interaction.clientId, risk, ...(await deviceOf(request)) }, (flight, login) =>
            session(request, interaction, flight, login),
          );
          const field = proof.kind;
          if (!outcome.ok) {
            switch (outcome.reason) {
              case 'throttled':
                return showSecondFactor(ctx, request, reply, interaction, pending, {
                  status: 429,
                  error: 'Too many failed sign-in attempts. Wait a few minutes, then try again.',
                  errorField: field,
                  headers: { 'retry-after': String(outcome.retryAfterSeconds) },
                });
              case 'recovery_not_allowed':
                return showSecondFactor(ctx, request, reply, interaction, pending, {
                  status: 403,
                  error: 'Recovery codes cannot be used with your role. Enter your authenticator’s code, or ask your administrator for an independent-approval recovery.',
                });
              case 'ended':
                return startAgain('Your sign-in was interrupted. Enter your password again.');
              case 'invalid_code':
                if (!outcome.retry) return startAgain('Too many wrong codes. Enter your password again.');
                return showSecondFactor(ctx, request, reply, interaction, pending, { status: 401, error: 'That code is not correct.', errorField: field });
            }
          }
          // The interaction ended between its read and the sign-in (nothing recorded on it): no cookie.
          if (!(await outcome.value.recorded)) return interactionGone(ctx, request, reply);
          reply.header('set-cookie', [outcome.value.started.setCookie, clearPendingCookie(ctx), ...(risk.setDeviceCookie ? [risk.setDeviceCookie] : []), ...(await localLink(request, interaction, outcome.value.started.authentication.userId))]);
          const next = await flow.nextStep(ctx, interaction, outcome.value.started.authentication);
          return seeOther(reply, next.step === 'consent' ? paths.page(interaction.id) : paths.resume(interaction.id));
        }),
      );

      app.post<Params>(`${base}/interaction/:id/passkey/options`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'login');
          if (!form) return sendError(reply, new OAuthError('access_denied', 'the form could not be checked; reload the page'));
          const [interaction] = await loadInteractionWith(ctx, flow, request, () => undefined);
          if (!interaction) return sendError(reply, new OAuthError('invalid_request', 'this sign-in request has ended'));
          const username = form.get('username')?.trim();
          const options = await authenticationOptions(ctx, { binding: interaction.id, ...(username ? { username } : {}) });
          return sendJson(reply, options, { status: 200 });
        }),
      );

      app.post<Params>(`${base}/interaction/:id/passkey`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'login');
          if (!form) return forbidden(ctx, request, reply);
          const [interaction] = await loadInteractionWith(ctx, flow, request, () => undefined);
          if (!interaction) return interactionGone(ctx, request, reply);
          // As for a password: a success starts the session and records it on the interaction, in
          // the sign-in's transaction with its audit event.
          const risk = riskOf(request, interaction);
          const outcome = await verifyPasskeyLogin(
            ctx,
            { credential: form.get('credential'), binding: interaction.id, sourceAddress: request.ip, requestId: request.id, clientId: interaction.clientId, risk, ...(await deviceOf(request)) },
            (flight, login) => session(request, interaction, flight, login),
          );
          if (!outcome.ok && outcome.reason === 'throttled') {
            return showLogin(ctx, request, reply, interaction, {
              status: 429,
              error: 'Too many failed sign-in attempts. Wait a few minutes, then try again.',
              headers: { 'retry-after': String(outcome.retryAfterSeconds) },
            });
          }
          if (!outcome.ok) {
            return showLogin(ctx, request, reply, interaction, { status: 401, error: 'Your passkey could not be used to sign in. Try again, or choose another way below.' });
          }
          return signedIn(request, reply, interaction, outcome.value, risk);
        }),
      );

      /** The risk of this request's sign-in: its address, the interaction's client, the browser's device cookie. */
      function riskOf(request: FastifyRequest, interaction: Interaction): SignInRisk {
        return signInRisk(ctx, { address: request.ip, clientId: interaction.clientId, cookieHeader: request.headers.cookie });
      }

      /** The managed device the browser presented over mTLS (src/pki/devices.ts), for the sign-in's event and session. */
      async function deviceOf(request: FastifyRequest): Promise<{ device?: string }> {
        const device = await managedDevice(ctx.pki, request.clientCertificate?.certificate);
        return device ? { device } : {};
      }

      /** A successful sign-in's consequences, added to its transaction: the new session (with the sign-in's risk and managed device), recorded on the interaction. */
      async function session(request: FastifyRequest, interaction: Interaction, flight: Flight, login: SignInLogin) {
        const { device } = await deviceOf(request);
        const started = await startSession(
          ctx,
          { userId: login.user.id, acr: login.acr, amr: login.amr, cookieHeader: request.headers.cookie, risk: login.risk, deviceId: device, assurance: login.assurance, upstreamSid: login.upstreamSid, authTime: login.authTime },
          flight,
        );
        return { started, recorded: flow.recordAuthentication(ctx, interaction, started.authentication, flight) };
      }

      /**
       * After a local sign-in committed: an upstream identity this browser brought, refused for its
       * email and kept for this person's own sign-in (src/federation/upstream/local-link.ts), is linked to
       * them when the email is theirs; the cookie that carried it is cleared either way.
       */
      async function localLink(request: FastifyRequest, interaction: Interaction, userId: string): Promise<string[]> {
        if (!request.headers.cookie?.includes(pendingLinkCookieName)) return [];
        const cleared = await completeLocalLink(ctx, { cookieHeader: request.headers.cookie, browserId: presentedBrowserId(ctx, request), interactionId: interaction.id, requestId: request.id }, userId);
        return cleared ? [cleared] : [];
      }

      /** After a committed sign-in (password or passkey): the cookies (session; device, when new), and 303 to where the protocol side sends the person. */
      async function signedIn(
        request: FastifyRequest,
        reply: FastifyReply,
        interaction: Interaction,
        value: { started: StartedSession; recorded: Promise<boolean> },
        risk: SignInRisk,
      ): Promise<FastifyReply> {
        // The interaction ended between its read and the login (nothing recorded on it): no cookie.
        if (!(await value.recorded)) return interactionGone(ctx, request, reply);
        reply.header('set-cookie', [value.started.setCookie, ...(risk.setDeviceCookie ? [risk.setDeviceCookie] : []), ...(await localLink(request, interaction, value.started.authentication.userId))]);
        // Straight to the consent page when the protocol side asks for consent (it knows from the
        // login's own transaction); anything else is the protocol side's to carry out.
        const next = await flow.nextStep(ctx, interaction, value.started.authentication);
        return seeOther(reply, next.step === 'consent' ? paths.page(interaction.id) : paths.resume(interaction.id));
      }

      app.post<Params>(`${base}/interaction/:id/decline`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'login');
          if (!form) return forbidden(ctx, request, reply);
          const [interaction, reading] = await loadInteractionWith(ctx, flow, request, (flight) => readSession(ctx, request.headers.cookie, flight));
          if (!interaction) return interactionGone(ctx, request, reply);
          const session = await reading;
          const step = await flow.nextStep(ctx, interaction, session);
          // Only a level the sign-in must reach, and nobody may waive, can be declined: anything
          // else (no level, a voluntary one, a step already met) goes back to the page.
          if (step.step !== 'login' || step.acr === undefined || step.voluntary) return seeOther(reply, paths.page(interaction.id));
          // OIDC Core §5.5.1.1: the protocol side ends the request with unmet_authentication_requirements at resume.
          if (!(await flow.declineAuthentication(ctx, interaction, session))) return interactionGone(ctx, request, reply);
          return seeOther(reply, paths.resume(interaction.id));
        }),
      );

      app.post<Params>(`${base}/interaction/:id/consent`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'consent');
          if (!form) return forbidden(ctx, request, reply);
          const [interaction, reading] = await loadInteractionWith(ctx, flow, request, (flight) => readSession(ctx, request.headers.cookie, flight));
          if (!interaction) return interactionGone(ctx, request, reply);
          const decision = form.get('decision');
          if (decision !== 'approve' && decision !== 'deny') {
            return sendErrorPage(ctx, request, reply, { status: 400, title: 'Choose Approve or Deny', message: 'The form did not say whether you approve. Go back and choose Approve or Deny.' });
          }
          const session = await reading;
          if (!session) {
            return showLogin(ctx, request, reply, interaction, { status: 401, notice: 'Your session has ended. Sign in again to continue.' });
          }
          if (interaction.authentication && interaction.authentication.userId !== session.userId) {
            return sendErrorPage(ctx, request, reply, {
              status: 403,
              title: 'Signed in as someone else',
              message: 'Another person signed in in this browser while this request was open. Return to the application and start again.',
            });
          }
          if (decision === 'approve' && flow.approve && flow.approvalAsked) {
            // What-you-see-is-what-you-sign: when policy asks it, approving is the passkey's signature
            // over exactly the order entries (src/approvals), verified and kept before the decision.
            const asked = await flow.approvalAsked(ctx, interaction, session);
            if (asked) {
              const credential = form.get('credential');
              const approved = credential ? await flow.approve(ctx, interaction, session, credential, request.id) : { ok: false as const, reason: 'missing' };
              if (!approved.ok) {
                return showConsent(request, reply, interaction, asked, undefined, {
                  status: 400,
                  error: credential ? 'Your passkey approval could not be verified, so nothing was approved. Try again.' : 'Approve with your passkey.',
                });
              }
            }
          }
          await flow.decideConsent(ctx, interaction, session, decision === 'approve');
          return seeOther(reply, paths.resume(interaction.id));
        }),
      );

      app.post<Params>(`${base}/interaction/:id/approval/options`, async (request, reply) =>
        guarded(ctx, request, reply, async () => {
          const form = checkedForm(ctx, request, 'consent');
          if (!form) return sendError(reply, new OAuthError('access_denied', 'the form could not be checked; reload the page'));
          const [interaction, reading] = await loadInteractionWith(ctx, flow, request, (flight) => readSession(ctx, request.headers.cookie, flight));
          if (!interaction) return sendError(reply, new OAuthError('invalid_request', 'this authorization request has ended'));
          const session = await reading;
          if (!session) return sendError(reply, new OAuthError('access_denied', 'your session has ended; sign in again'));
          const options = flow.startApproval ? await flow.startApproval(ctx, interaction, session) : undefined;
          if (!options) return sendError(reply, new OAuthError('invalid_request', 'this request asks you to approve nothing with a passkey'));
          return sendJson(reply, options, { status: 200 });
        }),
      );

      /** The consent page (with the passkey approval when the protocol side asks one). */
      async function showConsent(
        request: FastifyRequest<Params>,
        reply: FastifyReply,
        interaction: Interaction,
        consent: ConsentRequest,
        person: SessionPerson | undefined,
        view: { status: number; error?: string },
      ): Promise<FastifyReply> {
        // The session's person (read with it), else the one who logged in during the interaction.
        const user = person ?? (interaction.authentication && (await findUser(ctx, interaction.authentication.userId)));
        const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
        const approval = consent.approval !== undefined;
        return sendPage(reply, {
          status: view.status,
          csp: 'form',
          ...(approval ? { scripts: passkeyScriptSources(ctx.config.issuer) } : {}),
          page: consentPage({
            base,
            action: paths.consent(interaction.id),
            csrfToken: csrfToken(csrf.secret, interaction.id, 'consent'),
            consent,
            signedInAs: user ? (user.name ?? user.username) : 'an unknown user',
            ...(approval ? { approvalOptions: `${base}/interaction/${encodeURIComponent(interaction.id)}/approval/options` } : {}),
            ...(view.error ? { error: view.error } : {}),
          }),
          ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
        });
      }

      /**
       * The sign-in page, for the step the protocol side asks now (`known.step`, else asked here
       * with the browser's session): the level it must reach, and — once the person has
       * authenticated below it (reason `acr`: in this request, or by their session) — their own
       * methods that reach it. Before that, nothing on it depends on who is signing in.
       */
      async function showLogin(
        ctx: Context,
        request: FastifyRequest,
        reply: FastifyReply,
        interaction: Interaction,
        view: { status: number; username?: string; error?: string; notice?: string | undefined; headers?: Record<string, string>; setCookie?: string[]; organisation?: { realm?: string; error?: string } },
        known: { step?: NextStep; session?: Authentication | undefined } = {},
      ): Promise<FastifyReply> {
        const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
        const session = known.step ? known.session : (known.session ?? (await readSession(ctx, request.headers.cookie)));
        const step = known.step ?? (await flow.nextStep(ctx, interaction, session));
        const level: LevelAsked | undefined = step.step === 'login' && step.acr !== undefined ? { acr: step.acr, voluntary: step.voluntary === true } : undefined;
        const [client, steppingUp, providers, certificateAuthorities] = await Promise.all([
          ctx.clients.get(interaction.clientId),
          stepUpOf(step, interaction, session),
          providerDirectory(ctx.storage.db, ctx.clock.now()),
          personCertificateAuthorities(ctx),
        ]);
        // "Sign in through your organisation" while any upstream is enabled (never on a step-up: that is the person's own factor).
        const organisation = providers.some((p) => p.provider.enabled)
          ? { action: paths.upstream(interaction.id), ...((view.organisation?.realm ?? interaction.hints?.login) !== undefined ? { realm: (view.organisation?.realm ?? interaction.hints?.login)!.slice(0, 256) } : {}), ...(view.organisation?.error ? { error: view.organisation.error } : {}) }
          : undefined;
        const setCookie = [...(csrf.setCookie ? [csrf.setCookie] : []), ...(view.setCookie ?? [])];
        return sendPage(reply, {
          status: view.status,
          csp: 'form',
          scripts: passkeyScriptSources(ctx.config.issuer),
          page: loginPage({
            base,
            action: paths.login(interaction.id),
            passkey: { action: paths.passkey(interaction.id), options: `${paths.passkey(interaction.id)}/options` },
            csrfToken: csrfToken(csrf.secret, interaction.id, 'login'),
            clientName: client?.metadata.client_name ?? interaction.clientId,
            decline: paths.decline(interaction.id),
            ...(level ? { level } : {}),
            ...(steppingUp ? { steppingUp } : {}),
            ...(view.username !== undefined ? { username: view.username.slice(0, 256) } : {}),
            ...(view.error ? { error: view.error } : {}),
            ...(view.notice && !steppingUp ? { notice: view.notice } : {}),
            ...(organisation ? { organisation } : {}),
            // "Sign in with your smart card" while any authority signs people in with a certificate.
            ...(certificateAuthorities.length > 0 ? { certificate: { action: certificateAction(base, interaction.id) } } : {}),
          }),
          ...(setCookie.length > 0 ? { setCookie } : {}),
          ...(view.headers ? { headers: view.headers } : {}),
        });
      }

      /**
       * The person a step-up page is for: who authenticated in this request, else the session's
       * person — only when the step is a level they are below (reason `acr`), never before anyone
       * authenticated (no account enumeration).
       */
      async function stepUpOf(step: NextStep, interaction: Interaction, session: Authentication | undefined): Promise<SteppingUp | undefined> {
        if (step.step !== 'login' || step.reason !== 'acr' || step.acr === undefined) return undefined;
        const person = interaction.authentication ?? session;
        if (!person) return undefined;
        const methods = await signInMethodsOf(ctx, person.userId);
        if (!methods) return undefined;
        return {
          username: methods.username,
          amr: person.amr,
          fresh: interaction.authentication !== undefined,
          reaching: methodsReaching(methods, step.acr),
          hasPassword: methods.password,
          accountHref: `${base}/account`,
        };
      }

      async function showSecondFactor(
        ctx: Context,
        request: FastifyRequest,
        reply: FastifyReply,
        interaction: Interaction,
        pending: PendingSignIn,
        view: { status: number; error?: string; errorField?: 'totp' | 'recovery_code'; headers?: Record<string, string> },
      ): Promise<FastifyReply> {
        const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
        const client = await ctx.clients.get(interaction.clientId);
        return sendPage(reply, {
          status: view.status,
          csp: 'form',
          page: secondFactorPage({
            base,
            action: paths.secondFactor(interaction.id),
            csrfToken: csrfToken(csrf.secret, interaction.id, 'second_factor'),
            clientName: client?.metadata.client_name ?? interaction.clientId,
            username: pending.user.username,
            recoveryAllowed: !holdsPrivilegedRole(JSON.parse(pending.user.roles) as string[]),
            ...(view.error ? { error: view.error, errorField: view.errorField === 'recovery_code' ? 'recovery_code' : 'code' } : {}),
          }),
          ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
          ...(view.headers ? { headers: view.headers } : {}),
        });
      }
    },
  };
}

const loginNotices: Record<'no_session' | 'prompt_login' | 'max_age' | 'acr', string | undefined> = {
  no_session: undefined,
  prompt_login: 'The application asks you to sign in again.',
  max_age: 'Your last sign-in was too long ago for this application. Sign in again.',
  // The page says what the level needs, and how the person signed in (loginPage's step-up variant).
  acr: undefined,
};

/** A verified sign-in, as the session starts from it: an upstream's also names its source of assurance. */
export interface SignInLogin {
  user: { id: string };
  acr: string;
  amr: string[];
  risk?: RiskAssessment;
  assurance?: UpstreamAssurance;
  /** The upstream's session id, kept with the session for its back-channel logout. */
  upstreamSid?: string;
  /** When the upstream says the person authenticated (seconds): the session's auth_time. */
  authTime?: number;
}

/** Adds a verified sign-in's session to its transaction, recorded on the interaction. */
export type SignInSession = (request: FastifyRequest, interaction: Interaction, flight: Flight, login: SignInLogin) => Promise<{ started: StartedSession; recorded: Promise<boolean> }>;

/** After the sign-in's transaction committed: the cookies, and 303 to where the protocol side sends the person. */
export type SignInCommitted = (request: FastifyRequest, reply: FastifyReply, interaction: Interaction, value: { started: StartedSession; recorded: Promise<boolean> }, risk: SignInRisk) => Promise<FastifyReply>;

/** Interaction ids are opaque to this side; anything not shaped like one is unknown without a lookup. */
const interactionIdPattern = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The request's interaction and what `also` reads with it (the session, the account of a login),
 * sent together: one round trip. `also`'s answer is for the caller to await, after checking the
 * interaction.
 */
async function loadInteractionWith<T>(
  ctx: Context,
  flow: InteractionFlow,
  request: FastifyRequest<{ Params: { id: string } }>,
  also: (flight: Flight) => T,
): Promise<[Interaction | undefined, T]> {
  const flight = ctx.storage.flight();
  const interaction = loadInteraction(ctx, flow, request, request.params.id, flight);
  const other = also(flight);
  if (other instanceof Promise) other.catch(() => undefined); // awaited by the caller, unless the interaction is gone
  await flight.send();
  return [await interaction, other];
}

async function loadInteraction(ctx: Context, flow: InteractionFlow, request: FastifyRequest, id: string, flight?: Flight): Promise<Interaction | undefined> {
  if (!interactionIdPattern.test(id)) return undefined;
  // Only the browser that started the authorization request may sign in or consent on it.
  const interaction = await flow.loadInteraction(ctx, id, { id: presentedBrowserId(ctx, request) }, flight);
  // The protocol side says undefined for expired ones; checked here too, as the contract defines expiresAt.
  if (!interaction || interaction.expiresAt * 1000 <= ctx.clock.now()) return undefined;
  return interaction;
}

/**
 * The form of a POST, if it carries this browser's CSRF token for this interaction and form, and
 * no foreign Origin. `Origin: null` is what browsers send for a form POST from a page with
 * Referrer-Policy no-referrer (Fetch §3.1 "serializing a request origin"), so it is accepted; the
 * token decides.
 */
function checkedForm(ctx: Context, request: FastifyRequest<{ Params: { id: string } }>, purpose: CsrfPurpose) {
  const form = request.form;
  if (!form) return undefined;
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== 'null' && origin !== new URL(ctx.config.issuer).origin) return undefined;
  if (form.all(csrfField).length !== 1) return undefined;
  if (!csrfTokenValid(ctx.config.issuer, request.headers.cookie, request.params.id, purpose, form.get(csrfField))) return undefined;
  return form;
}

function forbidden(ctx: Context, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendErrorPage(ctx, request, reply, {
    status: 403,
    title: 'This form has expired',
    message: 'The form could not be checked, so nothing was changed. Make sure cookies are allowed for this site, then return to the application and start again.',
  });
}

function interactionGone(ctx: Context, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendErrorPage(ctx, request, reply, {
    status: 400,
    title: 'This sign-in request has ended',
    message: 'It has expired or is not valid. Return to the application and start again.',
  });
}

/** The interaction endpoints as the server registers them, on the protocol side's interactions. */
export const interaction: Endpoint = interactionEndpoint(interactions);
