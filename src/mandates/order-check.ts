import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import type { Decision } from '../policy/decide.ts';
import { mandateContext } from '../policy/issuance.ts';
import type { DecisionRequest } from '../policy/request.ts';
import type { RiskedDecision } from '../risk/evaluation.ts';
import { versionCovers, type MandateRef } from './coverage.ts';
import { clientParties, userParties } from './issuance.ts';
import { currentVersionIn, readVersion } from './store.ts';
import type { Party } from './terms.ts';

/**
 * Order-time mandate checks (issue 17 item 2; docs/mandates.md "Orders under a mandate"): an
 * AuthZEN question names only the mandate (its id, and the version the token carries); Clearance
 * loads that version (one read) and
 * - holds the order to it in code, as issuance does (coverage.ts versionCovers: in force at Clearance's clock —
 *   not revoked, superseded, expired or before its dates —, granted to the principal, the action
 *   among its scopes, the instrument class, venue, region, notional and currency, time window):
 *   a policy that forgets the mandate can never widen it;
 * - gives its terms to Cedar as `context.mandate`, so policies decide on them too.
 * Nothing the caller says about the terms counts: the AuthZEN reader refuses them.
 */
export interface OrderUnderMandate {
  /** The question with the loaded terms in its context (none when the version is not found). */
  request: DecisionRequest;
  /** The version asked about, for the decision's event. */
  ref?: MandateRef;
  /** Why the order may not run under it; undefined when it may. */
  refusal?: string;
}

type Deps = Pick<Context, 'storage' | 'clock' | 'audit' | 'clients' | 'entities'>;

export async function underMandate(ctx: Deps, request: DecisionRequest): Promise<OrderUnderMandate> {
  const named = request.mandate;
  if (!named) return { request };
  const { mandate: _sent, ...context } = request.context ?? {};
  const bare = { ...request, context };
  // The version the token names; without one, the current.
  const version = named.v !== undefined ? await readVersion(ctx.storage.db, named.id, named.v) : await currentVersionIn(ctx.storage.db, named.id);
  if (!version) {
    return { request: bare, ...(named.v !== undefined ? { ref: { id: named.id, v: named.v } } : {}), refusal: `mandate ${named.id}${named.v !== undefined ? ` v${named.v}` : ''} does not exist` };
  }
  const ref = { id: version.id, v: version.version };
  const c = request.context ?? {};
  const coverage = await versionCovers(ctx, version, {
    scopes: [request.action],
    grantees: await partiesOf(ctx, request.principal),
    ...(request.resource.instrument_class ?? c.instrument_class ? { instrumentClass: request.resource.instrument_class ?? c.instrument_class } : {}),
    ...(request.resource.venue ?? c.venue ? { venue: request.resource.venue ?? c.venue } : {}),
    ...(c.region !== undefined ? { region: c.region } : {}),
    // A notional without its currency is compared with none: a limited mandate refuses it.
    ...(c.notional !== undefined ? { notional: { amount: c.notional, currency: c.currency ?? '' } } : {}),
    at: new Date(ctx.clock.now()),
  });
  const loaded = { ...bare, context: { ...context, mandate: mandateContext(version) } };
  return { request: loaded, ref, ...(coverage.ok ? {} : { refusal: coverage.reason }) };
}

/** Who the principal is, as a mandate's grantee: a person and their desks' firms; a client and its owner. */
async function partiesOf(ctx: Deps, principal: DecisionRequest['principal']): Promise<Party[]> {
  if (principal.type === 'User') return userParties(ctx, principal.id);
  return clientParties(principal.id, (await ctx.clients.get(principal.id))?.metadata.owner_lei);
}

/**
 * The decision with the mandate's verdict: filed with the mandate version it was asked under; an
 * order outside it is denied whatever the policies permitted (the stricter wins), with the reason
 * in the event (`details.mandate_refused`) and the permits that were overruled.
 */
export function withMandateVerdict(evaluated: RiskedDecision, order: OrderUnderMandate): RiskedDecision {
  if (!order.ref && order.refusal === undefined) return evaluated;
  const event: AuditEvent = { ...evaluated.event, ...(order.ref ? { mandate: order.ref } : {}) };
  if (order.refusal === undefined) return { ...evaluated, event };
  const decision: Decision = { allow: false, reasons: ['mandate'], policyVersion: evaluated.decision.policyVersion, errors: [] };
  return {
    ...evaluated,
    decision,
    event: {
      ...event,
      type: 'policy.denied',
      decision: { allow: false, reasons: ['mandate'], policyVersion: decision.policyVersion },
      details: { ...event.details, mandate_refused: order.refusal, ...(evaluated.decision.allow ? { permitted_by: evaluated.decision.reasons } : { denied_by: evaluated.decision.reasons }) },
    },
  };
}
