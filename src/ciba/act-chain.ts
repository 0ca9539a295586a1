import { actChainSubjects } from '../approvals/independence.ts';
import type { Context } from '../context.ts';
import type { Issuance } from '../policy/issuance.ts';
import { refuseFrozenOrSanctioned } from '../risk/kyc/enforce.ts';

/**
 * KYC rule 1 for the act chain a CIBA token carries (src/risk/kyc/enforce.ts: no token when "the
 * legal entity that owns ... any client of its act chain" is frozen). A login_hint_token's chain
 * (src/ciba/hints.ts) travels into the request's token and every refresh of it, but the issuance
 * path sees no delegation for a person's token, so without this a frozen firm's service would keep
 * acting for the person through CIBA, as it may not through an exchange.
 */

/** The issuance a CIBA token's chain is asked about, as the token endpoint would ask about it. */
export type ActChainIssuance = Pick<Issuance, 'subject' | 'clientId' | 'audience' | 'scopes' | 'requestId' | 'grantType' | 'txn'>;

/** The delegation an act chain stands for: the person, and the chain's subjects, newest first. */
export function actChainDelegation(subject: string, act: Record<string, unknown>): NonNullable<Issuance['delegation']> {
  return { subject, actors: actChainSubjects(act) };
}

/**
 * Refuses (invalid_grant, audited `policy.denied` kyc-frozen) a token whose act chain names a client
 * of a frozen firm. Only the frozen rule is asked: the entries' screening is the issuance path's,
 * which follows (asked here too it would raise its alert twice).
 */
export async function refuseFrozenActChain(ctx: Context, issuance: ActChainIssuance, act: Record<string, unknown>): Promise<void> {
  await refuseFrozenOrSanctioned(ctx, { ...issuance, authorizationDetails: [], delegation: actChainDelegation(issuance.subject.id, act) });
}
