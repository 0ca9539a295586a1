import { adminOperation } from '../../admin/authorize.ts';
import { mergePatchOf, nullableMembers, objectBody, pathParams } from '../../http/api-operation.ts';
import { clientSecretView, defaultRotationOverlapSeconds, rotateClientSecret } from '../../clients/credentials.ts';
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
 * - POST /admin/clients/{id}/rotate-secret (the new secret returned once; the old one valid for a rollover window)
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
      clients: await Promise.all((await ctx.clients.list()).map(async (c) => ({ ...c.metadata, ...(await clientSecretView(ctx, c.metadata.client_id)) }))),
    }));
    app.get<{ Params: { id: string } }>(`${base}/clients/:id`, adminOperation(ctx, 'admin:read', { tag: 'clients', summary: "Read one client's metadata", params: client }), async (request) => {
      const client = await ctx.clients.get(request.params.id);
      if (!client) throw new OAuthError('not_found', 'no such client');
      return { ...client.metadata, ...(await clientSecretView(ctx, client.metadata.client_id)) };
    });
    // The client credential lifecycle (src/clients/credentials.ts, docs/lifecycle.md).
    app.post<{ Params: { id: string } }>(`${base}/clients/:id/rotate-secret`, adminOperation(ctx, 'admin:write', {
      tag: 'clients',
      summary: "Rotate a client's secret, with a rollover window",
      description: 'A new secret, returned once; the one it replaces keeps working for overlap_seconds (default 86400; 0 ends it at once). Audited as client.secret_rotated.',
      params: client,
      body: objectBody({ overlap_seconds: { type: 'integer', description: 'how long the replaced secret keeps working (0 to 2592000)' } }, []),
    }), async (request) => {
      const overlap = (request.body as { overlap_seconds?: unknown } | undefined)?.overlap_seconds ?? defaultRotationOverlapSeconds;
      if (typeof overlap !== 'number') throw new OAuthError('invalid_request', 'overlap_seconds must be a whole number of seconds');
      const rotation = await rotateClientSecret(ctx, request.params.id, { overlapSeconds: overlap, actor: request.admin!.client_id, via: 'admin-api' });
      const seconds = (ms: number | null) => (ms === null ? 0 : Math.floor(ms / 1000));
      return {
        client_id: request.params.id,
        client_secret: rotation.secret,
        client_secret_issued_at: seconds(rotation.createdAt),
        // RFC 7591 §3.2.1: 0 means the secret never expires.
        client_secret_expires_at: seconds(rotation.expiresAt),
        ...(rotation.previousValidUntil !== null ? { previous_client_secret_valid_until: seconds(rotation.previousValidUntil) } : {}),
      };
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
    access_token_format: { type: 'string', enum: ['jwt', 'reference'], description: 'jwt (default when absent) or reference: an opaque handle resolved by introspection' },
    owner_lei: { type: 'string', description: 'the LEI of the firm that runs the API (a declared legal entity): a party to the trades it takes' },
  },
  [],
  'A resource server as docs/apply.md describes it',
);

/** What GET shows of a client's secret (never the secret): read-only members. */
const clientSecretMembers = ['client_secret_expires_at', 'client_secret_issued_at', 'previous_client_secret_valid_until'] as const;

async function clientRepresentation(ctx: Context, clientId: string): Promise<Representation> {
  const metadata = (await ctx.clients.get(clientId))?.metadata as Record<string, unknown> | undefined;
  // The secret's dates are shown beside the metadata and never written here (rotate-secret changes them).
  const view = metadata ? await clientSecretView(ctx, clientId) : undefined;
  const current = metadata ? { ...metadata, ...view } : undefined;
  return { name: 'client', current, writable: Object.keys(metadata ?? {}).filter((m) => m !== 'client_id'), readOnly: clientSecretMembers };
}

async function writeClient(ctx: Context, clientId: string, body: Record<string, unknown>, actor: string) {
  if (body.client_id !== undefined && body.client_id !== clientId) {
    throw new OAuthError('invalid_request', 'client_id in the body differs from the path');
  }
  const result = await applyOne(ctx, { clients: [{ ...body, client_id: clientId }] }, actor);
  const client = await ctx.clients.get(clientId);
  const secret = result.secrets[clientId];
  return { ...client!.metadata, ...(await clientSecretView(ctx, clientId)), ...(secret ? { client_secret: secret } : {}), outcome: result.changes[0]!.outcome };
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
