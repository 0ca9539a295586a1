import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import { acr, acrSatisfies } from '../../identity/acr.ts';
import { factorChangeRefusal, levelToChangeFactors, type ChangedFactor, type FactorChangeRefusal } from '../../identity/factor-changes.ts';
import { sendErrorPage } from '../../ui/respond.ts';

/**
 * The account page's side of the one rule for changing sign-in factors
 * (src/identity/factor-changes.ts): read once per request, it says for each kind of factor
 * whether this session may change it and, when not, what the person must do first, in plain words.
 */
export interface FactorGate {
  /** What to do before changing `factor` from this session; undefined when it may. */
  refused(factor: ChangedFactor): string | undefined;
}

export async function factorGate(ctx: Pick<Context, 'storage' | 'config'>, session: Authentication): Promise<FactorGate> {
  const level = await levelToChangeFactors(ctx, session.userId);
  return {
    refused(factor) {
      const refusal = factorChangeRefusal(session, level, factor);
      return refusal && explain(refusal, factor);
    },
  };
}

const changes: Record<ChangedFactor, string> = {
  passkeys: 'add, rename or remove passkeys',
  authenticator: 'set up or remove an authenticator app',
  recovery_codes: 'make new recovery codes',
};

function explain(refusal: FactorChangeRefusal, factor: ChangedFactor): string {
  const change = changes[factor];
  if (refusal.reason === 'recovery_code') {
    return `You signed in with a recovery code, which cannot be used to ${change}: sign in with your authenticator app or a passkey first. If you lost your authenticator, ask for a recovery below: a second person must approve it.`;
  }
  if (acrSatisfies(refusal.level, acr.phishingResistantHardware)) return `To ${change}, sign in with your approved hardware security key first.`;
  if (acrSatisfies(refusal.level, acr.phishingResistant)) return `To ${change}, sign in with one of your passkeys first.`;
  if (acrSatisfies(refusal.level, acr.multiFactor)) return `To ${change}, sign in with your password and your authenticator app’s code first.`;
  return `To ${change}, sign in again first.`;
}

/** The 403 page of a change this session may not make: the reason, and that nothing changed. */
export function refusedChange(ctx: Context, request: FastifyRequest, reply: FastifyReply, factor: ChangedFactor, message: string): FastifyReply {
  return sendErrorPage(ctx, request, reply, {
    status: 403,
    title: factor === 'passkeys' ? 'Sign in again to change your passkeys' : 'Sign in again to change your two-step sign-in',
    // The account page has no sign-in of its own: a new sign-in starts from an application.
    message: `${message} (Sign out, then sign in again through an application.) Nothing was changed.`,
  });
}
