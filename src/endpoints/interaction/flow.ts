import type { Authentication, ConsentRequest, Interaction, NextStep } from '../../authorization/contract.ts';
import type { Context } from '../../context.ts';
import type { Flight } from '../../storage/flight.ts';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';

/**
 * The protocol side's half of the interaction contract (src/authorization/contract.ts), as the
 * interaction endpoints use it. The server passes src/authorization/interactions.ts; tests may
 * pass a double. A request loads its interaction once and passes the Interaction it got to the
 * other calls, so the protocol side can reuse what it read (no second read of the same row).
 */
export interface InteractionFlow {
  /**
   * undefined: unknown, expired, or started by another browser than `browser`. With `flight`, read
   * with the request's other reads: the promise settles once the caller has sent the flight.
   */
  loadInteraction(ctx: Context, id: string, browser: { id: string | undefined }, flight?: Flight): Promise<Interaction | undefined>;
  nextStep(ctx: Context, interaction: Interaction, session: Authentication | undefined): Promise<NextStep>;
  /**
   * After a successful login during this interaction, in the flight of the login's transaction
   * (with the new session and the login's audit event): adds its statements, and the promise
   * settles once that transaction has committed. False: the interaction ended meanwhile.
   */
  recordAuthentication(ctx: Context, interaction: Interaction, auth: Authentication, flight: Flight): Promise<boolean>;
  decideConsent(ctx: Context, interaction: Interaction, auth: Authentication, approved: boolean): Promise<void>;
  /**
   * What-you-see-is-what-you-sign (src/approvals): starts the passkey approval of the request's
   * order entries — the WebAuthn request options, or undefined when none is asked of this person.
   */
  startApproval?(ctx: Context, interaction: Interaction, auth: Authentication): Promise<PublicKeyCredentialRequestOptionsJSON | undefined>;
  /**
   * The consent step, with its approval, when policy asks this person to approve the request's
   * order entries with a passkey and they have not yet; else undefined (a request without such
   * entries is answered without evaluating anything).
   */
  approvalAsked?(ctx: Context, interaction: Interaction, auth: Authentication): Promise<ConsentRequest | undefined>;
  /** The person's passkey answer (the page's JSON text) to the approval ceremony; kept when it verifies. */
  approve?(ctx: Context, interaction: Interaction, auth: Authentication, response: string, requestId?: string): Promise<{ ok: true } | { ok: false; reason: string }>;
  /**
   * The person says they cannot reach the level the login step asks (NextStep.acr, not
   * voluntary): the request ends with unmet_authentication_requirements at resume. False: the
   * interaction ended meanwhile.
   */
  declineAuthentication(ctx: Context, interaction: Interaction, session: Authentication | undefined): Promise<boolean>;
}
