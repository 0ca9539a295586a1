import { adminOperation } from '../../admin/authorize.ts';
import { mergePatchOf, nullableMembers, objectBody, pathParams } from '../../http/api-operation.ts';
import { executeApply, planApply } from '../../apply/index.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import type { ResourceServer } from '../../resource-servers/definition.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { acceptMergePatch, mergePatchType, patchBody, putBody, type Representation } from './representation.ts';

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
    acceptMergePatch(app);
    const client = pathParams({ id: 'the client_id' });

    app.get(`${base}/clients`, adminOperation(ctx, 'admin:read', { tag: 'clients', summary: 'List the registered clients (their metadata, never a secret)' }), async () => ({
      clients: (await ctx.clients.list()).map((c) => c.metadata),
    }));
    app.get<{ Params: { id: string } }>(`${base}/clients/:id`, adminOperation(ctx, 'admin:read', { tag: 'clients', summary: "Read one client's metadata", params: client }), async (request) => {
      const client = await ctx.clients.get(request.params.id);
      if (!client) throw new OAuthError('not_found', 'no such client');
      return client.metadata;
    });
    app.put<{ Params: { id: string } }>(`${base}/clients/:id`, adminOperation(ctx, 'admin:write', {
      tag: 'clients',
      summary: 'Create or replace a client',
      description: "The body is the client's metadata as in `clearance apply` (docs/apply.md), validated by the same rules; replacing needs every writable member the client has. A generated secret is returned once.",
      params: client,
      body: nullableMembers(clientMetadata),
    }), async (request) => {
      const body = putBody(request, await clientRepresentation(ctx, request.params.id));
      return writeClient(ctx, request.params.id, body, request.admin!.client_id);
    });
    app.patch<{ Params: { id: string } }>(`${base}/clients/:id`, adminOperation(ctx, 'admin:write', {
      tag: 'clients',
      summary: 'Change members of a client (JSON Merge Patch, RFC 7396)',
      params: client,
      body: mergePatchOf(clientMetadata),
      consumes: [mergePatchType],
    }), async (request) => {
      const body = patchBody(request, await clientRepresentation(ctx, request.params.id));
      return writeClient(ctx, request.params.id, body, request.admin!.client_id);
    });

    app.get(`${base}/resource-servers`, adminOperation(ctx, 'admin:read', { tag: 'clients', summary: 'List the resource servers (audiences) and their scopes' }), async () => ({
      resource_servers: await ctx.resourceServers.list(),
    }));
    // Partner trust profiles (src/federation); written only through the partners section of apply.
    app.get(`${base}/partners`, adminOperation(ctx, 'admin:read', { tag: 'directory', summary: 'List the partner trust profiles' }), async () => ({
      partners: await ctx.partners.list(),
    }));
    app.put(`${base}/resource-servers`, adminOperation(ctx, 'admin:write', {
      tag: 'clients',
      summary: 'Create or replace a resource server (the identifier in the body)',
      body: { ...nullableMembers(resourceServer), required: ['identifier'] },
    }), async (request) => {
      const identifier = (request.body as Record<string, unknown> | undefined)?.identifier;
      const current = typeof identifier === 'string' ? await ctx.resourceServers.get(identifier) : undefined;
      const body = putBody(request, serverRepresentation(current));
      return writeServer(ctx, body, request.admin!.client_id);
    });
    app.patch<{ Params: { identifier: string } }>(`${base}/resource-servers/:identifier`, adminOperation(ctx, 'admin:write', {
      tag: 'clients',
      summary: 'Change members of a resource server (JSON Merge Patch, RFC 7396)',
      params: pathParams({ identifier: "the resource server's identifier, percent-encoded as one path segment" }),
      body: mergePatchOf(resourceServer),
      consumes: [mergePatchType],
    }), async (request) => {
      const body = patchBody(request, serverRepresentation(await ctx.resourceServers.get(request.params.identifier)));
      if (body.identifier !== request.params.identifier) throw new OAuthError('invalid_request', 'identifier in the body differs from the path');
      return writeServer(ctx, body, request.admin!.client_id);
    });
  },
};

/** Client metadata (RFC 7591 §2 and Clearance's members): each member checked by apply's client rules. */
const clientMetadata = objectBody(
  {
    client_id: { type: 'string', description: 'must equal the path' },
    client_name: { type: 'string' },
    token_endpoint_auth_method: { type: 'string' },
    grant_types: { type: 'array', items: { type: 'string' } },
    redirect_uris: { type: 'array', items: { type: 'string' } },
    scope: { type: 'string' },
    jwks: { type: 'object' },
    owner_lei: { type: 'string', description: 'the LEI of the firm the client belongs to' },
  },
  [],
  'RFC 7591 client metadata and the members docs/apply.md lists',
);

/** A resource server as in apply's resource_servers section. */
const resourceServer = objectBody(
  {
    identifier: { type: 'string', description: 'the audience (an absolute URI)' },
    name: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    access_token_ttl: { type: 'integer' },
    require_sender_constraint: { type: 'boolean' },
  },
  [],
  'A resource server as docs/apply.md describes it',
);

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
