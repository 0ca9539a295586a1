import type { AuditEvent } from '../audit/events.ts';
import { factorFor, type StepUpTrigger } from '../authorization/step-up.ts';
import type { Context } from '../context.ts';
import { acrSatisfies, type Acr } from '../identity/acr.ts';
import { roleMinimumFor, roleMinimums } from '../identity/role-requirements.ts';
import { findUser } from '../identity/users.ts';
import { OAuthError } from '../oauth-error.ts';
import { riskAuditDetail, type RiskAssessment } from '../risk/assessment.ts';

/**
 * Step-up at the token endpoint: a grant whose person authenticated below what is now required —
 * their role minimum (src/identity/role-requirements.ts), or a step-up policy (src/policy/step-up.ts)
 * — gets no tokens, but the RFC 9470 error `insufficient_user_authentication` with the
 * `acr_values` (and `max_age`) that would lift it, as members of the JSON error body (RFC 9470 §3
 * registers them for a resource's challenge; a token endpoint error carries them the same way).
 * The client sends the person through the authorization endpoint again with those acr_values.
 * Status 400 (RFC 6749 §5.2: a 401 at the token endpoint means the client's own authentication
 * failed). Each such answer is a `step_up.requested` audit event.
 */

export interface TokenStepUp {
  triggers: StepUpTrigger[];
  acr?: Acr;
  maxAge?: number;
  policies?: string[];
  policyVersion?: string;
  /** With trigger `risk`: the assessment that asked (recorded as `details.risk`). */
  risk?: RiskAssessment;
}

/**
 * The person's role minimum, when their grant's `acr` is below it — or absent: a token that says
 * nothing of the sign-in meets no minimum (read only when some role has one).
 */
export async function roleMinimumUnmet(ctx: Context, userId: string, achieved: string | undefined): Promise<Acr | undefined> {
  if ((await roleMinimums(ctx)).size === 0) return undefined;
  const user = await findUser(ctx, userId);
  const minimum = user ? await roleMinimumFor(ctx, user.roles) : undefined;
  return minimum !== undefined && !acrSatisfies(achieved, minimum) ? minimum : undefined;
}

/** Records the step-up and returns the error to answer. */
export async function insufficientUserAuthentication(
  ctx: Context,
  ask: TokenStepUp,
  where: { subject: string; clientId: string; requestId: string; grantType: string; acrBefore?: string; grantId?: string },
): Promise<OAuthError> {
  const event: AuditEvent = {
    type: 'step_up.requested',
    requestId: where.requestId,
    actor: where.clientId,
    subject: where.subject,
    client: where.clientId,
    ...(ask.policyVersion !== undefined ? { decision: { allow: false, reasons: ask.policies ?? [], policyVersion: ask.policyVersion } } : {}),
    details: {
      trigger: ask.triggers,
      ...(ask.acr !== undefined ? { acr_values: ask.acr } : {}),
      ...(ask.maxAge !== undefined ? { max_age: ask.maxAge } : {}),
      ...(ask.policies ? { policies: ask.policies } : {}),
      ...(ask.policyVersion !== undefined ? { policy_version: ask.policyVersion } : {}),
      factor_offered: factorFor(ask.acr),
      ...(where.acrBefore !== undefined ? { acr_before: where.acrBefore } : {}),
      grant_type: where.grantType,
      ...(where.grantId !== undefined ? { grant_id: where.grantId } : {}),
      // Concluded, if ever, by a new authorization at this level (its own step-up or login events).
      outcome: 'challenged',
      ...(ask.risk ? { risk: riskAuditDetail(ask.risk) } : {}),
    },
  };
  await ctx.audit.record(event);
  const why = ask.triggers.includes('role_minimum') ? "the person's role requires" : ask.triggers.includes('policy') ? 'policy requires' : 'the risk assessment requires';
  return new OAuthError('insufficient_user_authentication', `${why} a stronger or more recent authentication: authorize again${ask.acr ? ` with acr_values=${ask.acr}` : ''}${ask.maxAge !== undefined ? ` and max_age=${ask.maxAge}` : ''}`, {
    status: 400,
    members: { ...(ask.acr !== undefined ? { acr_values: ask.acr } : {}), ...(ask.maxAge !== undefined ? { max_age: ask.maxAge } : {}) },
  });
}

/**
 * A person's role minimum at a grant that decides as them without their consent grant — a partner
 * subject linked to them (src/federation/subject.ts) — met by the authentication it carries, or
 * refused with RFC 9470's error, as for their own tokens: a role minimum is never waived.
 */
export async function requirePersonRoleMinimum(ctx: Context, where: { personId: string; achieved: string | undefined; clientId: string; requestId: string; grantType: string }): Promise<void> {
  const minimum = await roleMinimumUnmet(ctx, where.personId, where.achieved);
  if (minimum === undefined) return;
  throw await insufficientUserAuthentication(ctx, { triggers: ['role_minimum'], acr: minimum }, {
    subject: where.personId,
    clientId: where.clientId,
    requestId: where.requestId,
    grantType: where.grantType,
    ...(where.achieved !== undefined ? { acrBefore: where.achieved } : {}),
  });
}
