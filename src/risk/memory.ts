/**
 * What one node remembers for a few minutes, in memory, for the signals that look at the last
 * moments rather than at history (docs/risk.md "Signals"): client authentication failures
 * (`recent_failures`), exchanges per subject (`exchange_burst`) and where a token was presented
 * (`concurrent_networks`). Per node on purpose: each is a count over seconds or minutes that a
 * database write per token request would make expensive, and losing it at a restart loses a few
 * minutes of signal, never a decision. Two nodes each see their own share of the traffic (a burst
 * split evenly over N nodes needs N times the count to fire on one). Bounded: the least recently
 * touched keys are forgotten first.
 */
import { BoundedMap } from '../jose/bounded-map.ts';

/** Times of events per key (most recent `keep` per key, `maxKeys` keys). */
export class RecentEvents {
  readonly #times: BoundedMap<string, number[]>;
  readonly #keep: number;

  constructor(options: { maxKeys?: number; keep?: number } = {}) {
    this.#times = new BoundedMap(options.maxKeys ?? 50_000);
    this.#keep = options.keep ?? 10_000;
  }

  /** Records an event; `keep`: the most recent events the caller needs counted (a signal's threshold), at most the store's own. */
  record(key: string, at: number, keep = this.#keep): void {
    const times = this.#times.get(key) ?? [];
    times.push(at);
    const most = Math.min(keep, this.#keep);
    if (times.length > most) times.splice(0, times.length - most);
    this.#times.delete(key);
    this.#times.set(key, times);
  }

  /** How many events of `key` happened after `since` (epoch ms); older ones are dropped. */
  count(key: string, since: number): number {
    const times = this.#times.get(key);
    if (!times) return 0;
    let old = 0;
    while (old < times.length && times[old]! <= since) old++;
    if (old === times.length) {
      this.#times.delete(key);
      return 0;
    }
    if (old > 0) times.splice(0, old);
    return times.length;
  }
}

/** Most networks kept per token: a token seen on this many is concurrent enough. */
const networksPerToken = 8;

/** Where each token was last presented by its holder from: network → when last (epoch ms). */
export class TokenPresentations {
  readonly #seen: BoundedMap<string, Map<string, number>>;

  constructor(options: { maxTokens?: number } = {}) {
    this.#seen = new BoundedMap(options.maxTokens ?? 100_000);
  }

  note(token: string, network: string, at: number): void {
    const networks = this.#seen.get(token) ?? new Map<string, number>();
    networks.delete(network);
    networks.set(network, at);
    while (networks.size > networksPerToken) networks.delete(networks.keys().next().value!);
    this.#seen.delete(token);
    this.#seen.set(token, networks);
  }

  /** The networks the token was presented from after `since` (epoch ms). */
  networks(token: string, since: number): string[] {
    const networks = this.#seen.get(token);
    if (!networks) return [];
    return [...networks].filter(([, at]) => at > since).map(([network]) => network);
  }
}
