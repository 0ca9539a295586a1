import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Interaction } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { SignInRisk } from '../../identity/login-risk.ts';
import { verifyCertificateLogin, type CertificateLoginFailure } from '../../identity/certificates/login.ts';
import { presentedCertificate } from '../../identity/certificates/presented.ts';
import { guarded } from '../../ui/respond.ts';
import type { SignInCommitted, SignInSession } from './index.ts';

/**
 * Signing in with a client certificate — a smart card, or a certificate in software
 * (src/identity/certificates, docs/certificate-sign-in.md).
 *
 * POST /interaction/{id}/certificate (the sign-in page's "Sign in with your smart card")
 *   1. a missing or wrong CSRF token (the sign-in form's), or a cross-site Origin → 403 page;
 *   2. an unknown, expired or other browser's interaction → error page (400);
 *   3. the certificate is `request.clientCertificate` (src/http/client-certificate.ts): from
 *      Clearance's own TLS listener, or from the configured header only from a trusted proxy;
 *      certificate sign-in not set up, or no certificate → the sign-in page again saying so (400);
 *   4. verifyCertificateLogin (throttle, a forged proxy header refused, chain to a trusted
 *      authority, dates, usage, revocation, the person by the mapping rules, active, the sign-in's
 *      risk, audit): throttled → 429 with Retry-After; any failure → the sign-in page with what
 *      the person may know about their certificate (untrusted, expired, revoked, a device's,
 *      not checkable now → 503), and one message for every reason about the account (401);
 *   5. as a password sign-in from here: the session at the certificate's level (acr
 *      `urn:clearance:acr:phrh` for a smart card, `:pwd` for a software certificate), recorded on
 *      the interaction in the sign-in's transaction, then 303 to consent or resume.
 */
export interface CertificateRoutes {
  base: string;
  /** The sign-in page again, with an error (and headers). */
  showLogin(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, view: { status: number; error: string; headers?: Record<string, string> }): Promise<FastifyReply>;
  loadInteraction(request: FastifyRequest, id: string): Promise<Interaction | undefined>;
  checkedLoginForm(request: FastifyRequest<{ Params: { id: string } }>): unknown;
  forbidden(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  interactionGone(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  riskOf(request: FastifyRequest, interaction: Interaction): SignInRisk;
  session: SignInSession;
  signedIn: SignInCommitted;
}

/** Where the sign-in page's certificate form posts. */
export function certificateAction(base: string, interactionId: string): string {
  return `${base}/interaction/${encodeURIComponent(interactionId)}/certificate`;
}

export function registerCertificateRoute(app: FastifyInstance, ctx: Context, routes: CertificateRoutes): void {
  app.post<{ Params: { id: string } }>(`${routes.base}/interaction/:id/certificate`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      if (!routes.checkedLoginForm(request)) return routes.forbidden(request, reply);
      const interaction = await routes.loadInteraction(request, request.params.id);
      if (!interaction) return routes.interactionGone(request, reply);
      const risk = routes.riskOf(request, interaction);
      const outcome = await verifyCertificateLogin(
        ctx,
        { presented: presentedCertificate(ctx.config, request), sourceAddress: request.ip, requestId: request.id, clientId: interaction.clientId, risk },
        (flight, login) => routes.session(request, interaction, flight, login),
      );
      if (outcome.ok) return routes.signedIn(request, reply, interaction, outcome.value, risk);
      if (outcome.reason === 'throttled') {
        return routes.showLogin(request, reply, interaction, {
          status: 429,
          error: 'Too many failed sign-in attempts. Wait a few minutes, then try again.',
          headers: { 'retry-after': String(outcome.retryAfterSeconds ?? 60) },
        });
      }
      if (outcome.reason === 'proxy_header_untrusted') request.log.warn({ reason: outcome.reason, address: request.ip }, 'a client certificate header came from an address that is not a trusted proxy');
      return routes.showLogin(request, reply, interaction, refusalPage[outcome.reason]);
    }),
  );
}

const anotherWay = 'or choose another way to sign in below';
const notAccepted = { status: 401, error: `Your certificate could not be used to sign you in. Ask your administrator, ${anotherWay}.` };

/**
 * What the page says for each refusal: what the person may know about the certificate they hold,
 * and one message for every reason about the account (it exists or not, is locked, is shared).
 */
const refusalPage: Record<Exclude<CertificateLoginFailure, 'throttled'> | 'not_configured' | 'absent', { status: number; error: string }> = {
  not_configured: { status: 400, error: 'Signing in with a smart card is not set up here. Choose another way to sign in below.' },
  absent: {
    status: 400,
    error: `Your browser did not present a certificate. Insert your smart card and try again (your browser may ask you to choose a certificate and enter the card’s PIN), ${anotherWay}.`,
  },
  proxy_header_untrusted: { status: 400, error: `Your certificate did not reach Clearance through its trusted proxy, so it was not used. Ask your administrator, ${anotherWay}.` },
  untrusted: { status: 401, error: `Your certificate is not from an authority that signs people in here, ${anotherWay}.` },
  not_a_person_profile: { status: 401, error: `Your certificate is not one that signs a person in, ${anotherWay}.` },
  device_certificate: {
    status: 401,
    error: `The certificate your browser presented identifies this computer, not you. Choose your personal certificate when your browser asks (restart the browser to be asked again), ${anotherWay}.`,
  },
  not_for_client_auth: { status: 401, error: `Your certificate is not one that can be used to sign in, ${anotherWay}.` },
  software_refused: { status: 401, error: `Only a certificate on a smart card signs you in here, and this one is not, ${anotherWay}.` },
  expired: { status: 401, error: `Your certificate has expired. Ask your administrator for a new one, ${anotherWay}.` },
  not_yet_valid: { status: 401, error: `Your certificate is not valid yet. Check your computer’s clock, ${anotherWay}.` },
  revoked: { status: 401, error: `Your certificate has been revoked, so it no longer signs you in. Ask your administrator, ${anotherWay}.` },
  revocation_unknown: { status: 401, error: `Your certificate authority does not know this certificate, so it cannot sign you in. Ask your administrator, ${anotherWay}.` },
  revocation_unavailable: { status: 503, error: `Whether your certificate is still valid could not be checked just now. Try again in a few minutes, ${anotherWay}.` },
  unmapped: notAccepted,
  ambiguous: notAccepted,
  locked: notAccepted,
  account_changed: { status: 401, error: `Your account changed while you were signing in. Sign in again, ${anotherWay}.` },
  suspended: notAccepted,
  risk_denied: notAccepted,
  risk_step_up_unavailable: notAccepted,
};
