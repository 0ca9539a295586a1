import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Database } from '../storage/schema.ts';

/**
 * Alerts: security events that need a human (issue 15, docs/recovery.md "Alerts"). Whatever raises
 * one writes it to the `alerts` outbox in the transaction of what happened (so an alert exists if
 * and only if the event does); delivery (signed CloudEvents webhooks, retried, each outcome kept)
 * reads the outbox afterwards, and the admin API lists it.
 */
export const alertTypes = [
  'break_glass.activated',
  'break_glass.expired',
  'recovery.requested',
  'recovery.approved',
  'recovery.code_used',
  'approval.denied',
  'factor.removed',
  // A passkey or an authenticator app added to a person (src/identity/passkeys/registration.ts,
  // src/identity/factors/enrolment.ts): whoever holds a new factor signs in with it from then on.
  'factor.added',
  // Risk and KYC/AML (src/risk, docs/risk.md).
  'risk.denied',
  'risk.anomaly',
  'risk.suspended',
  'risk.admin_unusual',
  'screening.matched',
  'kyc.frozen',
  // Partner drift (src/federation/drift, docs/federation.md "Drift").
  'partner.drifted',
  'partner.unreachable',
  'partner.suspended',
  // A mandate lapsed with trades in flight under it (src/mandates/lapses.ts, docs/mandates.md).
  'mandate.lapsed_in_flight',
  // The person who granted mandates left: they stay in force until a deadline for a new signatory
  // (src/lifecycle/leaver.ts); agents whose model they owned are flagged for a new owner.
  'mandate.reassignment_required',
  'agent.owner_left',
  // A workload attestation refused: a wrong image or model digest, an unapproved model, a forged or
  // replayed attestation (src/agents/attestation.ts, docs/agents.md).
  'agent.attestation_refused',
] as const;

export type AlertType = (typeof alertTypes)[number];

export interface Alert {
  type: AlertType;
  /** Whom it is about (a person's id), when someone. */
  subject?: string;
  /** The facts a responder needs (ids, names, times, the txn) — never a secret, code or token. */
  data: Record<string, unknown>;
}

/**
 * The outbox row of an alert, to run in the caller's transaction (`.execute()` on a transaction, or
 * `flight.run(...)`). Returns the insert; the alert's id is `id`.
 */
export function alertInsert(db: Kysely<Database> | Transaction<Database>, clock: Clock, alert: Alert, id: string = randomUUID()) {
  return db.insertInto('alerts').values({ id, type: alert.type, subject: alert.subject ?? null, data: JSON.stringify(alert.data), created_at: clock.now() });
}
