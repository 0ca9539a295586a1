import { readJwks } from '../federation/definition.ts';
import type { Validator } from '../validation.ts';

/**
 * Algorithmic agents as identities (apply's `agents` and `pipelines`, docs/agents.md). An agent is
 * one strategy in one environment on one desk — never shared — authenticating as its own OAuth
 * client (kind `agent`) with a short-lived certificate it obtains at run time by presenting a
 * workload attestation signed by one of its deployment pipelines. Its model versions (bindings)
 * are added through the admin API and carry trading authority only once approved.
 */
export interface AgentDefinition {
  id: string;
  client_id: string;
  strategy: string;
  environment: AgentEnvironment;
  owner_lei: string;
  desk?: string;
  venues: string[];
  instrument_classes: string[];
  notional_envelope?: { max: number; currency: string };
  pipelines: string[];
  certificate_profile: string;
  /** Where the attestation may say the agent's key lives; software only in development (docs/agents.md). */
  key_storage: KeyStorage[];
  status: 'active' | 'disabled';
}

export type AgentEnvironment = 'production' | 'staging' | 'development';
export type KeyStorage = 'hsm' | 'tpm' | 'software';

export interface PipelineDefinition {
  id: string;
  name?: string;
  jwks: { keys: Record<string, unknown>[] };
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const agentFields = ['id', 'client_id', 'strategy', 'environment', 'owner_lei', 'desk', 'venues', 'instrument_classes', 'notional_envelope', 'pipelines', 'certificate_profile', 'key_storage', 'status'];

export function readAgent(v: Validator, path: string, value: unknown): AgentDefinition | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, agentFields);
  const before = v.problems.length;
  const id = v.string(`${path}.id`, o.id, { pattern: idPattern, patternMessage: 'must be 1 to 64 of letters, digits and ._- (it goes into certificate names)' });
  const clientId = o.client_id === undefined ? id : v.string(`${path}.client_id`, o.client_id, { maxLength: 200 });
  const strategy = v.string(`${path}.strategy`, o.strategy, { pattern: /^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$/ });
  const environment = v.string(`${path}.environment`, o.environment, { oneOf: ['production', 'staging', 'development'] }) as AgentEnvironment | undefined;
  const ownerLei = v.string(`${path}.owner_lei`, o.owner_lei, { pattern: /^[A-Z0-9]{20}$/, patternMessage: 'must be an LEI (20 characters)' });
  const desk = o.desk === undefined ? undefined : v.string(`${path}.desk`, o.desk, { maxLength: 100 });
  const list = (key: string) => (o[key] === undefined ? [] : v.array(`${path}.${key}`, o[key], (p, x) => v.string(p, x, { maxLength: 100 }), { unique: true }));
  const venues = list('venues');
  const instrumentClasses = list('instrument_classes');
  const pipelines = v.array(`${path}.pipelines`, o.pipelines, (p, x) => v.string(p, x, { pattern: idPattern }), { nonEmpty: true, unique: true });
  let envelope: AgentDefinition['notional_envelope'];
  if (o.notional_envelope !== undefined) {
    const e = v.object(`${path}.notional_envelope`, o.notional_envelope);
    if (e) {
      v.knownKeys(`${path}.notional_envelope`, e, ['max', 'currency']);
      const max = v.integer(`${path}.notional_envelope.max`, e.max, { min: 1, max: Number.MAX_SAFE_INTEGER });
      const currency = v.string(`${path}.notional_envelope.currency`, e.currency, { pattern: /^[A-Z]{3}$/, patternMessage: 'must be an ISO 4217 code' });
      if (max !== undefined && currency !== undefined) envelope = { max, currency };
    }
  }
  const profile = o.certificate_profile === undefined ? 'trading-agent' : v.string(`${path}.certificate_profile`, o.certificate_profile, { maxLength: 40 });
  const defaultStorage: KeyStorage[] = environment === 'development' ? ['hsm', 'tpm', 'software'] : ['hsm', 'tpm'];
  const keyStorage = o.key_storage === undefined ? defaultStorage : (v.array(`${path}.key_storage`, o.key_storage, (p, x) => v.string(p, x, { oneOf: ['hsm', 'tpm', 'software'] }) as KeyStorage | undefined, { nonEmpty: true, unique: true }) ?? []);
  // Amendment "PKI, agents, signing": a software key only in the development profile.
  if (environment !== undefined && environment !== 'development' && keyStorage.includes('software')) v.fail(`${path}.key_storage`, 'may name software only for a development agent');
  const status = o.status === undefined ? 'active' : (v.string(`${path}.status`, o.status, { oneOf: ['active', 'disabled'] }) as 'active' | 'disabled' | undefined);
  if (v.problems.length > before) return undefined;
  return {
    id: id!,
    client_id: clientId!,
    strategy: strategy!,
    environment: environment!,
    owner_lei: ownerLei!,
    ...(desk !== undefined ? { desk } : {}),
    venues: venues!,
    instrument_classes: instrumentClasses!,
    ...(envelope ? { notional_envelope: envelope } : {}),
    pipelines: pipelines!,
    certificate_profile: profile!,
    key_storage: keyStorage,
    status: status!,
  };
}

export function readPipeline(v: Validator, path: string, value: unknown): PipelineDefinition | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['id', 'name', 'jwks']);
  const before = v.problems.length;
  const id = v.string(`${path}.id`, o.id, { pattern: idPattern });
  const name = o.name === undefined ? undefined : v.string(`${path}.name`, o.name, { maxLength: 200 });
  const jwks = readJwks(v, `${path}.jwks`, o.jwks);
  if (v.problems.length > before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}), jwks: jwks! };
}
