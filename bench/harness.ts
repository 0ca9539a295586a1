import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID, type KeyObject } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { main } from '../src/cli/main.ts';
import { signCompact } from '../src/keys/jws.ts';
import { freePort } from '../test/helpers/server.ts';
import { leanRequest, LeanPool, type LeanRequest } from './lean-http.ts';
export { adminQuery } from '../test/helpers/storage.ts';

/** One benchmark line (printed as JSON). */
export type BenchLine = Record<string, string | number>;

export interface ServerProcess {
  issuer: string;
  /** CPU time (user + system) the server process and its live workers have used so far, in ms (Linux /proc). */
  serverCpuMs(): number;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  /** What `clearance apply` printed (generated client secrets among it). */
  applied?: string[];
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `clearance start` as its own process (the server under test), after applying `document`
 * to its fresh data directory with the CLI. Returns once it answers.
 */
export async function startServerProcess(
  document: unknown,
  extraEnv: NodeJS.ProcessEnv = {},
  options: { nodeArgs?: string[]; ipc?: boolean; workers?: number } = {},
): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'clearance-bench-'));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { ...process.env, PORT: String(port), HOST: '127.0.0.1', CLEARANCE_ISSUER: issuer, CLEARANCE_DATA_DIR: dataDir, ...extraEnv };
  const file = join(dataDir, 'bench.json');
  writeFileSync(file, JSON.stringify(document));
  const lines: string[] = [];
  const applied = await main(['apply', '-f', file], env, { out: (l) => lines.push(l), err: (l) => lines.push(l) });
  if (applied !== 0) throw new Error(`apply failed:\n${lines.join('\n')}`);
  // BENCH_SERVER_NODE_ARGS passes flags to the server's Node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  // `options.nodeArgs` are the scenario's own (e.g. a preloaded probe); `options.ipc` opens a channel to it.
  const nodeArgs = [...(options.nodeArgs ?? []), ...(process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  const workers = options.workers === undefined ? [] : ['--workers', String(options.workers)];
  const child = spawn(process.execPath, [...nodeArgs, 'bin/clearance.js', 'start', ...workers], { env, stdio: options.ipc ? ['ignore', 'ignore', 'inherit', 'ipc'] : ['ignore', 'ignore', 'inherit'] });
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
    serverCpuMs: () => processTreeCpuMs(child.pid!),
    dataDir,
    env,
    applied: lines,
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
 * CPU time (user + system) of process `pid` and of its live children (the workers of
 * `clearance start --workers N`), in ms, from Linux /proc; NaN when `pid` is gone.
 */
export function processTreeCpuMs(pid: number): number {
  const stat = (id: number | string) => readFileSync(`/proc/${id}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // After "pid (comm) ": state is field 0, ppid 1, utime 11, stime 12, in clock ticks of 1/100 s.
  const ms = (fields: string[]) => ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  let total: number;
  try {
    total = ms(stat(pid));
  } catch {
    return Number.NaN;
  }
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const fields = stat(entry);
      if (Number(fields[1]) === pid) total += ms(fields);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/**
 * Keeps `connections` requests in flight against `origin` for `seconds`, each body from `next()`,
 * and reports throughput and latency percentiles, and the load generator's own CPU per request
 * (this process: it shares the machine with the server). Fails if any response is not 200.
 * Requests go out through the lean HTTP/1.1 client (lean-http.ts), whose cost per request is a
 * fraction of undici's.
 */
export async function load(options: {
  origin: string;
  path: string;
  connections: number;
  seconds: number;
  request: () => { body: string; headers: Record<string, string> } | LeanRequest;
}): Promise<LoadResult> {
  const pool = new LeanPool(options.origin, options.connections);
  const latencies: number[] = [];
  let failures = 0;
  const cpuBefore = process.cpuUsage();
  const deadline = performance.now() + options.seconds * 1000;
  const bytes = (): LeanRequest => {
    const made = options.request();
    return Buffer.isBuffer(made) ? made : leanRequest(options.origin, options.path, made.body, made.headers);
  };
  const worker = async () => {
    while (performance.now() < deadline) {
      const request = bytes();
      const start = performance.now();
      const response = await pool.request(request);
      latencies.push(performance.now() - start);
      if (response.status !== 200) failures++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: options.connections }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  pool.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return {
    rps: round(latencies.length / elapsed),
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    requests: latencies.length,
    failures,
    loadCpuUsPerRequest: round((cpu.user + cpu.system) / Math.max(1, latencies.length), 1),
  };
}

/** What `load` measured. */
export interface LoadResult {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  requests: number;
  failures: number;
  /** The load generator's CPU (this process, user + system) per request, in µs. */
  loadCpuUsPerRequest: number;
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
function cryptoBoundLine(
  scenario: string,
  result: LoadResult,
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
    load_cpu_us_per_req: result.loadCpuUsPerRequest,
  };
}

/**
 * Seconds of load a server gets before a measured load (BENCH_WARMUP_SECONDS, default 3). A fresh
 * process spends its first seconds compiling: V8's optimising compiler ran on its background
 * threads at about 15 % of the server's CPU during a cold 10 s m2m run, and the server's CPU per
 * request fell by a fifth once warm (459 → 352 and 543 → 463 µs in two runs; docs/performance.md,
 * "Warm servers, ratios measured in turns, …"). The targets are about a server that has been up a
 * while, so each measured load comes after the same warm-up, for Clearance and node-oidc-provider
 * alike; what the warm-up costs is not counted.
 */
export const warmupSeconds = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);

/** Runs `options`' load for `seconds` unmeasured (the warm-up); throws when a request failed, as a measured load does. */
export async function warmUp(options: Omit<Parameters<typeof load>[0], 'seconds'>, seconds = warmupSeconds): Promise<void> {
  if (seconds <= 0) return;
  const result = await load({ ...options, seconds });
  if (result.failures > 0) throw new Error(`warm-up of ${options.path}: ${result.failures} of ${result.requests} requests failed`);
}

/**
 * A crypto-bound load on POST /token after a warm-up (`warmupSeconds` unless the scenario sets its
 * own): requests are made ahead, enough for the warm-up and `aheadSeconds` at about 1.2 times the
 * crypto ceiling (at most `maxAhead`), so the load generator spends its CPU on HTTP, not on
 * signing; each is used once and the rest are made on demand. Reports the measured load with
 * `cryptoBoundLine` against `cryptoMs` of cryptography per request.
 */
export async function loadTokenEndpoint(
  scenario: string,
  server: ServerProcess,
  options: {
    connections: number;
    seconds: number;
    cryptoMs: number;
    aheadSeconds: number;
    maxAhead: number;
    warmupSeconds?: number;
    make: (i: number) => { body: string; headers?: Record<string, string> };
  },
): Promise<BenchLine> {
  const warmup = options.warmupSeconds ?? warmupSeconds;
  const bytes = (made: ReturnType<typeof options.make>) => tokenEndpointRequest(server.issuer, made.body, made.headers);
  const made: LeanRequest[] = [];
  const ahead = Math.min(options.maxAhead, Math.ceil((1000 / options.cryptoMs) * (warmup + options.aheadSeconds) * 1.2));
  for (let i = 0; i < ahead; i++) made.push(bytes(options.make(i)));
  let next = 0;
  const request = () => {
    const i = next++;
    return made[i] ?? bytes(options.make(i));
  };
  const target = { origin: server.issuer, path: '/token', connections: options.connections, request };
  await warmUp(target, warmup);
  const cpuBefore = server.serverCpuMs();
  const result = await load({ ...target, seconds: options.seconds });
  return cryptoBoundLine(scenario, result, options.cryptoMs, server.serverCpuMs() - cpuBefore);
}

/** The bytes of POST /token with a form `body` (and extra `headers`, e.g. a DPoP proof). */
export function tokenEndpointRequest(issuer: string, body: string, headers: Record<string, string> = {}): LeanRequest {
  return leanRequest(issuer, '/token', body, { 'content-type': 'application/x-www-form-urlencoded', ...headers });
}

/** RFC 7523 §2.2 private_key_jwt as form parameters (with a leading `&`): a fresh ES256 assertion, kid `<clientId>-1`. */
export function clientAssertionParams(clientId: string, privateKey: KeyObject, issuer: string): string {
  const now = Math.floor(Date.now() / 1000);
  const assertion = signCompact('ES256', privateKey, { typ: 'JWT', kid: `${clientId}-1` }, { iss: clientId, sub: clientId, aud: issuer, iat: now, exp: now + 240, jti: randomUUID() });
  return `&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=${assertion}`;
}

/** The URL with `-c search_path=schema` as a startup option (pg reads `options` from the URL). */
export function withSearchPath(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('options', `-c search_path=${schema}`);
  return parsed.toString();
}

/**
 * Runs `a` and `b` in the order A B B A, so that a drift of the machine during the runs weighs on
 * both alike; resolves each side's mean per field over its two results.
 */
export async function alternate(a: () => Promise<BenchLine>, b: () => Promise<BenchLine>): Promise<{ a: (field: string) => number; b: (field: string) => number }> {
  const [first, second] = await palindrome([a, b]);
  return { a: first!, b: second! };
}

/** A crypto-bound load's figures (`cryptoBoundLine`'s) as the means of a run's results (`palindrome`, `alternate`). */
export function meanLoadFigures(mean: (field: string) => number): BenchLine {
  return {
    rps: round(mean('rps')),
    p50_ms: round(mean('p50_ms')),
    p99_ms: round(mean('p99_ms')),
    server_cpu_us_per_req: round(mean('server_cpu_us_per_req'), 1),
    crypto_us_per_req: round(mean('crypto_us_per_req'), 1),
    load_cpu_us_per_req: round(mean('load_cpu_us_per_req'), 1),
  };
}

/**
 * Runs each of `runs` twice, in order and then in reverse (A B C C B A), for the same reason as
 * `alternate`; resolves, for each run in the order given, its mean per field over its two results.
 */
export async function palindrome(runs: (() => Promise<BenchLine>)[]): Promise<((field: string) => number)[]> {
  const results: BenchLine[][] = runs.map(() => []);
  for (const i of [...runs.keys(), ...[...runs.keys()].reverse()]) results[i]!.push(await runs[i]!());
  return results.map((lines) => (field: string) => lines.reduce((sum, line) => sum + Number(line[field]), 0) / lines.length);
}
