import cluster from 'node:cluster';
import { systemClock } from '../clock.ts';
import type { Config } from '../config.ts';
import { startServer, type RunningServer } from '../server.ts';
import { isLifeMessage, lifeTag, receivedConfig, type LifeMessage } from './messages.ts';
import { relayClusterMetrics } from './metrics.ts';
import { throttleRelays, type Channel } from './throttles.ts';

/**
 * A worker of `clearance start --workers N`: the HTTP server, without the audit sealer (the
 * primary runs it), with the node's throttles in the primary. Says hello to the primary, which
 * answers with the throttles' history and the configuration (exactly its own, validated once);
 * tells it once it listens.
 */
export async function startWorker(): Promise<RunningServer> {
  const worker = cluster.worker!;
  const channel: Channel = {
    send: (message) => process.send!(message),
    on: (_event, listener) => process.on('message', listener),
    get connected() {
      return process.connected;
    },
  };
  // Listening before the hello, so the history the primary sends in answer is not missed.
  const throttles = throttleRelays(channel, systemClock);
  // /metrics answers with every worker's metrics, gathered by the primary (./metrics.ts).
  relayClusterMetrics((error) => server?.ctx.log.warn({ err: { message: error.message } }, 'metrics: the workers could not be gathered; this scrape holds this worker only'));
  let server: RunningServer | undefined;
  const config = await new Promise<Config>((resolve) => {
    const onMessage = (message: unknown) => {
      if (!isLifeMessage(message) || message.op !== 'config') return;
      process.off('message', onMessage);
      resolve(receivedConfig(message.config));
    };
    process.on('message', onMessage);
    process.send!({ tag: lifeTag, op: 'hello' } satisfies LifeMessage);
  });
  server = await startServer(config, { worker: { id: worker.id, throttles } });
  const running = server;
  // The primary's SIGTERM: out of the load balancer at once; the primary stops this worker after its drain delay.
  process.on('message', (message: unknown) => {
    if (isLifeMessage(message) && message.op === 'drain') running.ctx.readiness.drain();
  });
  process.send!({ tag: lifeTag, op: 'listening', address: server.url } satisfies LifeMessage);
  return server;
}

/** After the worker's server has closed: leave the cluster, so the process can end with its exit code. */
export function leaveCluster(): void {
  // Disconnecting marks the exit as the worker's own (`exitedAfterDisconnect`); without it, Node's
  // cluster module would exit with 0 whatever the exit code.
  if (cluster.worker?.isConnected()) cluster.worker.disconnect();
}
