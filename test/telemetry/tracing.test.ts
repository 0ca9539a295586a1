/**
 * Traces with tracing on, exported to memory (docs/observability.md): the token path's spans and
 * their attributes, the caller's trace continued across token exchange hops, and never a secret
 * or a person's data in any attribute. One SDK for this file (its own process), as
 * `clearance start` has one: its spans are exported synchronously as they end.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type SpanContext } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { decodeJwt, generateKeyPair } from 'jose';
import { newDemoClients, newDpopKey, tokenRequest, type FirmClient } from '../../demo/clients.ts';
import { demoDocument, loopbackAudiences, mandateId } from '../../demo/config.ts';
import { createLogger } from '../../src/log.ts';
import { buildApp } from '../../src/http/app.ts';
import { attributeNames, spanNames, tracingOn } from '../../src/telemetry/spans.ts';
import { flushTracing, startTracing } from '../../src/telemetry/tracing.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';
import { startTestServer } from '../helpers/server.ts';
import { adminQuery, testContext, testDatabaseUrl } from '../helpers/storage.ts';

const exporter = new InMemorySpanExporter();
assert.equal(await startTracing({ spanProcessors: [new SimpleSpanProcessor(exporter)] }), true);

const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
const policies = fileURLToPath(new URL('../../examples/policies', import.meta.url));
const audiences = loopbackAudiences({ orders: 1, execution: 2, clearing: 3 });

/** The demo's world (firms, clients, the algorithm's mandate, the example policies) on a real server. */
async function tradeWorld(t: TestContext, dialect: 'sqlite' | 'postgres') {
  let env: Record<string, string> = {};
  let drop: (() => Promise<void>) | undefined;
  if (dialect === 'postgres') {
    const schema = `test_${randomBytes(8).toString('hex')}`;
    await adminQuery(testDatabaseUrl!, `create schema ${schema}`);
    const url = new URL(testDatabaseUrl!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    env = { DATABASE_URL: url.toString() };
    drop = () => adminQuery(testDatabaseUrl!, `drop schema if exists ${schema} cascade`);
  }
  const server = await startTestServer({ env });
  t.after(async () => {
    await server.close();
    await drop?.();
  });
  const { clients, keys } = await newDemoClients();
  await server.apply(demoDocument(audiences, keys, policies, new Date()));
  const issuer = server.issuer;
  return {
    issuer,
    clients,
    /** algo-7's first token of a trade: under its mandate, starting a txn Clearance mints. */
    firstToken: async () => {
      const answer = await tokenRequest(issuer, clients.algo, { grant_type: 'client_credentials', resource: audiences.orders, mandate: mandateId, txn: 'new' });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body.access_token as string;
    },
    /** A hop's token exchange, sent as from within `caller` (its `traceparent`). */
    exchangeAs: async (caller: SpanContext, client: FirmClient, subjectToken: string, form: Record<string, string>, dpop?: Awaited<ReturnType<typeof newDpopKey>>) => {
      const answer = await context.with(trace.setSpanContext(ROOT_CONTEXT, caller), () =>
        tokenRequest(issuer, client, { grant_type: exchange, subject_token: subjectToken, subject_token_type: accessTokenType, ...form }, dpop),
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body.access_token as string;
    },
  };
}

/** A span of a caller's service (another process), as its `traceparent` names it. */
function callerSpan(traceId = randomBytes(16).toString('hex')): SpanContext {
  return { traceId, spanId: randomBytes(8).toString('hex'), traceFlags: TraceFlags.SAMPLED, isRemote: true };
}

/** The spans exported since the last reset, once every ended span is exported. */
async function finished(): Promise<ReadableSpan[]> {
  await flushTracing();
  return exporter.getFinishedSpans();
}

/** The token endpoint's server span for the request whose child `clearance.issuance` names `clientId`. */
function tokenRequestSpan(spans: ReadableSpan[], clientId: string): ReadableSpan {
  const server = spans.filter((s) => s.name === 'POST /token' && s.attributes[attributeNames.clientId] === clientId);
  assert.equal(server.length, 1, `one token request of ${clientId}: ${spans.map((s) => s.name).join(', ')}`);
  return server[0]!;
}

function childrenOf(spans: ReadableSpan[], parent: ReadableSpan): ReadableSpan[] {
  return spans.filter((s) => s.spanContext().traceId === parent.spanContext().traceId && s.parentSpanContext?.spanId === parent.spanContext().spanId);
}

function descendantsOf(spans: ReadableSpan[], parent: ReadableSpan): ReadableSpan[] {
  const children = childrenOf(spans, parent);
  return [...children, ...children.flatMap((child) => descendantsOf(spans, child))];
}

function only(spans: ReadableSpan[], name: string): ReadableSpan {
  const named = spans.filter((s) => s.name === name);
  assert.equal(named.length, 1, `one ${name} among ${spans.map((s) => s.name).join(', ')}`);
  return named[0]!;
}

describe('traces of the token path', () => {
  for (const dialect of testDatabaseUrl ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) {
    test(`an m2m token is one server span with its steps as children, each naming client, grant type, method, decision and txn (${dialect})`, async (t) => {
      const world = await tradeWorld(t, dialect);
      exporter.reset();
      const token = await world.firstToken();
      const txn = String(decodeJwt(token).txn);
      const spans = await finished();

      const request = tokenRequestSpan(spans, 'algo-7');
      assert.equal(request.kind, SpanKind.SERVER);
      assert.equal(request.parentSpanContext, undefined, 'no traceparent was sent: a trace of its own');
      assert.match(String(request.attributes[attributeNames.requestId]), /^[0-9a-f-]{36}$/, 'the request id of its log lines');
      assert.deepEqual(
        { grant: request.attributes[attributeNames.grantType], client: request.attributes[attributeNames.clientId], method: request.attributes[attributeNames.authMethod], decision: request.attributes[attributeNames.decision], txn: request.attributes[attributeNames.txn] },
        { grant: 'client_credentials', client: 'algo-7', method: 'private_key_jwt', decision: 'allow', txn },
      );
      assert.equal(request.attributes['http.route'], '/token');
      assert.equal(request.attributes['http.response.status_code'], 200);

      const steps = childrenOf(spans, request);
      const authentication = only(steps, spanNames.clientAuthentication);
      assert.deepEqual(authentication.attributes, { [attributeNames.clientId]: 'algo-7', [attributeNames.authMethod]: 'private_key_jwt', [attributeNames.decision]: 'allow' });
      const mandate = only(steps, spanNames.mandateCheck);
      assert.deepEqual(mandate.attributes, { [attributeNames.mandateId]: mandateId, [attributeNames.decision]: 'allow' });
      const issuance = only(steps, spanNames.issuance);
      assert.deepEqual(issuance.attributes, {
        [attributeNames.grantType]: 'client_credentials',
        [attributeNames.clientId]: 'algo-7',
        [attributeNames.audience]: audiences.orders,
        [attributeNames.txn]: txn,
        [attributeNames.mandateId]: mandateId,
        [attributeNames.binding]: 'bearer',
        [attributeNames.decision]: 'allow',
      });
      assert.equal(only(childrenOf(spans, issuance), spanNames.policyDecision).attributes[attributeNames.decision], 'allow');
      const audit = only(steps, spanNames.auditAppend);
      assert.deepEqual(audit.attributes, { [attributeNames.auditEventTypes]: ['token.issued'], [attributeNames.auditEventCount]: 1, [attributeNames.txn]: txn });
      // In the order the endpoint runs them.
      const started = (s: ReadableSpan) => s.startTime[0] * 1e9 + s.startTime[1];
      assert.ok(started(authentication) < started(mandate) && started(mandate) < started(issuance) && started(issuance) < started(audit));
      for (const step of [authentication, mandate, issuance, audit]) assert.equal(step.status.code, SpanStatusCode.UNSET, step.name);

      if (dialect === 'postgres') {
        // The pg instrumentation patched the pg our ES modules imported (src/telemetry/tracing.ts).
        const queries = descendantsOf(spans, request).filter((s) => s.name.startsWith('pg.query'));
        assert.ok(queries.length > 0, `pg query spans under the token request: ${spans.map((s) => s.name).join(', ')}`);
        assert.ok(queries.some((q) => String(q.attributes['db.query.text'] ?? q.attributes['db.statement']).includes('select')), 'the SQL, with its parameters as placeholders');
      }
    });
  }

  test('each token exchange hop continues its caller’s trace: same trace id, parent the caller’s span, the same txn', async (t) => {
    const world = await tradeWorld(t, 'sqlite');
    const first = await world.firstToken();
    const txn = String(decodeJwt(first).txn);
    exporter.reset();

    // The arranger's service exchanges the token it received, inside its own span of the trade.
    const arranger = callerSpan();
    const toBroker = await world.exchangeAs(arranger, world.clients.arranger, first, { resource: audiences.execution });
    // The broker's service, next in the same trace, exchanges that one (DPoP-bound) for clearing.
    const broker = callerSpan(arranger.traceId);
    await world.exchangeAs(broker, world.clients.broker, toBroker, { audience: audiences.clearing, scope: 'settlement:submit' }, await newDpopKey());
    const spans = await finished();

    for (const [caller, clientId, binding] of [
      [arranger, 'arranger-backend', 'bearer'],
      [broker, 'broker-backend', 'dpop'],
    ] as const) {
      const hop = tokenRequestSpan(spans, clientId);
      assert.equal(hop.spanContext().traceId, arranger.traceId, `${clientId}: the trade's trace`);
      assert.equal(hop.parentSpanContext?.spanId, caller.spanId, `${clientId}: a child of its caller's span`);
      assert.equal(hop.attributes[attributeNames.txn], txn);
      assert.equal(hop.attributes[attributeNames.grantType], exchange);
      assert.equal(hop.attributes[attributeNames.decision], 'allow');
      const steps = childrenOf(spans, hop);
      assert.deepEqual(
        steps.map((s) => s.name).sort(),
        [spanNames.auditAppend, spanNames.clientAuthentication, spanNames.issuance, spanNames.mandateCheck].sort(),
      );
      const issuance = only(steps, spanNames.issuance);
      assert.equal(issuance.attributes[attributeNames.txn], txn);
      assert.equal(issuance.attributes[attributeNames.binding], binding);
      assert.equal(only(steps, spanNames.mandateCheck).attributes[attributeNames.mandateId], mandateId, 'the mandate rechecked at the hop');
      assert.deepEqual(only(steps, spanNames.auditAppend).attributes[attributeNames.auditEventTypes], ['token.exchanged']);
    }
    assert.equal(new Set(spans.map((s) => s.spanContext().traceId)).size, 1, 'nothing of the two hops outside the trade’s trace');
  });

  test('a refused client authentication is a deny with its error code, on its span and on the request’s, naming no client', async (t) => {
    const world = await tradeWorld(t, 'sqlite');
    const impostor: FirmClient = { ...world.clients.algo, privateKey: (await generateKeyPair('ES256')).privateKey };
    exporter.reset();
    const answer = await tokenRequest(world.issuer, impostor, { grant_type: 'client_credentials', resource: audiences.orders });
    assert.equal(answer.status, 401);
    const spans = await finished();
    const request = only(spans, 'POST /token');
    assert.equal(request.attributes[attributeNames.decision], 'deny');
    assert.equal(request.attributes[attributeNames.errorType], 'invalid_client');
    assert.equal(request.attributes[attributeNames.clientId], undefined, 'the claimed client is only what the caller sent');
    assert.notEqual(request.status.code, SpanStatusCode.ERROR, 'a 4xx is the caller’s error, not the server’s');
    const authentication = only(childrenOf(spans, request), spanNames.clientAuthentication);
    assert.deepEqual(authentication.attributes, { [attributeNames.errorType]: 'invalid_client', [attributeNames.decision]: 'deny' });
    assert.deepEqual(authentication.status, { code: SpanStatusCode.ERROR, message: 'invalid_client' });
    assert.equal(authentication.events.length, 0, 'no exception event: its message may quote what was sent');
  });

  test('no span attribute, name, status or event carries a secret or a person’s data, through a person’s sign-in, code, tokens and a trade', async (t) => {
    exporter.reset();
    const secrets: string[] = [];
    // A person: a session, an authorization code with PKCE, tokens, a refresh, introspection.
    const f = await codeFlowFixture(t);
    const { code, pkce, person } = await f.authorizeAndApprove({});
    const redeemed = await f.redeem('web-app', code, pkce.verifier);
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    const tokens = redeemed.json() as { access_token: string; refresh_token: string; id_token: string };
    const refreshed = await f.refresh('web-app', tokens.refresh_token);
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    await f.introspect('web-app', tokens.access_token);
    const reused = await f.redeem('web-app', code, pkce.verifier);
    assert.equal(reused.statusCode, 400, 'a reused code is refused');
    const user = await f.ctx.storage.db.selectFrom('users').selectAll().where('id', '=', person.userId).executeTakeFirstOrThrow();
    const personal = [person.userId, user.username, String(user.email), String(user.name)];
    secrets.push(code, pkce.verifier, tokens.access_token, tokens.refresh_token, tokens.id_token, (refreshed.json() as { access_token: string }).access_token, person.cookie.split('=')[1]!, f.secrets['web-app']!, f.basic('web-app').slice('Basic '.length));
    // A trade: client assertions, an access token, an exchange, a DPoP proof.
    const world = await tradeWorld(t, 'sqlite');
    const first = await world.firstToken();
    const toBroker = await world.exchangeAs(callerSpan(), world.clients.arranger, first, { resource: audiences.execution });
    secrets.push(first, toBroker);

    const spans = await finished();
    assert.ok(spans.some((s) => s.name === 'POST /token' && s.attributes[attributeNames.grantType] === 'authorization_code'), 'the person’s code was traced');
    assert.ok(spans.some((s) => s.name === 'GET /authorize'), 'their authorization request was traced');
    const texts = spans.flatMap((s) => [s.name, s.status.message ?? '', JSON.stringify(s.attributes), JSON.stringify(s.events)]);
    for (const text of texts) {
      for (const secret of secrets) assert.ok(!text.includes(secret), `a secret in a span: ${text}`);
      for (const value of personal) assert.ok(!text.includes(value), `personal data (${value}) in a span: ${text}`);
      assert.doesNotMatch(text, /eyJ[\w-]{8,}\.[\w-]{8,}/, 'nothing JWT-shaped (client assertions, tokens, proofs)');
      assert.doesNotMatch(text, /[\w.+-]+@[\w-]+\.[\w.-]+/, 'no email address');
      assert.doesNotMatch(text, /[?&](code|state|code_verifier|client_secret)=/, 'no query string');
    }
  });
});

test('an unexpected error is the request span’s ERROR, with the status as error.type and nothing of its message', async (t) => {
  const { ctx } = await testContext({ t });
  const app = buildApp(ctx, [{ register: (instance) => void instance.get('/boom', () => Promise.reject(new Error('secret-looking detail'))) }]);
  t.after(() => app.close());
  exporter.reset();
  const response = await app.inject({ method: 'GET', url: '/boom?code=abc' });
  assert.equal(response.statusCode, 500);
  const request = only(await finished(), 'GET /boom');
  assert.deepEqual(request.status, { code: SpanStatusCode.ERROR });
  assert.equal(request.attributes[attributeNames.errorType], '500');
  assert.equal(request.attributes['url.path'], '/boom', 'the route, never the query');
  assert.doesNotMatch(JSON.stringify([request.attributes, request.events]), /secret-looking|code=abc/);
});

test('with tracing on, a log line written in a traced request names its trace and span', () => {
  assert.equal(tracingOn, true);
  let written = '';
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => ((written += String(chunk)), done()) }));
  const span = trace.getTracer('test').startSpan('work');
  context.with(trace.setSpan(context.active(), span), () => log.info('inside'));
  log.info('outside');
  span.end();
  const [inside, outside] = written.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(inside!.trace_id, span.spanContext().traceId);
  assert.equal(inside!.span_id, span.spanContext().spanId);
  assert.equal(outside!.trace_id, undefined);
});
