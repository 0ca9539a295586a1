import type { FastifyRequest } from 'fastify';
import { personCaller, type CallerRefusal } from '../../admin/person-caller.ts';
import type { AuditEventType } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { acr } from '../../identity/acr.ts';
import type { User } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';

/** The scheme the caller's token came with, for the challenge it is answered with. */
export function authScheme(request: FastifyRequest): 'Bearer' | 'DPoP' {
  return /^dpop\s/i.test(request.headers.authorization ?? '') ? 'DPoP' : 'Bearer';
}

/**
 * RFC 9470 §3: 401 insufficient_user_authentication, with what would meet the requirement in the
 * challenge and the body — for the admin API's actions a person must take at a higher level or
 * more freshly (approvals, address-book changes, a policy set's activation, a partner's
 * re-approval, a person's apply of a trust change).
 */
export function stepUp(scheme: 'Bearer' | 'DPoP', description: string, ask: { acr_values?: string; max_age?: number }): OAuthError {
  const params = [
    'realm="clearance"',
    'error="insufficient_user_authentication"',
    `error_description="${description}"`,
    ...(ask.acr_values !== undefined ? [`acr_values="${ask.acr_values}"`] : []),
    ...(ask.max_age !== undefined ? [`max_age=${ask.max_age}`] : []),
  ];
  return new OAuthError('insufficient_user_authentication', description, {
    status: 401,
    headers: { 'www-authenticate': `${scheme} ${params.join(', ')}` },
    members: { ...ask },
  });
}

/**
 * What the admin API asks of the person behind an act that changes what Clearance trusts (a
 * policy set's activation, a partner's re-approval, a person's apply document adding or changing a
 * trust item: src/apply/index.ts `trustChanges`): a phishing-resistant sign-in (a passkey) of
 * the last 5 minutes — the level and age an address-book change asks. The console renews its
 * token silently while the person's Clearance session lasts, so without the age a sign-in of
 * hours ago would do.
 */
export const trustChangeSignIn = { level: acr.phishingResistant, maxAgeSeconds: 300 } as const;

/**
 * The event a trust change's refusals are recorded as, one per act (`policy.activation_refused`,
 * `partner.reapproval_refused`, `config.apply_refused`).
 */
export type TrustChangeRefusedEvent = Extract<AuditEventType, `${string}_refused`>;

/** An act of trustChangeSignIn's weight, in the words its refusals use and the event that records them. */
export interface TrustChange {
  /** What is done, as a description's subject: "activating a policy set". */
  act: string;
  /** Who does it, as a refused client is told: "a policy set is activated by a person, with their own token". */
  byPerson: string;
  /** The event a refusal is recorded as, before it is answered: the act's own `*_refused`. */
  refusedAs: TrustChangeRefusedEvent;
  /**
   * What the event names of the act's target (`{ version }`, `{ partner }`), read when a refusal is
   * recorded: only what is stored, or was checked as apply checks a document — an id nobody stored
   * is the caller's text, which an audit event must not carry unchecked.
   */
  target(): Promise<Record<string, unknown>>;
}

/** Whether the caller is the person a trust change asks for (src/admin/person-caller.ts `personCaller`, in its order). */
export function trustChangeCaller(ctx: Context, request: FastifyRequest): ReturnType<typeof personCaller> {
  return personCaller(ctx, request.admin!, trustChangeSignIn);
}

/**
 * The person taking an act that changes what Clearance trusts: their own token, signed in as
 * trustChangeSignIn asks, active. Else refused (refuseTrustChange).
 */
export async function trustChangePerson(ctx: Context, request: FastifyRequest, change: TrustChange): Promise<User> {
  const caller = await trustChangeCaller(ctx, request);
  if (caller.ok) return caller.user;
  return refuseTrustChange(ctx, request, caller.reason, change);
}

/**
 * A trust change refused for its caller: recorded as `change.refusedAs` — the reason; for a
 * step-up, what was asked and what the token had, as an address-book change's refusal records
 * them — then answered: a sign-in too weak or too old with 401 insufficient_user_authentication
 * naming `acr_values` and `max_age` (RFC 9470 §3: what a new sign-in must meet), anything else
 * with 403 access_denied (a new sign-in would not help).
 */
export async function refuseTrustChange(ctx: Context, request: FastifyRequest, reason: CallerRefusal, change: TrustChange): Promise<never> {
  const claims = request.admin!;
  const challenge = signInChallenge(request, reason, change.act);
  await ctx.audit.record({
    type: change.refusedAs,
    requestId: request.id,
    actor: claims.sub ?? claims.client_id,
    client: claims.client_id,
    decision: { allow: false, reasons: [reason] },
    details: { ...(await change.target()), ...(challenge?.details ?? { outcome: 'refused' }) },
  });
  if (challenge) throw challenge.error;
  switch (reason) {
    case 'client_token':
      throw new OAuthError('access_denied', change.byPerson);
    case 'delegated_token':
      throw new OAuthError('access_denied', `a delegated token cannot do this: ${change.byPerson}`);
    default:
      throw new OAuthError('access_denied', `the person of this token may not do this: ${change.byPerson}`);
  }
}

/**
 * For a caller refused trustChangeSignIn's level or age — which a new sign-in cures — what the
 * refusal records (what was asked, what the token had) and the 401 insufficient_user_authentication
 * that answers it, naming `acr_values` and `max_age` (RFC 9470 §3: what a new sign-in must meet);
 * undefined for any other refusal. `act` is what is done, as a description's subject ("lifting a
 * suspension").
 */
export function signInChallenge(request: FastifyRequest, reason: string, act: string): { details: Record<string, unknown>; error: OAuthError } | undefined {
  if (reason !== 'insufficient_authentication' && reason !== 'stale_authentication') return undefined;
  const claims = request.admin!;
  const ask = { acr_values: trustChangeSignIn.level, max_age: trustChangeSignIn.maxAgeSeconds };
  const description = reason === 'insufficient_authentication' ? `${act} needs a phishing-resistant authentication (a passkey)` : `${act} needs an authentication of the last 5 minutes: sign in again`;
  return {
    details: { ...ask, acr_before: claims.acr ?? null, auth_time: claims.auth_time ?? null, outcome: 'challenged' },
    error: stepUp(authScheme(request), description, ask),
  };
}
