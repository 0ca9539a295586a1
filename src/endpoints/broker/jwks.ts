import { listProviders, asOidc, providerPublicJwk } from '../../federation/upstream/providers.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * GET /broker/oidc/jwks: the public keys Clearance signs its client assertions with at upstream
 * OpenID Providers that take `private_key_jwt` (RFC 7523 §2.2; docs/identity-brokering.md) — one
 * per such provider, kid `upstream-<id>`. Register this URL at the upstream as the client's
 * `jwks_uri`. Separate from /jwks: those keys sign Clearance's tokens, these only its assertions.
 */
export const brokerJwks: Endpoint = {
  register(app, ctx) {
    app.get(`${issuerPath(ctx.config.issuer)}/broker/oidc/jwks`, async (_request, reply) => {
      const keys = (await listProviders(ctx.storage.db))
        .flatMap((stored) => {
          const oidcProvider = asOidc(stored);
          return oidcProvider?.provider.enabled ? [providerPublicJwk(ctx.identity.factorKeys.master, oidcProvider)] : [];
        })
        .filter((jwk) => jwk !== undefined);
      return reply.code(200).header('content-type', 'application/jwk-set+json').header('cache-control', 'public, max-age=300').send(JSON.stringify({ keys }));
    });
  },
};
