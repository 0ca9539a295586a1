import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Interaction } from '../../authorization/contract.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { IdentityProvider } from '../../federation/upstream/definition.ts';
import type { UpstreamIdentity } from '../../federation/upstream/oidc.ts';
import type { UpstreamAsk } from '../../federation/upstream/freshness.ts';
import { asSaml, findProvider } from '../../federation/upstream/providers.ts';
import { SamlError, serviceProviderMetadata, validateSamlResponse } from '../../federation/upstream/saml.ts';
import { consumeUpstreamLogin, keepUpstreamResult, openUpstreamLoginOf, spoilUpstreamLogin } from '../../federation/upstream/upstream-logins.ts';
import type { Context } from '../../context.ts';
import { auditableDetail } from '../../federation/upstream/detail.ts';
import { guarded, seeOther } from '../../ui/respond.ts';
import { presentedBrowserId } from '../authorize/index.ts';
import { notVerified, providerOff, single, startAgain, type Refuse } from './upstream.ts';

/**
 * Signing in through an upstream SAML 2.0 IdP (src/federation/upstream/saml.ts, docs/identity-brokering.md).
 * The sign-in starts as an OpenID Connect one does (POST /interaction/{id}/upstream, ./upstream.ts),
 * with a signed AuthnRequest by the HTTP-Redirect binding and the state as RelayState.
 *
 * GET /broker/saml/metadata: the SP metadata (entityID <issuer>/broker/saml, the ACS, the key
 *   that signs requests and decrypts assertions) for the IdP's administrator.
 *
 * POST /broker/saml/acs (HTTP-POST binding; a cross-site POST, which brings no SameSite=Lax cookie)
 *   1. the RelayState names an open sign-in (not taken, not expired, no answer yet), else 400 and
 *      `upstream.sign_in_refused` (unknown_state);
 *   2. its provider still an enabled SAML IdP, else 403 (provider_disabled);
 *   3. the response verified (src/federation/upstream/saml.ts: signatures, issuer, Destination, Recipient,
 *      audience, times, InResponseTo the id this sign-in's request carried), else 401
 *      (invalid_assertion) and the sign-in spoiled;
 *   4. the assertion's ID used once (the shared replay cache, every node), else 401
 *      (replayed_assertion);
 *   5. the verified identity kept on the sign-in, and 303 to GET /broker/saml/continue.
 * GET /broker/saml/continue?state=… (a top-level GET: the browser's cookies come with it)
 *   the sign-in taken once by the browser that left (as the OpenID Connect callback), its kept
 *   answer, then as any upstream sign-in from the person on (./upstream.ts finishUpstreamSignIn).
 */
export interface SamlRoutes {
  base: string;
  loadInteraction(request: FastifyRequest, id: string): Promise<Interaction | undefined>;
  interactionGone(request: FastifyRequest, reply: FastifyReply): FastifyReply;
  refusal(request: FastifyRequest, reply: FastifyReply): Refuse;
  /** `sentAt`: when the sign-in was opened and the browser sent to the IdP (ms); `asked`: what the IdP was asked then (ForceAuthn for a renewal or a max age). */
  finish(request: FastifyRequest, reply: FastifyReply, interaction: Interaction, provider: IdentityProvider, identity: UpstreamIdentity, sentAt: number, asked: UpstreamAsk | undefined): Promise<FastifyReply>;
}

const skewMs = 30_000;

export function registerSamlRoutes(app: FastifyInstance, ctx: Context, routes: SamlRoutes): void {
  app.get(`${routes.base}/broker/saml/metadata`, async (request, reply) =>
    guarded(ctx, request, reply, async () =>
      reply.code(200).header('content-type', 'application/samlmetadata+xml; charset=utf-8').header('cache-control', 'no-cache').send(await serviceProviderMetadata(ctx)),
    ),
  );

  app.post(`${routes.base}/broker/saml/acs`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const refuse = routes.refusal(request, reply);
      const state = request.form?.get('RelayState') ?? '';
      const samlResponse = request.form?.get('SAMLResponse');
      const login = await openUpstreamLoginOf(ctx, state);
      if (!login || !samlResponse) return refuse(400, login ? 'missing_response' : 'unknown_state', startAgain);
      const stored = asSaml(await findProvider(ctx.storage.db, login.providerId));
      const base: Partial<AuditEvent> = { requestId: request.id };
      if (!stored?.provider.enabled) {
        await spoilUpstreamLogin(ctx, state);
        return refuse(403, 'provider_disabled', providerOff, base, { provider: login.providerId });
      }
      const provider = stored.provider;
      const about = { provider: provider.id, issuer: provider.issuer };
      let verified;
      try {
        verified = await validateSamlResponse(ctx, provider, login.secrets, samlResponse);
      } catch (error) {
        if (!(error instanceof SamlError)) throw error;
        await spoilUpstreamLogin(ctx, state);
        request.log.info({ provider: provider.id, detail: error.message }, 'SAML response refused');
        return refuse(401, 'invalid_assertion', notVerified(provider.name), base, { ...about, detail: auditableDetail(error.message) });
      }
      // SAML Profiles §4.1.4.5: an assertion is used once, on every node (the shared replay cache).
      if (!(await ctx.partners.replay.use(`saml:${provider.id}:${verified.assertionId}`.slice(0, 512), verified.notOnOrAfter + skewMs))) {
        await spoilUpstreamLogin(ctx, state);
        return refuse(401, 'replayed_assertion', notVerified(provider.name), base, about);
      }
      if (!(await keepUpstreamResult(ctx, state, JSON.stringify(verified.identity)))) return refuse(400, 'replayed', startAgain, base, about);
      return seeOther(reply, `${ctx.config.issuer}/broker/saml/continue?state=${encodeURIComponent(state)}`);
    }),
  );

  app.get<{ Querystring: Record<string, string | string[] | undefined> }>(`${routes.base}/broker/saml/continue`, async (request, reply) =>
    guarded(ctx, request, reply, async () => {
      const refuse = routes.refusal(request, reply);
      const state = single(request.query.state);
      if (state === undefined) return refuse(400, 'missing_state', startAgain);
      const login = await consumeUpstreamLogin(ctx, state, presentedBrowserId(ctx, request));
      if (!login.ok) return refuse(400, login.reason, startAgain);
      // Only a SAML answer the ACS kept (not a pending link of src/federation/upstream/local-link.ts).
      const kept = login.result === undefined ? undefined : (JSON.parse(login.result) as Partial<UpstreamIdentity> & { link?: boolean });
      if (!kept || kept.link || typeof kept.claims !== 'object') return refuse(400, 'no_answer', startAgain);
      const interaction = await routes.loadInteraction(request, login.interactionId);
      if (!interaction) return routes.interactionGone(request, reply);
      const stored = asSaml(await findProvider(ctx.storage.db, login.providerId));
      if (!stored?.provider.enabled) {
        return refuse(403, 'provider_disabled', providerOff, { requestId: request.id, client: interaction.clientId }, { provider: login.providerId });
      }
      return routes.finish(request, reply, interaction, stored.provider, kept as UpstreamIdentity, login.sentAt, login.asked);
    }),
  );
}
