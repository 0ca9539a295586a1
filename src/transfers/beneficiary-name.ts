import type { Context } from '../context.ts';
import type { Issuance } from '../policy/issuance.ts';
import { refuseSanctionedCounterparties } from '../risk/kyc/enforce.ts';
import { nameTokens } from '../risk/screening/normalize.ts';
import { isTransfer } from './detail.ts';

/**
 * An IBAN transfer's beneficiary against the address book's (docs/transfers.md "A beneficiary's
 * name"): the book matches a transfer to a destination by its IBAN (`destinationKey`); when the
 * book's version names the beneficiary, the request's name is held to it, and a request naming no
 * one is screened by it. Entries in a token's form (`name_hmac`: a refresh or an exchange) were
 * held to it when the token was first issued.
 */

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
 * Screens the book's name for entry `index`, which names no beneficiary: as if the request had
 * named the book's (src/risk/kyc/enforce.ts, the issuance's own screening: a hit is refused as
 * `counterparty-screening` with a `screening.matched` alert, and the error says nothing of why).
 * The entry's name stays out of the token and its events: this only screens.
 */
export async function screenBookName(ctx: Context, issuance: Issuance, index: number, name: string): Promise<void> {
  const details = issuance.authorizationDetails.map((detail) => detail);
  const entry = details[index];
  if (entry === undefined || !isTransfer(entry) || entry.destination.kind !== 'iban') return;
  details[index] = { ...entry, destination: { ...entry.destination, name } };
  await refuseSanctionedCounterparties(ctx, { ...issuance, authorizationDetails: details });
}
