import { validateEvent } from '../audit/event-format.ts';
import { AuditGuardError, maxEventBytes } from '../audit/guard.ts';
import type { AuditEvent } from '../audit/events.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { evaluate, type CedarRequest, type CompiledPolicySet } from './engine.ts';
import { liftOf, type ApprovalAsk, type StepUp } from './step-up.ts';
import { resolveRequest, uidText, type DecisionRequest, type PersonLookup, type Resolution } from './request.ts';
import { findUser, type User } from '../identity/users.ts';
import { Histogram } from 'prom-client';
import { metricsRegistry } from '../metrics.ts';

/** A decision of the policy decision point. */
export interface Decision {
  allow: boolean;
  /** The determining policies' `@id`s: the permits that allowed, or the forbids that denied (empty: no policy permits). */
  reasons: string[];
  /** The version of the policy set that decided (`none` when no set is active). */
  policyVersion: string;
  /** Why the request could not be evaluated cleanly; any error means deny. */
  errors: string[];
  /**
   * On a deny that a stronger or fresher authentication of the person would lift (step-up.ts):
   * the level (and max age) to ask for, and the step-up forbids that fired. Still a deny.
   */
  stepUp?: StepUp;
  /**
   * On a deny that the person's passkey approval of exactly the order (what-you-see-is-what-you-sign)
   * would lift, with any step-up beside it (step-up.ts): the approval forbids that fired. Still a deny.
   */
  approval?: ApprovalAsk;
}

/** Who asked, for the audit event. */
export interface DecisionMeta {
  requestId?: string;
  txn?: string;
  /** The client that asked (the PEP calling the AuthZEN API, or the client of a grant). */
  caller?: string;
  /** Where the decision was asked for: `authzen`, `token`, ... */
  via?: string;
  /** The mandate version the request is made under. */
  mandate?: { id: string; v: number };
}

export type DecisionContextDeps = Pick<Context, 'policies' | 'entities' | 'clients' | 'resourceServers' | 'storage' | 'clock' | 'audit' | 'risk'>;

/**
 * The policy decision point (DESIGN §2 `policy/`): decides whether `principal` may do `action` on
 * `resource` in `context` under the active policy set. Deny by default, forbid wins, and any error
 * denies: no active set, a principal or resource Clearance does not know, a request the schema
 * refuses, or a policy that erred while evaluating. Every decision, allow or deny, is a
 * `policy.allowed` / `policy.denied` audit event with its reasons and policy version and the
 * request as evaluated (so `clearance policy simulate` can replay it); the promise resolves once
 * that event is durable. It rejects only when the audit log cannot be written: the caller then
 * fails closed.
 */
export async function decide(ctx: DecisionContextDeps, request: DecisionRequest, meta: DecisionMeta = {}, resolutions?: Resolutions): Promise<Decision> {
  const { decision, event } = await evaluateDecision(ctx, request, meta, resolutions);
  await ctx.audit.record(event);
  return decision;
}

/**
 * Decides as `decide` does, without writing: returns the decision and its audit event, for a
 * caller that makes the event durable with its own writes (token issuance folds its allows into
 * `token.issued`: issuance-audit.ts). The event has passed the audit guard: a request the log would
 * refuse (it held a token-shaped value, or was too large) is a deny, recorded without the request.
 */
export async function evaluateDecision(
  ctx: DecisionContextDeps,
  request: DecisionRequest,
  meta: DecisionMeta = {},
  resolutions?: Resolutions,
): Promise<{ decision: Decision; event: AuditEvent }> {
  const started = performance.now();
  const active = await ctx.policies.active();
  let decision: Decision;
  let evaluated: CedarRequest | undefined;
  if (!active.set) {
    decision = { allow: false, reasons: [], policyVersion: active.version ?? 'none', errors: [active.error] };
  } else {
    const resolved = await resolveOnce(ctx, request, resolutions, active.set);
    if (!resolved.ok) {
      decision = { allow: false, reasons: [], policyVersion: active.set.version, errors: [resolved.error] };
    } else {
      evaluated = resolved.request;
      const evaluation = evaluate(active.set, resolved.request);
      const lift = liftOf(active.set, resolved.request, evaluation, evaluate);
      decision = { ...evaluation, policyVersion: active.set.version, ...(lift?.stepUp ? { stepUp: lift.stepUp } : {}), ...(lift?.approval ? { approval: lift.approval } : {}) };
    }
  }
  (decision.allow ? decisionSeconds.allow : decisionSeconds.deny).observe((performance.now() - started) / 1000);
  return guarded(decisionEvent(request, meta, decision, evaluated), decision, meta);
}

/** How long a decision takes: the active set, resolving the request's entities, Cedar, the lifts (docs/operations.md "Metrics"). */
const decisionHistogram = new Histogram({
  name: 'clearance_policy_decision_seconds',
  help: 'Time to decide a policy request (entities resolved and Cedar evaluated), by decision.',
  labelNames: ['decision'],
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
  registers: [metricsRegistry],
});
const decisionSeconds = { allow: decisionHistogram.labels('allow'), deny: decisionHistogram.labels('deny') };

/**
 * Decides a request Clearance built itself as Cedar entities (the `approve` action of four-eyes,
 * src/approvals/four-eyes.ts, whose resource is a person): evaluated as `evaluateDecision` does —
 * fail closed, any error denies — and returned with its `policy.allowed` / `policy.denied` event,
 * not recorded. `named` is how the event names principal, action and resource.
 */
export async function evaluateBuilt(
  ctx: Pick<Context, 'policies'>,
  request: CedarRequest,
  named: DecisionRequest,
  meta: DecisionMeta = {},
): Promise<{ decision: Decision; event: AuditEvent; set?: CompiledPolicySet }> {
  const active = await ctx.policies.active();
  if (!active.set) {
    const decision: Decision = { allow: false, reasons: [], policyVersion: active.version ?? 'none', errors: [active.error] };
    return guarded(decisionEvent(named, meta, decision, undefined), decision, meta);
  }
  const evaluation = evaluate(active.set, request);
  const decision: Decision = { ...evaluation, policyVersion: active.set.version };
  return { ...guarded(decisionEvent(named, meta, decision, request), decision, meta), set: active.set };
}

/**
 * The decisions asked together (the scopes of one issuance, the items of one AuthZEN batch) share
 * their resolutions: a principal, resource and context are looked up and turned into entities
 * once, at one time, and each action is decided on them. A person named by several of them is
 * read once too, whatever the resources and contexts: an AuthZEN batch is mostly one subject's
 * (the request's default `subject`) over several resources, actions or orders.
 */
export class Resolutions {
  readonly #requests = new Map<string, Promise<Resolution>>();
  readonly #people = new Map<string, Promise<User | undefined>>();

  /** How many distinct requests (principal, resource, context) were resolved. */
  get size(): number {
    return this.#requests.size;
  }

  /** The resolution of `request`, made by `resolve` the first time it is asked for. */
  request(request: DecisionRequest, resolve: (lookUp: PersonLookup) => Promise<Resolution>): Promise<Resolution> {
    const key = JSON.stringify([request.principal, request.resource, request.context ?? {}]);
    let resolution = this.#requests.get(key);
    if (!resolution) this.#requests.set(key, (resolution = resolve(this.#person)));
    return resolution;
  }

  /** The person with this id, read once for all the decisions. */
  readonly #person: PersonLookup = (ctx, id) => {
    let person = this.#people.get(id);
    if (!person) this.#people.set(id, (person = findUser(ctx, id)));
    return person;
  };
}

async function resolveOnce(ctx: DecisionContextDeps, request: DecisionRequest, resolutions: Resolutions | undefined, set: CompiledPolicySet): Promise<Resolution> {
  if (!resolutions) return resolveRequest(ctx, request, epochSeconds(ctx.clock), set);
  const resolved = await resolutions.request(request, (lookUp) => resolveRequest(ctx, request, epochSeconds(ctx.clock), set, lookUp));
  return resolved.ok ? { ok: true, request: { ...resolved.request, action: request.action } } : resolved;
}

/** The `policy.allowed` / `policy.denied` event of a decision. */
function decisionEvent(request: DecisionRequest, meta: DecisionMeta, decision: Decision, evaluated: CedarRequest | undefined): AuditEvent {
  return {
    type: decision.allow ? 'policy.allowed' : 'policy.denied',
    ...(meta.requestId ? { requestId: meta.requestId } : {}),
    ...(meta.txn ? { txn: meta.txn } : {}),
    ...(meta.caller ? { actor: meta.caller, client: meta.caller } : {}),
    subject: request.principal.id,
    ...(request.resource.type === 'ResourceServer' ? { audience: request.resource.id } : {}),
    scopes: [request.action],
    ...(meta.mandate ? { mandate: meta.mandate } : {}),
    decision: { allow: decision.allow, reasons: auditReasons(decision), policyVersion: decision.policyVersion },
    details: {
      principal: uidText(evaluated?.principal ?? request.principal),
      action: request.action,
      resource: uidText(evaluated?.resource ?? request.resource),
      ...(meta.via ? { via: meta.via } : {}),
      ...(decision.errors.length ? { errors: decision.errors } : {}),
      // A deny a stronger authentication would lift: the level it asks (docs/policy.md).
      ...(decision.stepUp ? { step_up: stepUpDetails(decision.stepUp) } : {}),
      // A deny the person's approval of the order would lift: the approval policies.
      ...(decision.approval ? { approval_required: decision.approval.policies } : {}),
      // The request exactly as evaluated (entities and context), for replay by `policy simulate`.
      ...(evaluated ? { request: evaluated } : {}),
    },
  };
}

function guarded(event: AuditEvent, decision: Decision, meta: DecisionMeta): { decision: Decision; event: AuditEvent } {
  try {
    assertRecordable(event);
    return { decision, event };
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    // The caller sent something the audit log never records (a token-shaped value) or too much of
    // it: record the decision without the request, and deny, since it cannot be evidenced in full.
    const { stepUp: _, approval: __, ...rest } = decision;
    const denied: Decision = { ...rest, allow: false, errors: [...decision.errors, 'the request could not be recorded in the audit log in full'] };
    return {
      decision: denied,
      event: {
        type: 'policy.denied',
        ...(meta.requestId ? { requestId: meta.requestId } : {}),
        ...(meta.txn ? { txn: meta.txn } : {}),
        ...(meta.caller ? { actor: meta.caller, client: meta.caller } : {}),
        decision: { allow: false, reasons: ['error'], policyVersion: decision.policyVersion },
        details: { ...(meta.via ? { via: meta.via } : {}), errors: ['request withheld from the audit log: it held a secret-shaped value or was too large'] },
      },
    };
  }
}

/**
 * Throws AuditGuardError when the log would refuse the event (a secret- or token-shaped value; over
 * the size limit, with room for what the log adds). Checked before anything is written, so a
 * decision that cannot be evidenced is a deny rather than a failed request.
 */
function assertRecordable(event: AuditEvent): void {
  validateEvent(event);
  // The canonical form (RFC 8785) the log stores differs from JSON.stringify's only in member
  // order, so the byte length is the same for every event the log takes, at a tenth of the cost;
  // one it refuses (a value JSON cannot carry exactly) is refused when recorded, as before.
  if (Buffer.byteLength(JSON.stringify(event)) > maxEventBytes - 512) throw new AuditGuardError('decision event too large');
}

/** The reasons an audit event gives: the determining policies, else why there were none. */
function auditReasons(decision: Decision): string[] {
  if (decision.errors.length) return [...decision.reasons, 'error'];
  if (decision.reasons.length) return decision.reasons;
  return decision.allow ? [] : ['no policy permits'];
}

/** A step-up as audit events and the AuthZEN answer name it (RFC 9470's parameter names). */
export function stepUpDetails(stepUp: StepUp): { acr_values: string; max_age?: number; policies: string[] } {
  return { acr_values: stepUp.acr, ...(stepUp.maxAge !== undefined ? { max_age: stepUp.maxAge } : {}), policies: stepUp.policies };
}
