import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import { openApprovalRequest, type ApprovalRequest } from '../approvals/requests.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { bumpGeneration } from '../storage/generations.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import type { Database } from '../storage/schema.ts';
import { revocationReasons } from '../pki/revocation.ts';
import { revocationsGeneration } from '../pki/status.ts';
import { publishCrl } from '../pki/crl.ts';
import { agentsGeneration, modelFromRow, type ModelBinding } from './registry.ts';

/** The role a second person holds to approve a model version. */
export const modelRiskRole = 'model-risk';
/** How long a model version waits for its approval. */
const approvalTtlMs = 24 * 3600_000;
export const digestPattern = /^sha256:[0-9a-f]{64}$/;

export class ModelError extends Error {
  override name = 'ModelError';
}

/**
 * A person who validated a model version binds it to an agent (docs/agents.md "Model versions"):
 * the binding is `pending` — no trading authority, no certificate — until a second person holding
 * `model-risk` approves it (approval kind `model_approval`; the one rule of src/approvals makes the
 * approver someone other than the validator). `retirePrevious`: approving it retires the agent's
 * other approved versions, whose certificates are revoked at once; otherwise they keep authority.
 */
export async function proposeModel(
  ctx: Context,
  input: { agentId: string; version: string; modelDigest: string; imageDigest: string; validatedBy: string; validationRef?: string; retirePrevious: boolean; requestId?: string },
): Promise<{ binding: ModelBinding; request: ApprovalRequest }> {
  const agent = (await ctx.agents.snapshot()).agents.get(input.agentId);
  if (!agent) throw new ModelError(`no agent ${input.agentId}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$/.test(input.version)) throw new ModelError('version must be 1 to 64 of letters, digits and .+_-');
  if (!digestPattern.test(input.modelDigest)) throw new ModelError('model_digest must be sha256:<64 lower-case hex digits>');
  if (!digestPattern.test(input.imageDigest)) throw new ModelError('image_digest must be sha256:<64 lower-case hex digits>');
  if (input.validationRef !== undefined && !/^[^\p{Cc}]{1,200}$/u.test(input.validationRef)) throw new ModelError('validation_ref must be 1 to 200 printable characters');
  const same = await ctx.storage.db
    .selectFrom('agent_models')
    .select(['id', 'status'])
    .where('agent_id', '=', agent.id)
    .where('version', '=', input.version)
    .where('status', 'in', ['pending', 'approved'])
    .executeTakeFirst();
  if (same) throw new ModelError(`version ${input.version} of agent ${agent.id} is ${same.status} already (${same.id})`);
  const id = randomUUID();
  const now = ctx.clock.now();
  let binding: ModelBinding | undefined;
  const request = await openApprovalRequest(
    ctx,
    {
      kind: 'model_approval',
      requester: input.validatedBy,
      requesterType: 'user',
      subject: agent.id,
      content: {
        model_id: id,
        agent: agent.id,
        strategy: agent.strategy,
        environment: agent.environment,
        version: input.version,
        model_digest: input.modelDigest,
        image_digest: input.imageDigest,
        validated_by: input.validatedBy,
        ...(input.validationRef !== undefined ? { validation_ref: input.validationRef } : {}),
        retire_previous: input.retirePrevious,
      },
      requiredApprovals: 1,
      subjectMustApprove: false,
      ttlMs: approvalTtlMs,
    },
    async (trx, opened) => {
      const row: Database['agent_models'] = {
        id,
        agent_id: agent.id,
        version: input.version,
        model_digest: input.modelDigest,
        image_digest: input.imageDigest,
        status: 'pending',
        validated_by: input.validatedBy,
        validation_ref: input.validationRef ?? null,
        approval_request: opened.id,
        approved_by: null,
        approved_at: null,
        retire_previous: input.retirePrevious ? 1 : 0,
        retired_at: null,
        created_at: now,
      };
      await trx.insertInto('agent_models').values(row).execute();
      await bumpGeneration(trx, agentsGeneration);
      binding = modelFromRow(row);
      return [
        {
          type: 'agent.model_proposed',
          actor: input.validatedBy,
          subject: agent.id,
          txn: opened.id,
          details: { model_id: id, version: input.version, model_digest: input.modelDigest, image_digest: input.imageDigest, validated_by: input.validatedBy, retire_previous: input.retirePrevious },
        },
      ];
    },
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  ).catch((error: unknown) => {
    throw isUniqueViolation(error) ? proposedAlready(agent.id, input.version) : error;
  });
  ctx.agents.invalidate();
  return { binding: binding!, request };
}

/**
 * Two proposals of one version racing past the check before the insert: the unique index of
 * migration 0068 (agent and version, over the bindings pending or approved) lets one insert; the
 * other is the same conflict, answered alike (409), rolled back with its approval request.
 */
function proposedAlready(agentId: string, version: string): ModelError {
  return new ModelError(`version ${version} of agent ${agentId} is pending or approved already`);
}

/**
 * In the decision's transaction: an approved version gains trading authority (and, when it said so,
 * the agent's other approved versions are retired and every certificate attested for them revoked
 * as `privilegeWithdrawn`); a denied one stays without.
 */
export async function settleModelApproval(ctx: Context, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  const id = String(request.content.model_id);
  const row = await trx.selectFrom('agent_models').selectAll().where('id', '=', id).where('status', '=', 'pending').executeTakeFirst();
  if (!row) return [];
  const now = ctx.clock.now();
  await bumpGeneration(trx, agentsGeneration);
  if (outcome === 'denied') {
    await trx.updateTable('agent_models').set({ status: 'denied' }).where('id', '=', id).execute();
    return [{ type: 'agent.model_denied', subject: row.agent_id, txn: request.id, details: { model_id: id, version: row.version } }];
  }
  const approver = await trx.selectFrom('approval_decisions').select('approver').where('request_id', '=', request.id).where('decision', '=', 'approve').orderBy('at', 'desc').executeTakeFirst();
  await trx.updateTable('agent_models').set({ status: 'approved', approved_by: approver?.approver ?? null, approved_at: now }).where('id', '=', id).execute();
  const events: AuditEvent[] = [
    {
      type: 'agent.model_approved',
      actor: approver?.approver ?? request.requester,
      subject: row.agent_id,
      txn: request.id,
      details: { model_id: id, version: row.version, model_digest: row.model_digest, image_digest: row.image_digest, validated_by: row.validated_by, approved_by: approver?.approver ?? null, approval_request: request.id },
    },
  ];
  if (row.retire_previous !== 1) return events;
  const previous = await trx.selectFrom('agent_models').select(['id', 'version']).where('agent_id', '=', row.agent_id).where('status', '=', 'approved').where('id', '!=', id).execute();
  for (const old of previous) {
    await trx.updateTable('agent_models').set({ status: 'retired', retired_at: now }).where('id', '=', old.id).execute();
    const serials = (await trx.selectFrom('agent_credentials').select('serial').where('model_id', '=', old.id).execute()).map((c) => c.serial);
    if (serials.length > 0) {
      await trx
        .updateTable('pki_certificates')
        .set({ status: 'revoked', revoked_at: now, revocation_reason: revocationReasons.privilegeWithdrawn!, revoked_by: `model-retired:${old.id}` })
        .where('serial', 'in', serials)
        .where('status', '=', 'valid')
        .execute();
      await bumpGeneration(trx, revocationsGeneration);
    }
    events.push({ type: 'agent.model_retired', subject: row.agent_id, txn: request.id, details: { model_id: old.id, version: old.version, superseded_by: id, certificates_revoked: serials } });
  }
  return events;
}

/**
 * After the decision committed: this node's caches forget at once (others within a second), and
 * the CRL is published anew when certificates were revoked (in the background: it must not throw).
 */
export function afterModelApproval(ctx: Context, request: ApprovalRequest, outcome: 'approved' | 'denied'): void {
  ctx.agents.invalidate();
  ctx.pki.status.invalidate();
  if (outcome !== 'approved' || request.content.retire_previous !== true) return;
  void (async () => {
    const { authority } = await ctx.pki.authorities.issuing();
    await publishCrl(ctx, authority.id, { force: true });
  })().catch((error: unknown) => ctx.log.warn({ err: { message: (error as Error).message } }, 'CRL not published after a model approval'));
}
