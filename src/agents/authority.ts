import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { AccessTokenClaims, AgentClaim, AgentReference } from '../tokens/claims.ts';
import type { AgentSnapshot } from './registry.ts';

/** What the agent may trade (agents[] in apply): for the policy context, never the token. */
export interface AgentEnvelope {
  venues: string[];
  instrument_classes: string[];
  max_notional?: number;
  currency?: string;
}

/**
 * An agent's trading authority at token issuance (docs/agents.md "Tokens"): a client that is a
 * declared agent gets tokens only while the agent is active and only when it authenticated with a
 * certificate attested for one of its model versions that is approved now (a retired or denied
 * version has none; a secret or assertion proves nothing about the model). The token's `agent`
 * claim, and the policy context's `agent`, say which. Any other client: undefined, at the cost of
 * one map lookup in the cached registry.
 */
export async function agentAuthority(ctx: Context, client: AuthenticatedClient): Promise<(AgentClaim & { envelope: AgentEnvelope }) | undefined> {
  const snapshot = await ctx.agents.snapshot();
  const agent = snapshot.byClient.get(client.client.metadata.client_id);
  if (!agent) return undefined;
  if (agent.status !== 'active') throw new OAuthError('unauthorized_client', `agent ${agent.id} is disabled`);
  // Client authentication already refused a certificate issued to another agent, at every endpoint
  // (src/clients/authentication/index.ts requireIssuedToClient); this asks more of it: attested for
  // this agent (agent_credentials), so a certificate issued to it without an attestation gets no token.
  const certificate = client.caCertificate;
  const credential = certificate && (await ctx.agents.credential(certificate.serial));
  if (!credential || credential.agentId !== agent.id) {
    throw new OAuthError('unauthorized_client', `agent ${agent.id} gets tokens only with a certificate from its workload attestation (tls_client_auth)`);
  }
  const binding = snapshot.models.get(credential.modelId);
  if (!binding || binding.status !== 'approved') {
    throw new OAuthError('unauthorized_client', `agent ${agent.id}'s model version ${binding?.version ?? credential.modelId} has no trading authority (${binding?.status ?? 'unknown'})`);
  }
  return {
    id: agent.id,
    strategy: agent.strategy,
    environment: agent.environment,
    model_version: binding.version,
    model_digest: binding.modelDigest,
    approval: binding.approvalRequest,
    envelope: {
      venues: agent.venues,
      instrument_classes: agent.instrument_classes,
      ...(agent.notional_envelope ? { max_notional: agent.notional_envelope.max, currency: agent.notional_envelope.currency } : {}),
    },
  };
}

/**
 * Whether the agents a live token stands on still stand (src/tokens/liveness.ts asks it of every
 * token that names one; in-memory registry reads only): its `agent` — the agent it was issued to —
 * and, for a token exchanged from an agent's token (RFC 8693, any hop), each of its `agents`. A
 * malformed `agents` fails closed.
 */
export async function areAgentsLive(ctx: Pick<Context, 'agents'>, claims: Pick<AccessTokenClaims, 'agent' | 'agents'>, issuedAtMs: number): Promise<boolean> {
  const snapshot = await ctx.agents.snapshot();
  if (claims.agent !== undefined && !isClaimLive(snapshot, claims.agent, issuedAtMs)) return false;
  const agents: unknown = claims.agents;
  return agents === undefined || (Array.isArray(agents) && agents.every((reference) => isAgentReference(reference) && isReferenceLive(snapshot, reference, issuedAtMs)));
}

/** An `agent` claim: its reference stands, and the model digest it names is that version's. */
function isClaimLive(snapshot: AgentSnapshot, claim: AgentClaim, issuedAtMs: number): boolean {
  return isReferenceLive(snapshot, claim, issuedAtMs) && snapshot.modelsByApproval.get(claim.approval)?.modelDigest === claim.model_digest;
}

/**
 * Whether an agent a token names still stands: the agent is active, its declaration has not
 * changed since the token was issued — a disable then a re-enable, or a narrowed envelope, leaves no
 * token decided before it alive (`iat` has a resolution of a second: a token of the change's own
 * second counts as before it) — and the model version the token names, by its approval, is the
 * agent's and still approved: a retired or otherwise withdrawn version has no trading authority from
 * that moment, not only at the next issuance (docs/agents.md "Tokens"). An exchanged token's
 * `issuedAtMs` is its own: its subject token was live when it was exchanged.
 */
function isReferenceLive(snapshot: AgentSnapshot, reference: AgentReference, issuedAtMs: number): boolean {
  if (snapshot.agents.get(reference.id)?.status !== 'active') return false;
  const changedAt = snapshot.changedAt.get(reference.id);
  if (changedAt === undefined || issuedAtMs <= changedAt) return false;
  const binding = snapshot.modelsByApproval.get(reference.approval);
  return binding !== undefined && binding.agentId === reference.id && binding.status === 'approved';
}

function isAgentReference(value: unknown): value is AgentReference {
  const reference = value as Partial<AgentReference> | null;
  return typeof reference === 'object' && reference !== null && typeof reference.id === 'string' && typeof reference.approval === 'string';
}

/**
 * The agents a token exchanged from `tokens` (its subject token, and its actor token when one was
 * presented) stands on: each one's `agent` and the `agents` it carries from earlier hops, once each,
 * as `{id, approval}` — what the liveness rule needs of each, read from the registry, and no more
 * (the strategy and model version are the agent's own token's to say). Empty for tokens of no agent.
 */
export function agentReferences(tokens: readonly (Pick<AccessTokenClaims, 'agent' | 'agents'> | undefined)[]): AgentReference[] {
  const references = new Map<string, AgentReference>();
  for (const token of tokens) {
    for (const named of [...(token?.agent ? [token.agent] : []), ...(token?.agents ?? [])]) references.set(`${named.id} ${named.approval}`, { id: named.id, approval: named.approval });
  }
  return [...references.values()];
}
