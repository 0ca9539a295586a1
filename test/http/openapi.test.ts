import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { FastifyInstance } from 'fastify';
import { adminAudience } from '../../src/admin/authorize.ts';
import { buildApp, endpoints } from '../../src/http/app.ts';
import { undocumentedRoutes, type SeenRoute } from '../../src/http/openapi.ts';
import type { Endpoint } from '../../src/endpoints/endpoint.ts';
import { assertOAuthError, protocolFixture } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';

interface Operation {
  tags?: string[];
  summary?: string;
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string; required?: boolean }[];
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, unknown>;
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; servers: { url: string }[] };

/** An app over a fresh context with the given endpoints, and every route it registered. */
async function appWithRoutes(t: TestContext, env: NodeJS.ProcessEnv = {}, routes: readonly Endpoint[] = endpoints): Promise<{ app: FastifyInstance; seen: SeenRoute[]; issuer: string }> {
  const { ctx } = await testContext({ t, env });
  const app = buildApp(ctx, routes);
  const seen: SeenRoute[] = [];
  app.addHook('onRoute', (route) => void seen.push({ method: route.method, url: route.url, schema: route.schema as Record<string, unknown> | undefined }));
  t.after(() => app.close());
  await app.ready();
  return { app, seen, issuer: ctx.config.issuer };
}

async function documentOf(app: FastifyInstance, path = '/admin/openapi.json'): Promise<Document> {
  const response = await app.inject({ method: 'GET', url: path });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Document;
}

describe('the OpenAPI document of the admin, audit and access evaluation APIs', () => {
  test('is served without a token, as JSON that is never cached, and is a valid OpenAPI 3.1 document', async (t) => {
    const { app } = await appWithRoutes(t);
    const response = await app.inject({ method: 'GET', url: '/admin/openapi.json' });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.equal(response.headers['cache-control'], 'no-store');
    const document = response.json() as Document;
    assert.equal(document.openapi, '3.1.0');
    // An independent validator of the OpenAPI 3.1 schema (not the generator that wrote it).
    const result = await new Validator().validate(document as never);
    assert.deepEqual(result.errors ?? [], [], 'no validation errors');
    assert.equal(result.valid, true);
  });

  test('documents every route of the admin, audit and access evaluation APIs, with the scope its caller needs', async (t) => {
    const { app, seen, issuer } = await appWithRoutes(t);
    assert.deepEqual(undocumentedRoutes(issuer, seen), [], 'every route is a documented operation');
    const document = await documentOf(app);
    const documented = seen.filter((route) => /^\/(admin|access\/v1)\//.test(route.url) && route.url !== '/admin/openapi.json');
    assert.ok(documented.length >= 60, `the admin API has its routes (${documented.length})`);
    for (const route of documented) {
      const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      for (const method of [route.method].flat().filter((m) => m !== 'HEAD')) {
        const operation = document.paths[path]?.[method.toLowerCase()];
        assert.ok(operation, `${method} ${path} is in the document`);
        assert.deepEqual(operation.security, (route.schema as { security: unknown }).security, `${method} ${path}: who may call it`);
        for (const [, name] of route.url.matchAll(/:([A-Za-z0-9_]+)/g)) {
          assert.ok(operation.parameters?.some((p) => p.in === 'path' && p.name === name && p.required), `${method} ${path}: path parameter ${name}`);
        }
        assert.ok(operation.responses['400'] && operation.responses['401'], `${method} ${path}: its errors`);
      }
    }
    // The admin scopes a route asks for are the ones the document states (one sample per kind).
    assert.deepEqual(document.paths['/admin/clients']!.get!.security, [{ clearance: ['admin:read'] }]);
    assert.deepEqual(document.paths['/admin/clients/{id}']!.put!.security, [{ clearance: ['admin:write'] }]);
    assert.deepEqual(document.paths['/admin/audit/events']!.get!.security, [{ clearance: ['audit:read'] }]);
    assert.ok(document.paths['/admin/clients/{id}']!.patch!.requestBody!.content['application/merge-patch+json'], 'a PATCH takes a JSON Merge Patch');
    assert.equal(document.paths['/token'], undefined, 'the OAuth endpoints have their own specifications');
  });

  test('names a route of the admin API that has no schema, so this test fails for it', async (t) => {
    const bare: Endpoint = {
      register(app) {
        app.get('/admin/undocumented/:id', async () => ({}));
        app.post('/access/v1/undocumented', { schema: { tags: ['access'], summary: 'no security' } }, async () => ({}));
      },
    };
    const { seen, issuer } = await appWithRoutes(t, {}, [...endpoints, bare]);
    assert.deepEqual(undocumentedRoutes(issuer, seen), ['GET /admin/undocumented/:id: no schema', 'POST /access/v1/undocumented: no security']);
  });

  test('lists paths under an issuer with a path, which is the server URL', async (t) => {
    const { app, seen, issuer } = await appWithRoutes(t, { CLEARANCE_ISSUER: 'https://as.example.com/tenant-a' });
    assert.equal(issuer, 'https://as.example.com/tenant-a');
    assert.deepEqual(undocumentedRoutes(issuer, seen), []);
    const document = await documentOf(app, '/tenant-a/admin/openapi.json');
    assert.deepEqual(document.servers, [{ url: 'https://as.example.com/tenant-a' }]);
    assert.ok(document.paths['/admin/clients'], 'paths are relative to the server URL');
  });
});

describe('the schemas the document publishes', () => {
  test('validate the requests: a member of the wrong type is 400 invalid_request naming it, and nothing is written', async (t) => {
    const f = await protocolFixture(t);
    const token = await f.accessToken('admin-ops', { resource: adminAudience(f.issuer) });
    const response = await f.inject({
      method: 'PUT',
      url: '/admin/clients/reconciler',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ client_name: 5, grant_types: ['client_credentials'] }),
    });
    const body = assertOAuthError(response, 400, 'invalid_request');
    assert.match(String(body.error_description), /^body\/client_name must be/);
    assert.equal(await f.ctx.clients.get('reconciler'), undefined, 'nothing was written');
  });

  test('are checked after the caller: without a token, a malformed request is 401, and says nothing of its shape', async (t) => {
    const f = await protocolFixture(t);
    const response = await f.inject({
      method: 'PUT',
      url: '/admin/clients/reconciler',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ client_name: 5 }),
    });
    const body = assertOAuthError(response, 401, 'invalid_token');
    assert.doesNotMatch(JSON.stringify(body), /client_name/);
  });
});
