import { issuerPath, type Endpoint } from '../endpoint.ts';

/** JWKS caching must stay shorter than the rotation overlap, or verifiers miss a new key. */
export function jwksMaxAge(keyOverlapSeconds: number): number {
  return Math.max(0, Math.min(300, Math.floor(keyOverlapSeconds / 2)));
}

/** The JWK Set of every published signing key (RFC 7517 §5); public members only. */
export const jwks: Endpoint = {
  register(app, ctx) {
    const maxAge = jwksMaxAge(ctx.config.keyOverlapSeconds);
    app.get(`${issuerPath(ctx.config.issuer)}/jwks`, async (_request, reply) => {
      reply
        .type('application/jwk-set+json; charset=utf-8')
        .header('cache-control', `public, max-age=${maxAge}`)
        .header('access-control-allow-origin', '*');
      return ctx.keys.jwks();
    });
  },
  metadata: (ctx) => ({ jwks_uri: `${ctx.config.issuer}/jwks` }),
};
