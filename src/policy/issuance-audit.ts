/**
 * The decisions of a successful issuance, folded into its one `token.issued` / `token.exchanged`
 * event (issue 13): one audit write per token instead of one per scope plus the token's, with the
 * evidence complete — each decision's reasons and the request exactly as evaluated, so
 * `clearance policy simulate` replays it (simulate.ts reads it back with `foldedDecisions`).
 *
 * The shape, in the token event:
 * - `decision`: `{ allow: true, reasons, policyVersion }`, the determining policy ids of all the
 *   allows (deduplicated), or the baseline's reason with version `baseline`;
 * - `details.decisions`: one `{ action, resource, reasons, request }` per evaluated request, where
 *   `request` indexes `details.requests`;
 * - `details.requests`: each distinct request as evaluated, less its action (principal, resource,
 *   context, entities). The scopes of one issuance share one; an authorization_details entry's
 *   actions share another. The baseline evaluates nothing: neither member is present.
 */
import type { AuditEvent, StoredAuditEvent } from '../audit/events.ts';
import { maxEventBytes } from '../audit/guard.ts';
import type { CedarRequest } from './engine.ts';
import { uidText } from './request.ts';

/** One evaluated request of an issuance, as its token event records it. */
export interface FoldedDecision {
  action: string;
  /** As Cedar writes it: `ResourceServer::"https://…"`, `Instrument::"EURUSD"`. */
  resource: string;
  /** The determining policies' `@id`s. */
  reasons: string[];
  /** Its index in `details.requests`. */
  request?: number;
}

/** A request as evaluated, less its action: what the decisions of one issuance share. */
export type SharedRequest = Omit<CedarRequest, 'action'>;

/**
 * Room left under the audit log's limit for what is added after folding: the members the log
 * stores (v, id, time, node) and a grant's own details (a person's grant_id, oidc, refresh_id).
 */
const headroom = 1024;

/**
 * The token event with the issuance's allows folded in, and nothing else to record; or, when
 * they cannot be folded, the token event unchanged and the allows to record beside it as
 * separate `policy.allowed` events (as before issue 13): when the folded event would come near
 * the audit log's size limit (many authorization_details entries, large entity sets), or when
 * the allows name different policy versions (a set activated between two evaluations).
 * The allows have passed the audit guard one by one (decide.ts), so their parts, folded, do too.
 */
export function foldDecisions(event: AuditEvent, allows: readonly AuditEvent[]): { event: AuditEvent; separate: AuditEvent[] } {
  if (allows.length === 0) return { event, separate: [] };
  const policyVersion = allows[0]!.decision?.policyVersion;
  if (allows.some((a) => a.decision?.allow !== true || a.decision.policyVersion !== policyVersion)) return { event, separate: [...allows] };

  const reasons = new Set<string>();
  const decisions: FoldedDecision[] = [];
  const requests: SharedRequest[] = [];
  const indexes = new Map<string, number>();
  for (const allow of allows) {
    for (const reason of allow.decision!.reasons) reasons.add(reason);
    const details = allow.details ?? {};
    // The baseline's one allow evaluated no request.
    if (typeof details.action !== 'string') continue;
    const decision: FoldedDecision = { action: details.action, resource: String(details.resource), reasons: allow.decision!.reasons };
    const evaluated = details.request as CedarRequest | undefined;
    if (evaluated) {
      const { action: _, ...shared } = evaluated;
      // Built the same way for the same principal and resource, so equal requests serialize alike.
      const key = JSON.stringify(shared);
      let index = indexes.get(key);
      if (index === undefined) {
        index = requests.length;
        requests.push(shared);
        indexes.set(key, index);
      }
      decision.request = index;
    }
    decisions.push(decision);
  }

  const folded: AuditEvent = {
    ...event,
    decision: { allow: true, reasons: [...reasons], ...(policyVersion !== undefined ? { policyVersion } : {}) },
    details: { ...event.details, ...(decisions.length ? { decisions } : {}), ...(requests.length ? { requests } : {}) },
  };
  // RFC 8785 serializes strings and numbers as JSON.stringify does: the same length, unsorted.
  if (Buffer.byteLength(JSON.stringify(folded)) > maxEventBytes - headroom) return { event, separate: [...allows] };
  return { event: folded, separate: [] };
}

/** A decision read back from a token event, for replay. */
export interface RecordedIssuanceDecision {
  principal?: string;
  action?: string;
  resource?: string;
  reasons: string[];
  /** The request as evaluated; absent for the baseline (nothing was evaluated). */
  request?: CedarRequest;
}

/**
 * The decisions folded into a `token.issued` / `token.exchanged` event: one per evaluated request,
 * or the one baseline decision; none when the event carries no decision (a token for Clearance's
 * own APIs, or one whose allows were recorded separately).
 */
export function foldedDecisions(event: StoredAuditEvent): RecordedIssuanceDecision[] {
  if (!event.decision) return [];
  const decisions = event.details?.decisions;
  if (!Array.isArray(decisions) || decisions.length === 0) return [{ reasons: event.decision.reasons }];
  const requests = Array.isArray(event.details?.requests) ? (event.details.requests as SharedRequest[]) : [];
  return (decisions as FoldedDecision[]).map((d) => {
    const shared = typeof d.request === 'number' ? requests[d.request] : undefined;
    return {
      ...(shared ? { principal: uidText(shared.principal) } : {}),
      action: d.action,
      resource: d.resource,
      reasons: d.reasons,
      ...(shared ? { request: { ...shared, action: d.action } } : {}),
    };
  });
}
