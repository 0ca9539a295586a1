/**
 * policy-decisions: the policy decision point's engine on the example policies (examples/policies,
 * 26 policies, step-up.cedar and approval.cedar among them since issue 14) deciding the requests of their test cases
 * in turn, each with its entities and context as the server builds them. Measures the Cedar evaluation with the fail-closed checks
 * (src/policy/engine.ts evaluate), in one thread; no database, no audit write (decide() adds one
 * group-committed audit event per decision). Two runs of `seconds` each:
 * - the test cases as they are, so the same request comes again (as a PEP asking about the same
 *   person and account, or a client's next token) and may be answered from the engine's memory;
 * - `distinct_`: each request made unique (its context's time, which no example policy reads, is
 *   a new second every time), so every decision is a Cedar call.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { compilePolicySet, evaluate, type CedarRequest, type CompiledPolicySet } from '../src/policy/engine.ts';
import { loadTestCases, readPolicySources } from '../src/policy/testing.ts';
import type { BenchLine } from './harness.ts';

const dir = fileURLToPath(new URL('../examples/policies', import.meta.url));

export async function policyDecisions(seconds: number): Promise<BenchLine> {
  const { set, problems } = compilePolicySet('bench', readPolicySources(dir));
  if (!set) throw new Error(problems.map((p) => p.message).join('; '));
  const { cases } = loadTestCases(dir, Math.floor(Date.now() / 1000));
  const requests = cases.map((c) => c.request);
  let time = 2_000_000_000;
  const distinct = (i: number): CedarRequest => {
    const r = requests[i % requests.length]!;
    return { ...r, context: { ...r.context, time: time++ } };
  };
  // Warm up (JIT, wasm tiering).
  for (let i = 0; i < 2000; i++) evaluate(set, distinct(i));
  const repeated = run(set, seconds, (i) => requests[i % requests.length]!);
  const unique = run(set, seconds, distinct);
  return {
    scenario: 'policy-decisions',
    policies: set.policyIds.length,
    distinct_requests: requests.length,
    decisions: repeated.decisions,
    allowed_share: repeated.allowedShare,
    decisions_per_s: repeated.perSecond,
    p50_ms: repeated.p50,
    p99_ms: repeated.p99,
    distinct_decisions_per_s: unique.perSecond,
    distinct_allowed_share: unique.allowedShare,
    distinct_p50_ms: unique.p50,
    distinct_p99_ms: unique.p99,
  };
}

function run(set: CompiledPolicySet, seconds: number, request: (i: number) => CedarRequest) {
  const latencies: number[] = [];
  let allowed = 0;
  const started = performance.now();
  const until = started + seconds * 1000;
  for (let i = 0; ; i++) {
    const next = request(i);
    const t0 = performance.now();
    if (evaluate(set, next).allow) allowed++;
    const t1 = performance.now();
    latencies.push(t1 - t0);
    if (t1 >= until) break;
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Number(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(3));
  return { decisions: latencies.length, allowedShare: Number((allowed / latencies.length).toFixed(3)), perSecond: Math.round(latencies.length / elapsed), p50: at(0.5), p99: at(0.99) };
}
