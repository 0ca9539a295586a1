import type { Acr } from '../identity/acr.ts';
import type { SignalHit } from '../risk/assessment.ts';

/**
 * The contract between the authorization protocol (src/authorization, src/endpoints/authorize,
 * par, token grants) and the people side (src/identity, src/ui, src/endpoints/interaction).
 *
 * Flow (one "interaction" per authorization request that needs a person):
 *   GET|POST /authorize (or with a PAR request_uri)
 *     → the request is validated (client, redirect_uri first: errors before that never redirect)
 *     → an Interaction is stored, and the browser is sent (303) to /interaction/{id}
 *   GET /interaction/{id}  (people side) shows, as `nextStep(...)` says:
 *     login  → POST /interaction/{id}/login   verifies the user, starts or refreshes the session
 *     consent→ POST /interaction/{id}/consent records approve or deny through `decideConsent`
 *     (a login at a required level the person cannot reach: POST /interaction/{id}/decline →
 *     `declineAuthentication`, then 303 to resume, which ends the request with
 *     unmet_authentication_requirements)
 *   the login POST answers 303 to /interaction/{id} when `nextStep` (asked right after the login)
 *   says consent, else to /authorize/resume/{id}; the consent POST answers 303 to
 *   /authorize/resume/{id}
 *   GET /authorize/resume/{id} (protocol side) re-evaluates: needs login? consent? else issues the
 *     code and redirects (303) to the client with code, state and iss (RFC 9207); a denial
 *     redirects with error=access_denied.
 */

/** A person's authentication as the session records it (OIDC Core §2 auth_time, acr, amr). */
export interface Authentication {
  userId: string;
  sessionId: string;
  /** Seconds since the epoch. */
  authTime: number;
  acr: string;
  amr: string[];
  /**
   * The risk signals that fired when the person signed in (src/identity/login-risk.ts; absent when
   * none did): the codes and refresh tokens issued from this authentication carry them into every
   * issuance (`Issuance.loginRisk`).
   */
  loginRisk?: SignalHit[];
  /**
   * The managed device the person signed in from (its certificate of Clearance's CA, profile kind
   * `device`, presented over mTLS): recorded, never a factor of the person's (AMENDMENTS "PKI").
   */
  deviceId?: string;
  /**
   * The upstream identity provider that signed the person in (src/federation/upstream), when one did: its
   * issuer is the session's source of assurance, named in the tokens (`assurance_source`), the
   * events and policy's context (`context.assurance`). Absent for a local sign-in.
   */
  assurance?: UpstreamAssurance;
}

/** An upstream sign-in's source of assurance: the provider's id and its issuer. */
export interface UpstreamAssurance {
  provider: string;
  source: string;
}

/** What a person is asked to approve, in the words the consent page shows. */
export interface ConsentRequest {
  clientId: string;
  clientName: string;
  /** Per resource server: its name and the scopes requested for it. */
  resources: { identifier: string; name: string; scopes: string[] }[];
  /** RFC 9396 authorization_details as requested (validated against their registered types). */
  authorizationDetails: unknown[];
  /** One plain-language sentence per scope and per authorization_details entry. */
  lines: string[];
  /**
   * Present when policy asks the person to approve the order and settlement_instruction entries
   * with a passkey (what-you-see-is-what-you-sign, src/approvals): exactly those entries, and one
   * sentence for each. The consent page then approves with the passkey ceremony only.
   */
  approval?: { entries: Record<string, unknown>[]; lines: string[] };
}

export type NextStep =
  /**
   * `acr`, when present: the level on the ladder (src/identity/acr.ts) the sign-in must reach —
   * asked by the client (acr_values, an essential acr claim), the person's roles, or a step-up
   * policy. The people side offers the factors that reach it. A requirement (no `voluntary`) is
   * never waived: a sign-in below it is asked again (reason `acr`), and a person who cannot reach
   * it ends the request with `declineAuthentication` (unmet_authentication_requirements).
   * `voluntary`: only the client's `acr_values` ask this level (OIDC Core §3.1.2.1, a voluntary
   * claim): a sign-in below it goes on at what it reached, and the ID token says what that was.
   * `maxAge`, when present: seconds — a requirement's max age (a step-up policy's
   * `@step_up_max_age`) the sign-in must meet, never waived; the people side passes it on to an
   * upstream identity provider with the request's own max_age (the stricter).
   */
  | { step: 'login'; reason: 'no_session' | 'prompt_login' | 'max_age' | 'acr'; acr?: Acr; voluntary?: true; maxAge?: number }
  | { step: 'consent'; consent: ConsentRequest }
  | { step: 'done' };

/** A pending authorization request waiting for a person. */
export interface Interaction {
  id: string;
  clientId: string;
  /** Seconds since the epoch after which the interaction is gone. */
  expiresAt: number;
  /** Set once the person has logged in during this interaction. */
  authentication?: Authentication;
  /** The request's `login_hint` and `idp_hint` (OIDC Core §3.1.2.1; docs/identity-brokering.md), for the sign-in page. */
  hints?: { login?: string; idp?: string };
  /**
   * How fresh the sign-in must be, as the request asks (OIDC Core §3.1.2.1 `max_age`, `prompt=login`):
   * passed on to an upstream identity provider, so its own session does not stand in for a fresh one.
   */
  freshness?: { maxAge?: number; login?: boolean };
}

/*
 * Who provides what (each side implements its half; neither reaches into the other's tables):
 *
 * Protocol side — src/authorization/interactions.ts:
 *   loadInteraction(ctx, id, browser?, flight?): Promise<Interaction | undefined>  // undefined: unknown or expired
 *   nextStep(ctx, interaction, session: Authentication | undefined): Promise<NextStep>
 *   recordAuthentication(ctx, interaction, auth: Authentication, flight): Promise<boolean>
 *       // after a successful login, added to the flight of the login's transaction (settles once
 *       // it committed); false: the interaction ended. It reads the person's grant with it, so
 *       // nextStep in the same request reads nothing
 *   decideConsent(ctx, interaction, auth: Authentication, approved: boolean): Promise<void>
 *   declineAuthentication(ctx, interaction, session: Authentication | undefined): Promise<boolean>
 *       // the person cannot reach the level the login step asks (NextStep.acr): the request ends
 *       // with unmet_authentication_requirements at resume; false: the interaction ended
 *   approvalAsked(ctx, interaction, auth): Promise<ConsentRequest | undefined>
 *   startApproval(ctx, interaction, auth): Promise<PublicKeyCredentialRequestOptionsJSON | undefined>
 *   approve(ctx, interaction, auth, response: string, requestId?): Promise<{ ok: true } | { ok: false; reason: string }>
 *       // what-you-see-is-what-you-sign (src/approvals): whether policy asks the person to approve
 *       // the order entries with a passkey, the ceremony's options, and the verified answer kept
 *   (`interaction`: the Interaction loadInteraction returned in the same request, so the protocol
 *   side reuses the record it read — or an id, which is read again.)
 *
 * People side — src/identity/sessions.ts and src/identity/users.ts:
 *   readSession(ctx, cookieHeader: string | undefined, flight?): Promise<Authentication | undefined>
 *       // the valid (not idle- or absolutely-expired, not logged out) session of the cookie
 *   endSession(ctx, sessionId): Promise<void>                          // RP-initiated logout
 *   findUser(ctx, userId): Promise<User | undefined>                    // claims for ID token / userinfo
 *   sessionCookieName = 'clearance_session'                            // the base name; the cookie is
 *       // cookieName(sessionCookieName, cookieScope(issuer)): __Host-/__Secure- on https
 */
