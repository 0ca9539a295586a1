import type { Context } from '../context.ts';
import { alertInsert } from '../signals/alerts.ts';
import { checkedCsr, planIssuance, profileOf, PkiRefusal, signAndRecord, type IssuedCertificate } from '../pki/issuance.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import { AttestationRefusal, verifyAttestation } from './attestation.ts';

/**
 * An agent's certificate at run time (docs/agents.md): its CSR and a fresh workload attestation
 * from one of its pipelines (src/agents/attestation.ts) for an approved model version; the
 * certificate is of the agent's profile, names the agent, and is recorded with the model version
 * it was attested for — the token the agent then gets with it carries that version (`agent`
 * claim). The model's approval is the second person's control: the profile's own `approval` does
 * not apply here. A refusal is audited (`agent.attestation_refused`) and alerts.
 */
export async function issueAgentCertificate(ctx: Context, input: { agentId: string; attestation: unknown; csr: unknown; requestId?: string }): Promise<IssuedCertificate> {
  const agent = (await ctx.agents.snapshot()).agents.get(input.agentId);
  try {
    if (!agent || agent.status !== 'active') throw new AttestationRefusal('unknown_agent', `no active agent ${input.agentId}`);
    const csr = await checkedCsr(input.csr);
    const attested = await verifyAttestation(ctx, agent, input.attestation, csr);
    const { profile, version } = await profileOf(ctx, agent.certificate_profile);
    const plan = planIssuance(profile, csr, agent.id, undefined);
    return await ctx.audit.recordWith(async (trx) => {
      const issued = await signAndRecord(ctx, trx, { profile, version, csr, holder: agent.id, ...plan, requestedBy: `pipeline:${attested.pipeline}`, renewedFrom: null, approvalRequest: attested.binding.approvalRequest, ...(input.requestId !== undefined ? { requestId: input.requestId } : {}) });
      await trx
        .insertInto('agent_credentials')
        .values({ serial: issued.certificate.serial, agent_id: agent.id, model_id: attested.binding.id, pipeline_id: attested.pipeline, attestation_jti: attested.jti, created_at: ctx.clock.now() })
        .execute();
      return {
        value: issued.certificate,
        events: [
          issued.event,
          {
            type: 'agent.attested',
            actor: `pipeline:${attested.pipeline}`,
            subject: agent.id,
            ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
            details: { serial: issued.certificate.serial, model_id: attested.binding.id, model_version: attested.binding.version, model_digest: attested.binding.modelDigest, image_digest: attested.imageDigest, key_storage: attested.keyStorage, attestation_jti: attested.jti },
          },
        ],
      };
    });
  } catch (error) {
    const refusal = error instanceof AttestationRefusal ? error : error instanceof PkiRefusal ? new AttestationRefusal(error.code, error.message) : replayed(error);
    if (!refusal) throw error;
    // An id nobody declared is answered, not recorded: the log is not for the internet's guesses.
    if (agent) await recordAttestationRefusal(ctx, agent.id, refusal, input.requestId);
    throw refusal;
  }
}

/**
 * Two certificate requests with the same attestation id racing past its check (src/agents/
 * attestation.ts): the unique `attestation_jti` keeps the second from recording, and it is the
 * caller's replay, not a server error.
 */
function replayed(error: unknown): AttestationRefusal | undefined {
  return isUniqueViolation(error) ? new AttestationRefusal('replay', 'attestation jti was used for a certificate already: a pipeline signs a new attestation for each') : undefined;
}

async function recordAttestationRefusal(ctx: Context, agentId: string, refusal: AttestationRefusal, requestId: string | undefined): Promise<void> {
  await ctx.audit.recordWith(async (trx) => {
    // The reason code only: the message quotes what the caller sent (digests, versions), which
    // the audit log does not take from an unauthenticated party.
    await alertInsert(trx, ctx.clock, { type: 'agent.attestation_refused', data: { agent: agentId, reason: refusal.code } }).execute();
    return {
      value: undefined,
      events: [{ type: 'agent.attestation_refused', subject: agentId, ...(requestId !== undefined ? { requestId } : {}), details: { reason: refusal.code } }],
    };
  });
}
