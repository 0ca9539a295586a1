import { adminOperation } from '../../admin/authorize.ts';
import { pathParams } from '../../http/api-operation.ts';
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
    app.get(`${base}/entities`, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: 'List the legal entities (with desks and accounts) and the reference lists (regions, venues, instrument classes)',
    }), async () => {
      const s = await ctx.entities.snapshot();
      return {
        legal_entities: [...s.legalEntities.values()],
        regions: [...s.regions.values()],
        venues: [...s.venues.values()],
        instrument_classes: [...s.instrumentClasses.values()],
      };
    });
    app.get<{ Params: { lei: string } }>(`${base}/entities/:lei`, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: 'Read one legal entity',
      params: pathParams({ lei: "the legal entity's LEI" }),
    }), async (request) => {
      const entity = (await ctx.entities.snapshot()).legalEntities.get(request.params.lei);
      if (!entity) throw new OAuthError('not_found', 'no such legal entity');
      return entity;
    });

    app.get(`${base}/policies`, adminOperation(ctx, 'admin:read', { tag: 'directory', summary: 'List the policy set versions (without their text), the active one flagged' }), async () => ({
      policies: (await ctx.policies.list()).map(view),
    }));
    app.get<{ Params: { version: string } }>(`${base}/policies/:version`, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: 'Read one policy set version, with its text',
      params: pathParams({ version: 'the version' }),
    }), async (request) => {
      const version = await ctx.policies.get(request.params.version);
      if (!version) throw new OAuthError('not_found', 'no such policy set version');
      return { ...view(version), text: version.text };
    });
  },
};

function view<T extends { created_at: number; activated_at: number | null }>(v: T): Omit<T, 'created_at' | 'activated_at'> & { created_at: string; activated_at: string | null } {
  return { ...v, created_at: new Date(v.created_at).toISOString(), activated_at: v.activated_at === null ? null : new Date(v.activated_at).toISOString() };
}
