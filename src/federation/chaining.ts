import { Validator, join } from '../validation.ts';

/**
 * The outbound half of a trust profile: Clearance issues JWT authorization grants aimed at this
 * partner's authorization server (draft-ietf-oauth-identity-chaining, "Token Exchange": an RFC 8693 token
 * exchange at our token endpoint; the client presents the grant at the partner's token endpoint
 * with RFC 7523 §2.1). docs/federation.md "Identity chaining across domains".
 *
 *   chaining:
 *     clients: [desk-backend]        # who may ask for a grant aimed at this partner
 *     scopes: [order:create]         # the most a grant may carry
 *     subject: pairwise              # how our subject is named to the partner
 *     claims: [act, txn]             # what else the grant may say
 *     lifetime: 60                   # seconds, at most 300
 */
export interface Chaining {
  /** Our clients allowed to obtain a grant aimed at this partner (nobody else may). */
  clients: string[];
  /** Scopes a grant may carry: never more than the subject token's and the client's own, and never more than these. */
  scopes: string[];
  /** How the grant names the subject (src/grants/exchange/authorization-grant.ts `partnerSubject`). */
  subject: ChainingSubject;
  /** The optional claims the grant may carry. */
  claims: ChainingClaim[];
  /** The grant's lifetime in seconds (also cut to the subject token's expiry). */
  lifetime: number;
  /**
   * The grant's `aud`: the partner's issuer (the default, RFC 8414 §2) or, for an authorization
   * server that wants it (RFC 7523 §3 (3)), its token endpoint URL. One value: a grant is for one
   * authorization server (the draft RECOMMENDS a single audience).
   */
  audience?: string;
}

/**
 * - `pairwise`: a pseudonym per partner (HMAC under the master key, src/identity/pairwise.ts), so
 *   two partners cannot correlate a person by `sub`;
 * - `linked`: the person's identifier at the partner, from their link to it as an identity
 *   provider (`user_links`: the partner-agreed identifier); a person with no link gets no grant;
 * - `public`: our own identifier (a person's local id).
 * A client's own subject (a chain that started with client credentials) is its client_id under
 * every mapping: it is no personal data, and the partner registered it.
 */
export const chainingSubjects = ['pairwise', 'linked', 'public'] as const;
export type ChainingSubject = (typeof chainingSubjects)[number];

/**
 * - `act`: the actor chain (RFC 8693 §4.1): our client ids, a person acting named as the subject is;
 * - `txn`: the trade's transaction id (DESIGN §4);
 * - `mandate`: the reference `{id, v}` of the mandate the subject token acts under;
 * - `acr`: how the person authenticated (`acr`, `amr`, `auth_time`, RFC 9068 §2.2.1);
 * - `origin_lei`: the subject's legal entity (LEI), for the partner's data residency.
 */
export const chainingClaims = ['act', 'txn', 'mandate', 'acr', 'origin_lei'] as const;
export type ChainingClaim = (typeof chainingClaims)[number];

/** A minute by default; the draft's example and RFC 7523 §3 (4) ask for short-lived grants. */
export const defaultGrantLifetime = 60;
/** Five minutes at most: the grant is a bearer credential in transit between two domains. */
export const maxGrantLifetime = 300;
export const defaultChainingClaims: ChainingClaim[] = ['act', 'txn'];

const fields = ['clients', 'scopes', 'subject', 'claims', 'lifetime', 'audience'] as const;
const scopePattern = /^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$/;

/**
 * Validates a profile's `chaining` section, applying defaults. `readUrl` reads the audience as the
 * profile reads its issuer (https, or http to loopback). Whether the clients exist is checked by
 * planPartners with the rest of the document.
 */
export function readChaining(v: Validator, path: string, input: unknown, readUrl: (path: string, value: unknown) => string | undefined): Chaining | undefined {
  const object = v.object(path, input);
  if (!object) return undefined;
  v.knownKeys(path, object, fields);
  const before = v.problems.length;
  const at = (field: string) => join(path, field);
  const clients = v.array(at('clients'), object.clients, (p, c) => v.string(p, c, { maxLength: 128 }), { nonEmpty: true, unique: true });
  const scopes = v.array(at('scopes'), object.scopes, (p, s) => v.string(p, s, { pattern: scopePattern, patternMessage: 'must be a business verb scope such as order:create' }), {
    nonEmpty: true,
    unique: true,
  });
  const subject = object.subject === undefined ? 'pairwise' : (v.string(at('subject'), object.subject, { oneOf: chainingSubjects }) as ChainingSubject | undefined);
  const claims =
    object.claims === undefined
      ? [...defaultChainingClaims]
      : (v.array(at('claims'), object.claims, (p, c) => v.string(p, c, { oneOf: chainingClaims }), { unique: true }) as ChainingClaim[] | undefined);
  const lifetime = object.lifetime === undefined ? defaultGrantLifetime : v.integer(at('lifetime'), object.lifetime, { min: 1, max: maxGrantLifetime });
  const audience = object.audience === undefined ? undefined : readUrl(at('audience'), object.audience);
  if (v.problems.length !== before || !clients || !scopes || !subject || !claims || lifetime === undefined) return undefined;
  return { clients, scopes, subject, claims, lifetime, ...(audience !== undefined ? { audience } : {}) };
}

/** The `aud` of a grant aimed at a partner: its chaining audience, else its issuer. */
export function grantAudience(partner: { issuer: string; chaining?: Chaining }): string {
  return partner.chaining?.audience ?? partner.issuer;
}
