import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { Issuance } from '../../policy/issuance.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { matchAny, type ScreeningHit, type ScreeningSubject } from '../screening/matcher.ts';
import type { AuthorizationDetail } from '../../authorization/authorization-details.ts';
import { isTransfer } from '../../transfers/detail.ts';
import type { KycPrincipal } from './record.ts';

/**
 * KYC/AML at token issuance (docs/risk.md), before any policy is asked, for every grant and every
 * audience (Clearance's own included): code, not policy, so no policy set can let it through.
 * Both rules are asked before anyone is asked to approve too: when /bc-authorize opens a request
 * (src/ciba/open.ts) and before /authorize shows a person consent (src/authorization/kyc.ts).
 *
 * 1. A frozen principal gets no token at all (fail closed): the person the token is about, or the
 *    legal entity that owns the client it is about or is issued to or any client of its act chain,
 *    or a legal entity the grant names for the subject (a partner's), whose KYC record is `frozen`
 *    → invalid_grant. A frozen
 *    person may still sign in (to their account pages); every grant refuses them a token.
 * 2. Every counterparty an authorization_details entry names (`counterpartiesOf`: a settlement's
 *    `counterparty_lei` / `counterparty_name`; a transfer's IBAN beneficiary name and its
 *    travel-rule beneficiaries) is screened against the list (a legal entity by name and LEI, a
 *    person by name) and checked against Clearance's own KYC records (by LEI): a hit that
 *    compliance has not cleared for that LEI, or a frozen counterparty →
 *    invalid_authorization_details (RFC 9396 §5), with a `screening.matched` alert. This runs on
 *    the request's form of the entries, before a token's form (src/transfers/detail.ts forToken)
 *    turns a beneficiary's name into `name_hmac`.
 * Each refusal is audited (`policy.denied`, reasons `kyc-frozen` / `counterparty-screening` /
 * `counterparty-kyc-frozen`, the facts in the details). The error tells the client nothing about
 * why (no tipping-off of a suspicion, as AML rules require); the audit event and alert do.
 *
 * Cost on the hot path: the records come from the per-node KYC cache (./store.ts) and the client
 * from the client cache, the list from memory — no round trip for a known principal.
 */
export async function refuseFrozenOrSanctioned(ctx: Context, issuance: Issuance): Promise<void> {
  await refuseFrozen(ctx, issuance);
  await refuseSanctionedCounterparties(ctx, issuance);
}

/** Rule 1. */
async function refuseFrozen(ctx: Context, issuance: Issuance): Promise<void> {
  const principal = await frozenPrincipal(ctx, issuance);
  if (!principal) return;
  await ctx.audit.record(refusal(issuance, 'kyc-frozen', { frozen: `${principal.type}::${JSON.stringify(principal.id)}` }));
  throw new OAuthError('invalid_grant', 'no token can be issued for this subject at present', { detail: `${principal.type} ${principal.id} is frozen` });
}

/** Rule 1's finding, recording nothing: the first frozen principal of the issuance. */
async function frozenPrincipal(ctx: Context, issuance: Issuance): Promise<KycPrincipal | undefined> {
  const candidates: KycPrincipal[] = [];
  if (issuance.subject.type === 'User') candidates.push({ type: 'User', id: issuance.subject.id });
  const owners = new Set(issuance.subjectLeis ?? []);
  // The firms of the clients involved: the caller, the subject when a client, and every actor of
  // an exchange's chain (a frozen firm's service must not act for anyone either).
  const clientIds = new Set([issuance.clientId, ...(issuance.subject.type === 'Client' ? [issuance.subject.id] : []), ...(issuance.delegation?.actors ?? [])]);
  for (const clientId of clientIds) {
    const owner = (await ctx.clients.get(clientId))?.metadata.owner_lei;
    if (owner) owners.add(owner);
  }
  for (const lei of owners) candidates.push({ type: 'LegalEntity', id: lei });
  for (const principal of candidates) {
    if ((await ctx.risk.kyc.get(principal))?.status === 'frozen') return principal;
  }
  return undefined;
}

/**
 * Rule 2 on its own (an address-book name screened as a request's, src/transfers/beneficiary-name.ts);
 * with rule 1 (`refuseFrozenOrSanctioned`) also asked when a backchannel authentication request is
 * opened (src/ciba/open.ts) and before a person is asked at /authorize (src/authorization/kyc.ts),
 * so that no one is asked to approve what the token endpoint would refuse. `entries`: the entries
 * to screen, each with its index in the request (default: all of the issuance's) — one entry
 * screened by its address book's name screens that name only.
 */
export async function refuseSanctionedCounterparties(ctx: Context, issuance: Issuance, entries: Iterable<readonly [number, AuthorizationDetail]> = issuance.authorizationDetails.entries()): Promise<void> {
  const found = await refusedCounterparty(ctx, entries);
  if (!found) return;
  if (found.kind === 'frozen') {
    await ctx.audit.record(refusal(issuance, 'counterparty-kyc-frozen', { ...found.where, counterparty_lei: found.lei }));
    throw counterpartyRefused(found.index);
  }
  const { hit, lei, digest } = found;
  // Never the name (personal data, in an immutable log): where it was, the LEI, what matched.
  const facts = { ...found.where, ...(lei !== undefined ? { counterparty_lei: lei } : {}), entry_id: hit.entry.id, list: hit.entry.list, ...(hit.entry.programme !== undefined ? { programme: hit.entry.programme } : {}), matched_on: hit.matchedOn, list_digest: digest };
  await ctx.audit.recordWith(async (trx) => {
    await alertInsert(trx, ctx.clock, { type: 'screening.matched', subject: issuance.subject.id, data: { ...facts, at: 'issuance', client: issuance.clientId, refused: true } }).execute();
    return { value: undefined, events: [refusal(issuance, 'counterparty-screening', facts)] };
  });
  throw counterpartyRefused(found.index);
}

/**
 * Whether `refuseFrozenOrSanctioned` would refuse the issuance, recording nothing: for a caller
 * that only decides what to show (src/authorization/interactions.ts `nextStep`) and leaves the
 * audited refusal to the step that answers the client.
 */
export async function wouldRefuseFrozenOrSanctioned(ctx: Context, issuance: Issuance): Promise<boolean> {
  return (await frozenPrincipal(ctx, issuance)) !== undefined || (await refusedCounterparty(ctx, issuance.authorizationDetails.entries())) !== undefined;
}

/** Where in the entries a refused counterparty is (`authorization_details`, `counterparty`). */
type Where = { authorization_details: number; counterparty?: string };

/** Rule 2's finding, recording nothing: the first counterparty frozen in Clearance's records, or listed and not cleared. */
async function refusedCounterparty(
  ctx: Context,
  entries: Iterable<readonly [number, AuthorizationDetail]>,
): Promise<({ kind: 'frozen'; lei: string } | { kind: 'listed'; lei?: string; hit: ScreeningHit; digest: string }) & { index: number; where: Where } | undefined> {
  const index = ctx.risk.screening.index;
  for (const [i, detail] of entries) {
    for (const counterparty of counterpartiesOf(detail)) {
      const { lei, subjects } = counterparty;
      const where: Where = { authorization_details: i, ...(counterparty.path !== undefined ? { counterparty: counterparty.path } : {}) };
      if (lei !== undefined && (await ctx.risk.kyc.get({ type: 'LegalEntity', id: lei }))?.status === 'frozen') return { kind: 'frozen', lei, index: i, where };
      const hits = index ? matchAny(index, subjects) : [];
      for (const hit of hits) {
        if (lei !== undefined && (await clearedFor(ctx, lei, hit))) continue;
        return { kind: 'listed', ...(lei !== undefined ? { lei } : {}), hit, digest: index!.digest, index: i, where };
      }
    }
  }
  return undefined;
}

/**
 * A counterparty an authorization_details entry names, as it is screened: the subjects to match
 * (its names, as a legal entity or a person, with its LEI) and its LEI (for the KYC record and a
 * compliance clearance), and where in the entry it is (`path`, for a transfer).
 */
interface Counterparty {
  path?: string;
  lei?: string;
  subjects: ScreeningSubject[];
}

/**
 * The counterparties of an entry (docs/risk.md "at token issuance"):
 * - a `settlement_instruction`'s `counterparty_lei` / `counterparty_name`, as a legal entity;
 * - a `transfer`'s IBAN beneficiary `destination.name` — as a legal entity and as a person, since
 *   an account may be held by either (no date of birth: a name match is a hit);
 * - each beneficiary of a transfer's travel-rule data (IVMS 101): a natural person by each of
 *   their names as a person; a legal person by each of its names and its LEI (`LEIX`) as a legal
 *   entity.
 * An entry in the token's form (a refresh or an exchange of a token) carries a digest instead of a
 * name and travel-rule data: those were screened when the token was first issued.
 */
function counterpartiesOf(detail: AuthorizationDetail): Counterparty[] {
  if (isTransfer(detail)) {
    const found: Counterparty[] = [];
    const destination = detail.destination;
    if (destination.kind === 'iban' && typeof destination.name === 'string') {
      found.push({ path: 'destination', subjects: [{ type: 'entity', name: destination.name }, { type: 'person', name: destination.name }] });
    }
    for (const [j, person] of (detail.travel_rule?.beneficiary?.beneficiaryPersons ?? []).entries()) {
      const path = `travel_rule.beneficiary.beneficiaryPersons[${j}]`;
      if (person.naturalPerson) {
        const names = person.naturalPerson.name.nameIdentifier.map((n) => (n.secondaryIdentifier ? `${n.secondaryIdentifier} ${n.primaryIdentifier}` : n.primaryIdentifier));
        found.push({ path, subjects: names.map((name) => ({ type: 'person', name })) });
      } else if (person.legalPerson) {
        const id = person.legalPerson.nationalIdentification;
        const lei = id?.nationalIdentifierType === 'LEIX' ? id.nationalIdentifier : undefined;
        const names = person.legalPerson.name.nameIdentifier.map((n) => n.legalPersonName);
        const subjects: ScreeningSubject[] = names.map((name) => ({ type: 'entity', name, ...(lei !== undefined ? { lei } : {}) }));
        found.push({ path, ...(lei !== undefined ? { lei } : {}), subjects: subjects.length > 0 ? subjects : lei !== undefined ? [{ type: 'entity', lei }] : [] });
      }
    }
    return found;
  }
  const lei = typeof detail.counterparty_lei === 'string' ? detail.counterparty_lei : undefined;
  const name = typeof detail.counterparty_name === 'string' ? detail.counterparty_name : undefined;
  if (lei === undefined && name === undefined) return [];
  return [{ ...(lei !== undefined ? { lei } : {}), subjects: [{ type: 'entity', ...(name !== undefined ? { name } : {}), ...(lei !== undefined ? { lei } : {}) }] }];
}

/** Compliance cleared this entry, as it is now, for the legal entity with this LEI. */
async function clearedFor(ctx: Context, lei: string, hit: ScreeningHit): Promise<boolean> {
  const row = await ctx.storage.db
    .selectFrom('screening_matches')
    .select('id')
    .where('principal_type', '=', 'LegalEntity')
    .where('principal_id', '=', lei)
    .where('entry_id', '=', hit.entry.id)
    .where('entry_digest', '=', hit.entry.digest)
    .where('status', '=', 'cleared')
    .executeTakeFirst();
  return row !== undefined;
}

function counterpartyRefused(index: number): OAuthError {
  // RFC 9396 §5: an authorization_details entry the AS refuses.
  return new OAuthError('invalid_authorization_details', `authorization_details[${index}] names a counterparty that cannot be accepted at present`);
}

function refusal(issuance: Issuance, reason: string, details: Record<string, unknown>): AuditEvent {
  return {
    type: 'policy.denied',
    requestId: issuance.requestId,
    ...(issuance.txn ? { txn: issuance.txn } : {}),
    actor: issuance.clientId,
    client: issuance.clientId,
    subject: issuance.subject.id,
    audience: issuance.audience,
    scopes: [...issuance.scopes],
    decision: { allow: false, reasons: [reason] },
    details: { via: issuance.grantType, ...details },
  };
}
