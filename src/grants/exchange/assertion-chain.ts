import type { VerifiedPartnerToken } from '../../federation/verify.ts';
import { isTxn } from '../../transactions/txn.ts';
import { isSafeClaimText, partnerActorChain } from './presented-token.ts';

/**
 * What a partner's JWT authorization grant (RFC 7523 §2.1) carries of the chain behind it, for the
 * JWT bearer grant to keep (draft-ietf-oauth-identity-chaining, "JWT Authorization Grant"; docs/federation.md "Identity
 * chaining across domains"): who acted in the partner's domain, the trade, the partner's mandate
 * reference, and the scopes the partner granted — which bound ours (never wider).
 */
export interface AssertionChain {
  /**
   * The partner's `act` (RFC 8693 §4.1), every actor named with the partner's issuer: an actor
   * without `iss` is the partner's own, so its client ids cannot pass for ours; an actor with
   * another `iss` refuses the assertion (presented-token.ts partnerActorChain).
   */
  act?: Record<string, unknown>;
  /**
   * The partner's `txn`, when it is a well-formed transaction id: the trade keeps one id across
   * domains — taken only if the partner shares it or it is new here (src/transactions/partner-txn.ts).
   */
  txn?: string;
  /** The partner's mandate reference `{id, v}`: recorded, never read as one of our mandates. */
  mandate?: { id: string; v: number };
  /** The assertion's `scope` claim: the most our token may carry. Absent: the profile's bound alone. */
  scopes?: string[];
}

/** Reads the chain from a verified assertion; a member that is present but malformed refuses it (the reason). */
export function assertionChain(token: VerifiedPartnerToken): AssertionChain | { error: string } {
  const claims = token.claims;
  const chain = partnerActorChain(claims.act, token.partner.issuer);
  if ('error' in chain) return chain;
  const scope = claims.scope;
  if (scope !== undefined && typeof scope !== 'string') return { error: 'its scope claim is not a string' };
  const mandate = claims.mandate;
  const mandateRef = isMandateRef(mandate) ? { id: mandate.id, v: mandate.v } : undefined;
  if (mandate !== undefined && !mandateRef) return { error: 'its mandate claim is not a {id, v} reference' };
  return {
    ...(chain.act ? { act: chain.act } : {}),
    ...(isTxn(claims.txn) ? { txn: claims.txn } : {}),
    ...(mandateRef ? { mandate: mandateRef } : {}),
    ...(scope !== undefined ? { scopes: scope.split(' ').filter(Boolean) } : {}),
  };
}

function isMandateRef(value: unknown): value is { id: string; v: number } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const { id, v } = value as Record<string, unknown>;
  return isSafeClaimText(id) && typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Names of a chain's actors, newest first, as `sub (iss)`: for the audit event. */
export function chainNames(act: Record<string, unknown> | undefined): string[] {
  const names: string[] = [];
  for (let node = act; node && names.length < 32; node = node.act as Record<string, unknown> | undefined) {
    names.push(typeof node.iss === 'string' ? `${String(node.sub)} (${node.iss})` : String(node.sub));
  }
  return names;
}
