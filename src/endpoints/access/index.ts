import type { FastifyRequest } from 'fastify';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { basicChallenge } from '../../clients/authentication/index.ts';
import type { Context } from '../../context.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import { FormParameters } from '../../parameters.ts';
import type { Decision, Resolutions } from '../../policy/decide.ts';
import { evaluateWithRisk, observeEvaluation, recordEvaluation, type RiskedDecision } from '../../risk/evaluation.ts';
import { underMandate, withMandateVerdict } from '../../mandates/order-check.ts';
import { accessAudience, accessEvaluateScope } from '../../resource-servers/builtins.ts';
import { authorizeProtectedRequest, type ProtectedResource } from '../../tokens/protected-resource.ts';
import { formatProblem, type Problem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { evaluationResponse, readEvaluationRequest, readEvaluationsRequest } from './authzen.ts';

/**
 * The policy decision point over HTTP: the OpenID AuthZEN Authorization API 1.0 (authzen.ts for
 * the shapes). Its rules, in order:
 * 1. the caller is a client allowed `access:evaluate` (the policy enforcement point), proven by
 *    either its client credentials — `Authorization: Basic` (client_secret_basic) or its
 *    certificate (tls_client_auth, self_signed_tls_client_auth), the token endpoint's checks and
 *    audit — or a Clearance access token for `<issuer>/access` with `access:evaluate` (Bearer or
 *    DPoP; how private_key_jwt clients call it), through the one protected-resource check
 *    (src/tokens/protected-resource.ts: binding, audience, liveness, scope). 401 / 403 otherwise;
 * 2. the body is a JSON object (415 otherwise) — looked at only once the caller is known;
 * 3. the request is well formed (400 `invalid_request` naming each problem's path);
 * 4. each evaluation is a decision (src/policy/decide.ts): deny by default, forbid wins, any error
 *    denies, every one audited as `policy.allowed` / `policy.denied` before the answer leaves (a
 *    batch's events committed together);
 * 5. informed by the risk engine (src/risk/evaluation.ts): the principal is assessed at moment
 *    `evaluation`, Cedar sees it as `context.risk`, a risk deny denies what the policies permit
 *    (with `risk.denied` and its alert), and each decision event carries `details.risk`;
 * 6. under a mandate the context names (id, and the version its token carries): Clearance loads the
 *    version's terms into `context.mandate` and an order outside them, or a mandate no longer in
 *    force, is denied whatever the policies say (src/mandates/order-check.ts).
 *    Anything unexpected is a 500, which a PEP must treat as a deny.
 * A caller's `X-Request-ID` is echoed (AuthZEN §11.1.3) once step 1 has passed.
 */
export const accessEvaluation: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/access/v1`;
    const resource = { audience: accessAudience(ctx.config.issuer), scope: accessEvaluateScope, name: 'the access evaluation API' };

    app.post(`${base}/evaluation`, async (request, reply) => {
      const caller = await authenticateCaller(ctx, request, resource);
      echoRequestId(request, reply);
      const { request: decisionRequest, problems } = readEvaluationRequest(requireJson(request));
      if (!decisionRequest) throw invalid(problems);
      const meta = { requestId: request.id, caller, via: 'authzen', ...(decisionRequest.txn !== undefined ? { txn: decisionRequest.txn } : {}) };
      const order = await underMandate(ctx, decisionRequest);
      const evaluated = withMandateVerdict(await evaluateWithRisk(ctx, order.request, meta), order);
      await recordEvaluation(ctx, evaluated, meta, decisionRequest);
      await observeEvaluation(ctx, evaluated);
      return evaluationResponse(evaluated.decision);
    });

    app.post(`${base}/evaluations`, async (request, reply) => {
      const caller = await authenticateCaller(ctx, request, resource);
      echoRequestId(request, reply);
      const parsed = readEvaluationsRequest(requireJson(request));
      if (!parsed.requests) throw invalid(parsed.problems);
      const decisions: Decision[] = [];
      const evaluations: RiskedDecision[] = [];
      const meta = { requestId: request.id, caller, via: 'authzen' };
      // Items about the same subject, resource and context are resolved once (src/policy/decide.ts).
      const resolutions: Resolutions = new Map();
      // Each decision's event is handed to the audit log as it is made, and all are durable before
      // the answer leaves: one group commit for the batch rather than one after another.
      const recorded: Promise<void>[] = [];
      let failed: { error: unknown } | undefined;
      try {
        for (const item of parsed.requests) {
          const itemMeta = item.txn !== undefined ? { ...meta, txn: item.txn } : meta;
          const order = await underMandate(ctx, item);
          const evaluated = withMandateVerdict(await evaluateWithRisk(ctx, order.request, itemMeta, resolutions), order);
          recorded.push(recordEvaluation(ctx, evaluated, itemMeta, item));
          evaluations.push(evaluated);
          const decision = evaluated.decision;
          decisions.push(decision);
          // §7.1.2: the short-circuiting semantics stop at the first deny / permit.
          if (parsed.semantic === 'deny_on_first_deny' && !decision.allow) break;
          if (parsed.semantic === 'permit_on_first_permit' && decision.allow) break;
        }
      } catch (error) {
        failed = { error };
      }
      const settled = await Promise.allSettled(recorded);
      if (failed) throw failed.error;
      const refused = settled.find((r) => r.status === 'rejected');
      if (refused) throw refused.reason;
      for (const evaluated of evaluations) await observeEvaluation(ctx, evaluated);
      if (parsed.single) return evaluationResponse(decisions[0]!);
      return { evaluations: decisions.map(evaluationResponse) };
    });

    // §13 (PDP metadata): where the evaluation endpoints are.
    app.get('/.well-known/authzen-configuration', async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=3600');
      return {
        policy_decision_point: ctx.config.issuer,
        access_evaluation_endpoint: `${ctx.config.issuer}/access/v1/evaluation`,
        access_evaluations_endpoint: `${ctx.config.issuer}/access/v1/evaluations`,
      };
    });
  },
};

/** A JSON object body (fastify parsed application/json); anything else is 415 / 400. */
function requireJson(request: FastifyRequest): unknown {
  const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new OAuthError('unsupported_media_type', 'the body must be application/json', { status: 415 });
  return request.body;
}

function invalid(problems: Problem[]): OAuthError {
  const unique = [...new Set(problems.map(formatProblem))];
  return new OAuthError('invalid_request', unique.join('; '));
}

const requestIdPattern = /^[A-Za-z0-9._:@-]{1,128}$/;

function echoRequestId(request: FastifyRequest, reply: { header(name: string, value: string): unknown }): void {
  const id = request.headers['x-request-id'];
  if (typeof id === 'string' && requestIdPattern.test(id)) reply.header('x-request-id', id);
}

/**
 * Who is asking (the client_id), or a 401/403. A token for the access audience when the
 * Authorization header says Bearer or DPoP; else the client's own credentials.
 */
async function authenticateCaller(ctx: Context, request: FastifyRequest, resource: ProtectedResource): Promise<string> {
  const authorization = request.headers.authorization;
  if (authorization !== undefined && /^(bearer|dpop) /i.test(authorization)) {
    // The one protected-resource check: binding, audience, liveness (grant, mandate, person), scope.
    const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
    return access.claims.client_id;
  }
  if (authorization === undefined && !request.clientCertificate) {
    // RFC 9110 §11.6.1: say which schemes are accepted.
    throw new OAuthError('invalid_client', 'authenticate with client credentials (Basic or a certificate) or an access token for the access evaluation API', {
      status: 401,
      headers: { 'www-authenticate': `${basicChallenge}, Bearer realm="clearance"` },
    });
  }
  const caller = await authenticate(ctx, {
    // The body is JSON: only credentials outside it count (the Authorization header, the certificate).
    form: new FormParameters(''),
    authorization,
    certificate: request.clientCertificate?.certificate,
    certificateChainVerified: request.clientCertificate?.chainVerified ?? false,
    sourceAddress: request.ip,
    requestId: request.id,
  });
  const client = caller.client.metadata;
  if (!client.scope?.split(' ').includes(accessEvaluateScope)) {
    throw new OAuthError('access_denied', `client ${client.client_id} is not allowed ${accessEvaluateScope}`, { status: 403 });
  }
  return client.client_id;
}

