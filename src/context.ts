import type { Logger } from 'pino';
import type { Readiness } from './http/readiness.ts';
import type { AuditLog } from './audit/events.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { AuthDeps } from './clients/authentication/index.ts';
import type { ClientStore } from './clients/store.ts';
import type { KeyStore } from './keys/keystore.ts';
import type { ResourceServerStore } from './resource-servers/store.ts';
import type { Storage } from './storage/database.ts';
import type { Identity } from './identity/index.ts';
import type { DpopDeps } from './tokens/dpop.ts';
import type { EntityDirectory } from './entities/directory.ts';
import type { PolicyStore } from './policy/store.ts';
import type { PartnerStore } from './federation/store.ts';
import type { RiskServices } from './risk/index.ts';
import type { Pki } from './pki/index.ts';
import type { AgentRegistry } from './agents/registry.ts';
import type { ReferenceTokenStore } from './tokens/reference-tokens.ts';

/** What every endpoint and command is given: configuration and the components' typed handles. */
export interface Context {
  config: Config;
  storage: Storage;
  keys: KeyStore;
  clients: ClientStore;
  resourceServers: ResourceServerStore;
  clock: Clock;
  log: Logger;
  /** The tamper-evident audit log (DESIGN §5): `await ctx.audit.record(event)` before responding. */
  audit: AuditLog;
  /** Client authentication's dependencies: client registry, assertion replay cache, failure throttle. */
  clientAuthentication: AuthDeps;
  /** The people side (src/identity): login throttle, lockout and session policy. */
  identity: Identity;
  /** DPoP proof validation (RFC 9449): the shared replay cache and the server nonces. */
  dpop: DpopDeps;
  /** The entity model (src/entities): legal entities, desks, accounts, reference lists. */
  entities: EntityDirectory;
  /** Versioned Cedar policy sets and the active one, compiled (src/policy). */
  policies: PolicyStore;
  /** The partner trust registry (src/federation): federated issuers' profiles, their key sets, the assertion replay cache. */
  partners: PartnerStore;
  /** The risk engine's settings and memory (src/risk): signals, sightings, baselines, limits. */
  risk: RiskServices;
  /** The private CA (src/pki): custody, authorities, certificate profiles and status. */
  pki: Pki;
  /** Algorithmic agents (src/agents): identities, pipelines, model bindings. */
  agents: AgentRegistry;
  /** Reference access tokens (src/tokens/reference-tokens.ts): handles and the claims they stand for. */
  referenceTokens: ReferenceTokenStore;
  /** Whether this node takes new work (src/http/readiness.ts): draining from the first SIGTERM, `/readyz` 503. */
  readiness: Readiness;
}
