import { assuranceOf } from './upstream/assurance.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Issuance } from '../policy/issuance.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import type { Partner } from './definition.ts';

/**
 * Who a partner's subject is here, for the tokens issued for it (token exchange, JWT bearer) and
 * every later hop of their chain (docs/identity-brokering.md "Partner subjects"):
 * - a subject linked to a local person — the partner's issuer is also an identity provider of
 *   Clearance's and the person signed in through it (`user_links`, by issuer and subject) — is
 *   evaluated as that person: their legal entity through their desks, their KYC, their roles;
 * - else the profile's `claim_mapping` `lei` names its legal entity, for data residency — only one
 *   of the profile's `legal_entities` (another is refused; without the list none is believed);
 * - the partner's `acr`, where its profile declares what it is trusted for, is carried: the level
 *   mapped and capped, its `amr` where believed, and the partner as the source of assurance.
 * The tokens carry this as `origin_person`, `origin_lei` and `assurance_source` (signed by us), so
 * a later hop decides as the first did instead of knowing no firm.
 */
export interface PartnerSubjectBasis {
  /** Whom policy decides about: the linked person, else the client that vouches for the subject. */
  principal: Issuance['subject'];
  /** The subject's legal entities for data residency; undefined: the person's, from their desks. */
  subjectLeis?: string[];
  /** What the token carries for later hops. */
  claims: Pick<AccessTokenClaims, 'acr' | 'amr' | 'auth_time' | 'assurance_source' | 'origin_lei' | 'origin_person'>;
}

/** What a token of ours names of a partner subject it was issued for (its `origin_*` claims). */
export interface PartnerOrigin {
  person?: string;
  lei?: string;
}

/**
 * The basis of the first hop: the partner token's subject, mapped attributes and authentication.
 * Throws `invalid_grant` (RFC 6749 §5.2; the exchange files it under its subject) when the subject is
 * linked to a person who is locked or disabled.
 */
export async function partnerSubjectBasis(
  ctx: Pick<Context, 'storage'>,
  token: { partner: Partner; subject: string; attributes: Record<string, string>; claims: Record<string, unknown> },
  vouching: string,
): Promise<PartnerSubjectBasis> {
  const linked = await ctx.storage.db
    .selectFrom('user_links')
    .innerJoin('users', 'users.id', 'user_links.user_id')
    // A leaver whose credentials are on hold (src/lifecycle/credential-hold.ts), in the same read.
    .leftJoin('credential_holds', 'credential_holds.user_id', 'users.id')
    .select(['users.id', 'users.status', 'credential_holds.user_id as held'])
    .where('user_links.issuer', '=', token.partner.issuer)
    .where('user_links.subject', '=', token.subject)
    .executeTakeFirst();
  // The person it is here is locked or disabled, or a leaver not back through an approved recovery
  // (their credentials on hold): their partner identity gets nothing either.
  if (linked && (linked.status !== 'active' || linked.held !== null)) throw new OAuthError('invalid_grant', 'the person this partner subject is linked to is not active', { detail: 'person_not_active' });
  // A mapped LEI is the subject's firm only when the profile says the partner speaks for it.
  const lei = token.attributes.lei;
  if (lei !== undefined && token.partner.legal_entities !== undefined && !token.partner.legal_entities.includes(lei)) {
    throw new OAuthError('invalid_grant', `the partner does not speak for legal entity ${lei.slice(0, 20)}`, { detail: 'legal_entity_not_allowed' });
  }
  const believedLei = lei !== undefined && token.partner.legal_entities?.includes(lei) ? lei : undefined;
  const origin: PartnerOrigin = { ...(linked ? { person: linked.id } : {}), ...(believedLei !== undefined ? { lei: believedLei } : {}) };
  const claims = token.claims;
  const asserted = token.partner.acr
    ? assuranceOf({ id: token.partner.id, issuer: token.partner.issuer, acr: token.partner.acr }, {
        ...(typeof claims.acr === 'string' ? { acr: claims.acr } : {}),
        amr: Array.isArray(claims.amr) ? claims.amr.filter((m): m is string => typeof m === 'string') : [],
      })
    : undefined;
  // When the person authenticated, as the partner says: never its token's iat (a token minted long
  // after a sign-in would look fresh); without auth_time, no level is carried.
  const authTime = typeof claims.auth_time === 'number' && Number.isInteger(claims.auth_time) ? claims.auth_time : undefined;
  return {
    ...basisOf(origin, vouching),
    claims: {
      ...originClaims(origin),
      ...(asserted && authTime !== undefined ? { acr: asserted.acr, amr: asserted.amr, auth_time: authTime, assurance_source: asserted.source } : {}),
    },
  };
}

/** The principal and legal entities of a partner subject, from what the first hop found (or a later hop's token carries). */
export function basisOf(origin: PartnerOrigin, vouching: string): Pick<PartnerSubjectBasis, 'principal' | 'subjectLeis'> {
  if (origin.person !== undefined) return { principal: { type: 'User', id: origin.person } };
  return { principal: { type: 'Client', id: vouching }, subjectLeis: origin.lei !== undefined ? [origin.lei] : [] };
}

export function originClaims(origin: PartnerOrigin): Pick<AccessTokenClaims, 'origin_lei' | 'origin_person'> {
  return { ...(origin.person !== undefined ? { origin_person: origin.person } : {}), ...(origin.lei !== undefined ? { origin_lei: origin.lei } : {}) };
}
