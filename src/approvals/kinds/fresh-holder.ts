import { epochSeconds } from '../../clock.ts';
import { findUser } from '../../identity/users.ts';
import type { ApprovalKind } from '../kinds.ts';
import { maxProofAgeSeconds } from './break-glass.ts';

/**
 * The eligibility of kinds approved by the holders of one role: an active person holding `role`,
 * read from their record now, whose token proof is fresh (at most five minutes after its sign-in;
 * a passkey proof is made now). The kind's `approverAcr` sets the level.
 */
export function freshHolderOf(role: string): ApprovalKind['eligible'] {
  return async (ctx, _request, approver, proof) => {
    const person = await findUser(ctx, approver.userId);
    if (!person || person.status !== 'active') return 'not an active person';
    if (!person.roles.includes(role)) return `not a holder of ${role}`;
    if (proof.method === 'token' && epochSeconds(ctx.clock) - proof.authTime > maxProofAgeSeconds) return 'authentication not fresh (more than 5 minutes old)';
    return undefined;
  };
}
