import { context, createContextKey, SpanStatusCode, trace, type Attributes, type Context as TraceContext, type Span, type Tracer } from '@opentelemetry/api';
import type { AuditEvent } from '../audit/events.ts';
import { OAuthError } from '../oauth-error.ts';
import { isTxn } from '../transactions/txn.ts';

/**
 * Clearance's own spans (docs/observability.md "Traces"). Tracing is off unless the environment
 * asks for it (src/telemetry/tracing.ts), and off must cost nothing on the token path: every
 * helper here tests `tracingOn`, set once at start, before it touches the OpenTelemetry API — no
 * tracer, no context lookup, no span, no attribute object.
 *
 * What a span may carry: identifiers of clients, grants, trades, mandates, resource servers and
 * requests, and decisions. Never a secret (a token, assertion, code, secret, proof) nor personal
 * data (a username, an email, a person's subject identifier), and never an error's message,
 * which may quote what the caller sent: a failure is its OAuth error code.
 */
export let tracingOn = false;

let tracer: Tracer | undefined;

/** Turns Clearance's spans on (tracing.ts, once the SDK is registered). */
export function enableSpans(version: string): void {
  tracer = trace.getTracer('clearance', version);
  tracingOn = true;
}

/** The span names of the token path (docs/observability.md "Spans"). */
export const spanNames = {
  clientAuthentication: 'clearance.client_authentication',
  policyDecision: 'clearance.policy_decision',
  mandateCheck: 'clearance.mandate_check',
  issuance: 'clearance.issuance',
  auditAppend: 'clearance.audit_append',
} as const;

/** The attribute names Clearance sets (docs/observability.md "Attributes"). */
export const attributeNames = {
  requestId: 'clearance.request_id',
  clientId: 'clearance.client_id',
  grantType: 'clearance.grant_type',
  authMethod: 'clearance.auth_method',
  /** `allow` or `deny`. */
  decision: 'clearance.decision',
  txn: 'clearance.txn',
  audience: 'clearance.audience',
  mandateId: 'clearance.mandate_id',
  /** `dpop`, `mtls` or `bearer`. */
  binding: 'clearance.binding',
  auditEventTypes: 'clearance.audit.event_types',
  auditEventCount: 'clearance.audit.event_count',
  /** OpenTelemetry's `error.type`: the OAuth error code of a refusal, else the error's class. */
  errorType: 'error.type',
} as const;

/**
 * Runs `work` in a span `name`, child of the active span, when tracing is on; else just runs it
 * (`span` is then undefined: set attributes with `span?.setAttributes(...)`, which builds nothing
 * when off). A step that `decides` gets `clearance.decision` `allow` when `work` resolves and
 * `deny` when it is refused (an OAuthError below 500). Any failure sets the span's status to ERROR
 * with `error.type`, and the error goes on unchanged.
 */
export function inSpan<T>(name: string, work: (span: Span | undefined) => Promise<T>, options: { decides?: boolean } = {}): Promise<T> {
  if (!tracingOn) return work(undefined);
  return tracer!.startActiveSpan(name, (span) => runInSpan(span, work, options.decides === true));
}

async function runInSpan<T>(span: Span, work: (span: Span) => Promise<T>, decides: boolean): Promise<T> {
  try {
    const value = await work(span);
    if (decides) span.setAttribute(attributeNames.decision, 'allow');
    return value;
  } catch (error) {
    markFailed(span, error, decides);
    throw error;
  } finally {
    span.end();
  }
}

/** A failed step: status ERROR, `error.type` its OAuth code (or class), and `deny` for a refusal. */
export function markFailed(span: Span, error: unknown, decides = false): void {
  const type = error instanceof OAuthError ? error.error : error instanceof Error ? error.name : 'error';
  span.setAttribute(attributeNames.errorType, type);
  if (decides && error instanceof OAuthError && error.status < 500) span.setAttribute(attributeNames.decision, 'deny');
  // The message is the code, never the error's own message.
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/**
 * Audit events made durable (`clearance.audit_append`, around the wait for their commit), when
 * tracing is on and they are written for a traced request: the log's background writers (sealer,
 * schedules) open no trace of their own. `events` undefined: a transaction whose work returns its
 * events (AuditLog.recordWith), traced whole.
 */
export function inAuditSpan<T>(events: readonly AuditEvent[] | undefined, work: () => Promise<T>): Promise<T> {
  if (!tracingOn || trace.getSpan(context.active()) === undefined) return work();
  return inSpan(spanNames.auditAppend, (span) => {
    if (!events) return work();
    // Only a well-formed txn: a refusal's may be what a partner's token said (the audit guard checks it after).
    const txn = events.find((e) => isTxn(e.txn))?.txn;
    span!.setAttributes({
      [attributeNames.auditEventTypes]: [...new Set(events.map((e) => e.type))],
      [attributeNames.auditEventCount]: events.length,
      ...(txn !== undefined ? { [attributeNames.txn]: txn } : {}),
    });
    return work();
  });
}

const requestSpanKey = createContextKey('clearance request span');

/** The context a request's work runs in: its server span active, and findable by `annotateRequest`. */
export function requestContext(parent: TraceContext, span: Span): TraceContext {
  return trace.setSpan(parent, span).setValue(requestSpanKey, span);
}

/**
 * Sets attributes on the server span of the request being served, from anywhere in its work (the
 * token endpoint's grant type and decision, the issuance's txn). Callers test `tracingOn` first,
 * so that with tracing off not even the attributes are built.
 */
export function annotateRequest(attributes: Attributes): void {
  if (!tracingOn) return;
  (context.active().getValue(requestSpanKey) as Span | undefined)?.setAttributes(attributes);
}

/**
 * Pino's mixin while tracing is on (src/log.ts): the active span's trace and span ids on every log
 * line written in a traced request, so a log line leads to its trace and a trace to its lines.
 */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}
