/**
 * The guard's calls to Clearance carry W3C trace context (src/guard/trace-context.ts), in a host
 * application that registered an OpenTelemetry SDK, as this file does: the active span's
 * `traceparent`, or the caller's when the host does not trace its requests itself. Without an SDK
 * nothing is sent (test/telemetry/tracing-off.test.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { test, type TestContext } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import Fastify from 'fastify';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createEvidenceRecorder, createGuard, traceContextHeaders } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';

// The host's SDK: W3C trace context propagation and an async-local context, spans kept in memory.
const exporter = new InMemorySpanExporter();
new NodeSDK({ spanProcessors: [new SimpleSpanProcessor(exporter)], metricReaders: [], logRecordProcessors: [] }).start();
const tracer = trace.getTracer('host');
const audience = 'https://orders.example.com/api';

/** A stand-in for Clearance that records the headers of every request it gets. */
async function clearanceStandIn(t: TestContext, answer: (path: string) => { status: number; body: unknown }) {
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      seen.push({ path: request.url!, headers: request.headers });
      const { status, body } = answer(request.url!);
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { issuer: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}

const traceparent = (traceId: string, spanId: string) => `00-${traceId}-${spanId}-01`;

test('traceContextHeaders names the active span; outside any span it is empty', () => {
  assert.deepEqual(traceContextHeaders(), {});
  tracer.startActiveSpan('work', (span) => {
    assert.deepEqual(traceContextHeaders(), { traceparent: traceparent(span.spanContext().traceId, span.spanContext().spanId) });
    span.end();
  });
});

test('the guard’s introspection call carries the active span’s traceparent', async (t) => {
  const clearance = await clearanceStandIn(t, () => ({ status: 200, body: { active: false } }));
  const guard = createGuard({ issuer: clearance.issuer, audience, jwks: { keys: [] }, introspection: { credentials: { clientId: 'orders-guard', clientSecret: 's3cret' } } });
  await tracer.startActiveSpan('host request', async (span) => {
    await assert.rejects(guard.verify({ method: 'GET', url: `${audience}/orders`, headers: { authorization: 'Bearer clr_at_0123456789abcdef' } }), { status: 401 });
    span.end();
    assert.equal(clearance.seen[0]?.path, '/introspect');
    assert.equal(clearance.seen[0]?.headers.traceparent, traceparent(span.spanContext().traceId, span.spanContext().spanId));
  });
});

test('through the fastify plugin, the caller’s traceparent reaches the guard’s calls even when the host does not trace requests', async (t) => {
  const clearance = await clearanceStandIn(t, () => ({ status: 200, body: { active: false } }));
  const guard = createGuard({ issuer: clearance.issuer, audience, jwks: { keys: [] }, introspection: { credentials: { clientId: 'orders-guard', clientSecret: 's3cret' } } });
  const app = Fastify();
  await app.register(clearanceGuard, { guard, origin: 'https://orders.example.com' });
  app.get('/api/orders', () => 'never');
  t.after(() => app.close());
  const caller = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') };
  const response = await app.inject({ method: 'GET', url: '/api/orders', headers: { authorization: 'Bearer clr_at_0123456789abcdef', traceparent: traceparent(caller.traceId, caller.spanId) } });
  assert.equal(response.statusCode, 401);
  assert.equal(clearance.seen[0]?.headers.traceparent, traceparent(caller.traceId, caller.spanId), 'the introspection continues the caller’s trace');
});

test('the evidence recorder’s token request and evidence append carry the active span’s traceparent', async (t) => {
  const clearance = await clearanceStandIn(t, (path) =>
    path === '/token' ? { status: 200, body: { access_token: 'evidence-token', token_type: 'Bearer', expires_in: 300 } } : { status: 201, body: { event_id: 'e-1', type: 'order.received', payload_sha256: 'x' } },
  );
  const recorder = createEvidenceRecorder({ issuer: clearance.issuer, clientAuth: { clientId: 'broker-oms', clientSecret: 's3cret' } });
  await tracer.startActiveSpan('settle', async (span) => {
    await recorder.record({ txn: 'txn-1', type: 'order.received', eventId: 'e-1', payload: '{}' });
    span.end();
    const expected = traceparent(span.spanContext().traceId, span.spanContext().spanId);
    assert.deepEqual(
      clearance.seen.map((r) => [r.path, r.headers.traceparent]),
      [
        ['/token', expected],
        ['/audit/evidence', expected],
      ],
    );
  });
});

test('in a host that traces its requests (@fastify/otel), the request’s span gets the token’s txn and client, never its subject', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const issuer = 'https://clearance.example.com';
  const guard = createGuard({ issuer, audience, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] } });
  const app = Fastify();
  await app.register(new FastifyOtelInstrumentation({ instrumentHooks: false }).plugin());
  await app.register(clearanceGuard, { guard, origin: 'https://orders.example.com' });
  app.get('/api/orders', (request) => ({ txn: request.access!.txn }));
  t.after(() => app.close());
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ client_id: 'arranger-backend', scope: 'order:create', txn: 'txn-42', jti: 'j-1' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience(audience)
    .setSubject('person-7f3a')
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(privateKey);
  exporter.reset();
  const response = await app.inject({ method: 'GET', url: '/api/orders', headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.statusCode, 200, response.body);
  const request = exporter.getFinishedSpans().find((s) => s.attributes['fastify.root'] === '@fastify/otel');
  assert.ok(request, 'the host traced the request');
  assert.equal(request.attributes['clearance.txn'], 'txn-42');
  assert.equal(request.attributes['clearance.client_id'], 'arranger-backend');
  assert.doesNotMatch(JSON.stringify(request.attributes), /person-7f3a/, 'the subject may be a person');
});
