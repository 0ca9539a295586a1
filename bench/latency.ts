import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { es256Costs } from './crypto-ceiling.ts';
import { adminQuery, clientAssertionParams, loadTokenEndpoint, palindrome, round, startServerProcess, tokenEndpointRequest, withSearchPath, type BenchLine, type ServerProcess } from './harness.ts';
import { benchDocument, clientId, tokenRequest } from './m2m.ts';
import { LeanPool, type LeanRequest } from './lean-http.ts';
import { startFloorProcess } from './peer.ts';

/**
 * `m2m-latency` (issue 20 item 6): tail latency of the token endpoint at half its peak, the
 * m2m-private-key-jwt request (fresh ES256 assertion, durable jti, ES256 token, token.issued
 * durable before the answer). One line per dialect: SQLite always, PostgreSQL as well when
 * BENCH_DATABASE_URL or TEST_DATABASE_URL is set (in a schema of its own, dropped afterwards).
 *
 * 1. Peak: a short closed-loop run (16 connections, BENCH_PEAK_SECONDS, default 3), on both
 *    servers alternately (SQLite, PostgreSQL, PostgreSQL, SQLite; the mean of each one's two runs).
 * 2. Open loop at BENCH_LOAD_FRACTION (default 0.5) of that peak for `seconds`: request i is due
 *    at start + i / rate whatever happened to the others, and its latency is counted from when it
 *    was due, not from when it could be sent. A closed loop (each connection waits for its answer
 *    before sending the next) sends nothing while the server stalls, so the stall hides in a few
 *    slow samples instead of every request that arrived meanwhile (coordinated omission). The
 *    connections (BENCH_LATENCY_CONNECTIONS, default 64) are open before the clock starts, and
 *    the first BENCH_LATENCY_WARMUP_SECONDS (default 1) at the rate are sent but not counted: the
 *    server idles while the load generator signs the requests, and its first turns from idle took
 *    up to 26 ms each (the first 114-153 requests, 0.5 % of a 10 s run), which is not the steady
 *    state at half the peak that this figure is about (docs/performance.md).
 *
 * Reports p50/p99/p99.9/max latency, the server's event-loop delay percentiles (perf_hooks
 * monitorEventLoopDelay in the server, bench/loop-probe.ts), the load generator's own worst
 * event-loop delay (a stall of the generator would count against the server), and the machine's
 * load average before and after (the machine may be shared: compare runs made back to back).
 * BENCH_STALLS=1 also times the suspects inside the server and prints, on stderr, which work
 * overlapped each stall (bench/loop-probe.ts).
 *
 * 3. The same for the floor of `peer` (bench/floor-server.ts: node:http doing only the request's
 *    crypto, on its event loop): its own peak, then the open loop at half of it, one more line
 *    (`server: floor`, without the loop probe). What it shows is the tail this machine and this
 *    load generator give a server that does nothing else: the bound of the p99 target.
 */
export async function m2mLatency(seconds: number): Promise<BenchLine[]> {
  const url = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL;
  const subjects: LatencySubject[] = [];
  try {
    subjects.push(await startSubject('sqlite'));
    if (url) subjects.push(await startSubject('postgres', url));
    // The peaks alternately (sqlite, postgres, postgres, sqlite): the target's ratio of the two
    // compares runs made under the same machine; one after the other it moved 0.49–1.04 between
    // whole runs of the same code. Each server's first run is after its warm-up.
    const peaks = await palindrome(subjects.map((subject) => () => peakOf(subject)));
    const lines: BenchLine[] = [];
    for (const [i, subject] of subjects.entries()) lines.push(await openLoopOn(subject, peaks[i]!('rps'), seconds));
    const floor = await startFloorSubject();
    subjects.push(floor);
    lines.push(await openLoopOn(floor, Number((await peakOf(floor)).rps), seconds));
    return lines;
  } finally {
    for (const subject of subjects) await subject.stop();
  }
}

interface LatencySubject {
  /** The floor stores nothing: `none`. */
  database: 'sqlite' | 'postgres' | 'none';
  /** Clearance's server, or the floor (which has no loop probe). */
  kind: 'clearance' | 'floor';
  server: ServerProcess;
  make: () => { body: string };
  /** Peak runs made so far (the first warms the server up). */
  runs: number;
  stop(): Promise<void>;
}

/** A server on `database` with the loop probe preloaded, and the maker of its requests. */
async function startSubject(database: 'sqlite' | 'postgres', url?: string): Promise<LatencySubject> {
  const schema = `bench_latency_${randomBytes(6).toString('hex')}`;
  const env: NodeJS.ProcessEnv = { BENCH_STALLS: process.env.BENCH_STALLS ?? '' };
  if (url) {
    await adminQuery(url, `create schema ${schema}`);
    env.DATABASE_URL = withSearchPath(url, schema);
  }
  const dropSchema = async () => {
    if (url) await adminQuery(url, `drop schema if exists ${schema} cascade`);
  };
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let server: ServerProcess;
  try {
    server = await startServerProcess(benchDocument(publicKey, { senderConstrained: false }), env, { nodeArgs: ['--import', './bench/loop-probe.ts'], ipc: true });
  } catch (error) {
    await dropSchema();
    throw error;
  }
  const issuer = server.issuer;
  return {
    database,
    kind: 'clearance',
    server,
    make: () => ({ body: tokenRequest(clientAssertionParams(clientId, privateKey, issuer)) }),
    runs: 0,
    async stop() {
      await server.stop();
      await dropSchema();
    },
  };
}

/** The floor (bench/floor-server.ts), its crypto on its event loop as Clearance's, and the maker of its requests. */
async function startFloorSubject(): Promise<LatencySubject> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = await startFloorProcess(publicKey, 'sync');
  return {
    database: 'none',
    kind: 'floor',
    server,
    make: () => ({ body: tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)) }),
    runs: 0,
    stop: () => server.stop(),
  };
}

/** A short closed-loop run at full load (16 connections, BENCH_PEAK_SECONDS, default 3). */
function peakOf(subject: LatencySubject): Promise<BenchLine> {
  const costs = es256Costs();
  const peakSeconds = Number(process.env.BENCH_PEAK_SECONDS ?? 3);
  return loadTokenEndpoint('peak', subject.server, {
    connections: 16,
    seconds: peakSeconds,
    cryptoMs: costs.signMs + costs.verifyMs,
    aheadSeconds: peakSeconds,
    maxAhead: 60_000,
    ...(subject.runs++ > 0 ? { warmupSeconds: 0 } : {}),
    make: subject.make,
  });
}

/** The open loop at BENCH_LOAD_FRACTION of `peakRps` for `seconds`, and its line. */
async function openLoopOn(subject: LatencySubject, peakRps: number, seconds: number): Promise<BenchLine> {
  const { database, server } = subject;
  const load1Before = loadavg()[0]!;
  const rate = Math.max(1, Math.round(peakRps * Number(process.env.BENCH_LOAD_FRACTION ?? 0.5)));
  // A second at the rate before the measure (BENCH_LATENCY_WARMUP_SECONDS): the server idles while
  // the requests are made, and its first turns from idle are not the steady state measured here.
  const warmup = Math.ceil(rate * Number(process.env.BENCH_LATENCY_WARMUP_SECONDS ?? 1));
  const requests = Array.from({ length: warmup + Math.ceil(rate * seconds) }, () => tokenEndpointRequest(server.issuer, subject.make().body));
  const probed = subject.kind === 'clearance';
  const result = await openLoop(server.issuer, rate, requests, Number(process.env.BENCH_LATENCY_CONNECTIONS ?? 64), warmup, () => {
    if (probed) void probe(server, 'reset');
  });
  const report = probed ? ((await probe(server, 'report')) as Record<string, unknown>) : {};
  if (result.failures > 0) throw new Error(`m2m-latency (${database}): ${result.failures} of ${requests.length} requests failed`);
  if (report.attribution) {
    console.error(JSON.stringify({ scenario: 'm2m-latency', database, attribution: report.attribution, totals: report.totals, merkle_appends: report.merkle_appends }, null, 1));
  }
  return {
    scenario: 'm2m-latency',
    database,
    ...(probed ? {} : { server: subject.kind }),
    peak_rps: round(peakRps),
    target_rps: rate,
    achieved_rps: result.rps,
    requests: requests.length - warmup,
    warmup_requests: warmup,
    p50_ms: result.p50,
    p99_ms: result.p99,
    p999_ms: result.p999,
    max_ms: result.max,
    ...(probed
      ? {
          server_loop_p50_ms: report.loop_p50_ms as number,
          server_loop_p99_ms: report.loop_p99_ms as number,
          server_loop_p999_ms: report.loop_p999_ms as number,
          server_loop_max_ms: report.loop_max_ms as number,
        }
      : {}),
    client_loop_max_ms: result.clientLoopMaxMs,
    loadavg_1m_before: round(load1Before),
    loadavg_1m_after: round(loadavg()[0]!),
  };
}

/**
 * Sends `requests[i]` at start + i / rate (a 1 ms pump sends whatever is due), on up to
 * `connections` connections, all opened before the clock starts (the pool queues the rest);
 * latency runs from when each was due. The first `unmeasured` requests are sent but not counted;
 * `onMeasuring` is called as the first counted one is sent.
 */
async function openLoop(
  origin: string,
  rate: number,
  requests: LeanRequest[],
  connections: number,
  unmeasured = 0,
  onMeasuring?: () => void,
): Promise<{ rps: number; p50: number; p99: number; p999: number; max: number; failures: number; clientLoopMaxMs: number }> {
  const pool = new LeanPool(origin, connections);
  await pool.open();
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const latencies = new Float64Array(requests.length);
  const interval = 1000 / rate;
  let failures = 0;
  let sent = 0;
  let settled = 0;
  let lastDone = 0;
  const start = performance.now() + 10;
  await new Promise<void>((resolve) => {
    const finish = () => {
      lastDone = performance.now();
      if (++settled === requests.length) resolve();
    };
    const pump = () => {
      const now = performance.now();
      while (sent < requests.length && start + sent * interval <= now) {
        const i = sent++;
        if (i === unmeasured) {
          loop.reset();
          onMeasuring?.();
        }
        const due = start + i * interval;
        pool.send(requests[i]!, (result) => {
          latencies[i] = performance.now() - due;
          if (result instanceof Error || result.status !== 200) failures++;
          finish();
        });
      }
      if (sent < requests.length) setTimeout(pump, 1);
    };
    setTimeout(pump, 10);
  });
  loop.disable();
  pool.close();
  const measured = latencies.subarray(Math.min(unmeasured, latencies.length - 1)).sort();
  const pct = (p: number) => round(measured[Math.min(measured.length - 1, Math.floor(measured.length * p))] ?? 0, 2);
  return {
    rps: round(requests.length / ((lastDone - start) / 1000)),
    p50: pct(0.5),
    p99: pct(0.99),
    p999: pct(0.999),
    max: round(measured[measured.length - 1] ?? 0),
    failures,
    clientLoopMaxMs: round(loop.max / 1e6),
  };
}

/** Sends `message` to the server's loop probe and waits for its answer (for 'report'). */
function probe(server: ServerProcess, message: 'reset' | 'report'): Promise<unknown> {
  const child = server.child;
  if (message === 'reset') {
    child.send(message);
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not report its event-loop delay')), 10_000);
    child.once('message', (report) => {
      clearTimeout(timer);
      resolve(report);
    });
    child.send(message);
  });
}
