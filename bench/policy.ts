/**
 * policy-decisions: the policy decision point's engine on a preparsed policy set — the example
 * policies (examples/policies, 18 policies) deciding the requests of their test cases in turn,
 * each with its entities and context as the server builds them. Measures the Cedar evaluation
 * with the fail-closed checks (src/policy/engine.ts evaluate), in one thread; no database, no
 * audit write (decide() adds one group-committed audit event per decision).
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { compilePolicySet, evaluate } from '../src/policy/engine.ts';
import { loadTestCases, readPolicySources } from '../src/policy/testing.ts';
import type { BenchLine } from './harness.ts';

const dir = fileURLToPath(new URL('../examples/policies', import.meta.url));

export async function policyDecisions(seconds: number): Promise<BenchLine> {
  const { set, problems } = compilePolicySet('bench', readPolicySources(dir));
  if (!set) throw new Error(problems.map((p) => p.message).join('; '));
  const { cases } = loadTestCases(dir, Math.floor(Date.now() / 1000));
  const requests = cases.map((c) => c.request);
  // Warm up (JIT, wasm tiering).
  for (let i = 0; i < 2000; i++) evaluate(set, requests[i % requests.length]!);
  const latencies: number[] = [];
  let allowed = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  for (let i = 0; ; i++) {
    const t0 = performance.now();
    if (evaluate(set, requests[i % requests.length]!).allow) allowed++;
    const t1 = performance.now();
    latencies.push(t1 - t0);
    if (t1 >= until) break;
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return {
    scenario: 'policy-decisions',
    policies: set.policyIds.length,
    distinct_requests: requests.length,
    decisions: latencies.length,
    allowed_share: Number((allowed / latencies.length).toFixed(3)),
    decisions_per_s: Math.round(latencies.length / elapsed),
    p50_ms: Number(at(0.5).toFixed(3)),
    p99_ms: Number(at(0.99).toFixed(3)),
  };
}
