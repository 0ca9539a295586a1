import { once } from 'node:events';
import { createServer } from 'node:http';
import { alternate, round, type BenchLine } from './harness.ts';
import { m2mPrivateKeyJwt } from './m2m.ts';

/**
 * `tracing` (issue 25 item 4): the m2m-private-key-jwt load with OpenTelemetry tracing off (no
 * OTEL_* variables: the default) and on — every request's spans (the server span, client
 * authentication, policy decision, issuance, audit append; the pg queries on PostgreSQL) batched and
 * exported over OTLP/HTTP (http/protobuf, the SDK's default) to a sink this run starts, which reads
 * and counts what it receives. Runs off, on, on, off (harness `alternate`), so the machine's drift
 * weighs on both alike, and prints the mean of each side: what tracing on costs per request in
 * server CPU, and its throughput beside off (`rps_vs_off`).
 */
export async function tracingOverhead(seconds: number): Promise<BenchLine[]> {
  const sink = await otlpSink();
  try {
    const scenario = 'tracing-m2m-private-key-jwt';
    const off = () => m2mPrivateKeyJwt(seconds, 16, { scenario });
    const on = () => m2mPrivateKeyJwt(seconds, 16, { scenario, env: { OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint, OTEL_SERVICE_NAME: 'clearance-bench' } });
    const received = { before: sink.bytes, exports: sink.exports };
    let requestsOn = 0;
    const counted = async () => {
      const line = await on();
      requestsOn += Math.round(Number(line.rps) * seconds);
      return line;
    };
    const { a, b } = await alternate(off, counted);
    const line = (side: (field: string) => number, tracing: 'off' | 'on'): BenchLine => ({
      scenario,
      tracing,
      rps: round(side('rps')),
      p50_ms: round(side('p50_ms')),
      p99_ms: round(side('p99_ms')),
      server_cpu_us_per_req: round(side('server_cpu_us_per_req'), 1),
      added_cpu_us_per_req: round(side('server_cpu_us_per_req') - a('server_cpu_us_per_req'), 1),
      rps_vs_off: round(side('rps') / a('rps'), 3),
    });
    return [
      line(a, 'off'),
      {
        ...line(b, 'on'),
        // What reached the sink: the exporter kept up (its queue drops spans when it does not).
        exported_bytes_per_req: round((sink.bytes - received.before) / Math.max(1, requestsOn), 1),
        export_requests: sink.exports - received.exports,
      },
    ];
  } finally {
    await sink.close();
  }
}

/** An OTLP/HTTP receiver that reads every export and answers 200: what a collector costs the server, not more. */
async function otlpSink(): Promise<{ endpoint: string; bytes: number; exports: number; close(): Promise<void> }> {
  const state = { bytes: 0, exports: 0 };
  const server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (state.bytes += chunk.length));
    request.on('end', () => {
      state.exports++;
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    get bytes() {
      return state.bytes;
    },
    get exports() {
      return state.exports;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
