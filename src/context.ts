import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { ClientStore } from './clients/store.ts';
import type { KeyStore } from './keys/keystore.ts';
import type { ResourceServerStore } from './resource-servers/store.ts';
import type { Storage } from './storage/database.ts';

/** What every endpoint and command is given: configuration and the components' typed handles. */
export interface Context {
  config: Config;
  storage: Storage;
  keys: KeyStore;
  clients: ClientStore;
  resourceServers: ResourceServerStore;
  clock: Clock;
  log: Logger;
}
