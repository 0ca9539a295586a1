import { adminOperation, type AdminRouteOptions } from '../../admin/authorize.ts';
import type { Context } from '../../context.ts';
import { integerQuery, pathParams, queryParams } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { activationEvent } from '../../policy/apply-section.ts';
import { compilePolicySet, formatPolicyProblem } from '../../policy/engine.ts';
import { simulate } from '../../policy/simulate.ts';
import { PolicyActivationError, storedSourceName } from '../../policy/store.ts';
import { readerScope, withinScope } from '../../audit/scope.ts';
import { recordRead } from '../../audit/reads.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { trustChangePerson, type TrustChange } from './step-up.ts';

/** How many recorded decisions a simulation may replay, and how many flips one answer lists. */
const maxReplayed = 100_000;
const maxFlipsListed = 200;

/**
 * Policy set versions in the admin API (docs/policy.md). Versions are written with `clearance
 * apply` (section `policies`) or `clearance policy add`; here they are read, simulated and
 * activated:
 *
 * - GET /admin/policies (admin:read): every version (without its text), the active one flagged
 * - GET /admin/policies/{version} (admin:read): one version with its text
 * - GET /admin/policies/{version}/simulation?last=N (admin:read): the version replayed against the
 *   last N recorded decisions (src/policy/simulate.ts, as `clearance policy simulate`): how many
 *   it would flip, each way, and which — the flips a reader may see (a compliance officer: those
 *   of her legal entity's scope, src/audit/scope.ts), the read recorded as `audit.read`
 * - POST /admin/policies/{version}/activate (admin:write): the second-person rule with a person's
 *   own token — the person signed in is the approver and must not be the version's author (403
 *   access_denied); a client's own token or a delegate's activates nothing (403 access_denied); the
 *   person signed in phishing-resistantly in the last 5 minutes, else 401
 *   insufficient_user_authentication with acr_values and max_age (RFC 9470 §3; ./step-up.ts
 *   trustChangePerson) — activating changes every decision Clearance makes, and the console's
 *   token may stand on a sign-in of hours ago. A refused caller is recorded as
 *   `policy.activation_refused`; an activation as `policy.activated`, as the CLI's; assessed by the
 *   intrusion signals once per attempt, as `policy.activate V` (activationAssessment).
 */
export const adminPolicies: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/policies`;
    const params = pathParams({ version: 'the version' });

    app.get(base, adminOperation(ctx, 'admin:read', { tag: 'directory', summary: 'List the policy set versions (without their text), the active one flagged' }), async () => ({
      policies: (await ctx.policies.list()).map(view),
    }));

    app.get<{ Params: { version: string } }>(`${base}/:version`, adminOperation(ctx, 'admin:read', { tag: 'directory', summary: 'Read one policy set version, with its text', params }), async (request) => {
      const version = await ctx.policies.get(request.params.version);
      if (!version) throw new OAuthError('not_found', 'no such policy set version');
      return { ...view(version), text: version.text };
    });

    app.get<{ Params: { version: string }; Querystring: { last?: string } }>(`${base}/:version/simulation`, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: 'Replay the last recorded decisions against a policy set version: which it would decide the other way',
      params,
      querystring: queryParams({ last: integerQuery(`how many recorded decisions, newest first (default 1000, at most ${maxReplayed})`) }),
    }), async (request, reply) => {
      const last = request.query.last === undefined ? 1000 : Number(request.query.last);
      if (last < 1 || last > maxReplayed) throw new OAuthError('invalid_request', `last must be from 1 to ${maxReplayed}`);
      const version = await ctx.policies.get(request.params.version);
      if (!version) throw new OAuthError('not_found', 'no such policy set version');
      const compiled = compilePolicySet(version.version, [{ name: storedSourceName(version.version), text: version.text }]);
      if (!compiled.set) throw new OAuthError('invalid_request', `policy set ${version.version} does not validate: ${compiled.problems.map(formatPolicyProblem).join('; ')}`);
      const result = await simulate(ctx.storage.db, compiled.set, last);
      // The flips name recorded events (who, what, when): a scoped reader — a compliance officer —
      // is shown only those of her scope (src/audit/scope.ts), and the read is on the record.
      const scope = await readerScope(ctx, request.admin!);
      const shown = await withinScope(ctx.storage.db, scope, result.flips.slice(0, maxFlipsListed), (f) => f.event);
      await recordRead(ctx, request.admin!, request.id, { simulation: version.version, last, events: shown.length }, scope);
      reply.header('cache-control', 'no-store');
      return {
        version: version.version,
        read: result.read,
        replayed: result.replayed,
        flips: result.flips.length,
        allow_to_deny: result.flips.filter((f) => f.was.allow).length,
        deny_to_allow: result.flips.filter((f) => !f.was.allow).length,
        listed: shown.map((f) => ({
          event: f.event.id,
          type: f.event.type,
          time: new Date(f.event.time).toISOString(),
          request: f.request,
          was: f.was,
          now: f.now,
        })),
      };
    });

    app.post<{ Params: { version: string } }>(`${base}/:version/activate`, adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: 'Activate a policy set version: the person whose token this is approves it, and must not be its author',
      description:
        "By a person's own token, signed in phishing-resistantly in the last 5 minutes (else 401 insufficient_user_authentication with acr_values and max_age). " +
        'A client’s own token or a delegate’s activates nothing (403).',
      params,
    }, activationAssessment(ctx)), async (request) => {
      const version = request.params.version;
      const approver = (await trustChangePerson(ctx, request, activation(ctx, version))).username;
      const actor = request.admin!.sub!;
      try {
        const done = await ctx.audit.recordWith(async (trx) => {
          const activated = await ctx.policies.activate(trx, version, approver, actor);
          const events = activated.previous === version ? [] : [activationEvent(actor, version, activated.author, approver, activated.changeRef, activated.previous)];
          return { value: activated, events };
        });
        ctx.policies.invalidate();
        return { version, active: true, approver, previous: done.previous === version ? null : done.previous, already_active: done.previous === version };
      } catch (error) {
        if (!(error instanceof PolicyActivationError)) throw error;
        if (/^no policy set version/.test(error.message)) throw new OAuthError('not_found', error.message);
        // The author approving their own version, or a version that no longer validates.
        throw new OAuthError(/must not be the author/.test(error.message) ? 'access_denied' : 'invalid_request', error.message);
      }
    });
  },
};

/**
 * How an activation attempt is assessed by the intrusion signals (src/risk/intrusion.ts): named
 * `policy.activate V` as the CLI names it, with the version's `created_at` so that one activated
 * soon after it was stored is `quick_activation`. Unlike the CLI, which assesses an activation
 * once it is made, this assesses every attempt, refused ones included. requireAdmin makes this one
 * assessment, before the handler, for every attempt it admits — an unknown version, the author
 * approving their own, a client's own token included: an intrusion shows in refused writes too.
 * An unknown version is assessed under the route's pattern, as every other admin write is.
 * A version already active carries no `created_at`: activating it again changes nothing and is
 * not a quick activation. (Read before activating: a concurrent activation of the same version
 * may still be assessed as the activation it then turns out not to be.)
 */
function activationAssessment(ctx: Context): AdminRouteOptions {
  return {
    async assessedAs(request) {
      const version = (request.params as { version: string }).version;
      const stored = await ctx.policies.get(version);
      // Named only when stored: this runs before the path is validated, and a name nobody stored
      // is the caller's text, which an audit event must not carry unchecked.
      if (!stored) return {};
      return { action: `policy.activate ${version}`, ...(!stored.active ? { createdAt: stored.created_at } : {}) };
    },
  };
}

/**
 * An activation, as its refusals name it. The approver is the active person a token was issued to
 * under their own consent grant (a client's own token names no person, a delegate approves for
 * nobody), signed in phishing-resistantly in the last 5 minutes (./step-up.ts trustChangePerson);
 * each refusal recorded as `policy.activation_refused`.
 */
function activation(ctx: Context, version: string): TrustChange {
  return {
    act: 'activating a policy set',
    byPerson: 'a policy set is activated by a person, with their own token',
    refusedAs: 'policy.activation_refused',
    // Named only when stored: a name nobody stored is the caller's text (as activationAssessment).
    target: async () => ((await ctx.policies.get(version)) ? { version } : {}),
  };
}

function view<T extends { created_at: number; activated_at: number | null }>(v: T): Omit<T, 'created_at' | 'activated_at'> & { created_at: string; activated_at: string | null } {
  return { ...v, created_at: new Date(v.created_at).toISOString(), activated_at: v.activated_at === null ? null : new Date(v.activated_at).toISOString() };
}
