import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { main } from '../src/cli/main.ts';
import { freePort } from '../test/helpers/server.ts';

/** One benchmark line (printed as JSON). */
export type BenchLine = Record<string, string | number>;

export interface ServerProcess {
  issuer: string;
  /** CPU time (user + system) the server process has used so far, in ms (Linux /proc). */
  serverCpuMs(): number;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `clearance start` as its own process (the server under test), after applying `document`
 * to its fresh data directory with the CLI. Returns once it answers.
 */
export async function startServerProcess(document: unknown, extraEnv: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-bench-'));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...extraEnv };
  const file = join(dataDir, 'bench.json');
  writeFileSync(file, JSON.stringify(document));
  const lines: string[] = [];
  const applied = await main(['apply', '-f', file], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  if (applied !== 0) throw new Error(`apply failed:\n${lines.join('\n')}`);
  // BENCH_SERVER_NODE_ARGS passes flags to the server's Node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, 'bin/clearance.js', 'start'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 200; i++) {
    try {
      const response = await fetch(`${issuer}/healthz`);
      if (response.ok) break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    issuer,
    serverCpuMs: () => {
      try {
        const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks of 1/100 s
      } catch {
        return Number.NaN;
      }
    },
    dataDir,
    env,
    child,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Keeps `connections` requests in flight against `origin` for `seconds`, each body from `next()`,
 * and reports throughput and latency percentiles. Fails if any response is not 200.
 */
export async function load(options: {
  origin: string;
  path: string;
  connections: number;
  seconds: number;
  request: () => { body: string; headers: Record<string, string> };
}): Promise<{ rps: number; p50_ms: number; p99_ms: number; requests: number; failures: number }> {
  const pool = new Pool(options.origin, { connections: options.connections, pipelining: 1 });
  const latencies: number[] = [];
  let failures = 0;
  const deadline = performance.now() + options.seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const { body, headers } = options.request();
      const start = performance.now();
      const response = await pool.request({ origin: options.origin, path: options.path, method: 'POST', body, headers });
      await response.body.text();
      latencies.push(performance.now() - start);
      if (response.statusCode !== 200) failures++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: options.connections }, worker));
  const elapsed = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return { rps: round(latencies.length / elapsed), p50_ms: pct(0.5), p99_ms: pct(0.99), requests: latencies.length, failures };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * The line of a load scenario bound by its cryptography: throughput and latency, the ceiling the
 * crypto alone allows (`cryptoMs` per request on one core) and the ratio to it, and the server's
 * CPU per request — what the ratio would be if the server had a core to itself (the load
 * generator shares this machine). Throws when any request failed.
 */
export function cryptoBoundLine(
  scenario: string,
  result: { rps: number; p50_ms: number; p99_ms: number; requests: number; failures: number },
  cryptoMs: number,
  serverCpuMs: number,
): BenchLine {
  if (result.failures > 0) throw new Error(`${scenario}: ${result.failures} of ${result.requests} requests failed`);
  const ceiling = 1000 / cryptoMs;
  return {
    scenario,
    rps: result.rps,
    p50_ms: result.p50_ms,
    p99_ms: result.p99_ms,
    ceiling_rps: round(ceiling),
    ratio: round(result.rps / ceiling, 3),
    server_cpu_us_per_req: round((serverCpuMs * 1000) / result.requests, 1),
    crypto_us_per_req: round(cryptoMs * 1000, 1),
  };
}
