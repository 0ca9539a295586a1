import type { preHandlerAsyncHookHandler } from 'fastify';
import { requireAdmin } from '../../admin/authorize.ts';
import { ApplyRefusedError, DestinationChangeByPerson, PasswordSetThroughApi, PolicyActivationThroughApply, RoleGrantThroughApi, TrustChangeByPerson, describeTrustChanges, executeApply, planApply, previewApply } from '../../apply/index.ts';
import { recordPasswordSetRefusal, recordRoleGrantRefusal } from '../../identity/role-grants.ts';
import { parseDocument } from '../../apply/parse.ts';
import type { Context } from '../../context.ts';
import { protectedOperation, queryParams, type JsonSchema } from '../../http/api-operation.ts';
import { documentCarriesSecrets, documentDigest } from '../../lifecycle/plan.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { refuseTrustChange, trustChangeCaller, type TrustChange } from './step-up.ts';

/** The media types a document may be posted as; YAML is a superset of JSON, so any document is also YAML. */
const yamlTypes = ['application/yaml', 'application/x-yaml', 'text/yaml'];
/** A `true`/`false` query parameter. */
const booleanQuery = (description: string): JsonSchema => ({ type: 'string', enum: ['true', 'false'], description });
/** A document as large as a firm's whole configuration, but bounded. */
const documentLimit = 5 * 1024 * 1024;

/**
 * POST <issuer>/admin/apply — `clearance apply` through the admin API (docs/lifecycle.md "Plan and
 * prune"): the body is an apply document (application/json, or YAML as application/yaml), read by
 * the same rules; the digest of its exact bytes is in every audit event it causes.
 * - `?dry_run=true` (admin:read; admin:write for a document holding a password or a secret): the
 *   plan — what it would add, change field by field (secrets and people's personal data never
 *   shown) and, with `prune=true`, disable; nothing is written;
 * - otherwise (admin:write): applies it; `prune=true` makes it authoritative for the kinds it
 *   declares, `force=true` goes past the prune safety rule (409 without it).
 * An invalid document is 400 invalid_request naming every problem with its path. A document that
 * would change a transfer destination, applied (or planned) with a token that is not the client's
 * own — a person's, as the console's —, is 403 access_denied, nothing written: a person asks for
 * a destination at POST /admin/transfer-destinations (docs/transfers.md "In apply"). A document
 * that would activate a policy set (`active: true` on a version not active now) is 403
 * access_denied too, whatever the token: its `approver` is only text, so the caller would be both
 * people of the four eyes; a person activates it at POST /admin/policies/{version}/activate. A
 * document that would give a person a guarded role (src/identity/roles.ts `guardedRoles`) is 403
 * access_denied as well, whatever the token, the dry run too, recorded as `user.role_grant_refused`:
 * a second administrator approves it at POST /admin/users/{username}/role-grants. A document naming
 * a password for a person who holds a guarded role, or for whom a grant waits, is 403 too, the dry
 * run too, recorded as `user.password_reset_refused` (src/identity/users.ts `upsertUser`). A
 * document that would add or change what Clearance trusts (src/apply/index.ts `trustChanges`: a
 * partner's profile, an identity provider, a certificate sign-in authority, a pipeline's or a KYC
 * provider's keys), applied with a person's token, asks what a partner's re-approval asks: their own
 * token, signed in with a passkey in the last 5 minutes (./step-up.ts trustChangeSignIn) — else
 * nothing is written, the refusal is recorded as `config.apply_refused` and answered 401
 * insufficient_user_authentication with acr_values and max_age (RFC 9470 §3), or 403 for a
 * delegate's token. The dry run shows such a change and is not refused; a client's own token (a
 * pipeline applying a reviewed document) applies it as before.
 */
export const adminApply: Endpoint = {
  register(app, ctx) {
    const path = `${issuerPath(ctx.config.issuer)}/admin/apply`;
    const querystring = queryParams({
      dry_run: booleanQuery('true: show the plan and write nothing (needs admin:read only)'),
      prune: booleanQuery('true: disable what the document no longer declares, for the kinds it declares'),
      force: booleanQuery('with prune: go past the safety rule (CLEARANCE_PRUNE_MAX_PERCENT)'),
    });
    const operation = {
      tag: 'clients' as const,
      summary: 'Apply a declarative document, or show its plan (dry_run=true)',
      description:
        'The body is an apply document (docs/apply.md) as application/json or application/yaml. Its SHA-256 digest (of the exact bytes) is answered and carried by every audit event the apply causes. With prune=true, the kinds it declares are authoritative: what is in service but absent is disabled and its tokens end. ' +
        "With a person's token, a document adding or changing what Clearance trusts (partners, identity providers, certificate sign-in authorities, pipelines' or KYC providers' keys) needs a passkey sign-in of the last 5 minutes (else 401 insufficient_user_authentication with acr_values and max_age).",
      querystring,
      consumes: ['application/json', ...yamlTypes],
    };
    // Its own scope: the raw bytes are needed for the digest, so the body parsers apply here alone.
    app.register(async (scope) => {
      scope.removeContentTypeParser(['application/json']);
      scope.addContentTypeParser(['application/json', ...yamlTypes], { parseAs: 'string', bodyLimit: documentLimit }, (_request, body, done) => done(null, body));
      type Query = { dry_run?: string; prune?: string; force?: string };
      // The dry run reads only (admin:read); applying writes (admin:write): the token needs the one
      // its request asks for.
      const reader = requireAdmin(ctx, 'admin:read', { readsOnly: true });
      const writer = requireAdmin(ctx, 'admin:write');
      const authorize: preHandlerAsyncHookHandler = function (request, reply) {
        return ((request.query as Query | undefined)?.dry_run === 'true' ? reader : writer).call(this, request, reply);
      };
      scope.post<{ Querystring: Query }>(path, protectedOperation(authorize, 'admin:write', operation), async (request, reply) => {
        const query = request.query;
        if (query.force === 'true' && query.prune !== 'true') throw new OAuthError('invalid_request', 'force is only meaningful with prune=true');
        if (typeof request.body !== 'string') throw new OAuthError('invalid_request', 'the body must be an apply document (application/json or application/yaml)', { status: 415 });
        const yaml = yamlTypes.includes(String(request.headers['content-type']).split(';')[0]!.trim().toLowerCase());
        const digest = documentDigest(request.body);
        const parsed = parseDocument(request.body, yaml ? 'document.yaml' : 'document.json');
        // A plan compares the secrets a document gives with the stored ones (an unchanged password is
        // not a change): for a reader, that would be an oracle for guessed passwords. A document
        // with secrets is planned only with admin:write, which could set them anyway.
        if (query.dry_run === 'true' && parsed.problems.length === 0 && documentCarriesSecrets(parsed.value) && !request.admin!.scope?.split(' ').includes('admin:write')) {
          throw new OAuthError('insufficient_scope', 'a document with passwords or secrets is planned only with admin:write', { status: 403 });
        }
        const { plan, problems } = parsed.problems.length ? { plan: undefined, problems: parsed.problems } : await planApply(ctx, parsed.value);
        if (!plan) throw new OAuthError('invalid_request', `the document has ${problems.length} problem(s); nothing was applied: ${problems.map(formatProblem).join('; ')}`);
        const claims = request.admin!;
        // A token that is not the client's own (a person's — the console's —, a delegate's) changes
        // no transfer destination here (src/transfers/apply-section.ts; 403 below).
        const person = claims.sub !== claims.client_id || claims.grant_id !== undefined || claims.act !== undefined ? claims.sub : undefined;
        // Such a token changes what Clearance trusts only when its person signed in as that asks:
        // read before the write, which refuses a trust change without it (TrustChangeByPerson).
        const trustCaller = person !== undefined && query.dry_run !== 'true' ? await trustChangeCaller(ctx, request) : undefined;
        const source = { actor: claims.client_id, via: 'admin-api' as const, ...(person !== undefined ? { person, personMayChangeTrust: trustCaller?.ok === true } : {}) };
        const prune = query.prune === 'true';
        try {
          if (query.dry_run === 'true') {
            const preview = await previewApply(ctx, plan, source, { prune });
            return { document_digest: digest, dry_run: true, ...(prune ? { authoritative_for: Object.keys(plan.declared) } : {}), ...preview, refusals: preview.refusals, new_secrets: preview.newSecrets };
          }
          const result = await executeApply(ctx, plan, source, { digest, prune, force: query.force === 'true' });
          reply.header('cache-control', 'no-store');
          return { document_digest: digest, dry_run: false, changes: result.changes.filter((c) => c.outcome !== 'unchanged'), unchanged: result.changes.filter((c) => c.outcome === 'unchanged').length, client_secrets: result.secrets };
        } catch (error) {
          if (error instanceof RoleGrantThroughApi) {
            await recordRoleGrantRefusal(ctx, { actor: claims.sub, client: claims.client_id, ...(error.userId ? { subject: error.userId } : {}), role: error.role, reason: 'not_through_admin_api', via: 'apply', requestId: request.id });
            throw new OAuthError('access_denied', error.message);
          }
          if (error instanceof PasswordSetThroughApi) {
            await recordPasswordSetRefusal(ctx, { actor: claims.sub, client: claims.client_id, subject: error.userId, role: error.role, reason: error.reason, via: 'apply', requestId: request.id });
            throw new OAuthError('access_denied', error.message);
          }
          if (error instanceof TrustChangeByPerson && trustCaller?.ok === false) await refuseTrustChange(ctx, request, trustCaller.reason, trustChangeThroughApply(digest, error));
          if (error instanceof DestinationChangeByPerson || error instanceof PolicyActivationThroughApply) throw new OAuthError('access_denied', error.message);
          if (!(error instanceof ApplyRefusedError)) throw error;
          throw new OAuthError('invalid_request', error.message, { status: 409 });
        }
      });
    });
  },
};

/**
 * A trust change in a document applied with a person's token, as its refusal names it: the
 * document's digest and the trust items it would add or change (their ids checked by the plan,
 * as `config.changed` names them), recorded as `config.apply_refused`.
 */
function trustChangeThroughApply(digest: string, refused: TrustChangeByPerson): TrustChange {
  return {
    act: `changing what Clearance trusts (${describeTrustChanges(refused.changes)})`,
    byPerson: "what Clearance trusts is changed through apply by a person with their own token, or by a client's own token (a reviewed document)",
    refusedAs: 'config.apply_refused',
    target: async () => ({ document_digest: digest, changes: refused.changes.map(({ kind, id, outcome }) => ({ kind, id, outcome })) }),
  };
}
