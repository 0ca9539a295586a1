import type { AuthenticatedClient } from '../clients/authentication/types.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { AgentClaim } from '../tokens/claims.ts';

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
 * Whether a live token's `agent` claim still stands (src/tokens/liveness.ts asks it for every token
 * that carries one; in-memory registry reads only): the agent is active, its declaration has not
 * changed since the token was issued — a disable then a re-enable, or a narrowed envelope, leaves no
 * token decided before it alive (`iat` has a resolution of a second: a token of the change's own
 * second counts as before it) — and the model version the token names, by its approval, is the
 * agent's and still approved: a retired or otherwise withdrawn version has no trading authority from
 * that moment, not only at the next issuance (docs/agents.md "Tokens").
 */
export async function isAgentClaimLive(ctx: Pick<Context, 'agents'>, claim: AgentClaim, issuedAtMs: number): Promise<boolean> {
  const snapshot = await ctx.agents.snapshot();
  if (snapshot.agents.get(claim.id)?.status !== 'active') return false;
  const changedAt = snapshot.changedAt.get(claim.id);
  if (changedAt === undefined || issuedAtMs <= changedAt) return false;
  const binding = snapshot.modelsByApproval.get(claim.approval);
  return binding !== undefined && binding.agentId === claim.id && binding.modelDigest === claim.model_digest && binding.status === 'approved';
}
