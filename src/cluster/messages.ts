import type { Config } from '../config.ts';

/**
 * The messages between the primary and its workers about the workers' lives (the throttles have
 * their own, throttles.ts). Each carries `tag`: the IPC channel is the cluster's, shared with
 * Node's own messages.
 */
export const lifeTag = 'clearance.cluster';

export type LifeMessage =
  /** Worker → primary: it is ready for its configuration (its listeners are attached). */
  | { tag: typeof lifeTag; op: 'hello' }
  /** Primary → a new worker: the configuration to serve, exactly the primary's. */
  | { tag: typeof lifeTag; op: 'config'; config: SentConfig }
  /** Worker → primary: it listens (`address` as fastify reports it). */
  | { tag: typeof lifeTag; op: 'listening'; address: string }
  /** Primary → every worker: the node is shutting down; answer `/readyz` 503 from now on (still serving). */
  | { tag: typeof lifeTag; op: 'drain' };

/** A Config as JSON carries it: the master keys (Buffers) as hex. */
export type SentConfig = Omit<Config, 'masterKey' | 'previousMasterKey'> & { masterKey: string | undefined; previousMasterKey: string | undefined };

export function isLifeMessage(message: unknown): message is LifeMessage {
  return typeof message === 'object' && message !== null && (message as { tag?: unknown }).tag === lifeTag;
}

export function sendableConfig(config: Config): SentConfig {
  return { ...config, masterKey: config.masterKey?.toString('hex'), previousMasterKey: config.previousMasterKey?.toString('hex') };
}

export function receivedConfig(sent: SentConfig): Config {
  const buffer = (hex: string | undefined) => (hex === undefined ? undefined : Buffer.from(hex, 'hex'));
  return { ...sent, masterKey: buffer(sent.masterKey), previousMasterKey: buffer(sent.previousMasterKey) };
}
