import { requireAdmin } from '../../admin/authorize.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The entity model and the policy set versions in the admin API, read only (admin:read); they are
 * written with `clearance apply` (sections legal_entities, regions, venues, instrument_classes,
 * policies) and activated with `clearance policy activate`.
 *
 * - GET /admin/entities: every legal entity (with desks and accounts) and the reference lists
 * - GET /admin/entities/{lei}: one legal entity
 * - GET /admin/policies: every policy set version (without its text), the active one flagged
 * - GET /admin/policies/{version}: one version with its text
 */
export const adminEntities: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin`;
    const read = { preHandler: requireAdmin(ctx, 'admin:read') };

    app.get(`${base}/entities`, read, async () => {
      const s = await ctx.entities.snapshot();
      return {
        legal_entities: [...s.legalEntities.values()],
        regions: [...s.regions.values()],
        venues: [...s.venues.values()],
        instrument_classes: [...s.instrumentClasses.values()],
      };
    });
    app.get<{ Params: { lei: string } }>(`${base}/entities/:lei`, read, async (request) => {
      const entity = (await ctx.entities.snapshot()).legalEntities.get(request.params.lei);
      if (!entity) throw new OAuthError('not_found', 'no such legal entity');
      return entity;
    });

    app.get(`${base}/policies`, read, async () => ({ policies: (await ctx.policies.list()).map(view) }));
    app.get<{ Params: { version: string } }>(`${base}/policies/:version`, read, async (request) => {
      const version = await ctx.policies.get(request.params.version);
      if (!version) throw new OAuthError('not_found', 'no such policy set version');
      return { ...view(version), text: version.text };
    });
  },
};

function view<T extends { created_at: number; activated_at: number | null }>(v: T): Omit<T, 'created_at' | 'activated_at'> & { created_at: string; activated_at: string | null } {
  return { ...v, created_at: new Date(v.created_at).toISOString(), activated_at: v.activated_at === null ? null : new Date(v.activated_at).toISOString() };
}
