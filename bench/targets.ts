import type { BenchLine } from './harness.ts';

/**
 * The figures issue 13 sets targets for, read from the lines of one `npm run bench` run (each
 * scenario prints its own line first) and printed as one more line, `{"scenario":"targets", ...}`:
 * every figure with its value, its target, and whether it is met. A figure whose scenarios were
 * not run is left out. docs/performance.md shows a run's table.
 */
interface Target {
  figure: string;
  /** `>=` or `<=` the goal. */
  goal: { at_least: number } | { at_most: number };
  value(lines: BenchLine[]): number | undefined;
  /**
   * The best value any server reaches on this machine in the same run, where the run measures one
   * (the floor of `peer`: HTTP and the crypto alone), printed beside the figure as `<figure>_bound`:
   * a target beyond it is beyond the machine, not only beyond Clearance.
   */
  bound?(lines: BenchLine[]): number | undefined;
}

const find = (lines: BenchLine[], scenario: string, where: Record<string, string> = {}) =>
  lines.find((l) => l.scenario === scenario && Object.entries(where).every(([k, v]) => l[k] === v));
const num = (line: BenchLine | undefined, field: string) => (line && typeof line[field] === 'number' ? (line[field] as number) : undefined);
const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);

export const targets: Target[] = [
  // Bounds: what the floor, with its crypto on the event loop as Clearance's, shows (bench/peer.ts, bench/latency.ts).
  { figure: 'm2m_vs_oidc_provider', goal: { at_least: 2.5 }, value: (l) => num(find(l, 'peer'), 'ratio'), bound: (l) => num(find(l, 'peer'), 'floor_vs_peer') },
  {
    figure: 'm2m_cpu_to_crypto',
    goal: { at_most: 2.5 },
    value: (l) => num(find(l, 'peer'), 'clearance_cpu_to_crypto'),
    bound: (l) => num(find(l, 'peer'), 'floor_cpu_to_crypto'),
  },
  {
    figure: 'm2m_postgres_vs_sqlite',
    goal: { at_least: 0.7 },
    value: (l) => ratio(num(find(l, 'm2m-latency', { database: 'postgres' }), 'peak_rps'), num(find(l, 'm2m-latency', { database: 'sqlite' }), 'peak_rps')),
  },
  { figure: 'workers_n_vs_1_sqlite', goal: { at_least: 1.6 }, value: (l) => num(find(l, 'm2m-workers', { database: 'sqlite' }), 'n_vs_1') },
  { figure: 'workers_n_vs_1_postgres', goal: { at_least: 1.6 }, value: (l) => num(find(l, 'm2m-workers', { database: 'postgres' }), 'n_vs_1') },
  // Issue 16 item 7: the risk engine with Redis limits on must not halve throughput.
  { figure: 'risk_m2m_rps_vs_off', goal: { at_least: 0.5 }, value: (l) => num(find(l, 'risk-m2m-private-key-jwt', { risk: 'on+redis' }), 'rps_vs_off') },
  { figure: 'risk_exchange_rps_vs_off', goal: { at_least: 0.5 }, value: (l) => num(find(l, 'risk-token-exchange', { risk: 'on+redis' }), 'rps_vs_off') },
  // Both measured alternately within the token-exchange scenario (bench/token-exchange.ts).
  { figure: 'token_exchange_vs_m2m', goal: { at_least: 0.8 }, value: (l) => num(find(l, 'token-exchange'), 'vs_m2m') },
  {
    figure: 'm2m_p99_ms_at_half_peak',
    goal: { at_most: 5 },
    value: (l) => num(find(l, 'm2m-latency', { database: 'sqlite' }), 'p99_ms'),
    bound: (l) => num(find(l, 'm2m-latency', { server: 'floor' }), 'p99_ms'),
  },
  { figure: 'people_flow_round_trips_first', goal: { at_most: 12 }, value: (l) => num(find(l, 'people-flow-roundtrips'), 'round_trips') },
  { figure: 'people_flow_round_trips_returning', goal: { at_most: 8 }, value: (l) => num(find(l, 'people-flow-roundtrips'), 'returning_round_trips') },
  { figure: 'authzen_decisions_per_s', goal: { at_least: 10_000 }, value: (l) => num(find(l, 'policy-authzen'), 'decisions_per_s') },
  { figure: 'audit_append_per_s', goal: { at_least: 60_000 }, value: (l) => num(find(l, 'audit-append-sqlite'), 'events_per_s') },
  { figure: 'audit_verify_1m_seconds', goal: { at_most: 4 }, value: (l) => num(find(l, 'audit-verify-1m'), 'seconds') },
  // Item 5, as the issue measured it (the example test requests in turn, so they repeat), and with every request new.
  { figure: 'policy_decisions_per_s', goal: { at_least: 10_000 }, value: (l) => num(find(l, 'policy-decisions'), 'decisions_per_s') },
  { figure: 'policy_distinct_decisions_per_s', goal: { at_least: 10_000 }, value: (l) => num(find(l, 'policy-decisions'), 'distinct_decisions_per_s') },
];

/** The `targets` line for the lines printed so far. */
export function targetsLine(lines: BenchLine[]): BenchLine {
  const line: BenchLine = { scenario: 'targets' };
  let met = 0;
  let measured = 0;
  for (const target of targets) {
    const value = target.value(lines);
    if (value === undefined) continue;
    measured++;
    const goal = 'at_least' in target.goal ? target.goal.at_least : target.goal.at_most;
    const ok = 'at_least' in target.goal ? value >= goal : value <= goal;
    if (ok) met++;
    line[target.figure] = Math.round(value * 1000) / 1000;
    line[`${target.figure}_target`] = `${'at_least' in target.goal ? '>=' : '<='} ${goal}`;
    line[`${target.figure}_met`] = ok ? 'yes' : 'no';
    const bound = target.bound?.(lines);
    if (bound !== undefined) line[`${target.figure}_bound`] = Math.round(bound * 1000) / 1000;
  }
  line.met = `${met} of ${measured}`;
  return line;
}
