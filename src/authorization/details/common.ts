import { isValidLei } from '../../entities/lei.ts';
import { iso4217 } from './iso4217.ts';

/**
 * The building blocks every registered authorization_details type (RFC 9396) is made of: the
 * `DetailType` contract, the JSON Schema pieces the types share (amounts, money, accounts,
 * instruments, names) and the named formats they use. Kept apart from the registry
 * (authorization-details.ts) so that a type defined elsewhere (src/transfers/detail.ts) builds on
 * them without an import cycle.
 */

/** A validated authorization_details entry (RFC 9396 §2): its `type` and the type's fields. */
export type AuthorizationDetail = { type: string } & Record<string, unknown>;

/** A JSON Schema (draft 2020-12) as a plain JSON object: what Ajv compiles and discovery serves. */
export type JsonSchema = { [keyword: string]: unknown };

/**
 * What the entity model declares and the deployment configures, which entries are checked
 * against: its instrument classes (`EntitySnapshot.instrumentClasses`: the operator's, or the
 * built-in defaults until it declares any), and the travel-rule threshold of crypto-asset
 * transfers (src/transfers/detail.ts; absent: 0, the rule applies to every amount).
 */
export interface DetailVocabulary {
  instrumentClasses: { has(id: string): boolean };
  /** CLEARANCE_TRAVEL_RULE_THRESHOLD, a decimal in the asset's units (`Config.travelRuleThreshold`). */
  travelRuleThreshold?: string;
}

/**
 * A named string format (JSON Schema `format`, an assertion here): the problem with a value in
 * plain words ("is not a valid IBAN"), or undefined when it is fine. The validator registers every
 * type's formats with Ajv and words its errors with `problem`.
 */
export type DetailFormat = (value: string) => string | undefined;

export interface DetailType {
  type: string;
  /** What the type lets a client do, for documentation and discovery. */
  description: string;
  /**
   * The type's JSON Schema (draft 2020-12), compiled once with Ajv and served at
   * /authorization-details/schemas/{type}.json. No unknown fields anywhere (additionalProperties false).
   */
  schema: JsonSchema;
  /** The named formats the schema uses beyond the shared ones (`sharedFormats`). */
  formats?: Readonly<Record<string, DetailFormat>>;
  /**
   * The rules across fields that a schema would state only obscurely (which destination goes with
   * which asset, the travel-rule threshold): run after the schema passed; the problem as
   * "<field path> <problem>" relative to the entry (e.g. "destination.kind must be blockchain…"),
   * or undefined.
   */
  check?(detail: AuthorizationDetail, vocabulary: DetailVocabulary): string | undefined;
  /** One sentence per entry, for the consent page (contract.ts ConsentRequest.lines). */
  describe(detail: AuthorizationDetail): string;
  /**
   * The entry as tokens, introspection and audit events carry it, when it holds personal data that
   * must not travel (DESIGN §4): the type replaces it with a digest. Absent: carried as granted.
   */
  forToken?(detail: AuthorizationDetail, keys: TokenFormKeys): AuthorizationDetail;
}

/** The keys a token's form of an entry may need (`DetailType.forToken`), each derived only when asked. */
export interface TokenFormKeys {
  /** The key of beneficiary-name HMACs (src/transfers/destination-input.ts `beneficiaryNameKey`). */
  beneficiaryName(): Buffer;
}

/** A non-empty string of at most `maxLength` (256 unless given) characters, with more keywords. */
export function text(keywords: JsonSchema = {}): JsonSchema {
  return { type: 'string', minLength: 1, maxLength: 256, ...keywords };
}

/** An array of 1 to 32 distinct items (unless given otherwise). */
export function list(items: JsonSchema, keywords: JsonSchema = {}): JsonSchema {
  return { type: 'array', items, minItems: 1, maxItems: 32, uniqueItems: true, ...keywords };
}

/** An object with exactly these properties allowed (RFC 9396 §5: an unknown field is refused). */
export function object(properties: Record<string, JsonSchema>, required: readonly string[], keywords: JsonSchema = {}): JsonSchema {
  return { type: 'object', properties, required: [...required], additionalProperties: false, ...keywords };
}

/**
 * A positive decimal amount, as a string ("10000000.00": up to 18 digits before the point and 8
 * after, not zero) or a JSON number below 10^18. Strings are exact; prefer them for money.
 */
export const amountSchema: JsonSchema = {
  anyOf: [
    { type: 'string', pattern: '^(?!0+(?:\\.0+)?$)(?:0|[1-9][0-9]{0,17})(?:\\.[0-9]{1,8})?$' },
    { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1e18 },
  ],
  'x-message': 'must be a positive decimal amount',
};

/** An ISO 4217 active currency code. */
export const currencySchema: JsonSchema = text({ pattern: '^[A-Z]{3}$', format: 'iso4217' });

/** An amount in a currency. */
export const moneySchema: JsonSchema = object({ amount: amountSchema, currency: currencySchema }, ['amount', 'currency']);

/** An instrument: one of the entity model's declared classes, and a ticker, ISIN or venue symbol as the venue knows it. */
export const instrumentSchema: JsonSchema = object(
  {
    class: text({ maxLength: 64, 'x-declared': 'instrument_class' }),
    symbol: text({ pattern: '^[A-Za-z0-9][A-Za-z0-9 ._/:-]{0,31}$' }),
  },
  ['class', 'symbol'],
);

/** An account id as the firm's systems name it. */
export const accountSchema: JsonSchema = text({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$' });

/** A counterparty's or a person's name: `legalNameProblem` holds it to what it looks like. */
export function nameSchema(maxLength = 140): JsonSchema {
  return text({ maxLength, format: 'legal-name' });
}

/** Characters that draw nothing or control the display: controls, format characters, default-ignorables. */
const hidden = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
/** One word: letters with their marks, and the joiners a name keeps inside a word. */
const words = /[\p{L}\p{M}'’.-]+/gu;
const latin = /\p{Script=Latin}/u;
const cyrillicOrGreek = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;

/**
 * Why a counterparty's name is refused, or undefined. A name is shown to the person who consents
 * and screened against the sanctions list, so it must be what it looks like: no invisible or
 * control characters (a zero-width space or soft hyphen inside a listed name shows the same name
 * and is another string), and no word that mixes Latin with Cyrillic or Greek letters
 * (`Ex\u0430mple` with a Cyrillic `а`: the classic look-alike, Unicode UTS #39 mixed-script
 * detection), which no real legal name does; a name wholly in Cyrillic or Greek, or one word in
 * each, is accepted. Screening folds both too (src/risk/screening/normalize.ts); refusing them here
 * keeps a disguised name from reaching a consent page at all.
 */
export function legalNameProblem(name: string): string | undefined {
  if (hidden.test(name)) return 'contains an invisible or control character';
  for (const [word] of name.matchAll(words)) {
    if (latin.test(word) && cyrillicOrGreek.test(word)) return 'mixes Latin with Cyrillic or Greek letters in one word';
  }
  return undefined;
}

/** The formats every type may use. */
export const sharedFormats: Readonly<Record<string, DetailFormat>> = {
  iso4217: (c) => (iso4217.has(c) ? undefined : 'is not an ISO 4217 currency code'),
  lei: (lei) => (isValidLei(lei) ? undefined : 'is not a valid LEI (ISO 17442)'),
  'legal-name': legalNameProblem,
  // ISO 8601 calendar date, a real one (2026-02-30 is not).
  date: (d) => {
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(d);
    const ok = match !== null && new Date(Date.UTC(+match[1]!, +match[2]! - 1, +match[3]!)).toISOString().startsWith(d);
    return ok ? undefined : 'is not a calendar date (YYYY-MM-DD)';
  },
};

export function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "a", "a and b", "a, b and c". */
export function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words.at(-1)!}`;
}

/** "10000000" → "10,000,000"; "2500.5" → "2,500.5"; exact, without going through floating point. */
export function formatAmount(amount: string | number): string {
  const text = typeof amount === 'number' ? String(amount) : amount;
  const [whole = '', fraction] = text.split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

/**
 * Compares two positive decimal amounts exactly (strings as `amountSchema` allows, or numbers):
 * negative, zero or positive as a is below, equal to or above b.
 */
export function compareAmounts(a: string | number, b: string | number): number {
  const parts = (v: string | number): [string, string] => {
    const t = typeof v === 'number' ? plainNumber(v) : v;
    const [whole = '0', fraction = ''] = t.split('.');
    return [whole.replace(/^0+(?=\d)/, ''), fraction.replace(/0+$/, '')];
  };
  const [aw, af] = parts(a);
  const [bw, bf] = parts(b);
  if (aw.length !== bw.length) return aw.length - bw.length;
  if (aw !== bw) return aw < bw ? -1 : 1;
  const width = Math.max(af.length, bf.length);
  const x = af.padEnd(width, '0');
  const y = bf.padEnd(width, '0');
  return x === y ? 0 : x < y ? -1 : 1;
}

/** A finite number in plain decimal notation (no exponent), as precisely as JavaScript holds it. */
function plainNumber(n: number): string {
  const t = String(n);
  if (!/e/i.test(t)) return t;
  // Below 1e-6 or at 1e21 and above String() uses an exponent; amounts are < 1e18, so only tiny ones.
  return n.toFixed(20).replace(/0+$/, '').replace(/\.$/, '');
}
