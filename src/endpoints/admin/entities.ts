import { adminOperation } from '../../admin/authorize.ts';
import { pathParams } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The entity model in the admin API, read only (admin:read); it is written with `clearance apply`
 * (sections legal_entities, regions, venues, instrument_classes). Policy set versions: ./policies.ts.
 *
 * - GET /admin/entities: every legal entity (with desks and accounts) and the reference lists
 * - GET /admin/entities/{lei}: one legal entity
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
  },
};
