import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { AgentDefinition, PipelineDefinition } from './definition.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/** The generation that a change of agents, pipelines or model bindings bumps. */
export const agentsGeneration = 'agents';

export interface ModelBinding {
  id: string;
  agentId: string;
  version: string;
  modelDigest: string;
  imageDigest: string;
  status: 'pending' | 'approved' | 'denied' | 'retired';
  validatedBy: string;
  approvalRequest: string;
  approvedBy: string | null;
  approvedAt: number | null;
}

export interface AgentSnapshot {
  agents: ReadonlyMap<string, AgentDefinition>;
  /** Agents by the client they authenticate as. */
  byClient: ReadonlyMap<string, AgentDefinition>;
  pipelines: ReadonlyMap<string, PipelineDefinition>;
  /** Every model binding by id. */
  models: ReadonlyMap<string, ModelBinding>;
  /** Model bindings by the approval request that decided them (a token's `agent.approval`). */
  modelsByApproval: ReadonlyMap<string, ModelBinding>;
  /**
   * When each agent's declaration last changed (epoch ms): a disable, a re-enable, a narrowed
   * envelope. A token issued before it was decided under what is no longer declared.
   */
  changedAt: ReadonlyMap<string, number>;
}

/**
 * The agent registry, cached per node and reloaded when anything in it changes (a generation
 * bumped in the writer's transaction): token issuance asks it whether a client is an agent without
 * a database round trip. Which model version an attested certificate carries never changes, so that
 * mapping is remembered after its first read.
 */
export class AgentRegistry {
  readonly #db: Kysely<Database>;
  readonly #cache: GenerationCache<AgentSnapshot>;
  readonly #credentials = new BoundedMap<string, { agentId: string; modelId: string }>(10_000);

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#cache = new GenerationCache(db, agentsGeneration, () => this.#load(), clock);
  }

  snapshot(): Promise<AgentSnapshot> {
    return this.#cache.get();
  }

  invalidate(): void {
    this.#cache.invalidate();
  }

  /** The model binding a certificate was issued for, or undefined for a certificate no attestation made. */
  async credential(serial: string): Promise<{ agentId: string; modelId: string } | undefined> {
    const known = this.#credentials.get(serial);
    if (known) return known;
    const row = await this.#db.selectFrom('agent_credentials').select(['agent_id', 'model_id']).where('serial', '=', serial).executeTakeFirst();
    if (!row) return undefined;
    const found = { agentId: row.agent_id, modelId: row.model_id };
    this.#credentials.set(serial, found);
    return found;
  }

  async #load(): Promise<AgentSnapshot> {
    const [agentRows, pipelineRows, modelRows] = await Promise.all([
      this.#db.selectFrom('agents').selectAll().execute(),
      this.#db.selectFrom('agent_pipelines').selectAll().execute(),
      this.#db.selectFrom('agent_models').selectAll().execute(),
    ]);
    const agents = new Map(agentRows.map((r) => [r.id, agentFromRow(r)]));
    const models = new Map(modelRows.map((r) => [r.id, modelFromRow(r)]));
    return {
      agents,
      byClient: new Map([...agents.values()].map((a) => [a.client_id, a])),
      pipelines: new Map(pipelineRows.map((r) => [r.id, { id: r.id, ...(r.name ? { name: r.name } : {}), jwks: JSON.parse(r.jwks) as PipelineDefinition['jwks'] }])),
      models,
      modelsByApproval: new Map([...models.values()].map((m) => [m.approvalRequest, m])),
      changedAt: new Map(agentRows.map((r) => [r.id, Number(r.updated_at)])),
    };
  }
}

export function agentFromRow(r: Database['agents']): AgentDefinition {
  return {
    id: r.id,
    client_id: r.client_id,
    strategy: r.strategy,
    environment: r.environment as AgentDefinition['environment'],
    owner_lei: r.owner_lei,
    ...(r.desk ? { desk: r.desk } : {}),
    venues: JSON.parse(r.venues) as string[],
    instrument_classes: JSON.parse(r.instrument_classes) as string[],
    ...(r.notional_max !== null && r.notional_currency ? { notional_envelope: { max: Number(r.notional_max), currency: r.notional_currency } } : {}),
    pipelines: JSON.parse(r.pipelines) as string[],
    certificate_profile: r.certificate_profile,
    key_storage: JSON.parse(r.key_storage) as AgentDefinition['key_storage'],
    status: r.status as AgentDefinition['status'],
  };
}

export function modelFromRow(r: Database['agent_models']): ModelBinding {
  return {
    id: r.id,
    agentId: r.agent_id,
    version: r.version,
    modelDigest: r.model_digest,
    imageDigest: r.image_digest,
    status: r.status as ModelBinding['status'],
    validatedBy: r.validated_by,
    approvalRequest: r.approval_request,
    approvedBy: r.approved_by,
    approvedAt: r.approved_at === null ? null : Number(r.approved_at),
  };
}

/** Writes an agent in the apply transaction. */
export async function upsertAgent(trx: Transaction<Database>, now: number, agent: AgentDefinition): Promise<'created' | 'updated' | 'unchanged'> {
  const row: Database['agents'] = {
    id: agent.id,
    client_id: agent.client_id,
    strategy: agent.strategy,
    environment: agent.environment,
    owner_lei: agent.owner_lei,
    desk: agent.desk ?? null,
    venues: JSON.stringify(agent.venues),
    instrument_classes: JSON.stringify(agent.instrument_classes),
    notional_max: agent.notional_envelope?.max ?? null,
    notional_currency: agent.notional_envelope?.currency ?? null,
    pipelines: JSON.stringify(agent.pipelines),
    certificate_profile: agent.certificate_profile,
    key_storage: JSON.stringify(agent.key_storage),
    status: agent.status,
    updated_at: now,
  };
  const existing = await trx.selectFrom('agents').selectAll().where('id', '=', agent.id).executeTakeFirst();
  if (!existing) {
    await trx.insertInto('agents').values(row).execute();
  } else {
    if (JSON.stringify(agentFromRow(existing)) === JSON.stringify(agentFromRow(row))) return 'unchanged';
    await trx.updateTable('agents').set(row).where('id', '=', agent.id).execute();
  }
  await bumpGeneration(trx, agentsGeneration);
  return existing ? 'updated' : 'created';
}

export async function upsertPipeline(trx: Transaction<Database>, now: number, pipeline: PipelineDefinition): Promise<'created' | 'updated' | 'unchanged'> {
  const jwks = JSON.stringify(pipeline.jwks);
  const existing = await trx.selectFrom('agent_pipelines').selectAll().where('id', '=', pipeline.id).executeTakeFirst();
  if (existing && existing.jwks === jwks && existing.name === (pipeline.name ?? null)) return 'unchanged';
  if (existing) await trx.updateTable('agent_pipelines').set({ jwks, name: pipeline.name ?? null, updated_at: now }).where('id', '=', pipeline.id).execute();
  else await trx.insertInto('agent_pipelines').values({ id: pipeline.id, name: pipeline.name ?? null, jwks, updated_at: now }).execute();
  await bumpGeneration(trx, agentsGeneration);
  return existing ? 'updated' : 'created';
}
