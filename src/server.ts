import { createRiskServices } from './risk/index.ts';
import { Readiness } from './http/readiness.ts';
import { limitNamesKey } from './risk/limits/names.ts';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Context } from './context.ts';
import { buildApp } from './http/app.ts';
import { KeyStore } from './keys/keystore.ts';
import { resolveMasterKey } from './keys/master-key.ts';
import { loadMasterKeyring } from './keys/master-key-state.ts';
import { masterKeyUnavailable, onSealingChange } from './keys/keyring.ts';
import { createLogger, nodeId } from './log.ts';
import { AuditRecorder } from './audit/recorder.ts';
import { SubjectKeys } from './audit/subject-keys.ts';
import { startAuditService, type AuditService } from './audit/lifecycle.ts';
import { migrate, openStorage, storageOptionsFor, type Storage } from './storage/database.ts';
import { seedBuiltins } from './resource-servers/builtins.ts';
import { ResourceServerStore } from './resource-servers/store.ts';
import { ClientStore } from './clients/store.ts';
import { secretMaxAge } from './clients/credentials.ts';
import { ClientKeySets } from './clients/authentication/remote-keys.ts';
import { MemoryAuthFailureThrottle, type AuthFailureThrottle } from './clients/authentication/throttle.ts';
import type { LoginThrottle } from './identity/login-throttle.ts';
import { DatabaseReplayCache } from './tokens/replay-cache.ts';
import { GroupCommit, groupCommitConcurrency, groupCommitFlight } from './storage/group-commit.ts';
import { ReferenceTokenStore } from './tokens/reference-tokens.ts';
import { createIdentity } from './identity/index.ts';
import { DpopNonces, dpopNonceSecret } from './tokens/dpop.ts';
import { EntityDirectory } from './entities/directory.ts';
import { PolicyStore } from './policy/store.ts';
import { PartnerStore } from './federation/store.ts';
import { startSignalService, type SignalService } from './signals/service.ts';
import { createPki } from './pki/index.ts';
import { Pkcs11Custody } from './pki/custody/pkcs11.ts';
import { AgentRegistry } from './agents/registry.ts';
import { seedConsoleClient } from './console/client.ts';
import { startTransmitter, type Transmitter } from './signals/ssf/transmitter.ts';
import { KeySchedule } from './lifecycle/key-schedule.ts';
import { ClientTrustAnchors } from './clients/trust-anchors/check.ts';
import { flushTracing } from './telemetry/tracing.ts';

/**
 * The failure counters of client authentication and password login. Each process keeps its own
 * in memory unless given others: a cluster worker's ask the primary (src/cluster/throttles.ts).
 * With `REDIS_URL`, these are the fallback of the ones in Redis (src/risk/limits).
 */
export interface Throttles {
  clientAuthentication: AuthFailureThrottle;
  login: LoginThrottle;
}

/** Opens storage, migrates, loads keys: everything a server or a CLI command needs. */
export async function openContext(
  config: Config,
  options: { log?: Logger; clock?: Clock; storage?: Storage; throttles?: Throttles; listenForChanges?: boolean } = {},
): Promise<Context> {
  const log = options.log ?? createLogger(config.logLevel);
  const clock = options.clock ?? systemClock;
  // Outside development mode a missing master key stops the start before the database is opened.
  if (config.mode !== 'development' && !config.masterKey && !config.masterKeyPkcs11Label) resolveMasterKey(config);
  const storage =
    options.storage ??
    openStorage({
      ...storageOptionsFor(config),
      // A lost connection costs its in-flight requests a 503, never the process (docs/operations.md).
      onConnectionError: (error) => log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, 'database connection lost'),
      onOutage: (down) => (down ? log.error('database not answering: requests are refused with 503 until it answers') : log.warn('database answers again')),
      // PostgreSQL: another node's change is in force here when its notice arrives (docs/operations.md).
      listenForChanges: options.listenForChanges ?? true,
      onListening: (listening) => (listening ? log.info('listening for change notices') : log.warn('change notices interrupted: caches check the database every second until they resume')),
    });
  try {
    await migrate(storage);
    // The master key and the database's derivation root, checked against each other (docs/keys.md "The master key").
    const master = await loadMasterKeyring(config, storage.db, log);
    if (master.warning) log.warn(master.warning);
    const writer = new GroupCommit(storage.db, { concurrency: groupCommitConcurrency(storage.dialect, config.dbPoolSize), flight: groupCommitFlight(storage) });
    // Audit events share the group-commit transaction with the other small writes of a burst.
    // Personal fields are encrypted under per-subject keys before hashing (docs/privacy.md).
    const audit = new AuditRecorder(storage.db, { clock, node: nodeId, writer, personalData: new SubjectKeys(storage.db, master.key, clock) });
    const keys = new KeyStore(storage.db, master.key, clock, audit, { log });
    await keys.ensureSigningKey(config.signingAlg);
    // New secrets expire after the profile's maximum age (src/clients/credentials.ts).
    const clients = new ClientStore(storage.db, clock, { secretMaxAgeMs: secretMaxAge(config) });
    const identity = createIdentity(clock, master.key);
    const risk = createRiskServices(storage, clock, { config, log, namesKey: limitNamesKey(master.key) });
    // With Redis, the failure throttles count there, around the node's own (memory, or a worker's
    // relay to its primary), which they fall back to while Redis does not answer.
    const throttles = risk.limits.throttles(options.throttles ?? { clientAuthentication: new MemoryAuthFailureThrottle(clock), login: identity.throttle }, clock);
    // Assertion and DPoP proof jtis share one replay cache and its group commit (scoped keys).
    const replay = new DatabaseReplayCache(storage.db, clock, { writer });
    const pki = createPki(storage.db, master.key, clock, config.pkcs11 ? { pkcs11: new Pkcs11Custody(config.pkcs11) } : {});
    const readiness = new Readiness();
    // A node that no longer holds the master key the database seals with takes no new work (docs/keys.md).
    readiness.require(() => masterKeyUnavailable(master.key));
    const ctx: Context = {
      config,
      readiness,
      storage,
      keys,
      clock,
      log,
      clients,
      resourceServers: new ResourceServerStore(storage.db, clock),
      audit,
      clientAuthentication: {
        clients,
        replay,
        issuer: config.issuer,
        clock,
        throttle: throttles.clientAuthentication,
        certificateTrust: (certificate) => pki.trust(certificate),
        // Clients' jwks_uri, fetched with the partners' SSRF rules (src/clients/authentication/remote-keys.ts).
        clientKeys: new ClientKeySets(clock, { allowPrivateNetwork: config.clientJwksAllowPrivateNetwork }),
        // Per-client trust anchors for tls_client_auth (src/clients/trust-anchors): partners' CAs and the listener's bundle.
        trustAnchors: new ClientTrustAnchors({ clock, partners: () => ctx.partners.list(), ...(config.tls?.clientCaFile ? { clientCaFile: config.tls.clientCaFile } : {}), institutional: config.institutional }),
        // Which agent an agent's client is: its certificate names the agent (src/agents/registry.ts).
        agents: { snapshot: () => ctx.agents.snapshot() },
      },
      // Not a spread: that would read `deviceCookieKey` once, and it follows the sealing master key (a getter).
      identity: Object.assign(identity, { throttle: throttles.login }),
      dpop: {
        replay,
        clock,
        // Stateless nonces: every node derives the same secret from the master key (read at each
        // use: it follows a master key rotation).
        nonces: new DpopNonces(() => dpopNonceSecret(master.key), clock),
        requireNonce: config.dpopNonce === 'required',
      },
      entities: new EntityDirectory(storage.db, clock),
      policies: new PolicyStore(storage.db, clock),
      partners: new PartnerStore(storage.db, clock, { replay }),
      risk,
      pki,
      agents: new AgentRegistry(storage.db, clock),
      // Handles of reference tokens join the group commit of the burst that issued them.
      referenceTokens: new ReferenceTokenStore(storage.db, clock, { writer }),
    };
    await seedBuiltins(ctx);
    // The console's client key follows the master key that seals (src/console/client.ts): registered
    // again when a rewrap begins — the listener first, so a switch during the first seed is not
    // missed — retried until it is. A node that no longer holds that key registers nothing.
    onSealingChange(master.key, () => reseedConsole(0));
    function reseedConsole(attempt: number): void {
      if (masterKeyUnavailable(master.key)) return;
      seedConsoleClient(ctx, master.key).catch((error: unknown) => {
        log.warn({ err: { message: (error as Error).message }, attempt }, 'the console client could not be registered again after the master key rotation; retrying');
        if (attempt < 10) setTimeout(() => reseedConsole(attempt + 1), 2000).unref();
      });
    }
    await seedConsoleClient(ctx, master.key);
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

export interface ServerOptions {
  log?: Logger;
  clock?: Clock;
  /**
   * Set in a worker of `clearance start --workers N` (src/cluster): its id, and the throttles that
   * ask the primary. A worker serves HTTP only; the primary seals the audit log.
   */
  worker?: { id: number; throttles: Throttles };
}

/** Starts listening; `close` stops accepting, lets in-flight requests finish, then closes the database. */
export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const { worker, ...rest } = options;
  const ctx = await openContext(config, worker ? { ...rest, throttles: worker.throttles } : rest);
  // Before the first request: a Redis that is not there is warned about once, then used when it answers.
  await ctx.risk.limits.connect();
  const app = buildApp(ctx);
  let audit: AuditService | undefined;
  let signals: SignalService | undefined;
  let transmitter: Transmitter | undefined;
  let keySchedule: KeySchedule | undefined;
  app.addHook('onClose', async () => {
    // A key step in progress finishes (and records its audit event) before the log and the database close.
    if (keySchedule) await keySchedule.stop();
    // This node's activity counts are written (src/risk/anomalies/activity.ts): a clean stop loses none.
    await ctx.risk.activity.close();
    // Break-glass expiry and alert delivery stop (a pass in progress finishes) before the audit log and the database.
    if (signals) await signals.stop();
    if (transmitter) await transmitter.stop();
    // The audit queue is written and the sealer stopped before the database closes.
    if (audit) await audit.stop();
    else if (ctx.audit instanceof AuditRecorder) await ctx.audit.close();
    await ctx.risk.limits.close();
    await ctx.storage.close();
    // The spans of the requests just finished are exported before the process goes (docs/observability.md).
    await flushTracing();
  });
  let address: string;
  try {
    address = await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    // A port in use: nothing may keep the process alive (the Redis connection would).
    await ctx.risk.limits.close();
    throw error;
  }
  if (worker) {
    ctx.log.info({ worker: worker.id, address }, 'worker is listening');
    return { app, ctx, url: address, close: () => app.close() };
  }
  try {
    // Shared Signals read the sealed log: each round that sealed events wakes the transmitter at once.
    transmitter = startTransmitter(ctx);
    const ssf = transmitter;
    audit = await startAuditService(ctx, resolveMasterKey(config).key, { onSealed: () => ssf.kick() });
    signals = startSignalService(ctx);
    // Signing keys on a schedule (src/lifecycle/key-schedule.ts): every node ticks, one runs a step.
    keySchedule = new KeySchedule(ctx, { masterKey: resolveMasterKey(config).key, log: ctx.log });
    keySchedule.start();
  } catch (error) {
    await app.close(); // no audit sealing, no server
    throw error;
  }
  ctx.log.info(
    { issuer: config.issuer, mode: config.mode, storage: ctx.storage.location, address },
    'clearance is listening',
  );
  return { app, ctx, url: address, close: () => app.close() };
}
