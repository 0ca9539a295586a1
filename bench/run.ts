/**
 * `npm run bench [-- scenario ...]`: runs the benchmarks and prints one JSON line per scenario.
 * BENCH_SECONDS sets the load duration of HTTP scenarios (default 10). The last line, `targets`,
 * sets issue 13's figures beside their targets (bench/targets.ts).
 */
import { m2mDpop, m2mPrivateKeyJwt } from './m2m.ts';
import { m2mLatency } from './latency.ts';
import { m2mLong } from './m2m-long.ts';
import { m2mWorkers } from './workers.ts';
import { auditAppend, auditVerify } from './audit.ts';
import { peopleFlowRoundTrips } from './people-flow.ts';
import { peer } from './peer.ts';
import { policyDecisions } from './policy.ts';
import { policyAuthzen } from './policy-authzen.ts';
import { policyIssuance } from './policy-issuance.ts';
import { tokenExchangeBesideM2m } from './token-exchange.ts';
import { riskOverhead } from './risk.ts';
import { changeNotices } from './notices.ts';
import { tracingOverhead } from './tracing.ts';
import type { BenchLine } from './harness.ts';
import { targetsLine } from './targets.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 10);

const scenarios: Record<string, () => Promise<BenchLine | BenchLine[]>> = {
  // Clearance / node-oidc-provider on the m2m-private-key-jwt request, same run, beside the floor (HTTP and the crypto alone): see bench/peer.ts.
  peer: () => peer(seconds),
  'm2m-private-key-jwt': () => m2mPrivateKeyJwt(seconds),
  // Alternately with m2m, which the targets line divides it by (see bench/token-exchange.ts); early in
  // the run: after the in-process audit scenarios the load generator's larger heap costs the later
  // HTTP scenarios (measured 0.56x there, 0.81x here).
  'token-exchange': () => tokenExchangeBesideM2m(seconds),
  'm2m-dpop': () => m2mDpop(seconds),
  // Open loop at half the peak, both dialects (BENCH_DATABASE_URL / TEST_DATABASE_URL) and the floor of peer: see bench/latency.ts.
  'm2m-latency': () => m2mLatency(seconds),
  // One server for BENCH_LONG_CHUNKS x BENCH_LONG_CHUNK_SECONDS (10 x 10 s): the second chunk against the last, caches full: see bench/m2m-long.ts.
  'm2m-long': () => m2mLong(Number(process.env.BENCH_LONG_CHUNKS ?? 10), Number(process.env.BENCH_LONG_CHUNK_SECONDS ?? 10)),
  // --workers 1 against --workers N (BENCH_WORKERS, default the cores), both dialects: see bench/workers.ts.
  'm2m-workers': () => m2mWorkers(seconds),
  'people-flow-roundtrips': () => peopleFlowRoundTrips(),
  // AUDIT_BENCH_SECONDS, AUDIT_BENCH_CONCURRENCY, AUDIT_VERIFY_EVENTS: see bench/audit.ts.
  'audit-append-sqlite': () => auditAppend(Number(process.env.AUDIT_BENCH_SECONDS ?? seconds), Number(process.env.AUDIT_BENCH_CONCURRENCY ?? 1000)),
  'audit-verify-1m': () => auditVerify(Number(process.env.AUDIT_VERIFY_EVENTS ?? 1_000_000)),
  // POLICY_BENCH_SECONDS (default 5): see bench/policy.ts.
  'policy-decisions': () => policyDecisions(Number(process.env.POLICY_BENCH_SECONDS ?? 5)),
  // The AuthZEN API over HTTP with the example policy set, single and batched: see bench/policy-authzen.ts.
  'policy-authzen': () => policyAuthzen(seconds),
  // m2m-private-key-jwt with the example policy set active, three decisions per token: see bench/policy-issuance.ts.
  'policy-issuance': () => policyIssuance(seconds),
  // m2m and token exchange with the risk engine off, on, and on with Redis limits: see bench/risk.ts.
  risk: () => riskOverhead(seconds),
  // Two nodes on PostgreSQL: a client's key replaced through B, refused on A after how long: see bench/notices.ts.
  'change-notices': () => changeNotices(),
  // m2m with OpenTelemetry tracing off and on (OTLP/HTTP to a sink of its own), off on on off: see bench/tracing.ts.
  tracing: () => tracingOverhead(seconds),
};

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!scenarios[name]) {
    console.error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}`);
    process.exit(2);
  }
}
const printed: BenchLine[] = [];
for (const [name, run] of Object.entries(scenarios)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const lines = await run();
  for (const line of Array.isArray(lines) ? lines : [lines]) {
    printed.push(line);
    console.log(JSON.stringify(line));
  }
}
// Issue 13's figures, each beside its target (bench/targets.ts), from what this run measured.
console.log(JSON.stringify(targetsLine(printed)));
