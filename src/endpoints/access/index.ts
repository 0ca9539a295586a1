import type { FastifyReply, FastifyRequest } from 'fastify';
import { authenticate } from '../../clients/authentication/endpoint-authentication.ts';
import { basicChallenge } from '../../clients/authentication/index.ts';
import type { Context } from '../../context.ts';
import { objectBody, operationSchema, type ApiOperation, type JsonSchema, type SecurityRequirement } from '../../http/api-operation.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { OAuthError } from '../../oauth-error.ts';
import { FormParameters } from '../../parameters.ts';
import { Resolutions, type Decision } from '../../policy/decide.ts';
import { evaluateWithRisk, observeEvaluation, recordEvaluation, type RiskedDecision } from '../../risk/evaluation.ts';
import { underMandate, withMandateVerdict } from '../../mandates/order-check.ts';
import { accessAudience, accessEvaluateScope } from '../../resource-servers/builtins.ts';
import { authorizeProtectedRequest, type ProtectedResource } from '../../tokens/protected-resource.ts';
import { formatProblem, type Problem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { evaluationResponse, evaluationsSemantics, maxEvaluations, readEvaluationRequest, readEvaluationsRequest } from './authzen.ts';

/**
 * The policy decision point over HTTP: the OpenID AuthZEN Authorization API 1.0 (authzen.ts for
 * the shapes). Its rules, in order:
 * 1. the caller is a client allowed `access:evaluate` (the policy enforcement point), proven by
 *    either its client credentials — `Authorization: Basic` (client_secret_basic) or its
 *    certificate (tls_client_auth, self_signed_tls_client_auth), the token endpoint's checks and
 *    audit — or a Clearance access token for `<issuer>/access` with `access:evaluate` (Bearer or
 *    DPoP; how private_key_jwt clients call it), through the one protected-resource check
 *    (src/tokens/protected-resource.ts: binding, audience, liveness, scope). 401 / 403 otherwise;
 * 2. the body is JSON (415 otherwise) — looked at only once the caller is known;
 * 3. the request is well formed (400 `invalid_request`): first its shape, by the operation's
 *    schema (src/http/api-operation.ts: a part missing or of the wrong type), then by authzen.ts,
 *    naming each problem's path;
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
 * Steps 1 and 2 run in the routes' preValidation hook, before fastify validates the body.
 */
export const accessEvaluation: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/access/v1`;
    const resource = { audience: accessAudience(ctx.config.issuer), scope: accessEvaluateScope, name: 'the access evaluation API' };
    const preValidation = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      callers.set(request, await authenticateCaller(ctx, request, resource));
      echoRequestId(request, reply);
      requireJson(request);
    };
    const operation = (documented: Omit<ApiOperation, 'tag'>) => ({ preValidation, schema: operationSchema({ tag: 'access', ...documented }, callerSecurity) });

    app.post(`${base}/evaluation`, operation({
      summary: 'One access decision (AuthZEN §6)',
      description: 'Deny by default; every decision is audited before the answer leaves.',
      body: objectBody(parts, ['subject', 'action', 'resource'], 'AuthZEN §6.1 access evaluation request'),
    }), async (request) => {
      const caller = callers.get(request)!;
      const { request: decisionRequest, problems } = readEvaluationRequest(request.body);
      if (!decisionRequest) throw invalid(problems);
      const meta = { requestId: request.id, caller, via: 'authzen', ...(decisionRequest.txn !== undefined ? { txn: decisionRequest.txn } : {}) };
      const order = await underMandate(ctx, decisionRequest);
      const evaluated = withMandateVerdict(await evaluateWithRisk(ctx, order.request, meta), order);
      await recordEvaluation(ctx, evaluated, meta, decisionRequest);
      await observeEvaluation(ctx, evaluated);
      return evaluationResponse(evaluated.decision);
    });

    app.post(`${base}/evaluations`, operation({
      summary: 'Several access decisions in one request (AuthZEN §7)',
      description: 'The top-level subject, action, resource and context are defaults for each item of `evaluations`; without items it is one evaluation.',
      body: objectBody(
        {
          ...parts,
          evaluations: { type: 'array', maxItems: maxEvaluations, items: objectBody(parts) },
          options: objectBody({ evaluations_semantic: { type: 'string', enum: [...evaluationsSemantics], description: 'execute_all by default' } }),
        },
        [],
        'AuthZEN §7.1 access evaluations request',
      ),
    }), async (request) => {
      const caller = callers.get(request)!;
      const parsed = readEvaluationsRequest(request.body);
      if (!parsed.requests) throw invalid(parsed.problems);
      const decisions: Decision[] = [];
      const evaluations: RiskedDecision[] = [];
      const meta = { requestId: request.id, caller, via: 'authzen' };
      // Items about the same subject, resource and context are resolved once, a person read once (src/policy/decide.ts).
      const resolutions = new Resolutions();
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

/** The client_id each request was admitted as (rule 1), for its handler. */
const callers = new WeakMap<FastifyRequest, string>();

/** Who may ask: a policy enforcement point by its client credentials, or with an access token. */
const callerSecurity: readonly SecurityRequirement[] = [{ clientBasic: [] }, { clientCertificate: [] }, { clearance: [accessEvaluateScope] }];

// The request's shape (AuthZEN §5); authzen.ts checks every value, and every member's name.
const properties = (description: string): JsonSchema => ({ type: 'object', description });
const contextString: JsonSchema = { type: 'string' };
const parts: Record<string, JsonSchema> = {
  subject: objectBody({
    type: { type: 'string', description: 'user, client or agent' },
    id: { type: 'string', description: "a user's id (the sub of their tokens), or a client's or an agent's client_id" },
    properties: properties("accepted and ignored: a subject's attributes come from Clearance's records"),
  }),
  action: objectBody({ name: { type: 'string', description: 'a scope such as order:create' }, properties: properties('accepted and ignored') }),
  resource: objectBody({
    type: { type: 'string', description: 'resource_server, account or instrument' },
    id: { type: 'string' },
    // Members untyped: another resource's properties are ignored, whatever they hold.
    properties: properties("an instrument's instrument_class and venue (strings); ignored for other resources"),
  }),
  context: objectBody(
    {
      region: contextString,
      acr: contextString,
      kyc_status: contextString,
      instrument_class: contextString,
      venue: contextString,
      currency: { type: 'string', description: 'ISO 4217' },
      suitability: { type: 'array', items: { type: 'string' } },
      notional: { type: 'integer' },
      auth_time: { type: 'integer', description: "the person's authentication time, as their access token says" },
      mandate: objectBody({ id: { type: 'string' }, version: { type: 'integer' } }, [], 'the mandate the order runs under; Clearance loads its terms'),
      // Untyped: authzen.ts names a txn of the wrong type as the txn rule it breaks.
      txn: { description: "the token's txn (a string), for the record" },
    },
    [],
    'attributes of the policy context (docs/policy.md); time and the attributes Clearance computes are never sent',
  ),
};

/** A JSON body, or 415. Checked before the schema: a form body would reach it as `{}` (src/http/app.ts). */
function requireJson(request: FastifyRequest): void {
  const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new OAuthError('unsupported_media_type', 'the body must be application/json', { status: 415 });
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
    ...(request.clientCertificate?.chain ? { certificateChain: request.clientCertificate.chain } : {}),
    sourceAddress: request.ip,
    requestId: request.id,
  });
  const client = caller.client.metadata;
  if (!client.scope?.split(' ').includes(accessEvaluateScope)) {
    throw new OAuthError('access_denied', `client ${client.client_id} is not allowed ${accessEvaluateScope}`, { status: 403 });
  }
  return client.client_id;
}

