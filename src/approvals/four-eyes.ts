import type { Context } from '../context.ts';
import type { Approver } from './independence.ts';
import type { ApprovalRequest, ApproverProof } from './requests.ts';

/**
 * Four-eyes rules as policy (docs/approvals.md "Four-eyes policies"): Cedar decides how many second
 * persons a token's request needs, and who may be one; src/approvals/independence.ts decides, in
 * code, who never may.
 */

/** What a token request needs before it may be issued. */
export interface FourEyesRequirement {
  /** Second persons' approvals needed (0: none). */
  approvals: number;
  /** The policies that ask for them. */
  policies: string[];
}

/** What is asked: the token a CIBA request would issue. */
export interface FourEyesQuestion {
  /** The person the token is for. */
  userId: string;
  clientId: string;
  /** The audience (resource server identifier) and scopes. */
  audience: string;
  scopes: string[];
  authorizationDetails: Record<string, unknown>[];
  requestId?: string;
}

/**
 * How many second persons' approvals the active policy set asks for this token (0 when none).
 * NOTE (contract, issue 15): the decision-point implementation lands with the four-eyes policy
 * work; until then no policy can ask, so the answer is 0.
 */
export async function fourEyesRequirement(_ctx: Context, _question: FourEyesQuestion): Promise<FourEyesRequirement> {
  return { approvals: 0, policies: [] };
}

/**
 * Whether `approver` may approve a CIBA request (the `approve` action of the active policy set):
 * undefined when a policy permits, else why not. Fail closed.
 * NOTE (contract, issue 15): the decision-point implementation lands with the four-eyes policy
 * work; until then nobody is eligible.
 */
export async function fourEyesEligible(_ctx: Context, _request: ApprovalRequest, _approver: Approver, _proof: ApproverProof): Promise<string | undefined> {
  return 'no policy lets anyone approve yet';
}
