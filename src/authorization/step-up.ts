import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '../audit/events.ts';
import { acr as levels, acrSatisfies, type Acr } from '../identity/acr.ts';
import type { Authentication } from './contract.ts';
import { voluntaryAcr } from './acr-request.ts';
import type { AuthorizationRequest } from './request.ts';
import type { Demand } from './requirements.ts';
import type { Need } from './steps.ts';

/**
 * Step-ups during an authorization request, and their audit (docs/authentication.md "Audit").
 *
 * A step-up is the protocol side sending a person who IS signed in back to sign in at a higher
 * level (a login step with reason `acr`, or `max_age` asked by a step-up policy). Its record is
 * kept on the interaction (`interactions.step_up`) from then until it concludes, and it is
 * audited twice, joined by `step_up_id`:
 * - `step_up.requested` when the person is sent to sign in: the triggers (`acr_values`,
 *   `essential_acr`, `role_minimum`, `policy`), the policy ids and policy set version of a policy
 *   trigger, the level asked, the factor offered and the level the person had;
 * - `step_up.completed` when it concludes — the one event holding everything: the same fields
 *   plus the factor used (the new authentication's `amr` and `acr`) and the outcome:
 *   `met` (a code is issued at the level: recorded with `code.issued`, which names the step-up, as
 *   does the `token.issued` of the code's redemption), `unmet` (a voluntary level the person did
 *   not reach: the code is issued at what they reached; or a denial at a level below the one
 *   asked), `declined` (the person could not reach it: `unmet_authentication_requirements` to the
 *   client) or `abandoned` (the request expired first: recorded when it is pruned).
 */

/** `risk`: the risk assessment's step_up outcome at the token endpoint (src/policy/issuance.ts). */
export type StepUpTrigger = 'acr_values' | 'risk' | Demand['trigger'];

/** The step-up an interaction waits for (`interactions.step_up`, JSON). */
export interface StepUpRecord {
  id: string;
  triggers: StepUpTrigger[];
  /** The level asked (absent: only freshness was asked). */
  acr?: Acr;
  maxAge?: number;
  policies?: string[];
  policyVersion?: string;
  /** The factor the level needs (`factorFor`). */
  factorOffered: string;
  /** The person's level when they were sent to sign in. */
  acrBefore: string;
  /** Epoch ms. */
  requestedAt: number;
  /** Set when the person said they cannot reach the level (declineAuthentication). */
  declined?: boolean;
}

/**
 * The kind of factor a level needs, as the step-up's `factor_offered`: the weakest that reaches it
 * (a person may use a stronger one).
 */
export function factorFor(level: Acr | undefined): string {
  switch (level) {
    case levels.multiFactor:
      return 'password+totp';
    case levels.phishingResistant:
      return 'passkey';
    case levels.phishingResistantHardware:
      return 'hardware_passkey';
    default:
      return 'password';
  }
}

/**
 * The step-up `need` begins for a person signed in as `auth`, or undefined when it is not one (no
 * login asked, or a login for another reason: no session, prompt=login, the request's max_age).
 */
export function stepUpOf(need: Need, request: AuthorizationRequest, auth: Authentication | undefined, demands: readonly Demand[], now: number): StepUpRecord | undefined {
  if (!auth || need.step !== 'login') return undefined;
  const unmet = demands.filter((d) => (d.acr !== undefined && !acrSatisfies(auth.acr, d.acr)) || (d.maxAge !== undefined && Math.floor(now / 1000) - auth.authTime > d.maxAge));
  const voluntary = voluntaryAcr(request);
  const triggers: StepUpTrigger[] = [];
  if (need.reason === 'acr' && voluntary !== undefined && !acrSatisfies(auth.acr, voluntary)) triggers.push('acr_values');
  if (need.reason === 'acr' || need.reason === 'max_age') for (const d of unmet) if (!triggers.includes(d.trigger)) triggers.push(d.trigger);
  // A login for the request's own max_age or prompt=login is a re-authentication, not a step-up.
  if (triggers.length === 0) return undefined;
  const policies = [...new Set(unmet.flatMap((d) => d.policies ?? []))];
  const policyVersion = unmet.find((d) => d.policyVersion !== undefined)?.policyVersion;
  const ages = unmet.flatMap((d) => (d.maxAge !== undefined ? [d.maxAge] : []));
  return {
    id: randomUUID(),
    triggers,
    ...(need.acr !== undefined ? { acr: need.acr } : {}),
    ...(ages.length ? { maxAge: Math.min(...ages) } : {}),
    ...(policies.length ? { policies } : {}),
    ...(policyVersion !== undefined ? { policyVersion } : {}),
    factorOffered: factorFor(need.acr),
    acrBefore: auth.acr,
    requestedAt: now,
  };
}

/** The record to keep when a step-up is asked again while one is pending: the stronger ask, the first id. */
export function mergedStepUp(pending: StepUpRecord, next: StepUpRecord): StepUpRecord {
  const triggers = [...new Set([...pending.triggers, ...next.triggers])];
  const policies = [...new Set([...(pending.policies ?? []), ...(next.policies ?? [])])];
  const acr = next.acr !== undefined && (pending.acr === undefined || !acrSatisfies(pending.acr, next.acr)) ? next.acr : pending.acr;
  return {
    ...pending,
    triggers,
    ...(acr !== undefined ? { acr, factorOffered: factorFor(acr) } : {}),
    ...(policies.length ? { policies } : {}),
    ...(pending.policyVersion === undefined && next.policyVersion !== undefined ? { policyVersion: next.policyVersion } : {}),
  };
}

interface Where {
  clientId: string;
  /** The person (absent when nobody signed in: a declined first sign-in). */
  userId?: string | undefined;
  interactionId: string;
  requestId?: string;
}

function shared(record: StepUpRecord): Record<string, unknown> {
  return {
    step_up_id: record.id,
    trigger: record.triggers,
    ...(record.acr !== undefined ? { acr_values: record.acr } : {}),
    ...(record.maxAge !== undefined ? { max_age: record.maxAge } : {}),
    ...(record.policies ? { policies: record.policies } : {}),
    ...(record.policyVersion !== undefined ? { policy_version: record.policyVersion } : {}),
    factor_offered: record.factorOffered,
    acr_before: record.acrBefore,
  };
}

/** `step_up.requested`: the person is sent to sign in at a higher level. */
export function stepUpRequestedEvent(record: StepUpRecord, where: Where): AuditEvent {
  return {
    type: 'step_up.requested',
    ...(where.requestId !== undefined ? { requestId: where.requestId } : {}),
    actor: where.clientId,
    ...(where.userId !== undefined ? { subject: where.userId } : {}),
    client: where.clientId,
    ...(record.policyVersion !== undefined ? { decision: { allow: false, reasons: record.policies ?? [], policyVersion: record.policyVersion } } : {}),
    details: { ...shared(record), interaction_id: where.interactionId },
  };
}

export type StepUpOutcome = 'met' | 'unmet' | 'declined' | 'abandoned';

/** Whether `auth` meets what the step-up asked. */
export function stepUpMet(record: StepUpRecord, auth: Authentication, nowMs: number): boolean {
  return (record.acr === undefined || acrSatisfies(auth.acr, record.acr)) && (record.maxAge === undefined || Math.floor(nowMs / 1000) - auth.authTime <= record.maxAge);
}

/** `step_up.completed`: the outcome, with the factor used (absent when nobody signed in again). */
export function stepUpCompletedEvent(record: StepUpRecord, outcome: StepUpOutcome, where: Where, used?: Authentication): AuditEvent {
  return {
    type: 'step_up.completed',
    ...(where.requestId !== undefined ? { requestId: where.requestId } : {}),
    ...(where.userId !== undefined ? { actor: where.userId, subject: where.userId } : { actor: where.clientId }),
    client: where.clientId,
    ...(record.policyVersion !== undefined ? { decision: { allow: outcome === 'met', reasons: record.policies ?? [], policyVersion: record.policyVersion } } : {}),
    details: {
      ...shared(record),
      interaction_id: where.interactionId,
      outcome,
      ...(used ? { factor_used: used.amr, acr: used.acr, auth_time: used.authTime } : {}),
    },
  };
}
