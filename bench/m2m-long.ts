import { generateKeyPairSync } from 'node:crypto';
import { es256Costs } from './crypto-ceiling.ts';
import { clientAssertionParams, loadTokenEndpoint, round, startServerProcess, type BenchLine } from './harness.ts';
import { benchDocument, clientId, tokenRequest } from './m2m.ts';

/**
 * `m2m-long`: m2m-private-key-jwt on one server for longer than any other scenario, `chunks` loads
 * of `chunkSeconds` each (BENCH_LONG_CHUNKS, default 10; BENCH_LONG_CHUNK_SECONDS, default 10).
 * The other scenarios start a fresh server and issue 15,000 tokens or so, so what a request
 * leaves behind in memory (a presentation per issued token, 100,000 at most; policy answers;
 * verified signatures; rate-limit buckets) never fills. Here it does, as on a server that has been
 * up a while: a cache whose upkeep grows once full shows as a last chunk dearer than the second
 * (the first warms the server up: compiled code, first reads).
 * Bounded maps evicting through a new iterator each time did that (docs/performance.md: 511 µs per
 * request past 180,000 tokens, 372 once fixed), and so did SQLite's page cache, which every COMMIT
 * walks, filling as the replay rows (kept while the assertions are valid, 240 s here) and the audit
 * events accumulate (COMMIT 180 → 350 µs with 64 MiB; 125–135 µs with 8 MiB).
 */
export async function m2mLong(chunks: number, chunkSeconds: number): Promise<BenchLine> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const server = await startServerProcess(benchDocument(publicKey, { senderConstrained: false }));
  try {
    const costs = es256Costs();
    const lines: BenchLine[] = [];
    for (let i = 0; i < chunks; i++) {
      lines.push(
        await loadTokenEndpoint('m2m-long', server, {
          connections: 16,
          seconds: chunkSeconds,
          cryptoMs: costs.signMs + costs.verifyMs,
          aheadSeconds: 1,
          maxAhead: 5000,
          // The first chunk is this scenario's warm-up.
          warmupSeconds: 0,
          make: () => ({ body: tokenRequest(clientAssertionParams(clientId, privateKey, server.issuer)) }),
        }),
      );
    }
    const early = lines[Math.min(1, lines.length - 1)]!;
    const last = lines.at(-1)!;
    const tokens = lines.reduce((sum, line) => sum + Number(line.rps) * chunkSeconds, 0);
    return {
      scenario: 'm2m-long',
      chunks,
      chunk_seconds: chunkSeconds,
      tokens: Math.round(tokens),
      early_rps: early.rps!,
      early_cpu_us_per_req: early.server_cpu_us_per_req!,
      last_rps: last.rps!,
      last_cpu_us_per_req: last.server_cpu_us_per_req!,
      last_vs_early_cpu: round(Number(last.server_cpu_us_per_req) / Number(early.server_cpu_us_per_req), 2),
    };
  } finally {
    await server.stop();
  }
}
