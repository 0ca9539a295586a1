import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../storage/schema.ts';

/**
 * Flags on agents: a fact a human must act on that does not, by itself, stop the agent. Today one:
 * `owner_offboarded` — the person who owns the agent's model (validated it and asked for its
 * approval: `agent_models.validated_by`, docs/agents.md) left (src/lifecycle/leaver.ts). The agent
 * keeps trading under its approved model; its owner must be replaced, which the admin view shows.
 * Apply's agent writes never touch the flag (upsertAgent writes only the declared members).
 */
export type AgentFlagReason = 'owner_offboarded';

/** What an agent's admin view shows of its flag. */
export interface AgentFlag {
  flaggedAt: number;
  reason: string;
}

/**
 * Inside the caller's transaction: flags every agent with a pending or approved model version that
 * person `userId` validated (not already flagged). Returns the agent ids flagged, sorted.
 */
export async function flagAgentsOwnedByIn(trx: Transaction<Database>, now: number, userId: string, reason: AgentFlagReason): Promise<string[]> {
  const owned = await trx
    .selectFrom('agent_models')
    .select('agent_id')
    .distinct()
    .where('validated_by', '=', userId)
    .where('status', 'in', ['pending', 'approved'])
    .execute();
  const ids = owned.map((r) => r.agent_id).sort();
  if (ids.length === 0) return [];
  const flagged = await trx
    .updateTable('agents')
    .set({ flagged_at: now, flag_reason: reason })
    .where('id', 'in', ids)
    .where('flagged_at', 'is', null)
    .returning('id')
    .execute();
  return flagged.map((r) => r.id).sort();
}

/** The flags of every flagged agent, by agent id (for the admin view). */
export async function agentFlags(db: Kysely<Database>): Promise<Map<string, AgentFlag>> {
  const rows = await db.selectFrom('agents').select(['id', 'flagged_at', 'flag_reason']).where('flagged_at', 'is not', null).execute();
  return new Map(rows.map((r) => [r.id, { flaggedAt: Number(r.flagged_at), reason: r.flag_reason ?? 'flagged' }]));
}
