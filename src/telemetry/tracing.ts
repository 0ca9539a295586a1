import { createRequire } from 'node:module';
import { ProxyTracerProvider, trace } from '@opentelemetry/api';
import type { NodeSDK, NodeSDKConfiguration } from '@opentelemetry/sdk-node';
import type { FastifyOtelInstrumentation } from '@fastify/otel';
import { enableSpans } from './spans.ts';

/**
 * OpenTelemetry traces (docs/observability.md): off unless the environment asks for them, with
 * the standard variables the SDK reads (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...).
 * Off, nothing of the SDK is even loaded; on, `@opentelemetry/sdk-node` exports the spans of
 * Clearance's requests (src/telemetry/fastify.ts), of its token path (spans.ts) and of its
 * PostgreSQL queries (`@opentelemetry/instrumentation-pg`).
 */

/**
 * Whether `env` asks for traces: an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), or an exporter named in OTEL_TRACES_EXPORTER other than
 * `none` — and not OTEL_SDK_DISABLED=true. Nothing else turns tracing on: an SDK that defaults to
 * exporting to localhost:4318 must not do so on a node nobody configured.
 */
export function tracingConfigured(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((name) => name.trim()).filter((name) => name !== '' && name !== 'null');
  // As the SDK reads it: `none` first means no exporter, whatever follows.
  if (exporters[0] === 'none') return false;
  if (exporters.length > 0) return true;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

interface Running {
  sdk: NodeSDK;
  fastify: typeof FastifyOtelInstrumentation;
}

let running: Running | undefined;

/**
 * Starts tracing when `env` asks for it (`tracingConfigured`), once per process; resolves whether
 * it runs. `spanProcessors` (tests) replace the exporters the environment would configure, and
 * turn tracing on whatever the environment says (but OTEL_SDK_DISABLED). Call it before the
 * server is built: the HTTP application is instrumented as it is built, and only then.
 */
export async function startTracing(options: { env?: NodeJS.ProcessEnv; spanProcessors?: NodeSDKConfiguration['spanProcessors'] } = {}): Promise<boolean> {
  if (running) return true;
  const env = options.env ?? process.env;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  if (!options.spanProcessors && !tracingConfigured(env)) return false;
  // Loaded only now: with tracing off, none of the SDK is imported.
  const [{ NodeSDK }, { PgInstrumentation }, { FastifyOtelInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/instrumentation-pg'),
    import('@fastify/otel'),
  ]);
  const sdk = new NodeSDK({
    // `clearance` unless the operator names the service (OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES).
    ...(namesService(env) ? {} : { serviceName: 'clearance' }),
    // A query is traced only within a traced request: the pool's background work (change notices,
    // the sealer, schedules) starts no trace of its own.
    instrumentations: [new PgInstrumentation({ requireParentSpan: true })],
    // Traces only: metrics are Prometheus' (GET /metrics), logs are pino's JSON lines.
    metricReaders: [],
    logRecordProcessors: [],
    ...(options.spanProcessors ? { spanProcessors: options.spanProcessors } : {}),
  });
  sdk.start();
  // `pg` is CommonJS, imported by our ES modules. The instrumentation patches it through the
  // require hook the SDK just installed, which sees only what is required after it: when the
  // server's modules were imported before this ran (a test, the demo), requiring pg here has the
  // hook patch the module now — in place, on its classes' prototypes, which the ES import shares.
  const require = createRequire(import.meta.url);
  require('pg');
  enableSpans((require('../../package.json') as { version: string }).version);
  running = { sdk, fastify: FastifyOtelInstrumentation };
  return true;
}

/** Whether the environment names the service itself (then it is not called `clearance`). */
function namesService(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SERVICE_NAME?.trim()) return true;
  return (env.OTEL_RESOURCE_ATTRIBUTES ?? '').split(',').some((pair) => pair.split('=')[0]!.trim() === 'service.name');
}

/** @fastify/otel's instrumentation class, loaded by `startTracing` (undefined while tracing is off). */
export function fastifyInstrumentation(): typeof FastifyOtelInstrumentation | undefined {
  return running?.fastify;
}

/**
 * Exports every span ended so far (the server's graceful close calls it, so a SIGTERM loses none),
 * waiting at most `timeoutMs`: a collector that does not answer must not hold up a drain.
 */
export async function flushTracing(timeoutMs = 5_000): Promise<void> {
  if (!running) return;
  const global = trace.getTracerProvider();
  const provider = (global instanceof ProxyTracerProvider ? global.getDelegate() : global) as { forceFlush?: () => Promise<void> };
  if (!provider.forceFlush) return;
  await bounded(provider.forceFlush(), timeoutMs);
}

/** Exports what is left and stops the SDK (end of the process), waiting at most `timeoutMs`. */
export async function stopTracing(timeoutMs = 5_000): Promise<void> {
  if (!running) return;
  const { sdk } = running;
  await bounded(sdk.shutdown(), timeoutMs);
}

async function bounded(work: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    timer.unref();
  });
  try {
    // An export that fails is the collector's problem, never the server's.
    await Promise.race([work.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
