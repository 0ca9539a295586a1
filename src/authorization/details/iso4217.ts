import { data, publishDate } from 'currency-codes';

/**
 * ISO 4217 active alphabetic currency codes, from the `currency-codes` package (ISO 4217 List One,
 * the current codes, as published on `iso4217PublishDate`), less the codes that are not money one
 * pays with: the European bond-market units (XBA–XBD), the IMF's special drawing right (XDR), the
 * SUCRE (XSU), the ADB unit of account (XUA), the testing code (XTS) and "no currency" (XXX). The
 * precious metals traded as currencies (XAU, XAG, XPD, XPT) and the funds codes (BOV, CHE, CLF, …)
 * stay. A code the package's list predates is added here, with the amendment that made it, until
 * the package catches up.
 */
const notMoney = new Set(['XBA', 'XBB', 'XBC', 'XBD', 'XDR', 'XSU', 'XUA', 'XTS', 'XXX']);

/** Codes ISO 4217 added after the package's list (`iso4217PublishDate`). */
const amendments = [
  // ISO 4217 Amendment 176: the Caribbean guilder replaces the Netherlands Antillean guilder (ANG) from 2025-03-31.
  'XCG',
];

/** The date of the ISO 4217 list the package carries. */
export const iso4217PublishDate: string = publishDate;

/** ISO 4217 active alphabetic currency codes (and the precious-metal codes traded as currencies). */
export const iso4217: ReadonlySet<string> = new Set([...data.map((c) => c.code).filter((c) => !notMoney.has(c)), ...amendments]);
