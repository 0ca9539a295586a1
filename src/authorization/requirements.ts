import type { Context } from '../context.ts';
import { strongestAcr, type Acr } from '../identity/acr.ts';
import { roleMinimumFor, roleMinimums } from '../identity/role-requirements.ts';
import { findUser } from '../identity/users.ts';
import { essentialAcr } from './acr-request.ts';
import type { Authentication } from './contract.ts';
import type { AuthorizationRequest } from './request.ts';
import type { Requirement } from './steps.ts';
import { issuanceAsks, type Issuance, type IssuanceApproval } from '../policy/issuance.ts';
import { entriesToApprove } from '../jose/approval-digest.ts';

/**
 * What a person's authentication must meet before a code is issued for a request, whoever asks
 * it — the hard requirements of steps.ts (`acr_values` are voluntary and are steps.ts's own):
 * - `essential_acr`: the request's essential `acr` claim (OIDC Core §5.5.1.1, acr-request.ts);
 * - `role_minimum`: the strongest minimum of the person's roles (src/identity/role-requirements.ts);
 * - `policy`: a step-up policy that forbids the request below a level (src/policy/step-up.ts).
 * Each is a Demand, so the step-up it causes can be audited with its trigger.
 */
export interface Demand {
  trigger: 'essential_acr' | 'role_minimum' | 'policy';
  acr?: Acr;
  /** Seconds: the authentication must be at most this old (a step-up policy's `@step_up_max_age`). */
  maxAge?: number;
  /** For `policy`: the forbids that asked it, and their policy set version. */
  policies?: string[];
  policyVersion?: string;
}

/** The one requirement of several demands: the strongest level, the shortest max age. */
export function requirementOf(demands: readonly Demand[]): Requirement {
  const acr = strongestAcr(demands.map((d) => d.acr));
  const ages = demands.flatMap((d) => (d.maxAge !== undefined ? [d.maxAge] : []));
  return { ...(acr !== undefined ? { acr } : {}), ...(ages.length > 0 ? { maxAge: Math.min(...ages) } : {}) };
}

export type Demands =
  | {
      ok: true;
      demands: Demand[];
      /**
       * Policy asks the person to approve the request's order and settlement_instruction entries
       * with a passkey (src/approvals): asked by the same evaluation as a policy step-up.
       */
      approval?: IssuanceApproval;
    }
  | { ok: false; unreachable: 'essential_acr' };

/**
 * The demands on `auth` (the person signed in, or about to be: undefined) for `request`, and
 * whether policy asks an approval of its order entries. Reads the person's roles only when some
 * role has a minimum (the minimums are cached).
 */
export async function authenticationDemands(ctx: Context, request: AuthorizationRequest, auth: Authentication | undefined): Promise<Demands> {
  const demands: Demand[] = [];
  const essential = essentialAcr(request);
  // OIDC Core §5.5.1.1: an essential acr Clearance never asserts cannot be met.
  if (essential === 'unreachable') return { ok: false, unreachable: 'essential_acr' };
  if (essential !== undefined) demands.push({ trigger: 'essential_acr', acr: essential });
  if (!auth) return { ok: true, demands };
  const [minimum, asks] = await Promise.all([personMinimum(ctx, auth.userId), policyAsks(ctx, request, auth)]);
  if (minimum !== undefined) demands.push({ trigger: 'role_minimum', acr: minimum });
  const policy = asks.stepUp;
  if (policy) demands.push({ trigger: 'policy', acr: policy.acr, ...(policy.maxAge !== undefined ? { maxAge: policy.maxAge } : {}), policies: policy.policies, policyVersion: policy.policyVersion });
  return { ok: true, demands, ...(asks.approval ? { approval: asks.approval } : {}) };
}

async function personMinimum(ctx: Context, userId: string): Promise<Acr | undefined> {
  if ((await roleMinimums(ctx)).size === 0) return undefined;
  const user = await findUser(ctx, userId);
  return user ? roleMinimumFor(ctx, user.roles) : undefined;
}

/**
 * The step-up the token endpoint's decisions would ask of this person's authentication for the
 * request's business token, and the approval of its order entries (src/policy/issuance.ts
 * `issuanceAsks`): asked now, so the person signs in at that level, and approves, while at the
 * browser rather than the client getting insufficient_user_authentication or a refusal for the
 * code. Evaluated only when the active policy set has such policies (an approval only for a request
 * with entries to approve); the request's mandate is not resolved here (the token endpoint decides
 * with it).
 */
async function policyAsks(ctx: Context, request: AuthorizationRequest, auth: Authentication) {
  if (request.resource === undefined) return {};
  const approval = entriesToApprove(request.authorizationDetails as Record<string, unknown>[]).length > 0;
  return issuanceAsks(ctx, codeIssuance(request, request.resource, auth), { approval });
}

/**
 * The issuance the token endpoint will decide for a code of `request` redeemed for `audience` by
 * `auth`'s person: what the authorization endpoint asks the decision point in advance (step-ups,
 * approvals) while the person is at the browser.
 */
function codeIssuance(request: AuthorizationRequest, audience: string, auth: Authentication): Issuance {
  return {
    subject: { type: 'User', id: auth.userId },
    clientId: request.clientId,
    audience,
    scopes: request.scopes,
    authorizationDetails: request.authorizationDetails,
    acr: auth.acr,
    authTime: auth.authTime,
    requestId: 'authorize',
    grantType: 'authorization_code',
  };
}
