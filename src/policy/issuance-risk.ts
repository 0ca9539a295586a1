import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import type { Context } from '../context.ts';
import { acr, acrSatisfies } from '../identity/acr.ts';
import { mergeSignalHits, scoreRisk, type RiskAssessment } from '../risk/assessment.ts';
import { assessRisk, type RiskFacts } from '../risk/engine.ts';
import { riskResourceName } from '../risk/resources.ts';
import type { Issuance } from './issuance.ts';

/**
 * The risk assessment of a token issuance (issue 16, docs/risk.md "Outcomes"): the facts the
 * signals read, the assessment (with the person's sign-in signals carried in), and what its
 * outcome asks of a person.
 */

/**
 * The level a risk `step_up` asks of a person: a second factor (TOTP or a passkey) — what a risky
 * sign-in asks (src/identity/login-risk.ts), so a person who met it there, whose sign-in's signals
 * ride along in `loginRisk`, is not asked again for more than their sign-in could give. A policy
 * that wants more for a level says so (`@step_up`, docs/policy.md).
 */
export const riskStepUpAcr = acr.multiFactor;

/** What the signals read about an issuance. */
export function issuanceRiskFacts(issuance: Issuance): RiskFacts {
  const resources = resourcesOf(issuance.authorizationDetails);
  return {
    moment: 'issuance',
    principal: { type: issuance.subject.type, id: issuance.subject.id },
    clientId: issuance.clientId,
    ...(issuance.address !== undefined ? { address: issuance.address } : {}),
    grantType: issuance.grantType,
    scopes: issuance.scopes,
    audience: issuance.audience,
    ...(resources.length > 0 ? { resources } : {}),
    ...(issuance.delegation ? { subject: issuance.delegation.subject, actors: issuance.delegation.actors } : {}),
    ...(issuance.presented ? { presented: issuance.presented } : {}),
  };
}

/**
 * Assesses an issuance: its own signals, and the signals the person's sign-in carried
 * (`loginRisk`), each signal once, scored together. Undefined when the engine is switched off.
 */
export async function assessIssuance(ctx: Context, issuance: Issuance, facts: RiskFacts): Promise<RiskAssessment | undefined> {
  const settings = await ctx.risk.settings.get();
  if (!settings.enabled) return undefined;
  const own = await assessRisk(ctx, facts);
  if (!issuance.loginRisk?.length) return own;
  return scoreRisk(mergeSignalHits(own.signals, issuance.loginRisk), settings);
}

/** Whether the assessment asks the person to sign in more strongly: `step_up`, a person, below `riskStepUpAcr`. */
export function asksRiskStepUp(issuance: Issuance, risk: RiskAssessment | undefined): boolean {
  return risk?.outcome === 'step_up' && issuance.subject.type === 'User' && !acrSatisfies(issuance.acr, riskStepUpAcr);
}

/** The instruments and accounts of authorization_details entries, named as the signals remember them. */
function resourcesOf(details: readonly AuthorizationDetail[]): string[] {
  return details.flatMap((detail) => {
    const instrument = detail.instrument as { symbol?: unknown } | undefined;
    if (detail.type === 'order' && typeof instrument?.symbol === 'string') return [riskResourceName('Instrument', instrument.symbol)];
    if (detail.type === 'settlement_instruction' && typeof detail.account === 'string') return [riskResourceName('Account', detail.account)];
    return [];
  });
}
