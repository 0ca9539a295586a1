import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import type { Context } from './context.ts';

/**
 * The process's Prometheus metrics (GET /metrics, src/endpoints/metrics; docs/operations.md
 * "Metrics"). One registry for the whole process: a component that counts something adds its
 * counter or histogram here (`new Counter({ ..., registers: [metricsRegistry] })`), created once at
 * module load, and increments it on its path (an increment is a few nanoseconds, no I/O). The
 * Node.js process's own metrics (CPU, memory, event loop delay, GC) are in it too.
 *
 * Facts that are the cluster's rather than one process's (open anomalies, suspensions) are read
 * from the database at scrape time by a collector (`collectAtScrape`) into a registry of that
 * scrape, so every node reports the same values and a restart loses nothing.
 */
export const metricsRegistry = new Registry();
collectDefaultMetrics({ register: metricsRegistry });

/** One label set's count of a `hotCounter`: the hot path adds to `n`. */
export interface HotCount {
  n: number;
}

/**
 * A counter for the hottest paths (every request, every cache read): prom-client's own increment
 * hashes and validates its labels at each call, so here each label set is a plain number the path
 * adds to (`slot(labels).n++`, the slot kept where the path can keep it), and the counter reads the
 * numbers when scraped. Slots of the same labels are one slot.
 */
export function hotCounter<L extends string>(config: { name: string; help: string; labelNames: readonly L[] }): (labels: Record<L, string>) => HotCount {
  const slots = new Map<string, { labels: Record<L, string>; count: HotCount }>();
  new Counter({
    name: config.name,
    help: config.help,
    labelNames: [...config.labelNames],
    registers: [metricsRegistry],
    collect() {
      this.reset();
      for (const { labels, count } of slots.values()) this.inc(labels, count.n);
    },
  });
  return (labels) => {
    const key = config.labelNames.map((name) => labels[name]).join('\u0000');
    let slot = slots.get(key);
    if (!slot) slots.set(key, (slot = { labels, count: { n: 0 } }));
    return slot.count;
  };
}

/** Reads what it reports from the context and registers it in `registry`, at each scrape. */
export type ScrapeCollector = (ctx: Context, registry: Registry) => Promise<void>;

const scrapeCollectors = new Map<string, ScrapeCollector>();

/** Adds a scrape-time collector (once per name: registering again replaces it). */
export function collectAtScrape(name: string, collector: ScrapeCollector): void {
  scrapeCollectors.set(name, collector);
}

/** Where the process metrics of a scrape come from: this process's registry, or (a cluster worker) every worker's, aggregated. */
let processMetrics: (() => Promise<string>) | undefined;

/** Set once by a cluster worker (src/cluster/metrics.ts). */
export function setProcessMetricsSource(source: () => Promise<string>): void {
  processMetrics = source;
}

/** The Prometheus text exposition of this process's (or its cluster's) metrics and the scrape-time ones. */
export async function renderMetrics(ctx: Context): Promise<{ contentType: string; body: string }> {
  const scraped = new Registry();
  await Promise.all([...scrapeCollectors.values()].map((collect) => collect(ctx, scraped)));
  if (!processMetrics) return { contentType: metricsRegistry.contentType, body: await Registry.merge([metricsRegistry, scraped]).metrics() };
  // The families differ (the process's counters, the database's facts): the two texts join as they are.
  const [own, facts] = await Promise.all([processMetrics(), scraped.metrics()]);
  return { contentType: metricsRegistry.contentType, body: `${own.endsWith('\n') ? own : `${own}\n`}${facts}` };
}
