import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/http/app.ts';
import { createLogger } from '../../src/log.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { DatabaseUnavailableError } from '../../src/storage/faults.ts';
import { guarded } from '../../src/ui/respond.ts';
import { testContext, testDialects, type TestServerContext } from '../helpers/storage.ts';

const json = { 'content-type': 'application/json' };

function assertSecurityHeaders(response: LightMyRequestResponse, what: string): void {
  assert.equal(response.headers['x-content-type-options'], 'nosniff', what);
  assert.equal(response.headers['referrer-policy'], 'no-referrer', what);
  assert.equal(response.headers['x-frame-options'], 'DENY', what);
  assert.match(String(response.headers['content-security-policy']), /frame-ancestors 'none'/, what);
  assert.match(String(response.headers['content-security-policy']), /default-src 'none'/, what);
  assert.match(String(response.headers['x-request-id']), /^[0-9a-f-]{36}$/, what);
}

/** An error response: registered OAuth error JSON (RFC 6749 §5.2), never cached. */
function assertOAuthError(response: LightMyRequestResponse, status: number, error: string, what: string): Record<string, unknown> {
  assert.equal(response.statusCode, status, `${what}: ${response.body}`);
  assert.match(String(response.headers['content-type']), /^application\/json/, what);
  assert.equal(response.headers['cache-control'], 'no-store', what);
  const body = response.json() as Record<string, unknown>;
  assert.equal(body.error, error, what);
  assert.deepEqual(Object.keys(body).filter((k) => k !== 'error' && k !== 'error_description'), [], `${what}: only error and error_description`);
  assertSecurityHeaders(response, what);
  return body;
}

describe('the HTTP application', () => {
  let context: TestServerContext;
  let app: FastifyInstance;
  before(async () => {
    context = await testContext();
    app = buildApp(context.ctx);
    // Routes a later endpoint would have: one that reads a body, one that refuses.
    app.post('/test/echo', async (request) => ({ body: request.body ?? null, form: request.form?.names() ?? null }));
    app.get('/test/refuse', async () => {
      throw new OAuthError('invalid_scope', 'order:create is not allowed', { detail: 'internal detail', headers: { 'x-extra': '1' } });
    });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await context.cleanup();
  });

  test('sets the security headers on every response, including errors and 404', async () => {
    const requests = [
      { method: 'GET', url: '/healthz' },
      { method: 'GET', url: '/readyz' },
      { method: 'GET', url: '/jwks' },
      { method: 'GET', url: '/.well-known/openid-configuration' },
      { method: 'HEAD', url: '/.well-known/oauth-authorization-server' },
      { method: 'GET', url: '/nowhere' },
      { method: 'DELETE', url: '/healthz' },
      { method: 'GET', url: '/test/refuse' },
      { method: 'POST', url: '/test/echo', headers: json, payload: '{' },
      { method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/xml' }, payload: '<a/>' },
    ] as const;
    for (const request of requests) {
      const response = await app.inject(request);
      assertSecurityHeaders(response, `${request.method} ${request.url} → ${response.statusCode}`);
    }
  });

  test('gives each response its own request id', async () => {
    const [a, b] = await Promise.all([app.inject('/healthz'), app.inject('/healthz')]);
    assert.notEqual(a!.headers['x-request-id'], b!.headers['x-request-id']);
  });

  test('answers an unknown path or method with a 404 not_found JSON error', async () => {
    const body = assertOAuthError(await app.inject('/nowhere?code=secret'), 404, 'not_found', 'unknown path');
    assert.equal(body.error_description, 'no endpoint at GET /nowhere', 'the query string is not echoed');
    assertOAuthError(await app.inject({ method: 'DELETE', url: '/healthz' }), 404, 'not_found', 'unknown method');
  });

  test('serializes an OAuthError with its code, status, public description and headers, but not its detail', async () => {
    const response = await app.inject('/test/refuse');
    const body = assertOAuthError(response, 400, 'invalid_scope', 'refused');
    assert.equal(body.error_description, 'order:create is not allowed');
    assert.equal(response.headers['x-extra'], '1');
    assert.ok(!response.body.includes('internal detail'));
  });

  test('refuses a body over the limit with 413 invalid_request, never a 5xx', async () => {
    const limit = context.config.bodyLimit;
    const big = JSON.stringify({ a: 'x'.repeat(limit) });
    assertOAuthError(await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: big }), 413, 'invalid_request', 'JSON');
    const form = `a=${'x'.repeat(limit)}`;
    assertOAuthError(
      await app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form }),
      413,
      'invalid_request',
      'form',
    );
    // Without a Content-Length (a streamed body), the limit still holds.
    assertOAuthError(
      await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: Readable.from([Buffer.from(big)]) }),
      413,
      'invalid_request',
      'streamed',
    );
    // Just under the limit is fine.
    const fits = JSON.stringify({ a: 'x'.repeat(limit - 20) });
    assert.equal((await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload: fits })).statusCode, 200);
  });

  test('refuses a malformed JSON body with 400 invalid_request', async () => {
    for (const payload of ['{', '{"a":', '', 'null x', '{"__proto__":{"admin":true}}']) {
      assertOAuthError(await app.inject({ method: 'POST', url: '/test/echo', headers: json, payload }), 400, 'invalid_request', JSON.stringify(payload));
    }
  });

  test('refuses an unknown content type with 415', async () => {
    for (const type of ['application/xml', 'text/plain', 'multipart/form-data; boundary=x', undefined]) {
      const response = await app.inject({ method: 'POST', url: '/test/echo', headers: type ? { 'content-type': type } : {}, payload: 'a=b' });
      assertOAuthError(response, 415, 'invalid_request', String(type));
    }
  });

  test('parses a form body and keeps repeated parameters visible', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/test/echo',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'grant_type=client_credentials&scope=a&scope=b',
    });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { body: {}, form: ['grant_type', 'scope'] });
  });
});

/** An app whose JSON log lines are kept in `lines`, to check what is logged and what is not. */
async function appWithCapturedLog(t: TestContext) {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const { ctx } = await testContext({ t, log: createLogger('info', sink) });
  const app = buildApp(ctx);
  t.after(() => app.close());
  return { app, lines, ctx };
}

describe('an unexpected exception in a route', () => {
  test('becomes 500 server_error without the exception in the body, and is logged with the request id', async (t) => {
    const { app, lines } = await appWithCapturedLog(t);
    app.get('/test/crash', async () => {
      throw new Error('database password is hunter2');
    });
    app.get('/test/crash-with-status', async () => {
      throw Object.assign(new Error('upstream said no: token=abc'), { statusCode: 502 });
    });
    app.get('/test/throws-a-string', async () => {
      throw 'just a string';
    });

    for (const url of ['/test/crash', '/test/crash-with-status', '/test/throws-a-string']) {
      const response = await app.inject(url);
      const body = assertOAuthError(response, 500, 'server_error', url);
      assert.ok(!response.body.includes('hunter2') && !response.body.includes('token=abc') && !response.body.includes('just a string'), response.body);
      assert.ok(!/\bat .*\.ts:\d+/.test(response.body), 'no stack trace');
      assert.equal(typeof body.error_description, 'string');

      const requestId = String(response.headers['x-request-id']);
      const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((e) => e.msg === 'unexpected error' && e.reqId === requestId);
      assert.equal(logged.length, 1, `one error line with reqId ${requestId} in:\n${lines.join('\n')}`);
      assert.equal(logged[0]!.level, 50);
    }
    assert.ok(lines.some((line) => line.includes('hunter2')), 'the log keeps what the response hides');
  });
});

describe('a database fault in a route', () => {
  test('becomes 503 temporarily_unavailable with Retry-After, JSON or an error page, logged as a warning without a stack', async (t) => {
    const { app, lines, ctx } = await appWithCapturedLog(t);
    const faults: Record<string, () => Error> = {
      terminated: () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' }),
      reset: () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      lost: () => new Error('Connection terminated unexpectedly'),
      'pool-timeout': () => new Error('timeout exceeded when trying to connect'),
      'no-answer': () => new DatabaseUnavailableError('the database did not answer within 4000 ms'),
      locked: () => Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 }),
    };
    for (const [name, fault] of Object.entries(faults)) {
      app.get(`/test/db/${name}`, async () => {
        throw fault();
      });
    }
    // An HTML endpoint (a person is looking at it) answers with a page instead.
    app.get('/test/db-page', (request, reply) => guarded(ctx, request, reply, async () => {
      throw faults.terminated!();
    }));

    for (const name of Object.keys(faults)) {
      const response = await app.inject(`/test/db/${name}`);
      assertOAuthError(response, 503, 'temporarily_unavailable', name);
      assert.equal(response.headers['retry-after'], '1', name);
      const requestId = String(response.headers['x-request-id']);
      const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((e) => e.reqId === requestId && Number(e.level) >= 40);
      assert.deepEqual(logged.map((e) => [e.level, e.msg, 'err' in e]), [[40, 'database unavailable', false]], name);
    }
    const page = await app.inject('/test/db-page');
    assert.equal(page.statusCode, 503);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['retry-after'], '1');
    assert.match(page.body, /temporarily unavailable/i);
  });
});

describe('discovery', () => {
  test('serves the same document, with issuer and jwks_uri, at both well-known paths', async (t) => {
    const { ctx } = await testContext({ t });
    const app = buildApp(ctx);
    t.after(() => app.close());
    const oidc = await app.inject('/.well-known/openid-configuration');
    const oauth = await app.inject('/.well-known/oauth-authorization-server');
    for (const response of [oidc, oauth]) {
      assert.equal(response.statusCode, 200);
      assert.match(String(response.headers['content-type']), /^application\/json/);
      assert.match(String(response.headers['cache-control']), /^public, max-age=\d+$/);
      assertSecurityHeaders(response, 'discovery');
    }
    assert.equal(oidc.body, oauth.body);
    const document = oidc.json() as Record<string, unknown>;
    assert.equal(document.issuer, 'http://localhost:9000');
    assert.equal(document.jwks_uri, 'http://localhost:9000/jwks');
  });

  test('serves an issuer with a path at the RFC 8414 and the OIDC locations', async (t) => {
    const { ctx } = await testContext({
      t,
      env: {
        CLEARANCE_MODE: 'production',
        CLEARANCE_ISSUER: 'https://example.com/tenant/',
        CLEARANCE_MASTER_KEY: Buffer.alloc(32, 7).toString('hex'),
      },
    });
    assert.equal(ctx.config.issuer, 'https://example.com/tenant', 'the trailing slash is dropped');
    const app = buildApp(ctx);
    t.after(() => app.close());
    const rfc8414 = await app.inject('/.well-known/oauth-authorization-server/tenant');
    const oidc = await app.inject('/tenant/.well-known/openid-configuration');
    assert.equal(rfc8414.statusCode, 200);
    assert.equal(oidc.statusCode, 200);
    assert.equal(rfc8414.body, oidc.body);
    const document = oidc.json() as Record<string, unknown>;
    assert.equal(document.issuer, 'https://example.com/tenant');
    assert.equal(document.jwks_uri, 'https://example.com/tenant/jwks');
    assert.equal((await app.inject('/tenant/jwks')).statusCode, 200, 'the advertised jwks_uri is served');
    for (const wrong of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks']) {
      assert.equal((await app.inject(wrong)).statusCode, 404, wrong);
    }
  });
});

describe('the JWKS endpoint', () => {
  test('publishes public members only, with a cache lifetime shorter than the rotation overlap', async (t) => {
    const { ctx } = await testContext({ t });
    await ctx.keys.rotate('EdDSA', 600);
    await ctx.keys.rotate('PS256', 1200);
    const app = buildApp(ctx);
    t.after(() => app.close());
    const response = await app.inject('/jwks');
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^application\/jwk-set\+json/);
    assert.equal(response.headers['cache-control'], 'public, max-age=300');
    const { keys } = response.json() as { keys: Record<string, unknown>[] };
    assert.deepEqual(keys.map((k) => k.kty).sort(), ['EC', 'OKP', 'RSA']);
    for (const key of keys) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']) assert.ok(!(member in key), `no "${member}" in ${key.kty}`);
      assert.equal(key.use, 'sig');
      assert.equal(typeof key.kid, 'string');
    }
  });

  test('caches for at most half the overlap', async (t) => {
    const { ctx } = await testContext({ t, env: { CLEARANCE_KEY_OVERLAP: '60' } });
    const app = buildApp(ctx);
    t.after(() => app.close());
    assert.equal((await app.inject('/jwks')).headers['cache-control'], 'public, max-age=30');
  });
});

describe('health', () => {
  test('/healthz answers 200 while the process runs', async (t) => {
    const { ctx } = await testContext({ t });
    const app = buildApp(ctx);
    t.after(() => app.close());
    const response = await app.inject('/healthz');
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: 'ok' });
    assert.equal(response.headers['cache-control'], 'no-store');
  });

  for (const dialect of testDialects()) {
    test(`/readyz answers 200 while the database answers, and 503 once it is closed (${dialect.name})`, async (t) => {
      const { ctx } = await testContext({ t, dialect });
      const app = buildApp(ctx);
      t.after(() => app.close());
      const ready = await app.inject('/readyz');
      assert.equal(ready.statusCode, 200);
      assert.deepEqual(ready.json(), { status: 'ready' });
      await ctx.storage.close();
      const gone = await app.inject('/readyz');
      assert.equal(gone.statusCode, 503);
      assert.equal((gone.json() as { status: string }).status, 'unavailable');
      assert.equal(gone.headers['cache-control'], 'no-store');
      assert.equal((await app.inject('/healthz')).statusCode, 200, 'liveness does not depend on the database');
    });
  }
});

describe('closing', () => {
  test('finishes an in-flight request and closes its keep-alive connection, and refuses new requests with 503', async (t) => {
    const { ctx } = await testContext({ t });
    const app = buildApp(ctx);
    let entered!: () => void;
    const inRoute = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    app.get('/test/slow', async () => {
      entered();
      await gate;
      return { done: true };
    });
    let draining!: () => void;
    const drainingStarted = new Promise<void>((resolve) => (draining = resolve));
    app.addHook('preClose', async () => draining()); // runs after the app's own preClose hook
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const agent = new Agent({ keepAlive: true });
    t.after(() => agent.destroy());

    const responded = new Promise<IncomingMessage>((resolve, reject) =>
      httpRequest(new URL('/test/slow', base), { agent }, resolve).on('error', reject).end(),
    );
    await inRoute;
    // A second connection whose request is still arriving (headers not finished) when closing starts.
    const { port } = new URL(base);
    const parsing = new Promise<void>((resolve) => app.server.once('connection', (socket) => socket.once('data', () => resolve())));
    const late = connect(Number(port), '127.0.0.1');
    let lateResponse = '';
    late.on('data', (chunk) => (lateResponse += chunk));
    late.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    await parsing; // the server has read the partial request: the connection is not idle

    let closed = false;
    const closing = app.close().then(() => (closed = true));
    await drainingStarted;

    // That request reaches the app while it drains: a registered error, with our headers, and the
    // connection is closed after it.
    late.write('\r\n');
    await once(late, 'close');
    assert.match(lateResponse, /^HTTP\/1\.1 503 /);
    for (const header of [/\r\nconnection: close\r\n/i, /\r\ncache-control: no-store\r\n/, /\r\nx-content-type-options: nosniff\r\n/, /\r\ncontent-type: application\/json/]) {
      assert.match(lateResponse, header);
    }
    assert.ok(lateResponse.endsWith('{"error":"temporarily_unavailable","error_description":"the server is shutting down"}'), lateResponse);
    assert.equal(closed, false, 'close waits for the in-flight request');

    release();
    const response = await responded;
    let body = '';
    response.on('data', (chunk) => (body += chunk));
    await once(response, 'end');
    assert.equal(response.statusCode, 200);
    assert.deepEqual(JSON.parse(body), { done: true });
    assert.equal(response.headers.connection, 'close', 'the kept-alive connection is not kept');

    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('close() did not finish within 5 s')), 5000).unref());
    await Promise.race([closing, timeout]);
  });
});

describe('URLs the router cannot take', () => {
  test('a malformed URL or an over-long path parameter is a registered JSON error with the security headers', async (t) => {
    const { ctx } = await testContext({ t });
    const app = buildApp(ctx);
    t.after(() => app.close());
    for (const [url, status] of [
      ['/token%', 400],
      ['/%E0%A4%A', 400],
      [`/admin/clients/${'a'.repeat(150)}`, 414],
      [`/interaction/${'b'.repeat(150)}`, 414],
    ] as const) {
      const response = await app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, status, url);
      assert.equal(response.json().error, 'invalid_request');
      assert.equal(response.headers['cache-control'], 'no-store');
      assert.match(String(response.headers['content-security-policy']), /frame-ancestors 'none'/);
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.doesNotMatch(response.body, /FST_ERR/);
    }
  });
});
