import type { FastifyRequest } from 'fastify';
import { personCaller, type CallerRefusal } from '../../admin/person-caller.ts';
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
 * re-approval).
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
 * policy set's activation, a partner's re-approval): a phishing-resistant sign-in (a passkey) of
 * the last 5 minutes — the level and age an address-book change asks. The console renews its
 * token silently while the person's Clearance session lasts, so without the age a sign-in of
 * hours ago would do.
 */
export const trustChangeSignIn = { level: acr.phishingResistant, maxAgeSeconds: 300 } as const;

/** An act of trustChangeSignIn's weight, in the words its refusals use. */
export interface TrustChange {
  /** What is done, as a description's subject: "activating a policy set". */
  act: string;
  /** Who does it, as a refused client is told: "a policy set is activated by a person, with their own token". */
  byPerson: string;
  /**
   * Records a refusal (the endpoint's own `*_refused` event) before it is answered: its reason, and
   * `details` to carry — for a step-up, what was asked and what the token had, as an address-book
   * change's refusal records them.
   */
  record(reason: CallerRefusal, details: Record<string, unknown>): Promise<void>;
}

/**
 * The person taking an act that changes what Clearance trusts: their own token, signed in as
 * trustChangeSignIn asks (src/admin/person-caller.ts `personCaller`, in its order), active. Else
 * the refusal is recorded, then answered: a sign-in too weak or too old with 401
 * insufficient_user_authentication naming `acr_values` and `max_age` (RFC 9470 §3: what a new
 * sign-in must meet), anything else with 403 access_denied (a new sign-in would not help).
 */
export async function trustChangePerson(ctx: Context, request: FastifyRequest, change: TrustChange): Promise<User> {
  const caller = await personCaller(ctx, request.admin!, trustChangeSignIn);
  if (caller.ok) return caller.user;
  const claims = request.admin!;
  const ask = { acr_values: trustChangeSignIn.level, max_age: trustChangeSignIn.maxAgeSeconds };
  const challenged = caller.reason === 'insufficient_authentication' || caller.reason === 'stale_authentication';
  await change.record(caller.reason, challenged ? { ...ask, acr_before: claims.acr ?? null, auth_time: claims.auth_time ?? null, outcome: 'challenged' } : { outcome: 'refused' });
  switch (caller.reason) {
    case 'insufficient_authentication':
      throw stepUp(authScheme(request), `${change.act} needs a phishing-resistant authentication (a passkey)`, ask);
    case 'stale_authentication':
      throw stepUp(authScheme(request), `${change.act} needs an authentication of the last 5 minutes: sign in again`, ask);
    case 'client_token':
      throw new OAuthError('access_denied', change.byPerson);
    case 'delegated_token':
      throw new OAuthError('access_denied', `a delegated token cannot do this: ${change.byPerson}`);
    default:
      throw new OAuthError('access_denied', `the person of this token may not do this: ${change.byPerson}`);
  }
}
