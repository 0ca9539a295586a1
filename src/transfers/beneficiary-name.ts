import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import type { Context } from '../context.ts';
import type { Issuance } from '../policy/issuance.ts';
import { refuseSanctionedCounterparties } from '../risk/kyc/enforce.ts';
import { nameTokens } from '../risk/screening/normalize.ts';
import { destinationStatus } from './address-book.ts';
import { destinationKey, isTransfer, type TransferDestination, type TransferDetail } from './detail.ts';

/** An entry to an IBAN, as `namesNoBeneficiary` finds it. */
type NamelessIban = AuthorizationDetail & TransferDetail & { destination: Extract<TransferDestination, { kind: 'iban' }> };

/**
 * An IBAN transfer's beneficiary against the address book's (docs/transfers.md "A beneficiary's
 * name"): the book matches a transfer to a destination by its IBAN (`destinationKey`); when the
 * book's version names the beneficiary, the request's name is held to it, and a request naming no
 * one is screened by it. Entries in a token's form (`name_hmac`: a refresh or an exchange) were
 * held to it when the token was first issued.
 *
 * The rule that a nameless entry is screened by the book's name lives here, once (`screenedAs`),
 * for the token endpoint (./enforce.ts check 2b, `screenBookName`, on the book's version it
 * checked anyway) and for the check before anyone is asked to approve (src/authorization/kyc.ts at
 * /authorize, src/ciba/open.ts at /bc-authorize: `withBookNames`).
 */

/** An IBAN transfer that names no beneficiary: neither the request's `name` nor, in a token's form, `name_hmac`. */
function namesNoBeneficiary(detail: AuthorizationDetail): detail is NamelessIban {
  return isTransfer(detail) && detail.destination.kind === 'iban' && detail.destination.name === undefined && detail.destination.name_hmac === undefined;
}

/**
 * The entry as screening sees it when its address book's version names `bookName`: an IBAN
 * transfer that names no beneficiary carries the book's name, as if the request had named it —
 * for screening only, never for the token, its events or the consent page. Undefined when the
 * rule does not apply (another entry, a named one, or a book without a name): the entry is
 * screened as it is.
 */
function screenedAs(detail: AuthorizationDetail, bookName: string | undefined): AuthorizationDetail | undefined {
  if (bookName === undefined || !namesNoBeneficiary(detail)) return undefined;
  return { ...detail, destination: { ...detail.destination, name: bookName } };
}

/**
 * Whether a request's beneficiary name is the book's: compared as screening compares names
 * (src/risk/screening/normalize.ts `nameTokens`: invisible characters, NFKC, case, diacritics,
 * punctuation and look-alike letters folded; word order ignored, a word repeated counted once) —
 * every word kept, a legal form included (`Example Ltd` is not `Example GmbH`: possibly another firm, refused, fail closed). A name
 * with no word left matches nothing.
 */
export function sameBeneficiary(requested: string, booked: string): boolean {
  const a = nameTokens(requested, 'person');
  const b = nameTokens(booked, 'person');
  return a.length > 0 && a.length === b.length && a.every((token, i) => token === b[i]);
}

/**
 * Screens entry `index`, when it names no beneficiary, by the book's name `name` — that entry only
 * (the request's own names were screened before, src/risk/kyc/enforce.ts `refuseFrozenOrSanctioned`):
 * as if the request had named the book's (the issuance's own screening: a hit is refused as
 * `counterparty-screening` with a `screening.matched` alert, and the error says nothing of why).
 * The entry's name stays out of the token and its events: this only screens.
 */
export async function screenBookName(ctx: Context, issuance: Issuance, index: number, name: string): Promise<void> {
  const entry = issuance.authorizationDetails[index];
  const screened = entry === undefined ? undefined : screenedAs(entry, name);
  if (screened === undefined) return;
  await refuseSanctionedCounterparties(ctx, issuance, [[index, screened]]);
}

/**
 * The issuance with its entries as the token endpoint screens them (`screenedAs`): each IBAN
 * transfer naming no beneficiary carries its address book's name, for the check before anyone is
 * asked (src/authorization/kyc.ts) to screen — so a person is not asked to consent to, nor a
 * CIBA request opened for, a transfer to a beneficiary the token endpoint would refuse. The book
 * is read only for such entries (none: no read at all): the version a transfer would be checked
 * against (`destinationStatus`), whatever its state — a destination not yet usable is the token
 * endpoint's to refuse, its name is screened now. An unknown source account has no book (the
 * token endpoint refuses it). For screening only: never for the token, its events or consent.
 */
export async function withBookNames(ctx: Context, issuance: Issuance): Promise<Issuance> {
  const nameless = issuance.authorizationDetails.flatMap((detail, index) => (namesNoBeneficiary(detail) ? [{ index, detail }] : []));
  if (nameless.length === 0) return issuance;
  const snapshot = await ctx.entities.snapshot();
  const details = [...issuance.authorizationDetails];
  for (const { index, detail } of nameless) {
    const owner = snapshot.accounts.get(detail.source_account);
    if (!owner) continue;
    const book = await destinationStatus(ctx, { lei: owner.lei, account: detail.source_account, key: destinationKey(detail.destination) });
    const screened = screenedAs(detail, book.name);
    if (screened !== undefined) details[index] = screened;
  }
  return { ...issuance, authorizationDetails: details };
}
