import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { ClientMetadata } from '../clients/metadata.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';
import { readAgent, readPipeline, type AgentDefinition, type PipelineDefinition } from './definition.ts';
import { upsertAgent, upsertPipeline } from './registry.ts';
import { revokeAgentCertificatesIn } from './revocation.ts';

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

export interface AgentPlan {
  agents: AgentDefinition[];
  pipelines: PipelineDefinition[];
}

/**
 * Reads `pipelines` and `agents` and checks them against each other and what exists: each agent's
 * client is a client of kind `agent` (in the document or registered) owned by its legal entity and
 * used by no other agent; its pipelines and certificate profile exist; its desk belongs to its
 * legal entity; no two agents share a strategy, environment and desk (one identity each).
 */
export async function planAgents(ctx: Context, v: Validator, list: List, duplicates: Duplicates, documentClients: ClientMetadata[], documentProfiles: string[]): Promise<AgentPlan> {
  const pipelineEntries = list('pipelines', (p, x) => readPipeline(v, p, x));
  const agentEntries = list('agents', (p, x) => readAgent(v, p, x));
  duplicates(v, 'pipelines', pipelineEntries.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'agents', agentEntries.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'agents', agentEntries.map((e) => [e.item.client_id, e.at]), 'client_id');
  duplicates(v, 'agents', agentEntries.map((e) => [`${e.item.strategy}/${e.item.environment}/${e.item.desk ?? ''}`, e.at]), 'strategy');
  if (agentEntries.length === 0) return { agents: [], pipelines: pipelineEntries.map((e) => e.item) };
  const snapshot = await ctx.agents.snapshot();
  const pipelines = new Set([...snapshot.pipelines.keys(), ...pipelineEntries.map((e) => e.item.id)]);
  const profiles = new Set([...(await ctx.pki.profiles()).keys(), ...documentProfiles]);
  const entities = await ctx.entities.snapshot();
  for (const { item: agent, at } of agentEntries) {
    const path = `agents[${at}]`;
    const client = documentClients.find((c) => c.client_id === agent.client_id) ?? (await ctx.clients.get(agent.client_id))?.metadata;
    if (!client) v.fail(`${path}.client_id`, `"${agent.client_id}" is not a client (declare it under clients with kind agent)`);
    else if (client.kind !== 'agent') v.fail(`${path}.client_id`, `"${agent.client_id}" is a client of kind ${client.kind}, not agent`);
    else if (client.owner_lei !== undefined && client.owner_lei !== agent.owner_lei) v.fail(`${path}.owner_lei`, `is not the owner of client ${agent.client_id} (${client.owner_lei})`);
    const other = snapshot.byClient.get(agent.client_id);
    if (other && other.id !== agent.id) v.fail(`${path}.client_id`, `is agent ${other.id}'s client: an identity is never shared`);
    const twin = [...snapshot.agents.values()].find((a) => a.id !== agent.id && a.strategy === agent.strategy && a.environment === agent.environment && (a.desk ?? '') === (agent.desk ?? ''));
    if (twin && !agentEntries.some((e) => e.item.id === twin.id)) v.fail(`${path}.strategy`, `agent ${twin.id} already runs ${agent.strategy} in ${agent.environment} on this desk: one identity per strategy, environment and desk`);
    agent.pipelines.forEach((p, i) => {
      if (!pipelines.has(p)) v.fail(`${path}.pipelines[${i}]`, `"${p}" is not a declared pipeline`);
    });
    if (!profiles.has(agent.certificate_profile)) v.fail(`${path}.certificate_profile`, `"${agent.certificate_profile}" is not a certificate profile`);
    if (agent.desk !== undefined) {
      const desk = entities.desks.get(agent.desk);
      if (desk && desk.lei !== agent.owner_lei) v.fail(`${path}.desk`, `belongs to ${desk.lei}, not the agent's owner ${agent.owner_lei}`);
    }
  }
  return { agents: agentEntries.map((e) => e.item), pipelines: pipelineEntries.map((e) => e.item) };
}

/**
 * Writes the plan's pipelines and agents. An agent declared `disabled` (its kill switch) loses the
 * certificates attested for it that are still valid, in this transaction, their revocations pushed
 * to `record.events` (src/agents/revocation.ts) — also one disabled before this rule, at the next
 * apply that declares it.
 */
export async function executeAgents(
  ctx: Context,
  trx: Transaction<Database>,
  plan: AgentPlan,
  record: { actor: string; events: AuditEvent[] },
): Promise<{ kind: 'agent' | 'pipeline'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const now = ctx.clock.now();
  const changes: { kind: 'agent' | 'pipeline'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  for (const pipeline of plan.pipelines) changes.push({ kind: 'pipeline', id: pipeline.id, outcome: await upsertPipeline(trx, now, pipeline) });
  for (const agent of plan.agents) {
    changes.push({ kind: 'agent', id: agent.id, outcome: await upsertAgent(trx, now, agent) });
    if (agent.status === 'disabled') record.events.push(...(await revokeAgentCertificatesIn(trx, now, agent.id, record.actor)));
  }
  return changes;
}
