import type { FastifyReply, FastifyRequest } from 'fastify';
import { decideLogout } from '../../authorization/logout.ts';
import { AuthorizationParameters } from '../../authorization/parameters.ts';
import type { Context } from '../../context.ts';
import { clearSessionCookie, endSession, readSession } from '../../identity/sessions.ts';
import { FormParameters } from '../../parameters.ts';
import { html } from '../../ui/html.ts';
import { layout } from '../../ui/layout.ts';
import { sendErrorPage, sendPage } from '../../ui/respond.ts';
import { csrfBinding, csrfField, csrfToken, csrfTokenValid } from '../../ui/csrf.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { asOidc, asSaml, findProvider } from '../../federation/upstream/providers.ts';
import { samlLogoutUrl } from '../../federation/upstream/saml.ts';
import type { SamlProvider } from '../../federation/upstream/definition.ts';
import type { Authentication } from '../../authorization/contract.ts';
import { continuationState, upstreamEndSessionUrl } from '../../federation/upstream/logout.ts';

/**
 * The end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0). GET or POST /logout with
 * id_token_hint, client_id, post_logout_redirect_uri and state; the decisions are in
 * src/authorization/logout.ts. A confirmation is a POST of the same parameters with `confirm` and
 * the confirm page's CSRF token (src/ui/csrf.ts, bound to the session), with no foreign Origin:
 * `Origin: null` is what a browser sends from that page, whose Referrer-Policy is no-referrer
 * (Fetch "append a request Origin header"), so the token decides, as on the sign-in forms. The
 * session cookie is SameSite=Lax besides, so a cross-site POST carries no session to end. The session ends through the people side's
 * endSession; the cookie is cleared; then a 303 to the registered post-logout URI, or a page — or,
 * for a session an upstream identity provider started, first to the upstream's end_session_endpoint
 * (src/federation/upstream/logout.ts), which sends the browser back through /broker/oidc/logged-out.
 */
export const logout: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/logout`;
    app.get(path, async (request, reply) => {
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
      return handle(ctx, request, reply, new FormParameters(query), 'get');
    });
    app.post(path, async (request, reply) => handle(ctx, request, reply, request.form ?? new FormParameters(''), 'post'));
  },
  metadata: (ctx) => ({ end_session_endpoint: `${ctx.config.issuer}/logout` }),
};

async function handle(ctx: Context, request: FastifyRequest, reply: FastifyReply, form: FormParameters, method: 'get' | 'post'): Promise<FastifyReply> {
  const params = AuthorizationParameters.fromForm(form, 'query');
  const session = await readSession(ctx, request.headers.cookie);
  const confirmed = method === 'post' && session !== undefined && confirmedHere(ctx, request, form, session);
  const decision = await decideLogout(ctx, params, { session, confirmed });
  const base = issuerPath(ctx.config.issuer);
  switch (decision.kind) {
    case 'error':
      return sendErrorPage(ctx, request, reply, { status: 400, title: 'Sign-out request refused', message: decision.message });
    case 'confirm': {
      const hidden = ['id_token_hint', 'client_id', 'post_logout_redirect_uri', 'state']
        .map((name) => [name, form.get(name)] as const)
        .filter((entry): entry is readonly [string, string] => entry[1] !== undefined);
      // A confirmation is asked only of a signed-in browser (decideLogout).
      const csrf = csrfBinding(ctx.config.issuer, request.headers.cookie);
      hidden.push([csrfField, csrfToken(csrf.secret, session!.sessionId, 'logout')]);
      return sendPage(reply, {
        status: 200,
        csp: 'form',
        ...(csrf.setCookie ? { setCookie: [csrf.setCookie] } : {}),
        page: layout({
          title: 'Sign out',
          base,
          body: html`<h1>Sign out</h1>
<p>Do you want to sign out of Clearance?</p>
<form method="post" action="${base}/logout">
${hidden.map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<input type="hidden" name="confirm" value="yes">
<button type="submit">Sign out</button>
</form>`,
        }),
      });
    }
    case 'done': {
      if (decision.endSession) {
        await endSession(ctx, decision.endSession);
        reply.header('set-cookie', clearSessionCookie(ctx));
        // A session an upstream identity provider started: on to its own sign-out, then back
        // (/broker/oidc/logged-out) to where the relying party asked to land.
        const stored = session?.assurance && (await findProvider(ctx.storage.db, session.assurance.provider));
        const oidcUpstream = asOidc(stored || undefined);
        const samlUpstream = asSaml(stored || undefined);
        const onward =
          oidcUpstream?.provider.enabled
            ? await upstreamEndSessionUrl(ctx, oidcUpstream, decision.redirect)
            : samlUpstream?.provider.enabled && session
              ? await samlSignOut(ctx, samlUpstream.provider, session, decision.redirect)
              : undefined;
        if (onward) return reply.code(303).header('location', onward).header('cache-control', 'no-store').send();
      }
      if (decision.redirect) return reply.code(303).header('location', decision.redirect).send();
      return sendPage(reply, {
        status: 200,
        csp: 'static',
        page: layout({ title: 'Signed out', base, body: html`<h1>Signed out</h1>\n<p>You are signed out of Clearance. You can close this window.</p>` }),
      });
    }
  }
}

/**
 * A confirmation from our own confirm page for this session: `confirm=yes`, exactly one CSRF token,
 * valid for this browser's secret and this session, and no foreign Origin (`null` is our page's).
 */
function confirmedHere(ctx: Context, request: FastifyRequest, form: FormParameters, session: Authentication): boolean {
  if (form.get('confirm') !== 'yes') return false;
  const origin = request.headers.origin;
  if (origin !== undefined && origin !== 'null' && origin !== new URL(ctx.config.issuer).origin) return false;
  if (form.all(csrfField).length !== 1) return false;
  return csrfTokenValid(ctx.config.issuer, request.headers.cookie, session.sessionId, 'logout', form.get(csrfField));
}

/** A SAML IdP's session: on to its single logout with the person's NameID and SessionIndex, back through /broker/saml/slo. */
async function samlSignOut(ctx: Context, provider: SamlProvider, session: Authentication, landing: string | undefined): Promise<string | undefined> {
  const [link, row] = await Promise.all([
    ctx.storage.db.selectFrom('user_links').select('subject').where('issuer', '=', provider.issuer).where('user_id', '=', session.userId).executeTakeFirst(),
    ctx.storage.db.selectFrom('sessions').select('upstream_sid').where('id', '=', session.sessionId).executeTakeFirst(),
  ]);
  if (!link) return undefined;
  return samlLogoutUrl(ctx, provider, { nameId: link.subject, ...(row?.upstream_sid ? { sessionIndex: row.upstream_sid } : {}) }, continuationState(ctx, landing));
}
