import { requireAdmin } from '../../admin/authorize.ts';
import { executeApply, planApply } from '../../apply/index.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import type { ResourceServer } from '../../resource-servers/definition.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { acceptMergePatch, patchBody, putBody, type Representation } from './representation.ts';

/**
 * The admin API for clients and resource servers, authorized by Clearance's own access tokens
 * for `<issuer>/admin` (admin:read to read, admin:write to change). Writes go through the same
 * validation and transaction as `clearance apply`, so both paths enforce the same rules, under the
 * admin API's one write rule (./representation.ts): PUT replaces the whole resource (every member
 * it has; 400 naming the missing ones), PATCH changes only what a JSON Merge Patch names.
 *
 * - GET /admin/clients, GET /admin/clients/{id}
 * - PUT /admin/clients/{id}; PATCH /admin/clients/{id} (a generated secret is returned once)
 * - GET /admin/resource-servers
 * - PUT /admin/resource-servers (the identifier in the body); PATCH /admin/resource-servers/{identifier}
 *   (the identifier percent-encoded as one path segment)
 * - GET /admin/partners
 */
export const admin: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin`;
    const read = { preHandler: requireAdmin(ctx, 'admin:read') };
    const write = { preHandler: requireAdmin(ctx, 'admin:write') };
    acceptMergePatch(app);

    app.get(`${base}/clients`, read, async () => ({ clients: (await ctx.clients.list()).map((c) => c.metadata) }));
    app.get<{ Params: { id: string } }>(`${base}/clients/:id`, read, async (request) => {
      const client = await ctx.clients.get(request.params.id);
      if (!client) throw new OAuthError('not_found', 'no such client');
      return client.metadata;
    });
    app.put<{ Params: { id: string } }>(`${base}/clients/:id`, write, async (request) => {
      const body = putBody(request, await clientRepresentation(ctx, request.params.id));
      return writeClient(ctx, request.params.id, body, request.admin!.client_id);
    });
    app.patch<{ Params: { id: string } }>(`${base}/clients/:id`, write, async (request) => {
      const body = patchBody(request, await clientRepresentation(ctx, request.params.id));
      return writeClient(ctx, request.params.id, body, request.admin!.client_id);
    });

    app.get(`${base}/resource-servers`, read, async () => ({ resource_servers: await ctx.resourceServers.list() }));
    // Partner trust profiles (src/federation); written only through the partners section of apply.
    app.get(`${base}/partners`, read, async () => ({ partners: await ctx.partners.list() }));
    app.put(`${base}/resource-servers`, write, async (request) => {
      const identifier = (request.body as Record<string, unknown> | undefined)?.identifier;
      const current = typeof identifier === 'string' ? await ctx.resourceServers.get(identifier) : undefined;
      const body = putBody(request, serverRepresentation(current));
      return writeServer(ctx, body, request.admin!.client_id);
    });
    app.patch<{ Params: { identifier: string } }>(`${base}/resource-servers/:identifier`, write, async (request) => {
      const body = patchBody(request, serverRepresentation(await ctx.resourceServers.get(request.params.identifier)));
      if (body.identifier !== request.params.identifier) throw new OAuthError('invalid_request', 'identifier in the body differs from the path');
      return writeServer(ctx, body, request.admin!.client_id);
    });
  },
};

async function clientRepresentation(ctx: Context, clientId: string): Promise<Representation> {
  const current = (await ctx.clients.get(clientId))?.metadata as Record<string, unknown> | undefined;
  return { name: 'client', current, writable: Object.keys(current ?? {}).filter((m) => m !== 'client_id') };
}

async function writeClient(ctx: Context, clientId: string, body: Record<string, unknown>, actor: string) {
  if (body.client_id !== undefined && body.client_id !== clientId) {
    throw new OAuthError('invalid_request', 'client_id in the body differs from the path');
  }
  const result = await applyOne(ctx, { clients: [{ ...body, client_id: clientId }] }, actor);
  const client = await ctx.clients.get(clientId);
  const secret = result.secrets[clientId];
  return { ...client!.metadata, ...(secret ? { client_secret: secret } : {}), outcome: result.changes[0]!.outcome };
}

function serverRepresentation(server: ResourceServer | undefined): Representation {
  const current = server as Record<string, unknown> | undefined;
  return { name: 'resource server', current, writable: Object.keys(current ?? {}).filter((m) => m !== 'identifier') };
}

async function writeServer(ctx: Context, body: Record<string, unknown>, actor: string) {
  const result = await applyOne(ctx, { resource_servers: [body] }, actor);
  return { ...(await ctx.resourceServers.get(result.changes[0]!.id)), outcome: result.changes[0]!.outcome };
}

async function applyOne(ctx: Context, document: Record<string, unknown[]>, actor: string) {
  const { plan, problems } = await planApply(ctx, document);
  if (!plan) throw new OAuthError('invalid_request', problems.map(formatProblem).join('; '));
  return executeApply(ctx, plan, { actor, via: 'admin-api' });
}
