/**
 * `clearance start` with OTEL_EXPORTER_OTLP_ENDPOINT set exports its traces over OTLP/HTTP
 * (docs/observability.md): a receiver started here takes them as JSON (http/json), and the spans
 * of a token request arrive — its server span continuing the caller's traceparent, the token
 * path's steps, and with PostgreSQL (TEST_DATABASE_URL) its queries — by the time a SIGTERM's
 * graceful stop has exported what was left.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { main } from '../../src/cli/main.ts';
import { clientCredentialsRequest, startNode, type Cleanup } from '../helpers/cluster.ts';
import { freePort } from '../helpers/server.ts';
import { adminQuery, testDatabaseUrl } from '../helpers/storage.ts';

const resource = 'https://orders.otlp.example/api';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  arrayValue?: { values: OtlpValue[] };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: OtlpValue }[];
}
interface ExportedSpan extends OtlpSpan {
  service: string;
  attribute(key: string): string | number | undefined;
}

/** An OTLP/HTTP traces receiver (POST /v1/traces, JSON): what it received, span by span. */
async function otlpReceiver(t: TestContext) {
  const spans: ExportedSpan[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.method === 'POST' && request.url === '/v1/traces') {
        assert.match(String(request.headers['content-type']), /application\/json/);
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
        };
        for (const resourceSpans of body.resourceSpans) {
          const service = resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
          for (const scope of resourceSpans.scopeSpans) {
            for (const span of scope.spans) {
              spans.push({
                ...span,
                service,
                attribute: (key) => {
                  const value = span.attributes?.find((a) => a.key === key)?.value;
                  return value?.stringValue ?? (value?.intValue === undefined ? undefined : Number(value.intValue));
                },
              });
            }
          }
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spans };
}

async function tracedNode(t: TestContext, receiver: string, databaseUrl?: string) {
  const cleanups: Cleanup[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-otlp-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    CLEARANCE_ISSUER: issuer,
    CLEARANCE_DATA_DIR: dataDir,
    CLEARANCE_MASTER_KEY: randomBytes(32).toString('hex'),
    CLEARANCE_DRAIN_DELAY_MS: '0',
    LOG_LEVEL: 'info',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    // Longer than the test: only the graceful stop's flush can deliver the spans, so the test proves it.
    OTEL_BSP_SCHEDULE_DELAY: '60000',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  };
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const file = join(dataDir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      resource_servers: [{ identifier: resource, scopes: ['order:create'], access_token_ttl: 300 }],
      clients: [
        {
          client_id: 'otlp-client',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...key.publicKey.export({ format: 'jwk' }), kid: 'otlp-1', alg: 'ES256' }] },
          grant_types: ['client_credentials'],
          scope: 'order:create',
        },
      ],
    }),
  );
  const lines: string[] = [];
  assert.equal(await main(['apply', '-f', file], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) }), 0, lines.join('\n'));
  const node = await startNode(env, port, cleanups);
  return { node, issuer, tokenRequest: () => clientCredentialsRequest({ issuer, clientId: 'otlp-client', key: key.privateKey, kid: 'otlp-1', resource }) };
}

for (const dialect of testDatabaseUrl ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const)) {
  test(`a node with OTEL_EXPORTER_OTLP_ENDPOINT exports a token request's spans over OTLP/HTTP, the last ones at its graceful stop (${dialect})`, async (t) => {
    const receiver = await otlpReceiver(t);
    let databaseUrl: string | undefined;
    if (dialect === 'postgres') {
      const schema = `test_${randomBytes(8).toString('hex')}`;
      await adminQuery(testDatabaseUrl!, `create schema ${schema}`);
      t.after(() => adminQuery(testDatabaseUrl!, `drop schema if exists ${schema} cascade`));
      const url = new URL(testDatabaseUrl!);
      url.searchParams.set('options', `-c search_path=${schema}`);
      databaseUrl = url.toString();
    }
    const { node, issuer, tokenRequest } = await tracedNode(t, receiver.endpoint, databaseUrl);

    const caller = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex') };
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', traceparent: `00-${caller.traceId}-${caller.spanId}-01` },
      body: tokenRequest(),
    });
    assert.equal(response.status, 200, await response.text());

    // The graceful stop flushes the exporter (src/server.ts close): no wait on the batch schedule.
    node.process.kill('SIGTERM');
    const [code] = await node.exited;
    assert.equal(code, 0, node.stderr());

    const trade = receiver.spans.filter((s) => s.traceId === caller.traceId);
    const server = trade.find((s) => s.name === 'POST /token');
    assert.ok(server, `the token request's span arrived: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(server.service, 'clearance', 'service.name defaults to clearance');
    assert.equal(server.parentSpanId, caller.spanId, 'a child of the caller’s span (its traceparent)');
    assert.equal(server.kind, 2, 'SPAN_KIND_SERVER');
    assert.equal(server.attribute('clearance.client_id'), 'otlp-client');
    assert.equal(server.attribute('clearance.grant_type'), 'client_credentials');
    assert.equal(server.attribute('clearance.auth_method'), 'private_key_jwt');
    assert.equal(server.attribute('clearance.decision'), 'allow');
    assert.match(String(server.attribute('clearance.request_id')), /^[0-9a-f-]{36}$/);
    for (const step of ['clearance.client_authentication', 'clearance.issuance', 'clearance.policy_decision', 'clearance.audit_append']) {
      assert.ok(trade.some((s) => s.name === step), `${step} arrived`);
    }
    if (dialect === 'postgres') {
      const queries = trade.filter((s) => s.name.startsWith('pg.'));
      assert.ok(queries.length > 0, `the token request's PostgreSQL queries arrived: ${trade.map((s) => s.name).join(', ')}`);
    }
  });
}
