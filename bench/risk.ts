import { randomUUID } from 'node:crypto';
import type { BenchLine } from './harness.ts';
import { m2mPrivateKeyJwt } from './m2m.ts';
import { tokenExchange } from './token-exchange.ts';

/**
 * `risk` (issue 16 item 7): the m2m-private-key-jwt and token-exchange loads three ways, one after
 * the other in one run — the risk engine switched off (apply `risk: { enabled: false }`), on (the
 * default), and on with the rate limits and failure throttles in Redis (REDIS_URL, BENCH_REDIS_URL
 * or redis://127.0.0.1:6379, under a key prefix of its own) — and what each costs per request
 * beside the off run: server CPU µs per request and throughput. The bound: the risk engine
 * must not halve throughput (`rps_vs_off` ≥ 0.5, also a line of `targets`).
 */
export async function riskOverhead(seconds: number): Promise<BenchLine[]> {
  const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const variants = [
    { name: 'off', document: { risk: { enabled: false } }, env: {} },
    { name: 'on', document: {}, env: {} },
    { name: 'on+redis', document: {}, env: { REDIS_URL: redisUrl, CLEARANCE_REDIS_PREFIX: `bench-${randomUUID()}:` } },
  ];
  const lines: BenchLine[] = [];
  for (const [scenario, run] of [
    ['m2m-private-key-jwt', m2mPrivateKeyJwt],
    ['token-exchange', tokenExchange],
  ] as const) {
    let off: BenchLine | undefined;
    for (const variant of variants) {
      const line = await run(seconds, 16, { scenario: `risk-${scenario}`, document: variant.document, env: variant.env });
      off ??= line;
      const cpu = line.server_cpu_us_per_req as number;
      lines.push({
        ...line,
        risk: variant.name,
        added_cpu_us_per_req: Math.round((cpu - (off.server_cpu_us_per_req as number)) * 10) / 10,
        rps_vs_off: Math.round(((line.rps as number) / (off.rps as number)) * 1000) / 1000,
      });
    }
  }
  return lines;
}
