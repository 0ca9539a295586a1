/**
 * Tracing off, as it is unless configured (docs/observability.md): nothing starts, nothing is
 * registered on the HTTP application, no span is recorded, no trace context is sent, and the
 * server answers as before. This file's process never starts tracing.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import Fastify from 'fastify';
import { createGuard } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';
import { createLogger } from '../../src/log.ts';
import { tracingOn } from '../../src/telemetry/spans.ts';
import { startTracing, tracingConfigured } from '../../src/telemetry/tracing.ts';
import { ordersApi, protocolFixture } from '../endpoints/fixture.ts';

describe('when tracing is configured', () => {
  const cases: [NodeJS.ProcessEnv, boolean, string][] = [
    [{}, false, 'nothing set'],
    [{ OTEL_SERVICE_NAME: 'clearance-eu' }, false, 'a service name alone'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true, 'an OTLP endpoint'],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, true, 'an OTLP traces endpoint'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }, false, 'a blank endpoint'],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true, 'an exporter named'],
    [{ OTEL_TRACES_EXPORTER: 'otlp,zipkin' }, true, 'two exporters named'],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false, 'exporter none, whatever the endpoint'],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false, 'the SDK disabled'],
    [{ OTEL_SDK_DISABLED: 'TRUE', OTEL_TRACES_EXPORTER: 'otlp' }, false, 'the SDK disabled, in capitals'],
    [{ OTEL_SDK_DISABLED: 'false', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true, 'the SDK not disabled'],
  ];
  for (const [env, on, why] of cases) {
    test(`${on ? 'on' : 'off'}: ${why}`, () => assert.equal(tracingConfigured(env), on));
  }
});

test('with nothing configured, startTracing starts nothing: no spans, no tracer provider, no log fields', async () => {
  assert.equal(await startTracing({ env: {} }), false);
  assert.equal(await startTracing({ env: { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' } }), false);
  assert.equal(tracingOn, false);
  const span = trace.getTracer('anyone').startSpan('work');
  assert.equal(span.isRecording(), false, 'the API’s no-op tracer: no SDK registered');
  span.end();
  let written = '';
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => ((written += String(chunk)), done()) }));
  context.with(trace.setSpan(context.active(), span), () => log.info('inside'));
  assert.equal((JSON.parse(written) as Record<string, unknown>).trace_id, undefined);
});

test('the server answers as before, and its application carries no tracing: no decorator, no span, nothing sent on', async (t) => {
  const f = await protocolFixture(t);
  assert.equal(f.app.hasRequestDecorator('opentelemetry'), false, '@fastify/otel is not registered');
  const caller = `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
  const response = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }, headers: { traceparent: caller } });
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers.traceparent, undefined);
  assert.equal(trace.getActiveSpan(), undefined);
});

test('without an SDK the guard sends no trace context on its calls to Clearance, even when its caller sent one', async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const clearance = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      seen.push(request.headers);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"active":false}');
    });
  });
  clearance.listen(0, '127.0.0.1');
  await once(clearance, 'listening');
  t.after(() => new Promise<void>((resolve) => clearance.close(() => resolve())));
  const issuer = `http://127.0.0.1:${(clearance.address() as { port: number }).port}`;
  const guard = createGuard({ issuer, audience: 'https://orders.example.com/api', jwks: { keys: [] }, introspection: { credentials: { clientId: 'orders-guard', clientSecret: 's3cret' } } });
  const app = Fastify();
  await app.register(clearanceGuard, { guard, origin: 'https://orders.example.com' });
  app.get('/api/orders', () => 'never');
  t.after(() => app.close());
  const response = await app.inject({ method: 'GET', url: '/api/orders', headers: { authorization: 'Bearer clr_at_0123456789abcdef', traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` } });
  assert.equal(response.statusCode, 401);
  assert.equal(seen.length, 1, 'the guard asked Clearance');
  assert.equal(seen[0]!.traceparent, undefined);
});
