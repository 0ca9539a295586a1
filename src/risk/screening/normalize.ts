/**
 * How names are compared in sanctions/PEP screening (AMENDMENTS "Risk, limits, KYC/AML";
 * docs/risk.md "Sanctions and PEP screening"): Unicode NFKC, case folding, removal of diacritics
 * and punctuation, and token reordering. A name becomes the set of its tokens:
 *
 * 0. invisible characters removed: format characters (`\p{Cf}`: zero-width space U+200B, soft
 *    hyphen U+00AD, word joiner U+2060, byte order mark U+FEFF, bidi controls, ...) and every other
 *    default-ignorable code point. They draw nothing, so they must not split a word into two tokens
 *    (`Iv\u200Ban` is `Ivan`, not `iv` + `an`): a listed name would otherwise hide behind them;
 * 1. NFKC (compatibility forms: full-width letters, ligatures such as `ﬁ`, superscripts);
 * 2. case folding: lowercase, plus the folds lowercase leaves out (`ß` → `ss`, final `ς` → `σ`);
 * 3. diacritics removed: canonical decomposition (NFD) and every combining mark dropped
 *    (`Müller` → `muller`, `Łukasz` → `lukasz` by the letters that do not decompose: `ł`, `ø`,
 *    `đ`, `ð`, `þ`, `æ`, `œ`, `ı`);
 * 4. punctuation: apostrophes and full stops join (`O'Brien` → `obrien`, `J.P.` → `jp`), every
 *    other character that is not a letter or a digit separates (`Jean-Luc` → `jean luc`);
 * 5. look-alike letters: a small set of Cyrillic and Greek letters that are drawn like a Latin
 *    letter (in lowercase or in capitals) become that Latin letter (`confusables` below), so that
 *    `Ex\u0430mple` (a Cyrillic `а`) is `example`. Both sides of a comparison are folded alike, so
 *    two Cyrillic spellings of one name still compare equal; only spellings that look the same
 *    across scripts are brought together, which is what a screening should catch;
 * 6. tokens reordered: the set of tokens is compared, not their order (`Smith, John` = `John Smith`).
 * For legal entities, legal-form tokens (`ltd`, `limited`, `plc`, `inc`, `llc`, `gmbh`, `ag`,
 * `sa`, ...) are dropped too: `Example Trading Ltd` = `EXAMPLE TRADING LIMITED`.
 */

const folds: [RegExp, string][] = [
  [/ß/g, 'ss'],
  [/ς/g, 'σ'],
  [/æ/g, 'ae'],
  [/œ/g, 'oe'],
  [/ø/g, 'o'],
  [/[đð]/g, 'd'],
  [/ł/g, 'l'],
  [/þ/g, 'th'],
  [/ı/g, 'i'],
];

/**
 * Cyrillic and Greek letters (after lowercasing and removing diacritics) whose lowercase or capital
 * is drawn like a Latin letter (after Unicode UTS #39 confusables.txt), and that Latin letter. Left
 * out are letters whose two cases look like two different Latin letters (Greek `ν`/`Ν`: v or N,
 * `υ`/`Υ`, `η`/`Η`, `μ`/`Μ`), which no single fold can serve.
 */
export const confusables: ReadonlyMap<string, string> = new Map([
  // Cyrillic
  ['а', 'a'], ['в', 'b'], ['с', 'c'], ['ԁ', 'd'], ['е', 'e'], ['һ', 'h'], ['н', 'h'], ['і', 'i'], ['ј', 'j'], ['к', 'k'],
  ['ӏ', 'l'], ['м', 'm'], ['о', 'o'], ['р', 'p'], ['ԛ', 'q'], ['ѕ', 's'], ['т', 't'], ['ԝ', 'w'], ['х', 'x'], ['у', 'y'],
  // Greek
  ['α', 'a'], ['β', 'b'], ['ε', 'e'], ['ι', 'i'], ['κ', 'k'], ['ο', 'o'], ['ρ', 'p'], ['τ', 't'], ['χ', 'x'], ['ζ', 'z'],
]);
const confusable = new RegExp(`[${[...confusables.keys()].join('')}]`, 'gu');

/** Characters that draw nothing: format characters and the rest of the default-ignorable set. */
export const invisible = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/** Legal forms that say nothing about which entity it is. */
export const legalForms: ReadonlySet<string> = new Set([
  'ltd', 'limited', 'plc', 'llc', 'llp', 'lp', 'inc', 'incorporated', 'corp', 'corporation', 'co', 'company',
  'gmbh', 'ag', 'kg', 'se', 'sa', 'sas', 'sarl', 'srl', 'spa', 'nv', 'bv', 'ab', 'as', 'asa', 'oy', 'oyj',
  'pte', 'pty', 'kk', 'ooo', 'oao', 'pao', 'zao', 'jsc', 'pjsc', 'ojsc', 'cjsc', 'the',
]);

/** The comparable form of a name: its distinct tokens, sorted. Empty when nothing is left. */
export function nameTokens(name: string, kind: 'person' | 'entity'): string[] {
  // Removed before NFKC, which would otherwise keep them and let them separate tokens below.
  let s = name.replace(new RegExp(invisible.source, 'gu'), '').normalize('NFKC').toLowerCase();
  for (const [pattern, replacement] of folds) s = s.replace(pattern, replacement);
  s = s.normalize('NFD').replace(/\p{M}+/gu, '');
  // After the marks are gone, so that `ё` (`е` + diaeresis) and `ї` fold as `е` and `і` do.
  s = s.replace(confusable, (c) => confusables.get(c)!);
  s = s.replace(/['’‘`´ʼ.]/g, '');
  s = s.replace(/[^\p{L}\p{N}]+/gu, ' ');
  let tokens = s.split(' ').filter((t) => t.length > 0);
  if (kind === 'entity') {
    const meaningful = tokens.filter((t) => !legalForms.has(t));
    // A name made only of legal forms keeps them (better than matching every such name).
    if (meaningful.length > 0) tokens = meaningful;
  }
  return [...new Set(tokens)].sort();
}

/** A date of birth as lists give it: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. */
export const dateOfBirthPattern = /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$/;

/**
 * Whether two dates of birth can be the same person's: equal at the precision of the less precise
 * (`1970` agrees with `1970-03-12`; `1970-03` does not agree with `1971-03-12`). A missing date
 * never conflicts.
 */
export function datesAgree(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return true;
  const n = Math.min(a.length, b.length);
  return a.slice(0, n) === b.slice(0, n);
}
