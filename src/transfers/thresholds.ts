import { formatAmount } from './amounts.ts';
import type { EffectiveControls } from './controls.ts';

/**
 * Why a transfer needs a second person's approval before a token may carry it (docs/transfers.md
 * "Thresholds and approvals"): its amount — with the request's other entries from the same source
 * account in the same asset — is at or above its legal entity's threshold for the asset (apply's
 * `transfer_controls`), or a risk hold (a first use just after the cool-down, a first use
 * from a session on a new device). Each is lifted by one approval of a second person for this very
 * transfer: a CIBA request (`POST /bc-authorize`) carrying it, which Clearance opens needing that
 * approval (src/approvals/four-eyes.ts), and whose token counts it (`context.approvals`, the
 * token's `approvals` claim). Who may approve is the four-eyes policies' `approve` action; code
 * still excludes the requester and the person the token is for (src/approvals/independence.ts).
 * A token with approvals gets no refresh token, so each approval covers one transfer's token.
 */

/** The reason codes of a demand for approval, as the events and the CIBA requirement name them. */
export type ApprovalDemand = 'transfer-approval-threshold' | 'transfer-first-use-hold' | 'transfer-new-device-first-use';

/** Approvals a demand asks: one second person. */
export const approvalsPerDemand = 1;

/** Whether `amount` (micro-units) reaches the threshold of `controls`. */
export function atOrAboveThreshold(controls: EffectiveControls, amount: bigint): boolean {
  return controls.approvalThreshold !== undefined && amount >= controls.approvalThreshold;
}

/** How to get a transfer that needs a second person approved: the sentence every such refusal ends with. */
export const howToGetApproved = 'ask for the token with a CIBA request (POST /bc-authorize) carrying this transfer: a second person approves it before the token is issued';

/** The public description of a transfer refused for want of an approval. */
export function approvalDemandText(index: number, demand: ApprovalDemand, facts: { amount: bigint; asset: string; threshold?: bigint; destination: string; holdUntil?: number; combined?: bigint; account?: string }): string {
  const what = `authorization_details[${index}] (${formatAmount(facts.amount)} ${facts.asset} to ${facts.destination})`;
  switch (demand) {
    case 'transfer-approval-threshold':
      if (facts.combined !== undefined) {
        // The threshold applies to the request's entries from one account in one asset together.
        return `${what} with the request's other transfers from account ${facts.account} in ${facts.asset} (${formatAmount(facts.combined)} ${facts.asset} in all) is at or above the approval threshold of ${formatAmount(facts.threshold!)} ${facts.asset} and needs a second person's approval: ${howToGetApproved}`;
      }
      return `${what} is at or above the approval threshold of ${formatAmount(facts.threshold!)} ${facts.asset} and needs a second person's approval: ${howToGetApproved}`;
    case 'transfer-first-use-hold':
      return `${what} is held: the destination's first use comes within minutes of its cool-down ending (until ${new Date(facts.holdUntil!).toISOString()}) and needs a second person's approval: ${howToGetApproved}`;
    case 'transfer-new-device-first-use':
      return `${what} is held: a first transfer to this destination from a session signed in on a new device needs a second person's approval: ${howToGetApproved}`;
  }
}
