/**
 * The audit event catalogue (DESIGN §5). Names are dotted: `<subject>.<what happened>`.
 * Components add their event types here, so the catalogue is one readable list.
 */
export const auditEventTypes = [
  'token.issued',
  'token.revoked',
  'token.introspected',
  'client.authenticated',
  'client.auth_failed',
  'client.throttled',
  'client.registered',
  'policy.allowed',
  'policy.denied',
  'key.created',
  'key.rotated',
  'key.retired',
  'config.applied',
  'audit.pruned',
] as const;

export type AuditEventType = (typeof auditEventTypes)[number];

/** What a component records; the log adds time, node id and sequence. Never secrets or raw tokens. */
export interface AuditEvent {
  type: AuditEventType;
  requestId?: string;
  /** Transaction id carried across hops (DESIGN §4). */
  txn?: string;
  /** Who acted (the authenticated client, user or admin). */
  actor?: string;
  /** Whom it is about (token subject, user). */
  subject?: string;
  client?: string;
  issuer?: string;
  audience?: string;
  scopes?: string[];
  mandate?: { id: string; v: number };
  decision?: { allow: boolean; reasons: string[]; policyVersion?: string };
  /** Event-specific facts (e.g. jti, auth method, source address). */
  details?: Record<string, unknown>;
}

/** The one recording API every component uses. */
export interface AuditLog {
  /**
   * Records an event. The returned promise resolves once the event is durable, so a caller that
   * awaits it before responding never sends a response whose justification could be lost.
   */
  record(event: AuditEvent): Promise<void>;
}
