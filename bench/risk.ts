import { randomUUID } from 'node:crypto';
import { meanLoadFigures, palindrome, round, type BenchLine } from './harness.ts';
import { m2mPrivateKeyJwt } from './m2m.ts';
import { tokenExchange } from './token-exchange.ts';

/**
 * `risk` (issue 16 item 7): the m2m-private-key-jwt and token-exchange loads three ways in one run —
 * the risk engine switched off (apply `risk: { enabled: false }`), on (the default), and on with the
 * rate limits and failure throttles in Redis (REDIS_URL, BENCH_REDIS_URL or redis://127.0.0.1:6379,
 * under a key prefix of its own) — each twice for half the seconds, in the order off, on, on+redis,
 * on+redis, on, off (harness.ts `palindrome`: a machine that drifts during the runs weighs on all
 * three alike; one after the other, an "on" run measured faster than its "off" and another half as
 * fast, on the same code). Reports each way's means and what it costs beside off: server CPU µs per
 * request and throughput. The bound: the risk engine must not halve throughput
 * (`rps_vs_off` ≥ 0.5, also a line of `targets`).
 */
export async function riskOverhead(seconds: number): Promise<BenchLine[]> {
  const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const variants = [
    { name: 'off', document: { risk: { enabled: false } }, env: () => ({}) },
    { name: 'on', document: {}, env: () => ({}) },
    // A key prefix of its own for each run: no run starts with another's buckets.
    { name: 'on+redis', document: {}, env: () => ({ REDIS_URL: redisUrl, CLEARANCE_REDIS_PREFIX: `bench-${randomUUID()}:` }) },
  ];
  const half = Math.max(1, seconds / 2);
  const lines: BenchLine[] = [];
  for (const [scenario, run] of [
    ['m2m-private-key-jwt', m2mPrivateKeyJwt],
    ['token-exchange', tokenExchange],
  ] as const) {
    const means = await palindrome(
      variants.map((variant) => () => run(half, 16, { scenario: `risk-${scenario}`, document: variant.document, env: variant.env() })),
    );
    const off = means[0]!;
    variants.forEach((variant, i) => {
      const mean = means[i]!;
      lines.push({
        scenario: `risk-${scenario}`,
        risk: variant.name,
        ...meanLoadFigures(mean),
        added_cpu_us_per_req: round(mean('server_cpu_us_per_req') - off('server_cpu_us_per_req'), 1),
        rps_vs_off: round(mean('rps') / off('rps'), 3),
      });
    });
  }
  return lines;
}
