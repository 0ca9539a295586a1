import type { Kysely } from 'kysely';
import { latestEvents } from '../audit/query.ts';
import type { StoredAuditEvent } from '../audit/events.ts';
import type { Database } from '../storage/schema.ts';
import { evaluate, type CedarRequest, type CompiledPolicySet } from './engine.ts';

/** A recorded decision that the candidate policy set would decide the other way. */
export interface Flip {
  event: StoredAuditEvent;
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

/**
 * Replays the latest `last` recorded decisions (`policy.allowed` / `policy.denied`, newest first)
 * against a candidate policy set: each request exactly as it was evaluated then (entities and
 * context from the event), so only the policy change can flip a decision. Decisions recorded
 * without their request (no policy set was active, an unknown principal, a request withheld from
 * the log) are counted but not replayed.
 */
export async function simulate(db: Kysely<Database>, candidate: CompiledPolicySet, last: number): Promise<Simulation> {
  const events = await latestEvents(db, ['policy.allowed', 'policy.denied'], last);
  const flips: Flip[] = [];
  let replayed = 0;
  for (const event of events) {
    const request = event.details?.request as CedarRequest | undefined;
    if (!request || !event.decision) continue;
    replayed++;
    const now = evaluate(candidate, request);
    if (now.allow !== event.decision.allow) {
      flips.push({
        event,
        was: { allow: event.decision.allow, reasons: event.decision.reasons, policyVersion: event.decision.policyVersion ?? 'none' },
        now,
      });
    }
  }
  return { read: events.length, replayed, flips };
}
