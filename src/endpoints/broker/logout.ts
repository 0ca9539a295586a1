import { backChannelLogout, continuationTarget, endUpstreamPeople, type LogoutOutcome } from '../../federation/upstream/logout.ts';
import { asSaml, listProviders } from '../../federation/upstream/providers.ts';
import { SamlError, verifySamlLogoutRequest, verifySamlLogoutResponse } from '../../federation/upstream/saml.ts';
import { auditableDetail } from '../../federation/upstream/detail.ts';
import { clearSessionCookie } from '../../identity/sessions.ts';
import { sendError } from '../../http/errors.ts';
import { recordRefusal } from '../../audit/refusals.ts';
import { OAuthError } from '../../oauth-error.ts';
import { html } from '../../ui/html.ts';
import { layout } from '../../ui/layout.ts';
import { guarded, seeOther, sendErrorPage, sendPage } from '../../ui/respond.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { single } from '../interaction/upstream.ts';

/**
 * Logout across the federation (src/federation/upstream/logout.ts, docs/identity-brokering.md "Logout").
 *
 * POST /broker/oidc/backchannel-logout (OpenID Connect Back-Channel Logout 1.0; register it at the
 *   upstream as the client's backchannel_logout_uri): a verified logout token ends everything the
 *   people it names hold → 200, no-store; anything else → 400 `invalid_request` JSON (§2.8) and
 *   `upstream.logout_refused` with why.
 *
 * GET /broker/saml/slo (SAML single logout, HTTP-Redirect binding; in the SP metadata): an IdP's
 *   LogoutRequest, signed (required) by one of its certificates, ends everything the person it
 *   names (NameID, SessionIndex) holds, once per request id; the browser's session cookie is
 *   cleared and it goes back to the IdP's SLO URL with a LogoutResponse (or Clearance's signed-out
 *   page). A request that does not verify → 400 page and `upstream.logout_refused`.
 *
 * GET /broker/oidc/logged-out (the upstream's post-logout redirect after an RP-initiated logout that
 *   Clearance passed on, src/endpoints/logout): its `state` verified (HMAC, ten minutes) → 303 to
 *   the relying party's post-logout URI, or the signed-out page; else an error page (400).
 */
export const brokerLogout: Endpoint = {
  register(app, ctx) {
    const base = issuerPath(ctx.config.issuer);
    app.post(`${base}/broker/oidc/backchannel-logout`, async (request, reply) => {
      try {
        const token = request.form?.get('logout_token');
        const outcome: LogoutOutcome = token ? await backChannelLogout(ctx, token, request.id) : { ok: false, reason: 'no logout_token' };
        if (outcome.ok) return reply.code(200).header('cache-control', 'no-store').send();
        await recordRefusal(ctx, {
          type: 'upstream.logout_refused',
          requestId: request.id,
          address: request.ip,
          error: 'invalid_request',
          reason: 'invalid_logout_token',
          details: { detail: auditableDetail(outcome.reason), source_address: request.ip, ...(outcome.provider ? { provider: outcome.provider } : {}) },
        });
        return sendError(reply, new OAuthError('invalid_request', 'the logout token is not valid'));
      } catch (error) {
        request.log.error({ err: error }, 'back-channel logout failed');
        return sendError(reply, new OAuthError('server_error', 'the logout could not be completed'));
      }
    });

    app.get(`${base}/broker/saml/slo`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const at = request.url.indexOf('?');
        const rawQuery = at >= 0 ? request.url.slice(at + 1) : '';
        const query = Object.fromEntries(new URLSearchParams(rawQuery));
        const signedOut = () => sendPage(reply, { status: 200, csp: 'static', page: layout({ title: 'Signed out', base, body: html`<h1>Signed out</h1>\n<p>You are signed out of Clearance and of your organisation. You can close this window.</p>` }) });
        const providers = (await listProviders(ctx.storage.db)).flatMap((stored) => {
          const saml = asSaml(stored);
          return saml?.provider.enabled ? [saml.provider] : [];
        });
        // The IdP's answer to Clearance's own LogoutRequest (a relying party's sign-out passed on):
        // verified, then on to where the relying party asked to land (the RelayState's continuation).
        if (query.SAMLResponse !== undefined && query.SAMLRequest === undefined) {
          try {
            await verifySamlLogoutResponse(ctx, providers, query, rawQuery);
          } catch (error) {
            if (!(error instanceof SamlError)) throw error;
            request.log.info({ detail: error.message }, 'SAML logout response refused');
            return sendErrorPage(ctx, request, reply, { status: 400, title: 'Signed out of Clearance', message: 'You are signed out of Clearance. Your organisation’s answer could not be verified, so you may still be signed in there: sign out there directly.' });
          }
          const target = continuationTarget(ctx, query.RelayState);
          return target ? seeOther(reply, target) : signedOut();
        }
        let logout;
        try {
          logout = await verifySamlLogoutRequest(ctx, providers, query, rawQuery, query.RelayState);
        } catch (error) {
          if (!(error instanceof SamlError)) throw error;
          await recordRefusal(ctx, {
            type: 'upstream.logout_refused',
            requestId: request.id,
            address: request.ip,
            error: 'invalid_request',
            reason: 'invalid_logout_request',
            details: { detail: auditableDetail(error.message), source_address: request.ip },
          });
          return sendErrorPage(ctx, request, reply, { status: 400, title: 'This sign-out could not be completed', message: 'Your organisation’s sign-out request could not be verified, so nothing was signed out here. Sign out of the application directly.' });
        }
        // SAML Profiles §4.4.3.1: a logout request is used once (the shared replay cache).
        if (await ctx.partners.replay.use(`slo:${logout.provider.id}:${logout.requestId}`.slice(0, 512), ctx.clock.now() + 10 * 60_000)) {
          await endUpstreamPeople(ctx, logout.provider, { subject: logout.nameId, ...(logout.sessionIndex !== undefined ? { sid: logout.sessionIndex } : {}) }, request.id);
        }
        reply.header('set-cookie', clearSessionCookie(ctx));
        const answer = await logout.answer();
        return answer ? seeOther(reply, answer) : signedOut();
      }),
    );

    app.get<{ Querystring: Record<string, string | string[] | undefined> }>(`${base}/broker/oidc/logged-out`, async (request, reply) =>
      guarded(ctx, request, reply, async () => {
        const target = continuationTarget(ctx, single(request.query.state));
        if (target === undefined) {
          return sendErrorPage(ctx, request, reply, { status: 400, title: 'Signed out', message: 'You are signed out of Clearance. This link back from your organisation is not valid any more, so you stay here: you can close this window.' });
        }
        if (target !== null) return seeOther(reply, target);
        return sendPage(reply, { status: 200, csp: 'static', page: layout({ title: 'Signed out', base, body: html`<h1>Signed out</h1>\n<p>You are signed out of Clearance and of your organisation. You can close this window.</p>` }) });
      }),
    );
  },
};
