import { AuditGuardError, assertNoSecrets } from '../audit/guard.ts';
import { isValidLei } from '../entities/lei.ts';
import { OAuthError } from '../oauth-error.ts';

/**
 * RFC 9396 Rich Authorization Requests: the registry of `authorization_details` types Clearance
 * accepts, each with a JSON-Schema-like description that every entry must satisfy, and the
 * plain-language lines a person sees on the consent page. Anything else is refused with
 * `invalid_authorization_details` (RFC 9396 §5). Instrument classes are not a fixed list: they
 * are the entity model's (`DetailVocabulary`), the same ones policies and mandates use.
 */

/** A validated authorization_details entry (RFC 9396 §2): its `type` and the type's fields. */
export type AuthorizationDetail = { type: string } & Record<string, unknown>;

/** A small subset of JSON Schema, enough to describe the registered types exactly. */
export type Schema =
  | { type: 'object'; properties: Record<string, Schema>; required?: readonly string[] }
  | {
      type: 'string';
      pattern?: RegExp;
      enum?: readonly string[];
      maxLength?: number;
      check?: (value: string) => string | undefined;
      /** One of the entity model's declared instrument classes (`DetailVocabulary`). */
      declared?: 'instrument_class';
    }
  | { type: 'array'; items: Schema; minItems?: number; maxItems?: number; uniqueItems?: boolean }
  /** A positive decimal amount, as a string ("10000000.00") or a JSON number. */
  | { type: 'amount' };

export interface DetailType {
  type: string;
  /** What the type lets a client do, for documentation and discovery. */
  description: string;
  schema: Extract<Schema, { type: 'object' }>;
  /** One sentence per entry, for the consent page (contract.ts ConsentRequest.lines). */
  describe(detail: AuthorizationDetail): string;
}

/** ISO 4217 active alphabetic currency codes (and the precious-metal codes traded as currencies). */
export const iso4217 = new Set(
  (
    'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW ' +
    'CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF ' +
    'IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP ' +
    'MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG ' +
    'SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND ' +
    'VUV WST XAF XAG XAU XCD XCG XOF XPD XPF XPT YER ZAR ZMW ZWG'
  ).split(' '),
);

/**
 * What the entity model declares, which entries are checked against: its instrument classes
 * (`EntitySnapshot.instrumentClasses`: the operator's, or the built-in defaults until it declares any).
 */
export interface DetailVocabulary {
  instrumentClasses: { has(id: string): boolean };
}

const money: Schema = {
  type: 'object',
  properties: {
    amount: { type: 'amount' },
    currency: { type: 'string', pattern: /^[A-Z]{3}$/, check: (c) => (iso4217.has(c) ? undefined : 'is not an ISO 4217 currency code') },
  },
  required: ['amount', 'currency'],
};

const instrument: Schema = {
  type: 'object',
  properties: {
    class: { type: 'string', maxLength: 64, declared: 'instrument_class' },
    // Ticker, ISIN or venue symbol as the venue knows it.
    symbol: { type: 'string', pattern: /^[A-Za-z0-9][A-Za-z0-9 ._/:-]{0,31}$/ },
  },
  required: ['class', 'symbol'],
};

const account: Schema = { type: 'string', pattern: /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/ };

/** An order within limits: what a trader lets an order-entry app do for them. */
export const orderType: DetailType = {
  type: 'order',
  description: 'Create (or amend, cancel) orders in one instrument, on one side, up to a maximum notional, on one venue, for one account.',
  schema: {
    type: 'object',
    properties: {
      type: { type: 'string', enum: ['order'] },
      actions: { type: 'array', items: { type: 'string', enum: ['create', 'amend', 'cancel'] }, minItems: 1, uniqueItems: true },
      instrument,
      side: { type: 'string', enum: ['buy', 'sell'] },
      max_notional: money,
      // ISO 10383 market identifier code.
      venue: { type: 'string', pattern: /^[A-Z0-9]{4}$/ },
      account,
    },
    required: ['type', 'instrument', 'side', 'max_notional', 'venue', 'account'],
  },
  describe(d) {
    const actions = (d.actions as string[] | undefined) ?? ['create'];
    const instrument = d.instrument as { class: string; symbol: string };
    const limit = d.max_notional as { amount: string | number; currency: string };
    return (
      `${capitalize(listWords(actions))} ${d.side as string} orders in ${instrument.symbol} (${instrument.class.replace(/_/g, ' ')}) ` +
      `up to ${limit.currency} ${formatAmount(limit.amount)} on venue ${d.venue as string} for account ${d.account as string}`
    );
  },
};

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

/** A settlement instruction: what a back-office app may submit for a person. */
export const settlementInstructionType: DetailType = {
  type: 'settlement_instruction',
  description: 'Submit (or amend) settlement instructions from one account to one counterparty, up to a maximum amount.',
  schema: {
    type: 'object',
    properties: {
      type: { type: 'string', enum: ['settlement_instruction'] },
      actions: { type: 'array', items: { type: 'string', enum: ['submit', 'amend'] }, minItems: 1, uniqueItems: true },
      settlement_type: { type: 'string', enum: ['dvp', 'fop', 'cash'] },
      account,
      counterparty_lei: { type: 'string', check: (lei) => (isValidLei(lei) ? undefined : 'is not a valid LEI (ISO 17442)') },
      // The counterparty's legal name as the instruction gives it: screened, with the LEI, against
      // the sanctions/PEP list at issuance (src/risk/kyc/enforce.ts), and shown on the consent page.
      counterparty_name: { type: 'string', maxLength: 140, check: legalNameProblem },
      max_amount: money,
      instrument,
      // ISO 8601 calendar date.
      value_date: { type: 'string', pattern: /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/ },
    },
    required: ['type', 'settlement_type', 'account', 'counterparty_lei', 'max_amount'],
  },
  describe(d) {
    const actions = (d.actions as string[] | undefined) ?? ['submit'];
    const limit = d.max_amount as { amount: string | number; currency: string };
    const instrument = d.instrument as { symbol: string } | undefined;
    return (
      `${capitalize(listWords(actions))} ${(d.settlement_type as string).toUpperCase()} settlement instructions` +
      `${instrument ? ` for ${instrument.symbol}` : ''} from account ${d.account as string} to counterparty ${d.counterparty_name ? `${d.counterparty_name as string} (${d.counterparty_lei as string})` : (d.counterparty_lei as string)} ` +
      `up to ${limit.currency} ${formatAmount(limit.amount)}${d.value_date ? ` for value date ${d.value_date as string}` : ''}`
    );
  },
};

/** Every registered type, by name. */
export const detailTypes: ReadonlyMap<string, DetailType> = new Map([orderType, settlementInstructionType].map((t) => [t.type, t]));

/** Most entries accepted in one request. */
export const maxDetails = 20;

/**
 * Parses and validates `authorization_details` (RFC 9396 §2): a JSON array (as text from a form, or
 * as JSON from a request object) of objects each of a registered type, with no unknown fields,
 * naming only instrument classes `vocabulary` declares. Throws `invalid_authorization_details`
 * (RFC 9396 §5) naming the first problem.
 */
export function parseAuthorizationDetails(value: unknown, vocabulary: DetailVocabulary): AuthorizationDetail[] {
  if (value === undefined) return [];
  let parsed: unknown = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      throw invalid('authorization_details is not JSON');
    }
  }
  // RFC 9396 §2: a JSON array of JSON objects.
  if (!Array.isArray(parsed)) throw invalid('authorization_details must be a JSON array');
  if (parsed.length === 0) throw invalid('authorization_details must not be empty');
  if (parsed.length > maxDetails) throw invalid(`authorization_details has more than ${maxDetails} entries`);
  return parsed.map((entry, i) => {
    const path = `authorization_details[${i}]`;
    if (!isObject(entry)) throw invalid(`${path} must be an object`);
    // RFC 9396 §2: type is REQUIRED and determines the other fields.
    if (typeof entry.type !== 'string') throw invalid(`${path}.type is required`);
    const registered = detailTypes.get(entry.type);
    if (!registered) throw invalid(`${path}.type ${JSON.stringify(entry.type).slice(0, 80)} is not supported`);
    const problem = check(registered.schema, entry, path, vocabulary);
    if (problem) throw invalid(problem);
    // Granted details are evidence in the audit log, which refuses anything shaped like a token or
    // key; such a value has no business in an order or an instruction either.
    try {
      assertNoSecrets(entry, path);
    } catch (error) {
      if (error instanceof AuditGuardError) throw invalid(`${path} holds a value shaped like a token or key`);
      throw error;
    }
    return entry as AuthorizationDetail;
  });
}

/** The consent line of each entry. */
export function describeAuthorizationDetails(details: readonly AuthorizationDetail[]): string[] {
  return details.map((d) => detailTypes.get(d.type)?.describe(d) ?? `Use ${d.type}`);
}

/** Checks `value` against `schema`; the first problem as "path: message", or undefined. */
export function check(schema: Schema, value: unknown, path: string, vocabulary: DetailVocabulary): string | undefined {
  switch (schema.type) {
    case 'object': {
      if (!isObject(value)) return `${path} must be an object`;
      for (const key of Object.keys(value)) {
        if (!(key in schema.properties)) return `${path}.${key} is not a field of this type`;
      }
      for (const key of schema.required ?? []) {
        if (value[key] === undefined) return `${path}.${key} is required`;
      }
      for (const [key, sub] of Object.entries(schema.properties)) {
        if (value[key] === undefined) continue;
        const problem = check(sub, value[key], `${path}.${key}`, vocabulary);
        if (problem) return problem;
      }
      return undefined;
    }
    case 'string': {
      if (typeof value !== 'string' || value.length === 0) return `${path} must be a non-empty string`;
      if (value.length > (schema.maxLength ?? 256)) return `${path} is too long`;
      if (schema.enum && !schema.enum.includes(value)) return `${path} must be one of ${schema.enum.join(', ')}`;
      if (schema.pattern && !schema.pattern.test(value)) return `${path} is malformed`;
      if (schema.declared === 'instrument_class' && !vocabulary.instrumentClasses.has(value)) {
        return `${path} ${JSON.stringify(value)} is not a declared instrument class`;
      }
      const problem = schema.check?.(value);
      return problem ? `${path} ${problem}` : undefined;
    }
    case 'array': {
      if (!Array.isArray(value)) return `${path} must be an array`;
      if (schema.minItems !== undefined && value.length < schema.minItems) return `${path} must have at least ${schema.minItems} items`;
      if (value.length > (schema.maxItems ?? 32)) return `${path} has too many items`;
      if (schema.uniqueItems && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) return `${path} lists an item twice`;
      for (let i = 0; i < value.length; i++) {
        const problem = check(schema.items, value[i], `${path}[${i}]`, vocabulary);
        if (problem) return problem;
      }
      return undefined;
    }
    case 'amount': {
      const ok =
        (typeof value === 'string' && /^(0|[1-9]\d{0,17})(\.\d{1,8})?$/.test(value) && Number(value) > 0) ||
        (typeof value === 'number' && Number.isFinite(value) && value > 0 && value < 1e18);
      return ok ? undefined : `${path} must be a positive decimal amount`;
    }
  }
}

function invalid(description: string): OAuthError {
  return new OAuthError('invalid_authorization_details', description);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function listWords(words: readonly string[]): string {
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
