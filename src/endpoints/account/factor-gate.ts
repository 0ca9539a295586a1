import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authentication } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import { acr, acrSatisfies, type Acr } from '../../identity/acr.ts';
import { epochSeconds } from '../../clock.ts';
import { factorChangeMaxAgeSeconds, factorChangeRefusal, levelToChangeFactors, type ChangedFactor, type FactorChangeRefusal } from '../../identity/factor-changes.ts';
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

export async function factorGate(ctx: Pick<Context, 'storage' | 'config' | 'clock'>, session: Authentication): Promise<FactorGate> {
  const level = await levelToChangeFactors(ctx, session.userId);
  const now = epochSeconds(ctx.clock);
  return {
    refused(factor) {
      const refusal = factorChangeRefusal(session, level, factor, now);
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
  if (refusal.reason === 'upstream') return `You signed in through your organisation, which cannot be used to ${change}: ${signInWith(refusal.level)} first.`;
  if (refusal.reason === 'certificate') return `You signed in with a smart card, which cannot be used to ${change}: ${signInWith(refusal.level)} first.`;
  if (refusal.reason === 'stale') return `Your sign-in is more than ${factorChangeMaxAgeSeconds / 60} minutes old. To ${change}, ${signInWith(refusal.level)} first.`;
  return `To ${change}, ${signInWith(refusal.level)} first.`;
}

/** How to sign in with the person's strongest factor, whose level is `level`. */
function signInWith(level: Acr): string {
  if (acrSatisfies(level, acr.phishingResistantHardware)) return 'sign in with your approved hardware security key';
  if (acrSatisfies(level, acr.phishingResistant)) return 'sign in with one of your passkeys';
  if (acrSatisfies(level, acr.multiFactor)) return 'sign in with your password and your authenticator app’s code';
  return 'sign in again';
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
