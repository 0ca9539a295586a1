import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { es256Costs } from './crypto-ceiling.ts';
import { adminQuery, alternate, round, startServerProcess, withSearchPath, type BenchLine } from './harness.ts';
import { benchDocument, loadM2m } from './m2m.ts';

/**
 * `m2m-workers` (issue 13 item 3): the m2m-private-key-jwt request (fresh ES256 assertion, durable
 * jti, ES256 token, token.issued durable before the answer) against `clearance start --workers 1`
 * and `--workers N` (N = BENCH_WORKERS, default the number of cores), run A B B A (half the
 * seconds each) so a drift of the machine weighs on both alike. One line per dialect: SQLite
 * always, PostgreSQL as well when BENCH_DATABASE_URL or TEST_DATABASE_URL is set (a schema of its
 * own per run, dropped afterwards). Reports both throughputs, their ratio (`n_vs_1`), p99s, and
 * the server's CPU per request (primary and workers together) beside the crypto's.
 *
 * The load generator runs on the same machine and takes its share of the cores: on a 2-core
 * machine, N workers compete with it, so the ratio there understates what N workers do on cores
 * of their own (`loadavg_1m` shows how busy the machine was).
 */
export async function m2mWorkers(seconds: number): Promise<BenchLine[]> {
  const workers = Number(process.env.BENCH_WORKERS ?? availableParallelism());
  const lines: BenchLine[] = [await workersOn('sqlite', seconds, workers)];
  const url = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL;
  if (url) lines.push(await workersOn('postgres', seconds, workers, url));
  return lines;
}

async function workersOn(database: 'sqlite' | 'postgres', seconds: number, workers: number, url?: string): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const costs = es256Costs();
  const cryptoMs = costs.signMs + costs.verifyMs;
  const half = Math.max(1, seconds / 2);
  const load1Before = loadavg()[0]!;
  const run = (count: number) => async () => {
    const schema = `bench_workers_${randomBytes(6).toString('hex')}`;
    const env: NodeJS.ProcessEnv = {};
    if (url) {
      await adminQuery(url, `create schema ${schema}`);
      env.DATABASE_URL = withSearchPath(url, schema);
    }
    try {
      const server = await startServerProcess(benchDocument(publicKey, { senderConstrained: false }), env, { workers: count });
      try {
        return await loadM2m(server, privateKey, half, cryptoMs);
      } finally {
        await server.stop();
      }
    } finally {
      if (url) await adminQuery(url, `drop schema if exists ${schema} cascade`);
    }
  };
  const { a: one, b: many } = await alternate(run(1), run(workers));
  return {
    scenario: 'm2m-workers',
    database,
    workers,
    rps_1: round(one('rps')),
    rps_n: round(many('rps')),
    n_vs_1: round(many('rps') / one('rps'), 2),
    p99_ms_1: round(one('p99_ms')),
    p99_ms_n: round(many('p99_ms')),
    server_cpu_us_per_req_1: round(one('server_cpu_us_per_req'), 1),
    server_cpu_us_per_req_n: round(many('server_cpu_us_per_req'), 1),
    crypto_us_per_req: round(cryptoMs * 1000, 1),
    cores: availableParallelism(),
    loadavg_1m_before: round(load1Before),
    loadavg_1m_after: round(loadavg()[0]!),
  };
}
