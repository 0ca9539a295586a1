import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AccessTokenClaims } from '../../tokens/claims.ts';
import type { Context } from '../../context.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { recordPeopleRead } from '../../audit/reads.ts';
import { OAuthError } from '../../oauth-error.ts';
import { scimAudience, scimReadScope, scimWriteScope } from '../../resource-servers/builtins.ts';
import { isDatabaseUnavailable } from '../../storage/faults.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { badRequest, notFound, ScimError } from '../../lifecycle/scim/errors.ts';
import { parseFilter, requiredEqualities } from '../../lifecycle/scim/filter.ts';
import { changeMembers, desksAreDeclared, groupResource, groupSchemas, listDesks } from '../../lifecycle/scim/groups.ts';
import { allSchemas, listResponseSchema, maxResults, resourceTypeDocuments, schemaDocument, serviceProviderConfig } from '../../lifecycle/scim/schemas.ts';
import { refusalsOnRecord, scimReachOf, type RefusedWrite } from '../../lifecycle/scim/reach.ts';
import { deleteUser, deskNamesOf, findPerson, listPeople, writeUser, type ScimActor } from '../../lifecycle/scim/store.ts';
import { userResource, userSchemas } from '../../lifecycle/scim/users.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/** RFC 7644 §3.1 / §8.1: SCIM's media type. */
const scimType = 'application/scim+json; charset=utf-8';

/**
 * SCIM 2.0 (RFC 7643/7644) at `<issuer>/scim/v2`, for HR and identity-management systems
 * (docs/lifecycle.md "SCIM 2.0"):
 *
 *   GET  /ServiceProviderConfig, /ResourceTypes[/{id}], /Schemas[/{id}]   discovery (§4), public
 *   GET  /Users?filter=&startIndex=&count=, GET /Users/{id}               scim:read
 *   POST /Users, PUT /Users/{id}, PATCH /Users/{id}, DELETE /Users/{id}   scim:write
 *   GET  /Groups?filter=..., GET /Groups/{id}                              scim:read (a Group is a desk)
 *   PUT  /Groups/{id}, PATCH /Groups/{id}                                  scim:write (its members)
 *
 * A Clearance access token for `<issuer>/scim` through the one protected-resource check (binding,
 * audience, liveness, scope); then the caller's reach (src/lifecycle/scim/reach.ts): the people and
 * desks of its legal entities only — another firm's are 404 (absent from lists), a write naming
 * another firm 403, a client of no legal entity 403 unless CLEARANCE_SCIM_GLOBAL_CLIENTS names it;
 * every refused write is audited (`scim.refused`). `active: false` — by PUT or PATCH — and DELETE are the leaver
 * operation. Every answer is application/scim+json with Cache-Control: no-store; every refusal is
 * an RFC 7644 §3.12 error, never a 5xx for what a client sent. ETags (§3.14) on every resource;
 * If-Match on PUT, PATCH and DELETE (412 when stale).
 */
export const scim: Endpoint = {
  register(app, ctx) {
    const prefix = `${issuerPath(ctx.config.issuer)}/scim/v2`;
    void app.register((scope, _options, done) => {
      routes(scope, ctx, `${ctx.config.issuer}/scim/v2`);
      done();
    }, { prefix });
  },
};

function routes(app: FastifyInstance, ctx: Context, base: string): void {
  app.addContentTypeParser('application/scim+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  app.setErrorHandler(scimErrorHandler);
  app.setNotFoundHandler((_request, reply) => void sendScimError(reply, new ScimError(404, 'no SCIM endpoint there')));
  const resource = (scope: string) => ({ audience: scimAudience(ctx.config.issuer), scope, name: 'the SCIM API' });
  /** The caller, admitted with `scope` by the one protected-resource check. */
  const caller = async (request: FastifyRequest, reply: FastifyReply, scope: string): Promise<AccessTokenClaims> => {
    const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource(scope));
    reply.headers(access.headers);
    return access.claims;
  };
  /** Whose people the caller reaches, or 403 (src/lifecycle/scim/reach.ts). */
  const reachOf = (claims: AccessTokenClaims) => scimReachOf(ctx, claims);
  /**
   * A write by the caller admitted with scim:write, as `operation` of `resource`: the caller's reach
   * decided first, and every refusal for its legal entities put on the record (`scim.refused`).
   */
  const writing = async <T>(request: FastifyRequest, reply: FastifyReply, operation: RefusedWrite['operation'], resource: RefusedWrite['resource'], work: (actor: ScimActor) => Promise<T>): Promise<T> => {
    const claims = await caller(request, reply, scimWriteScope);
    return refusalsOnRecord(ctx, { client: claims.client_id, actor: claims.sub ?? claims.client_id, requestId: request.id, operation, resource }, async () =>
      work({ client: claims.client_id, requestId: request.id, reach: await reachOf(claims) }),
    );
  };
  const documentation = `${ctx.config.issuer}/docs/lifecycle.md#scim-20`;

  // RFC 7644 §4: the discovery documents describe no one, so they need no token.
  app.get('/ServiceProviderConfig', async (_request, reply) => send(reply, serviceProviderConfig(base, documentation)));
  app.get('/ResourceTypes', async (_request, reply) => send(reply, list(resourceTypeDocuments(base), 1, 2)));
  app.get<{ Params: { id: string } }>('/ResourceTypes/:id', async (request, reply) => {
    const found = resourceTypeDocuments(base).find((r) => r.id === request.params.id);
    if (!found) throw notFound('ResourceType');
    return send(reply, found);
  });
  app.get('/Schemas', async (_request, reply) => send(reply, list(allSchemas.map((s) => schemaDocument(s, base)), 1, allSchemas.length)));
  app.get<{ Params: { id: string } }>('/Schemas/:id', async (request, reply) => {
    const found = allSchemas.find((s) => s.id === request.params.id);
    if (!found) throw notFound('Schema');
    return send(reply, schemaDocument(found, base));
  });

  app.get<{ Querystring: Record<string, string | string[]> }>('/Users', async (request, reply) => {
    const claims = await caller(request, reply, scimReadScope);
    const reach = await reachOf(claims);
    const { filter, startIndex, count } = listParameters(request.query);
    const parsed = filter === undefined ? undefined : parseFilter(filter, userSchemas);
    const equal = parsed ? requiredEqualities(parsed.tree) : new Map();
    const text = (key: string) => (typeof equal.get(key) === 'string' ? (equal.get(key) as string) : undefined);
    const query = { ...(text('id') ? { id: text('id') } : {}), ...(text('username') ? { userName: text('username') } : {}), ...(text('externalid') ? { externalId: text('externalid') } : {}) };
    const deskNames = await deskNamesOf(ctx);
    const matching = (await listPeople(ctx.storage.db, reach, query)).map((p) => userResource(p, base, deskNames)).filter((r) => !parsed || parsed.matches(r));
    const page = matching.slice(startIndex - 1, startIndex - 1 + count);
    // Names and emails are personal data: the read is on the record before the answer leaves.
    await recordPeopleRead(ctx, claims, request.id, { people: page.length, via: 'scim' });
    return send(reply, list(page, startIndex, matching.length));
  });

  app.get<{ Params: { id: string } }>('/Users/:id', async (request, reply) => {
    const claims = await caller(request, reply, scimReadScope);
    // Another firm's person is answered as one that does not exist.
    const person = await findPerson(ctx.storage.db, await reachOf(claims), request.params.id);
    if (!person) throw notFound('User');
    await recordPeopleRead(ctx, claims, request.id, { people: 1, via: 'scim' }, person.user.id);
    return sendResource(reply, userResource(person, base, await deskNamesOf(ctx)));
  });

  const answerUser = async (reply: FastifyReply, actor: ScimActor, id: string, status: number) => {
    const person = await findPerson(ctx.storage.db, actor.reach, id);
    const body = userResource(person!, base, await deskNamesOf(ctx));
    return sendResource(reply, body, status, status === 201 ? { location: (body.meta as { location: string }).location } : {});
  };

  // RFC 7644 §3.3: 201 with the resource and its Location; 409 uniqueness for a taken userName.
  app.post('/Users', async (request, reply) =>
    writing(request, reply, 'create', 'User', async (actor) => {
      const { id } = await writeUser(ctx, { kind: 'create', body: request.body }, actor, base);
      return answerUser(reply, actor, id, 201);
    }),
  );

  for (const [method, kind] of [['PUT', 'replace'], ['PATCH', 'patch']] as const) {
    app.route<{ Params: { id: string } }>({
      method,
      url: '/Users/:id',
      handler: async (request, reply) =>
        writing(request, reply, kind, 'User', async (actor) => {
          const { id } = await writeUser(ctx, { kind, id: request.params.id, body: request.body, ...ifMatch(request) }, actor, base);
          return answerUser(reply, actor, id, 200);
        }),
    });
  }

  // RFC 7644 §3.6: 204; the person is offboarded and out of SCIM's view from then on.
  app.delete<{ Params: { id: string } }>('/Users/:id', async (request, reply) =>
    writing(request, reply, 'delete', 'User', async (actor) => {
      await deleteUser(ctx, request.params.id, ifMatch(request).ifMatch, actor, base);
      return reply.code(204).headers({ 'cache-control': 'no-store' }).send();
    }),
  );

  app.get<{ Querystring: Record<string, string | string[]> }>('/Groups', async (request, reply) => {
    const claims = await caller(request, reply, scimReadScope);
    const reach = await reachOf(claims);
    const { filter, startIndex, count } = listParameters(request.query);
    const parsed = filter === undefined ? undefined : parseFilter(filter, groupSchemas);
    const people = await listPeople(ctx.storage.db, reach);
    const matching = (await listDesks(ctx, reach)).map((d) => groupResource(d, people, base)).filter((r) => !parsed || parsed.matches(r));
    const page = matching.slice(startIndex - 1, startIndex - 1 + count);
    await recordPeopleRead(ctx, claims, request.id, { people: people.length, via: 'scim', groups: page.length });
    return send(reply, list(page, startIndex, matching.length));
  });

  app.get<{ Params: { id: string } }>('/Groups/:id', async (request, reply) => {
    const claims = await caller(request, reply, scimReadScope);
    const reach = await reachOf(claims);
    // Another firm's desk is answered as one that does not exist.
    const desk = (await listDesks(ctx, reach)).find((d) => d.id === request.params.id);
    if (!desk) throw notFound('Group');
    await recordPeopleRead(ctx, claims, request.id, { via: 'scim', group: desk.id });
    return sendResource(reply, groupResource(desk, await listPeople(ctx.storage.db, reach), base));
  });

  for (const [method, kind] of [['PUT', 'replace'], ['PATCH', 'patch']] as const) {
    app.route<{ Params: { id: string } }>({
      method,
      url: '/Groups/:id',
      handler: async (request, reply) =>
        writing(request, reply, kind, 'Group', async (actor) => {
          await changeMembers(ctx, request.params.id, { kind, body: request.body, ...ifMatch(request) }, actor, base);
          const desk = (await listDesks(ctx, actor.reach)).find((d) => d.id === request.params.id)!;
          return sendResource(reply, groupResource(desk, await listPeople(ctx.storage.db, actor.reach), base));
        }),
    });
  }
  app.post('/Groups', async (request, reply) => {
    await caller(request, reply, scimWriteScope);
    throw desksAreDeclared();
  });
  app.delete('/Groups/:id', async (request, reply) => {
    await caller(request, reply, scimWriteScope);
    throw desksAreDeclared();
  });
}

function ifMatch(request: FastifyRequest): { ifMatch?: string } {
  const value = request.headers['if-match'];
  return typeof value === 'string' ? { ifMatch: value } : {};
}

/** RFC 7644 §3.4.2.4: 1-based startIndex (below 1 is 1), count (negative is 0, capped at maxResults); one filter. */
function listParameters(query: Record<string, string | string[]>): { filter: string | undefined; startIndex: number; count: number } {
  const one = (name: string): string | undefined => {
    const value = query[name];
    if (Array.isArray(value)) throw badRequest('invalidValue', `${name} is given more than once`);
    return value;
  };
  const integer = (name: string, fallback: number): number => {
    const value = one(name);
    if (value === undefined) return fallback;
    if (!/^-?\d{1,9}$/.test(value)) throw badRequest('invalidValue', `${name} must be an integer`);
    return Number(value);
  };
  return { filter: one('filter'), startIndex: Math.max(1, integer('startIndex', 1)), count: Math.min(maxResults, Math.max(0, integer('count', maxResults))) };
}

/** RFC 7644 §3.4.2: a ListResponse. */
function list(resources: unknown[], startIndex: number, totalResults: number): Record<string, unknown> {
  return { schemas: [listResponseSchema], totalResults, startIndex, itemsPerPage: resources.length, Resources: resources };
}

function send(reply: FastifyReply, body: unknown, status = 200, headers: Record<string, string> = {}): FastifyReply {
  return reply.code(status).headers({ ...headers, 'cache-control': 'no-store', pragma: 'no-cache' }).type(scimType).send(JSON.stringify(body));
}

/** A resource with its ETag header (RFC 7644 §3.14: the same as meta.version). */
function sendResource(reply: FastifyReply, body: Record<string, unknown>, status = 200, headers: Record<string, string> = {}): FastifyReply {
  return send(reply, body, status, { ...headers, etag: (body.meta as { version: string }).version });
}

function sendScimError(reply: FastifyReply, error: ScimError): FastifyReply {
  return send(reply, error.toJSON(), error.status, error.headers);
}

/**
 * SCIM's error serializer (RFC 7644 §3.12): a ScimError as it is; the token check's OAuthError
 * (401/403 with its WWW-Authenticate challenge) with its status and description; fastify's own
 * client errors (bad JSON, wrong media type, too large) as 400 invalidSyntax or their status; a
 * database outage 503; anything else 500 with no detail, logged.
 */
function scimErrorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  if (error instanceof ScimError) return void sendScimError(reply, error);
  if (error instanceof OAuthError) {
    if (error.detail) request.log.info({ error: error.error, detail: error.detail }, 'request refused');
    const status = error.status >= 500 ? error.status : error.status === 400 ? 400 : error.status;
    return void sendScimError(reply, new ScimError(status, error.description ?? error.error, status === 400 ? 'invalidValue' : undefined, { ...error.headers }));
  }
  if (isDatabaseUnavailable(error)) {
    request.log.warn({ reqId: request.id, cause: error.message }, 'database unavailable');
    return void sendScimError(reply, new ScimError(503, 'the service is temporarily unavailable; retry shortly', undefined, { 'retry-after': '1' }));
  }
  const status = (error as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = (error as FastifyError).code;
    const detail = code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'the body must be application/scim+json' : code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'the body is too large' : 'the request body is not valid JSON';
    return void sendScimError(reply, new ScimError(status, detail, status === 400 ? 'invalidSyntax' : undefined));
  }
  request.log.error({ err: error, reqId: request.id }, 'unexpected error');
  sendScimError(reply, new ScimError(500, 'the server could not complete the request'));
}
