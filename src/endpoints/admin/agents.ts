import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { agentFlags } from '../../agents/flags.ts';
import { ModelError, proposeModel } from '../../agents/models.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import { jsonObjectBody, sendJson } from '../../http/json.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/** The role of a person who validates a model version and asks for its approval. */
export const modelValidatorRole = 'model-validator';

/**
 * Agents through the admin API (docs/agents.md), tokens for `<issuer>/admin`:
 *
 * - GET  /admin/agents (`admin:read`): every agent with its model versions and their status, and
 *   its flag (`{reason, flagged_at}`: `owner_offboarded` when its model owner left) or null;
 * - POST /admin/agents/{id}/models (`admin:write`, a person's own token, the person holding
 *   `model-validator`) `{version, model_digest, image_digest, validation_ref?, retire_previous?}`:
 *   binds a model version the person validated; 202 with the approval request a `model-risk` person
 *   decides (POST /admin/approvals/{id}/decision or the approvals page). 400 names the problem,
 *   404 an unknown agent, 409 a version pending or approved already.
 */
export const adminAgents: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/agents`;

    app.get(base, adminOperation(ctx, 'admin:read', { tag: 'agents', summary: 'List the agents with their model versions and the status of each' }), async (_request, reply) => {
      const snapshot = await ctx.agents.snapshot();
      const models = [...snapshot.models.values()];
      // A flag (its model owner left, src/lifecycle/leaver.ts) needs a human; it does not stop the agent.
      const flags = await agentFlags(ctx.storage.db);
      return sendJson(reply, {
        agents: [...snapshot.agents.values()].map((agent) => ({
          ...agent,
          flag: flags.has(agent.id) ? { reason: flags.get(agent.id)!.reason, flagged_at: new Date(flags.get(agent.id)!.flaggedAt).toISOString() } : null,
          models: models
            .filter((m) => m.agentId === agent.id)
            .map((m) => ({ id: m.id, version: m.version, model_digest: m.modelDigest, image_digest: m.imageDigest, status: m.status, validated_by: m.validatedBy, approved_by: m.approvedBy, approval_request: m.approvalRequest })),
        })),
      });
    });

    app.post<{ Params: { id: string } }>(`${base}/:id/models`, adminOperation(ctx, 'admin:write', {
      tag: 'agents',
      summary: 'Bind a model version to an agent, for approval',
      description: `By the person who validated it, with their own token, holding ${modelValidatorRole}; a model-risk person approves it (the approvals API or page).`,
      params: pathParams({ id: "the agent's id" }),
      body: modelBody,
      success: { status: 202, description: 'The model version, pending, and the approval request' },
    }), async (request, reply) => {
      const validator = await validatorOf(ctx, request);
      const body = jsonObjectBody(request.body);
      const unknown = Object.keys(body).filter((k) => !['version', 'model_digest', 'image_digest', 'validation_ref', 'retire_previous'].includes(k));
      if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]}`);
      for (const member of ['version', 'model_digest', 'image_digest']) {
        if (typeof body[member] !== 'string') throw new OAuthError('invalid_request', `${member} is required (a string)`);
      }
      if (body.validation_ref !== undefined && typeof body.validation_ref !== 'string') throw new OAuthError('invalid_request', 'validation_ref is a string');
      if (body.retire_previous !== undefined && typeof body.retire_previous !== 'boolean') throw new OAuthError('invalid_request', 'retire_previous is true or false');
      if (!(await ctx.agents.snapshot()).agents.has(request.params.id)) throw new OAuthError('not_found', 'no such agent');
      try {
        const { binding, request: approval } = await proposeModel(ctx, {
          agentId: request.params.id,
          version: body.version as string,
          modelDigest: body.model_digest as string,
          imageDigest: body.image_digest as string,
          validatedBy: validator,
          ...(body.validation_ref !== undefined ? { validationRef: body.validation_ref as string } : {}),
          retirePrevious: body.retire_previous === true,
          requestId: request.id,
        });
        return sendJson(reply, { model_id: binding.id, status: binding.status, approval_request: approval.id, expires_at: new Date(approval.expiresAt).toISOString() }, { status: 202 });
      } catch (error) {
        if (!(error instanceof ModelError)) throw error;
        throw new OAuthError('invalid_request', error.message, /already/.test(error.message) ? { status: 409 } : {});
      }
    });
  },
};

/** A model version as the handler reads it (each member checked there too). */
const modelBody = objectBody(
  {
    version: { type: 'string', description: '1 to 64 of letters, digits and .+_-' },
    model_digest: { type: 'string', description: 'sha256:<64 lower-case hex digits>' },
    image_digest: { type: 'string', description: 'sha256:<64 lower-case hex digits>' },
    validation_ref: { type: 'string', description: 'the reference of the validation' },
    retire_previous: { type: 'boolean', description: "approving this version retires the agent's other approved versions (their certificates revoked)" },
  },
  ['version', 'model_digest', 'image_digest'],
);

/** The person who validated the model: their own token (not a client's, not a delegate's), holding model-validator. */
async function validatorOf(ctx: Context, request: FastifyRequest): Promise<string> {
  const claims = request.admin!;
  if (claims.grant_id === undefined) throw new OAuthError('access_denied', 'a model version is bound by the person who validated it, with their own token');
  if (claims.act !== undefined) throw new OAuthError('access_denied', 'a delegate never binds a model version for someone');
  const person = await findUser(ctx, claims.sub!);
  if (!person || person.status !== 'active' || !person.roles.includes(modelValidatorRole)) throw new OAuthError('access_denied', `only a person holding ${modelValidatorRole} binds a model version`);
  return person.id;
}
