import type { Kysely } from 'kysely';
import { latestEvents } from '../audit/query.ts';
import type { StoredAuditEvent } from '../audit/events.ts';
import type { Database } from '../storage/schema.ts';
import { evaluate, type CedarRequest, type CompiledPolicySet } from './engine.ts';
import { foldedDecisions } from './issuance-audit.ts';

/** A recorded decision that the candidate policy set would decide the other way. */
export interface Flip {
  /** The event that recorded it: `policy.allowed` / `policy.denied`, or the `token.issued` / `token.exchanged` it was folded into. */
  event: StoredAuditEvent;
  /** What was decided, as Cedar writes the entities. */
  request: { principal?: string; action?: string; resource?: string };
  was: { allow: boolean; reasons: string[]; policyVersion: string };
  now: { allow: boolean; reasons: string[]; errors: string[] };
}

export interface Simulation {
  /** Decisions read from the audit log. */
  read: number;
  /** Those replayed (recorded with their request). */
  replayed: number;
  flips: Flip[];
}

/** Where decisions are recorded: the decision point's own events, and the token events a successful issuance folds its allows into. */
const decisionEventTypes = ['policy.allowed', 'policy.denied', 'token.issued', 'token.exchanged'] as const;

/** One decision as recorded: an event may hold several (a token event, one per evaluated request). */
interface Recorded {
  event: StoredAuditEvent;
  request: Flip['request'];
  was: Flip['was'];
  evaluated?: CedarRequest;
}

/**
 * Replays the latest `last` recorded decisions (newest first) against a candidate policy set:
 * `policy.allowed` / `policy.denied` events and the issuance decisions folded into `token.issued`
 * / `token.exchanged` (src/policy/issuance-audit.ts), each request exactly as it was evaluated
 * then (entities and context from the event), so only the policy change can flip a decision.
 * Decisions recorded without their request (no policy set was active — the baseline —, an unknown
 * principal, a request withheld from the log) are counted but not replayed.
 */
export async function simulate(db: Kysely<Database>, candidate: CompiledPolicySet, last: number): Promise<Simulation> {
  // Every event read holds at least one decision, so `last` events hold the `last` decisions.
  const events = await latestEvents(db, decisionEventTypes, last, { decided: true });
  const decisions = events.flatMap(recordedDecisions).slice(0, last);
  const flips: Flip[] = [];
  let replayed = 0;
  for (const { event, request, was, evaluated } of decisions) {
    if (!evaluated) continue;
    replayed++;
    const now = evaluate(candidate, evaluated);
    if (now.allow !== was.allow) flips.push({ event, request, was, now });
  }
  return { read: decisions.length, replayed, flips };
}

function recordedDecisions(event: StoredAuditEvent): Recorded[] {
  const decision = event.decision;
  if (!decision) return [];
  const policyVersion = decision.policyVersion ?? 'none';
  if (event.type === 'policy.allowed' || event.type === 'policy.denied') {
    const details = event.details ?? {};
    const evaluated = details.request as CedarRequest | undefined;
    return [
      {
        event,
        request: { principal: details.principal as string | undefined, action: details.action as string | undefined, resource: details.resource as string | undefined },
        was: { allow: decision.allow, reasons: decision.reasons, policyVersion },
        ...(evaluated ? { evaluated } : {}),
      },
    ];
  }
  return foldedDecisions(event).map((d) => ({
    event,
    request: { principal: d.principal, action: d.action, resource: d.resource },
    was: { allow: decision.allow, reasons: d.reasons, policyVersion },
    ...(d.request ? { evaluated: d.request } : {}),
  }));
}
