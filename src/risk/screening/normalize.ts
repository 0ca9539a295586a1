/**
 * How names are compared in sanctions/PEP screening (AMENDMENTS "Risk, limits, KYC/AML";
 * docs/risk.md "Sanctions and PEP screening"): Unicode NFKC, case folding, removal of diacritics
 * and punctuation, and token reordering. A name becomes the set of its tokens:
 *
 * 1. NFKC (compatibility forms: full-width letters, ligatures such as `ﬁ`, superscripts);
 * 2. case folding: lowercase, plus the folds lowercase leaves out (`ß` → `ss`, final `ς` → `σ`);
 * 3. diacritics removed: canonical decomposition (NFD) and every combining mark dropped
 *    (`Müller` → `muller`, `Łukasz` → `lukasz` by the letters that do not decompose: `ł`, `ø`,
 *    `đ`, `ð`, `þ`, `æ`, `œ`, `ı`);
 * 4. punctuation: apostrophes and full stops join (`O'Brien` → `obrien`, `J.P.` → `jp`), every
 *    other character that is not a letter or a digit separates (`Jean-Luc` → `jean luc`);
 * 5. tokens reordered: the set of tokens is compared, not their order (`Smith, John` = `John Smith`).
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

/** Legal forms that say nothing about which entity it is. */
export const legalForms: ReadonlySet<string> = new Set([
  'ltd', 'limited', 'plc', 'llc', 'llp', 'lp', 'inc', 'incorporated', 'corp', 'corporation', 'co', 'company',
  'gmbh', 'ag', 'kg', 'se', 'sa', 'sas', 'sarl', 'srl', 'spa', 'nv', 'bv', 'ab', 'as', 'asa', 'oy', 'oyj',
  'pte', 'pty', 'kk', 'ooo', 'oao', 'pao', 'zao', 'jsc', 'pjsc', 'ojsc', 'cjsc', 'the',
]);

/** The comparable form of a name: its distinct tokens, sorted. Empty when nothing is left. */
export function nameTokens(name: string, kind: 'person' | 'entity'): string[] {
  let s = name.normalize('NFKC').toLowerCase();
  for (const [pattern, replacement] of folds) s = s.replace(pattern, replacement);
  s = s.normalize('NFD').replace(/\p{M}+/gu, '');
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
