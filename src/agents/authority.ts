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
