import { context, propagation, trace, type Context } from '@opentelemetry/api';
import type { VerifiedAccess } from './guard.ts';

/**
 * W3C Trace Context across the guard's calls to Clearance (docs/observability.md "The guard"):
 * introspection, the decision point, evidence, OCSP — each carries the `traceparent` of the
 * active context, so Clearance's spans join the resource server's trace. Through
 * `@opentelemetry/api` only: in a host application without an OpenTelemetry SDK, its no-op
 * propagator adds nothing and its context holds no span, so all of this costs a function call.
 */

/**
 * The trace context headers of the active context (`traceparent`, `tracestate`, whatever the host's
 * propagators write), to add to a request: the guard's own calls to Clearance use it, and so can
 * a host's (a token exchange for the next hop, a call to the next service). Empty without an SDK.
 */
export function traceContextHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers);
  return headers;
}

/**
 * Runs `work` in the caller's trace: the active context when the host traces its requests itself,
 * else the context the request's headers carry (`traceparent`), so the guard's calls to Clearance
 * continue the caller's trace even in a host that only registered an SDK.
 */
export function inCallerTrace<T>(headers: Record<string, string | readonly string[] | undefined>, work: () => T): T {
  const active = context.active();
  if (trace.getSpan(active) !== undefined) return work();
  // Without an SDK, or without a traceparent, extraction gives back the same context.
  const extracted: Context = propagation.extract(active, headers);
  return extracted === active ? work() : context.with(extracted, work);
}

/**
 * Names the trade and the calling client on the host's active span (its request span), once the
 * token is verified: `clearance.txn` and `clearance.client_id`, the keys that join the resource
 * server's spans and logs with Clearance's. Never the subject: it may be a person.
 */
export function annotateAccess(access: Pick<VerifiedAccess, 'txn' | 'clientId'>): void {
  const span = trace.getSpan(context.active());
  if (!span) return;
  span.setAttributes({ 'clearance.client_id': access.clientId, ...(access.txn !== undefined ? { 'clearance.txn': access.txn } : {}) });
}
