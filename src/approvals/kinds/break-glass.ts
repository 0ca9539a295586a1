import { epochSeconds } from '../../clock.ts';
import { acr } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { findBreakGlassAccount, type BreakGlassAccount } from '../break-glass/accounts.ts';
import { startActivation, type ActivationContent } from '../break-glass/activations.ts';
import type { Context } from '../../context.ts';
import type { ApprovalKind } from '../kinds.ts';

/** The role whose holders approve break-glass activations (src/identity/roles.ts lists it as privileged). */
export const custodianRole = 'break-glass-custodian';

/** How fresh a token proof's authentication must be: five minutes (a passkey assertion is fresh by construction). */
export const maxProofAgeSeconds = 300;

/**
 * A break-glass activation (src/approvals/break-glass, docs/recovery.md "Break-glass"): two
 * approvals (the request asks two; the decision table's key makes them two distinct people; the
 * requester is never one, src/approvals/independence.ts), each from a custodian — an active person
 * holding `break-glass-custodian`, and named in the account's custodian list when it has one —
 * proving it at the phishing-resistant level, freshly. The second approval starts the activation
 * in its own transaction.
 */
/**
 * Why `userId` is not a custodian of an emergency account now, or undefined when they are: an
 * active person holding `break-glass-custodian`, on the account's `custodians` list when it has
 * one. Read now, never trusted from the caller: a custodian whose role was withdrawn is not one.
 */
export async function custodianProblem(ctx: Pick<Context, 'storage'>, userId: string, account: Pick<BreakGlassAccount, 'name' | 'custodians'> | undefined): Promise<string | undefined> {
  const person = await findUser(ctx, userId);
  if (!person || person.status !== 'active') return 'not an active person';
  if (!person.roles.includes(custodianRole)) return `not a ${custodianRole}`;
  if (account?.custodians && !account.custodians.includes(person.username)) return `not a custodian of ${account.name}`;
  return undefined;
}

export const breakGlassKind: ApprovalKind = {
  name: 'break_glass',
  approverAcr: acr.phishingResistant,
  // Nobody approves for the emergency account itself (it is a client); the subject's level is never asked.
  subjectAcr: acr.phishingResistantHardware,
  async eligible(ctx, request, approver, proof) {
    const content = request.content as unknown as ActivationContent;
    const account = await findBreakGlassAccount(ctx.storage.db, content.account);
    const notCustodian = await custodianProblem(ctx, approver.userId, account);
    if (notCustodian) return notCustodian;
    if (!account) return 'no such emergency account';
    if (proof.method === 'token' && epochSeconds(ctx.clock) - proof.authTime > maxProofAgeSeconds) return 'authentication not fresh (more than 5 minutes old)';
    return undefined;
  },
  describe(request) {
    const content = request.content as unknown as ActivationContent;
    return {
      title: `Break-glass activation of ${content.account}`,
      lines: [
        { label: 'Account', value: content.account },
        { label: 'Reason', value: content.reason },
        { label: 'Scopes', value: content.scopes.join(' ') },
        { label: 'Audience', value: content.audience },
        { label: 'For', value: `${Math.round(content.activation_seconds / 60)} minutes from the second approval` },
      ],
    };
  },
  async onSettled(ctx, trx, request, outcome) {
    return outcome === 'approved' ? startActivation(ctx, trx, request) : [];
  },
};
