import type { Cluster } from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry } from 'prom-client';
import { metricsRegistry, setProcessMetricsSource } from '../metrics.ts';

/**
 * /metrics under `clearance start --workers N` (docs/operations.md "Metrics"): whichever worker a
 * scrape reaches asks the primary, which gathers every worker's registry with prom-client's
 * cluster aggregation (counters and histograms summed, the process's own metrics per their
 * aggregator) and answers with the text; the worker adds the facts read from the database once.
 * prom-client gives up on a worker that does not answer within 5 s: the scrape then carries this
 * worker's metrics alone and `clearance_metrics_aggregation_failed 1`, and the worker logs why.
 */
const tag = 'clearance.metrics';

type Request = { tag: typeof tag; op: 'scrape'; id: string };
type Reply = { tag: typeof tag; op: 'scraped'; id: string; text?: string; error?: string };

const isOurs = <T>(message: unknown): message is T => typeof message === 'object' && message !== null && (message as { tag?: unknown }).tag === tag;

/** In the primary: answers the workers' scrapes with every worker's metrics, aggregated. */
export function serveClusterMetrics(cluster: Cluster): () => void {
  const aggregator = new AggregatorRegistry();
  const onMessage = (worker: { send(message: unknown): unknown; isConnected(): boolean }, message: unknown) => {
    if (!isOurs<Request>(message) || message.op !== 'scrape') return;
    aggregator.clusterMetrics().then(
      (text) => worker.isConnected() && worker.send({ tag, op: 'scraped', id: message.id, text } satisfies Reply),
      (error: Error) => worker.isConnected() && worker.send({ tag, op: 'scraped', id: message.id, error: error.message } satisfies Reply),
    );
  };
  cluster.on('message', onMessage);
  return () => cluster.off('message', onMessage);
}

/**
 * In a worker: its registry answers the primary's gathering (prom-client's own message), and its
 * /metrics asks the primary for the aggregate.
 */
export function relayClusterMetrics(onError: (error: Error) => void): void {
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metricsRegistry]);
  const waiting = new Map<string, { resolve: (text: string) => void; reject: (error: Error) => void }>();
  process.on('message', (message: unknown) => {
    if (!isOurs<Reply>(message) || message.op !== 'scraped') return;
    const pending = waiting.get(message.id);
    if (!pending) return;
    waiting.delete(message.id);
    if (message.text !== undefined) pending.resolve(message.text);
    else pending.reject(new Error(message.error ?? 'the primary did not aggregate the metrics'));
  });
  setProcessMetricsSource(async () => {
    const id = randomUUID();
    try {
      return await new Promise<string>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error('the primary did not answer within 6 s'));
        }, 6000);
        timer.unref();
        process.send!({ tag, op: 'scrape', id } satisfies Request);
      });
    } catch (error) {
      onError(error as Error);
      return `${await metricsRegistry.metrics()}\n# HELP clearance_metrics_aggregation_failed 1 when this scrape holds one worker's metrics only (the others could not be gathered).\n# TYPE clearance_metrics_aggregation_failed gauge\nclearance_metrics_aggregation_failed 1\n`;
    }
  });
}
