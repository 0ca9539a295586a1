import type { Authentication, Interaction, NextStep } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';

/**
 * The protocol side's half of the interaction contract (src/authorization/contract.ts), as the
 * interaction endpoints use it. The server passes src/authorization/interactions.ts; tests may
 * pass a double.
 */
export interface InteractionFlow {
  /** undefined: unknown or expired. */
  loadInteraction(ctx: Context, id: string): Promise<Interaction | undefined>;
  nextStep(ctx: Context, id: string, session: Authentication | undefined): Promise<NextStep>;
  /** After a successful login during this interaction. */
  recordAuthentication(ctx: Context, id: string, auth: Authentication): Promise<void>;
  decideConsent(ctx: Context, id: string, auth: Authentication, approved: boolean): Promise<void>;
}
