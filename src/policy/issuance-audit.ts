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
 * - `details.requests`: each distinct request as evaluated, less its action: `{ principal,
 *   resource, context, entities }`, its `entities` indexes into `details.entities`. The scopes of
 *   one issuance share one request; an authorization_details entry's actions share another;
 * - `details.entities`: each distinct entity once (the principal, their desks and legal entities
 *   are in every request; an entry adds its instrument or account).
 * The baseline evaluates nothing: none of the three is present.
 */
import type { AuditEvent, StoredAuditEvent } from '../audit/events.ts';
import { maxEventBytes } from '../audit/guard.ts';
import type { CedarEntity, CedarRequest } from './engine.ts';
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

/** A request as evaluated, less its action, its entities by index into `details.entities`. */
export type SharedRequest = Omit<CedarRequest, 'action' | 'entities'> & { entities: number[] };

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
  const requests = new Table<SharedRequest>();
  const entities = new Table<CedarEntity>();
  for (const allow of allows) {
    for (const reason of allow.decision!.reasons) reasons.add(reason);
    const details = allow.details ?? {};
    // The baseline's one allow evaluated no request.
    if (typeof details.action !== 'string') continue;
    const decision: FoldedDecision = { action: details.action, resource: String(details.resource), reasons: allow.decision!.reasons };
    const evaluated = details.request as CedarRequest | undefined;
    if (evaluated) {
      const { action: _, entities: own, ...rest } = evaluated;
      decision.request = requests.add({ ...rest, entities: own.map((e) => entities.add(e)) });
    }
    decisions.push(decision);
  }

  const folded: AuditEvent = {
    ...event,
    decision: { allow: true, reasons: [...reasons], ...(policyVersion !== undefined ? { policyVersion } : {}) },
    details: {
      ...event.details,
      ...(decisions.length ? { decisions } : {}),
      ...(requests.rows.length ? { requests: requests.rows, entities: entities.rows } : {}),
    },
  };
  // RFC 8785 serializes strings and numbers as JSON.stringify does: the same length, unsorted.
  if (Buffer.byteLength(JSON.stringify(folded)) > maxEventBytes - headroom) return { event, separate: [...allows] };
  return { event: folded, separate: [] };
}

/** Rows stored once each, by value: the decision point builds equal values alike, so they serialize alike. */
class Table<T> {
  readonly rows: T[] = [];
  readonly #indexes = new Map<string, number>();

  /** The row's index, adding it when new. */
  add(row: T): number {
    const key = JSON.stringify(row);
    let index = this.#indexes.get(key);
    if (index === undefined) {
      index = this.rows.push(row) - 1;
      this.#indexes.set(key, index);
    }
    return index;
  }
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
  const entities = Array.isArray(event.details?.entities) ? (event.details.entities as CedarEntity[]) : [];
  return (decisions as FoldedDecision[]).map((d) => {
    const shared = typeof d.request === 'number' ? requests[d.request] : undefined;
    const request = shared ? unfold(shared, d.action, entities) : undefined;
    return {
      ...(shared ? { principal: uidText(shared.principal) } : {}),
      action: d.action,
      resource: d.resource,
      reasons: d.reasons,
      ...(request ? { request } : {}),
    };
  });
}

/** The request exactly as evaluated; undefined when the event does not hold it whole. */
function unfold(shared: SharedRequest, action: string, entities: CedarEntity[]): CedarRequest | undefined {
  if (!Array.isArray(shared.entities)) return undefined;
  const own = shared.entities.map((i) => entities[i]);
  if (own.some((e) => e === undefined)) return undefined;
  return { principal: shared.principal, action, resource: shared.resource, context: shared.context, entities: own as CedarEntity[] };
}
