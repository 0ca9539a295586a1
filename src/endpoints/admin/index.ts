import { requireAdmin } from '../../admin/authorize.ts';
import { executeApply, planApply } from '../../apply/index.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The admin API for clients and resource servers, authorized by Clearance's own access tokens
 * for `<issuer>/admin` (admin:read to read, admin:write to change). Writes go through the same
 * validation and transaction as `clearance apply`, so both paths enforce the same rules.
 */
export const admin: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin`;
    const read = { preHandler: requireAdmin(ctx, 'admin:read') };
    const write = { preHandler: requireAdmin(ctx, 'admin:write') };

    app.get(`${base}/clients`, read, async () => ({ clients: (await ctx.clients.list()).map((c) => c.metadata) }));
    app.get<{ Params: { id: string } }>(`${base}/clients/:id`, read, async (request) => {
      const client = await ctx.clients.get(request.params.id);
      if (!client) throw new OAuthError('not_found', 'no such client');
      return client.metadata;
    });
    app.put<{ Params: { id: string } }>(`${base}/clients/:id`, write, async (request) => {
      const body = request.body as Record<string, unknown> | undefined;
      if (body?.client_id !== undefined && body.client_id !== request.params.id) {
        throw new OAuthError('invalid_request', 'client_id in the body differs from the path');
      }
      const result = await applyOne(ctx, { clients: [{ ...body, client_id: request.params.id }] }, request.admin!.client_id);
      const client = await ctx.clients.get(request.params.id);
      const secret = result.secrets[request.params.id];
      return { ...client!.metadata, ...(secret ? { client_secret: secret } : {}), outcome: result.changes[0]!.outcome };
    });

    app.get(`${base}/resource-servers`, read, async () => ({ resource_servers: await ctx.resourceServers.list() }));
    // Partner trust profiles (src/federation); written only through the partners section of apply.
    app.get(`${base}/partners`, read, async () => ({ partners: await ctx.partners.list() }));
    app.put(`${base}/resource-servers`, write, async (request) => {
      const result = await applyOne(ctx, { resource_servers: [request.body] }, request.admin!.client_id);
      return { ...(await ctx.resourceServers.get(result.changes[0]!.id)), outcome: result.changes[0]!.outcome };
    });
  },
};

async function applyOne(ctx: Context, document: Record<string, unknown[]>, actor: string) {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) throw new OAuthError('invalid_request', problems.map(formatProblem).join('; '));
  return executeApply(ctx, plan, { actor, via: 'admin-api' });
}
