/**
 * Issue 25's done-when: the demo's trade is one trace with a span per hop, each carrying the txn
 * (docs/observability.md "The demo's trade as one trace"). `npm run demo` with tracing on, its
 * spans exported to memory instead of a collector.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { flushTracing, startTracing } from '../../src/telemetry/tracing.ts';
import { runDemo } from '../../demo/workflow.ts';

const exporter = new InMemorySpanExporter();
await startTracing({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

test('the demo’s trade is one trace: algo-7’s token, then arranger → broker → clearing, each hop’s span and token exchange with the txn', async () => {
  const outcome = await runDemo(() => undefined);
  await flushTracing();
  assert.ok(outcome.traceId, 'the demo names its trace when tracing is on');
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === outcome.traceId);
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
  const parentOf = (span: ReadableSpan) => byId.get(span.parentSpanContext?.spanId ?? '');
  const one = (name: string, where: (s: ReadableSpan) => boolean = () => true) => {
    const found = spans.filter((s) => s.name === name && where(s));
    assert.equal(found.length, 1, `one ${name}: ${spans.map((s) => s.name).join(', ')}`);
    return found[0]!;
  };
  const tokenRequest = (clientId: string) => one('POST /token', (s) => s.attributes['clearance.client_id'] === clientId);

  const trade = one('demo.trade');
  assert.equal(trade.parentSpanContext, undefined, 'the trade’s root');
  const hops = { arranger: one('arranger POST /orders'), broker: one('broker POST /executions'), clearing: one('clearing POST /settlements') };
  const exchanges = { first: tokenRequest('algo-7'), arranger: tokenRequest('arranger-backend'), broker: tokenRequest('broker-backend') };

  // Who called whom: algo-7 → (Clearance, arranger); arranger → (Clearance, broker); broker → (Clearance, clearing).
  assert.equal(parentOf(exchanges.first), trade);
  assert.equal(parentOf(hops.arranger), trade);
  assert.equal(parentOf(exchanges.arranger), hops.arranger, 'the arranger’s token exchange continues its hop');
  assert.equal(parentOf(hops.broker), hops.arranger);
  assert.equal(parentOf(exchanges.broker), hops.broker, 'the broker’s token exchange continues its hop');
  assert.equal(parentOf(hops.clearing), hops.broker);

  for (const span of [trade, ...Object.values(hops), ...Object.values(exchanges)]) {
    assert.equal(span.attributes['clearance.txn'], outcome.txn, `${span.name} carries the txn`);
  }
  for (const span of [...Object.values(hops), ...Object.values(exchanges)]) assert.equal(span.kind, SpanKind.SERVER, span.name);
  assert.deepEqual(
    Object.values(hops).map((s) => s.attributes['clearance.client_id']),
    ['algo-7', 'arranger-backend', 'broker-backend'],
    'each hop names the client that called it (the guard)',
  );
  // The evidence producers' calls (broker-oms, clearing-settlement) are in the trade's trace too.
  assert.ok(spans.some((s) => s.name === 'POST /audit/evidence' && parentOf(s) === hops.broker));
  assert.ok(spans.some((s) => s.name === 'POST /audit/evidence' && parentOf(s) === hops.clearing));
});
