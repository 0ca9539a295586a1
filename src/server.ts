import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Context } from './context.ts';
import { buildApp } from './http/app.ts';
import { KeyStore } from './keys/keystore.ts';
import { resolveMasterKey } from './keys/master-key.ts';
import { createLogger } from './log.ts';
import { migrate, openStorage, type Storage } from './storage/database.ts';
import { seedBuiltins } from './resource-servers/builtins.ts';
import { ResourceServerStore } from './resource-servers/store.ts';
import { ClientStore } from './clients/store.ts';

/** Opens storage, migrates, loads keys: everything a server or a CLI command needs. */
export async function openContext(
  config: Config,
  options: { log?: Logger; clock?: Clock; storage?: Storage } = {},
): Promise<Context> {
  const log = options.log ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  const master = resolveMasterKey(config);
  if (master.warning) log.warn(master.warning);
  const storage = options.storage ?? openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await migrate(storage);
    const keys = new KeyStore(storage.db, master.key, clock);
    await keys.ensureSigningKey(config.signingAlg);
    const ctx: Context = {
      config,
      storage,
      keys,
      clock,
      log,
      clients: new ClientStore(storage.db, clock),
      resourceServers: new ResourceServerStore(storage.db, clock),
    };
    await seedBuiltins(ctx);
    return ctx;
  } catch (error) {
    if (!options.storage) await storage.close();
    throw error;
  }
}

export interface RunningServer {
  app: FastifyInstance;
  ctx: Context;
  /** The base URL it listens on. */
  url: string;
  close(): Promise<void>;
}

/** Starts listening; `close` stops accepting, lets in-flight requests finish, then closes the database. */
export async function startServer(config: Config, options: { log?: Logger; clock?: Clock } = {}): Promise<RunningServer> {
  const ctx = await openContext(config, options);
  const app = buildApp(ctx);
  app.addHook('onClose', async () => ctx.storage.close());
  const address = await app.listen({ host: config.host, port: config.port });
  ctx.log.info(
    { issuer: config.issuer, mode: config.mode, storage: ctx.storage.location, address },
    'clearance is listening',
  );
  return { app, ctx, url: address, close: () => app.close() };
}
