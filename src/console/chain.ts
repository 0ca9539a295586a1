import { isRefusal, type StoredAuditEvent } from '../audit/events.ts';

/** One hop of a trade's delegation chain, as the txn view draws it. */
export interface Hop {
  eventId: string;
  kind: 'issued' | 'exchanged' | 'refused' | 'approval' | 'evidence' | 'other';
  type: string;
  time: number;
  /** The client that asked (and was given, or refused). */
  client: string | undefined;
  /** The firm the client belongs to (its owner's legal entity), when the directory names one. */
  firm: string | undefined;
  /** Whom the token is about: the person, agent or client at the origin. */
  subject: string | undefined;
  audience: string | undefined;
  /** Who acted for whom before this hop (RFC 8693 `act`, outermost last). */
  actChain: string[];
  mandate: { id: string; v: number } | undefined;
  policyVersion: string | undefined;
  reasons: string[];
  /** An agent's model, a person's managed device: who or what acted. */
  agent: string | undefined;
  approvals: string[];
  /** A refusal's OAuth error and reason code. */
  refusal: string | undefined;
  jti: string | undefined;
  parentJti: string | undefined;
}

const kindOf = (type: string): Hop['kind'] => {
  if (type === 'token.issued') return 'issued';
  if (type === 'token.exchanged') return 'exchanged';
  if (isRefusal(type)) return 'refused';
  if (type.startsWith('approval.')) return 'approval';
  if (type === 'evidence.recorded') return 'evidence';
  return 'other';
};

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

/**
 * The hops of a trade from its audit events alone (docs/console.md "Delegation view"), oldest
 * first: each issuance and exchange with who asked, for whom, for which audience, under which
 * mandate version and policy version; refusals, approvals and evidence in their place in time.
 */
export function hopsOf(events: readonly StoredAuditEvent[], firmOf: (clientId: string) => string | undefined = () => undefined): Hop[] {
  return [...events]
    .sort((a, b) => a.time - b.time)
    .map((event) => {
      const details = event.details ?? {};
      const agent = details.agent as { id?: unknown; model_version?: unknown } | undefined;
      return {
        eventId: event.id,
        kind: kindOf(event.type),
        type: event.type,
        time: event.time,
        client: event.client ?? text(event.actor),
        firm: firmOf(event.client ?? text(event.actor) ?? ''),
        subject: event.subject,
        audience: event.audience,
        actChain: strings(details.act_chain),
        mandate: event.mandate,
        policyVersion: event.decision?.policyVersion,
        reasons: event.decision?.reasons ?? [],
        agent: agent && typeof agent === 'object' ? [text(agent.id), text(agent.model_version) && `model ${String(agent.model_version)}`].filter(Boolean).join(' ') || undefined : undefined,
        approvals: [...strings(details.approvals), ...(text(details.approval_request) ? [String(details.approval_request)] : [])],
        refusal: kindOf(event.type) === 'refused' ? [text(details.error) ?? text((event as { error?: unknown }).error), text(details.reason)].filter(Boolean).join(': ') || undefined : undefined,
        jti: text(details.jti),
        parentJti: text(details.parent_jti),
      };
    });
}
