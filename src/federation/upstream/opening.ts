import type { Authentication, NextStep } from '../../authorization/contract.ts';
import { acrSatisfies } from '../../identity/acr.ts';
import { asksRenewal, strictest, type FreshnessAsked, type UpstreamAsk } from './freshness.ts';

/**
 * Whether the person may be sent to an upstream identity provider at the step their authorization
 * request is at, and what the upstream is then asked (docs/identity-brokering.md "Sign-in"):
 *
 * - only at a sign-in (a login step): a consent or a finished request has nothing to sign in for
 *   (`no_sign_in`);
 * - never at a step-up (reason `acr`: the person authenticated — by their session or in this
 *   request — below the level a client, their roles or a policy asks): a step-up is the person's
 *   own factor, on Clearance's page, which Clearance verifies now (`step_up`). Through an upstream
 *   it would rest on whatever the upstream answered with — its own earlier session included — and
 *   a person the upstream signs in there need not be the person stepping up;
 * - at any other sign-in: the request's max_age and prompt=login (OIDC Core §3.1.2.1), and a
 *   requirement's max age (a step-up policy's @step_up_max_age, the stricter: `step.maxAge`),
 *   so the upstream's own session does not stand in for a sign-in fresher than either. A person
 *   present below the level the step asks (a re-authentication that is also a step-up: max_age
 *   with an essential acr, say) is lifted by the upstream's level only from a new authentication:
 *   prompt=login is asked of it (`because: step_up`), and its answer must be later than sending.
 *
 * `present`: who authenticated — in this request, else by the browser's session.
 */
export type UpstreamOpening = { ok: true; ask: UpstreamAsk | undefined } | { ok: false; refused: 'no_sign_in' | 'step_up' };

export function upstreamOpening(step: NextStep, present: Authentication | undefined, requested: FreshnessAsked | undefined): UpstreamOpening {
  if (step.step !== 'login') return { ok: false, refused: 'no_sign_in' };
  if (step.reason === 'acr') return { ok: false, refused: 'step_up' };
  const belowLevel = present !== undefined && step.acr !== undefined && !acrSatisfies(present.acr, step.acr);
  const renewal: UpstreamAsk | undefined = belowLevel && !asksRenewal(requested) ? { login: true, because: 'step_up' } : undefined;
  return { ok: true, ask: strictest(requested, step.maxAge !== undefined ? { maxAge: step.maxAge } : undefined, renewal) };
}
