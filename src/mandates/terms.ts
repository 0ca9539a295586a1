import { createHash } from 'node:crypto';
import { AuditGuardError, assertNoSecrets } from '../audit/guard.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { iso4217 } from '../authorization/authorization-details.ts';
import { isValidLei } from '../entities/lei.ts';
import { scopePattern } from '../resource-servers/definition.ts';
import { join, type Validator } from '../validation.ts';
import { isoTime, readInstant } from './instant.ts';
import { readTimeWindow, type TimeWindow } from './time-window.ts';

/**
 * What a mandate says (DESIGN §3): who delegates to whom, which business verbs, within which
 * limits, on what legal basis, for how long. A version's terms never change once written; an
 * amendment writes new terms as a new version.
 */
export interface MandateTerms {
  grantor: Party<GrantorKind>;
  grantee: Party<GranteeKind>;
  /** Business-verb scopes (`order:create`), sorted. */
  scopes: string[];
  constraints: MandateConstraints;
  legalBasis: LegalBasis;
  /** Epoch ms: in force from (inclusive). */
  effectiveFrom: number;
  /** Epoch ms: in force until (exclusive); null for open-ended. */
  effectiveTo: number | null;
  /**
   * The person (a user id once stored; a username in a document) who signed the mandate for the
   * grantor, when the mandate names one. When that person leaves, the mandate is marked for
   * reassignment (src/lifecycle/leaver.ts): a new signatory amends it before the deadline.
   */
  grantedBy?: string;
}

/** The delegating party: a legal entity by LEI, or one of its accounts. */
export type GrantorKind = 'lei' | 'account';
/** The party acting under the mandate: a legal entity by LEI, an OAuth client, or a user (by id). */
export type GranteeKind = 'lei' | 'client' | 'user';

export interface Party<K extends string = GrantorKind | GranteeKind> {
  kind: K;
  id: string;
}

/**
 * Limits on what the grantee may do. Every member is optional; an absent one does not limit.
 * Lists are sorted, amounts canonical, times normalized, so equal terms serialize equally.
 */
export interface MandateConstraints {
  /** Lowercase product classes (`fx`, `bond`, `crypto_derivatives`), compared exactly with the request's. */
  instrument_classes?: string[];
  /** ISO 10383 market identifier codes. */
  venues?: string[];
  /** Largest notional of one action, in one ISO 4217 currency (no conversion is made). */
  max_notional?: Money;
  /** Regions where the grantee may act (`eu`, `uk`, `us`, `apac`, ...), compared exactly. */
  regions?: string[];
  time_window?: TimeWindow;
}

export interface Money {
  /** A positive decimal, canonical: no exponent, no trailing fractional zeros (`2500.5`). */
  amount: string;
  currency: string;
}

export interface LegalBasis {
  /** Where the authority comes from, e.g. `Master services agreement 2026-04, clause 7`. */
  reference: string;
  /** Free text: what the agreement says, context for an auditor. */
  text?: string;
}

/** Who accepted the mandate on the grantee side, and when (epoch ms). */
export interface Acceptance {
  by: string;
  at: number;
}

/** A validated `mandates[]` entry of an apply document (or an admin API body). */
export interface MandateEntry {
  id: string;
  terms: MandateTerms;
  acceptance?: Acceptance;
}

export const mandateEntryFields = ['id', 'grantor', 'grantee', 'scopes', 'constraints', 'legal_basis', 'effective_from', 'effective_to', 'granted_by', 'accepted_by', 'accepted_at'] as const;

/** Document key → party kind. */
const grantorKeys: Record<string, GrantorKind> = { lei: 'lei', account: 'account' };
const granteeKeys: Record<string, GranteeKind> = { lei: 'lei', client_id: 'client', user: 'user' };
/** Party kind → document key (views show parties as documents write them). */
const partyKeys: Record<GrantorKind | GranteeKind, string> = { lei: 'lei', account: 'account', client: 'client_id', user: 'user' };

export const mandateIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const accountPattern = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;
const clientIdPattern = /^[A-Za-z0-9._:@~-]{1,128}$/;
const userPattern = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const micPattern = /^[A-Z0-9]{4}$/;
// As the entity model names regions and product classes (src/entities/definition.ts).
const regionPattern = /^[a-z0-9][a-z0-9-]{0,31}$/;
const instrumentClassPattern = /^[a-z][a-z0-9_:-]{0,63}$/;
const amountPattern = /^(0|[1-9]\d{0,17})(\.\d{1,8})?$/;
const controlCharacters = /[\u0000-\u001f\u007f]/;
const controlsButNewlines = /[\u0000-\u0008\u000b-\u001f\u007f]/;

/**
 * Validates one `mandates[]` entry, recording every problem under `path`. `accepted_at` is
 * required with `accepted_by` unless `acceptedAtDefault` is given (the admin API's "now"): an
 * acceptance in a file is a dated fact, which keeps re-applying the file idempotent.
 */
export function readMandateEntry(v: Validator, path: string, value: unknown, options: { acceptedAtDefault?: number } = {}): MandateEntry | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, mandateEntryFields);
  const id = v.string(join(path, 'id'), o.id, { pattern: mandateIdPattern, patternMessage: 'must be 1–64 letters, digits and . _ : - (starting with a letter or digit)' });
  if (id !== undefined) auditable(v, join(path, 'id'), id);
  const terms = readTerms(v, path, o);
  const acceptance = readAcceptance(v, path, o, options.acceptedAtDefault);
  if (v.problems.length !== before || id === undefined || !terms) return undefined;
  return { id, terms, ...(acceptance ? { acceptance } : {}) };
}

/** The terms fields of an entry or an amendment body (`o` is the object that holds them). */
export function readTerms(v: Validator, path: string, o: Record<string, unknown>): MandateTerms | undefined {
  const before = v.problems.length;
  const grantor = readParty(v, join(path, 'grantor'), o.grantor, grantorKeys) as Party<GrantorKind> | undefined;
  const grantee = readParty(v, join(path, 'grantee'), o.grantee, granteeKeys) as Party<GranteeKind> | undefined;
  const scopes = v.array(
    join(path, 'scopes'),
    o.scopes,
    (p, s) => v.string(p, s, { pattern: scopePattern, patternMessage: 'must be a business verb scope such as order:create' }),
    { nonEmpty: true, unique: true },
  );
  const constraints = o.constraints === undefined ? {} : readConstraints(v, join(path, 'constraints'), o.constraints);
  const legalBasis = readLegalBasis(v, join(path, 'legal_basis'), o.legal_basis);
  const effectiveFrom = readInstant(v, join(path, 'effective_from'), o.effective_from);
  const effectiveTo = o.effective_to === undefined || o.effective_to === null ? null : readInstant(v, join(path, 'effective_to'), o.effective_to);
  if (effectiveFrom !== undefined && typeof effectiveTo === 'number' && effectiveTo <= effectiveFrom) {
    v.fail(join(path, 'effective_to'), 'must be later than effective_from');
  }
  let grantedBy: string | undefined;
  if (o.granted_by !== undefined) {
    grantedBy = v.string(join(path, 'granted_by'), o.granted_by, { pattern: userPattern, patternMessage: 'must be the user id or username of the person who signed for the grantor' });
    if (grantedBy !== undefined) auditable(v, join(path, 'granted_by'), grantedBy);
  }
  if (v.problems.length !== before || !grantor || !grantee || !scopes || !constraints || !legalBasis || effectiveFrom === undefined || effectiveTo === undefined) {
    return undefined;
  }
  return { grantor, grantee, scopes: [...scopes].sort(), constraints, legalBasis, effectiveFrom, effectiveTo, ...(grantedBy !== undefined ? { grantedBy } : {}) };
}

/** `accepted_by` and `accepted_at` of an entry or a body; undefined when neither is given. */
export function readAcceptance(v: Validator, path: string, o: Record<string, unknown>, atDefault?: number): Acceptance | undefined {
  if (o.accepted_by === undefined) {
    if (o.accepted_at !== undefined) v.fail(join(path, 'accepted_at'), 'is only given with accepted_by');
    return undefined;
  }
  const by = text(v, join(path, 'accepted_by'), o.accepted_by, 200);
  if (by !== undefined) auditable(v, join(path, 'accepted_by'), by);
  const at = o.accepted_at === undefined ? (atDefault ?? v.fail(join(path, 'accepted_at'), 'is required with accepted_by')) : readInstant(v, join(path, 'accepted_at'), o.accepted_at);
  return by !== undefined && at !== undefined ? { by, at } : undefined;
}

function readParty(v: Validator, path: string, value: unknown, keys: Record<string, GrantorKind | GranteeKind>): Party | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const given = Object.keys(o);
  const allowed = Object.keys(keys);
  if (given.length !== 1 || !allowed.includes(given[0]!)) return v.fail(path, `must have exactly one of ${allowed.join(', ')}`);
  const key = given[0]!;
  const at = join(path, key);
  const kind = keys[key]!;
  let id: string | undefined;
  if (kind === 'lei') {
    id = v.string(at, o[key], { pattern: /^[0-9A-Z]{20}$/, patternMessage: 'must be a valid LEI (ISO 17442: 20 characters, check digits)' });
    if (id !== undefined && !isValidLei(id)) id = v.fail(at, 'must be a valid LEI (ISO 17442: 20 characters, check digits)');
  } else if (kind === 'account') {
    id = v.string(at, o[key], { pattern: accountPattern, patternMessage: 'must be 1–64 letters, digits and . _ : / - (an account identifier)' });
  } else if (kind === 'client') {
    id = v.string(at, o[key], { pattern: clientIdPattern, patternMessage: 'must be a client_id' });
  } else {
    id = v.string(at, o[key], { pattern: userPattern, patternMessage: 'must be a user id or username' });
  }
  if (id !== undefined) auditable(v, at, id);
  return id === undefined ? undefined : { kind, id };
}

function readConstraints(v: Validator, path: string, value: unknown): MandateConstraints | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['instrument_classes', 'venues', 'max_notional', 'regions', 'time_window']);
  const constraints: MandateConstraints = {};
  const sortedList = (key: 'instrument_classes' | 'venues' | 'regions', read: (p: string, x: unknown) => string | undefined) => {
    if (o[key] === undefined) return;
    const list = v.array(join(path, key), o[key], read, { nonEmpty: true, unique: true });
    if (list) constraints[key] = [...list].sort();
  };
  sortedList('instrument_classes', (p, x) => v.string(p, x, { pattern: instrumentClassPattern, patternMessage: 'must be a lowercase product class such as fx or crypto_derivatives' }));
  sortedList('venues', (p, x) => v.string(p, x, { pattern: micPattern, patternMessage: 'must be an ISO 10383 market identifier code such as XLON' }));
  sortedList('regions', (p, x) => v.string(p, x, { pattern: regionPattern, patternMessage: 'must be a lowercase region identifier such as eu or apac' }));
  if (o.max_notional !== undefined) {
    const money = readMoney(v, join(path, 'max_notional'), o.max_notional);
    if (money) constraints.max_notional = money;
  }
  if (o.time_window !== undefined) {
    const window = readTimeWindow(v, join(path, 'time_window'), o.time_window);
    if (window) constraints.time_window = window;
  }
  return v.problems.length === before ? constraints : undefined;
}

function readMoney(v: Validator, path: string, value: unknown): Money | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['amount', 'currency']);
  const amount = canonicalAmount(o.amount);
  if (amount === undefined) v.fail(join(path, 'amount'), 'must be a positive decimal amount (at most 18 digits before the point and 8 after)');
  const currency = v.string(join(path, 'currency'), o.currency, { pattern: /^[A-Z]{3}$/, patternMessage: 'must be an ISO 4217 currency code such as USD' });
  if (currency !== undefined && !iso4217.has(currency)) return v.fail(join(path, 'currency'), 'is not an ISO 4217 currency code');
  return amount !== undefined && currency !== undefined ? { amount, currency } : undefined;
}

/** A positive decimal (string or JSON number) in canonical form, or undefined when it is not one. */
export function canonicalAmount(value: unknown): string | undefined {
  const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  if (typeof text !== 'string' || !amountPattern.test(text)) return undefined;
  const canonical = text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
  return /^[0.]+$/.test(canonical) ? undefined : canonical;
}

/** Compares two canonical amounts exactly (no floating point): negative, zero or positive. */
export function compareAmounts(a: string, b: string): number {
  const scaled = (x: string) => {
    const [whole, fraction = ''] = x.split('.');
    return BigInt(whole!) * 10n ** 8n + BigInt(fraction.padEnd(8, '0'));
  };
  const d = scaled(a) - scaled(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

function readLegalBasis(v: Validator, path: string, value: unknown): LegalBasis | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['reference', 'text']);
  const reference = text(v, join(path, 'reference'), o.reference, 200);
  if (reference !== undefined) auditable(v, join(path, 'reference'), reference);
  let body: string | undefined;
  if (o.text !== undefined) {
    body = v.string(join(path, 'text'), o.text, { maxLength: 4000 });
    if (body !== undefined && controlsButNewlines.test(body)) body = v.fail(join(path, 'text'), 'must not contain control characters other than line breaks and tabs');
  }
  if (v.problems.length !== before || reference === undefined) return undefined;
  return body === undefined ? { reference } : { reference, text: body };
}

function text(v: Validator, path: string, value: unknown, maxLength: number): string | undefined {
  const s = v.string(path, value, { maxLength });
  if (s !== undefined && controlCharacters.test(s)) return v.fail(path, 'must not contain control characters');
  return s;
}

/** Values that go into audit events must pass its guard, or the change could never be recorded. */
function auditable(v: Validator, path: string, value: string): void {
  try {
    assertNoSecrets(value);
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    v.fail(path, 'looks like a token or a key, which the audit log never records');
  }
}

/** A party as documents and views write it: `{ lei }`, `{ account }`, `{ client_id }`, `{ user }`. */
export function partyDocument(party: Party): Record<string, string> {
  return { [partyKeys[party.kind]]: party.id };
}

/** The terms as a JSON document (the shape of the apply file, times as ISO 8601 UTC). */
export function termsDocument(terms: MandateTerms): Record<string, unknown> {
  return {
    grantor: partyDocument(terms.grantor),
    grantee: partyDocument(terms.grantee),
    scopes: terms.scopes,
    constraints: terms.constraints,
    legal_basis: terms.legalBasis,
    effective_from: isoTime(terms.effectiveFrom),
    effective_to: terms.effectiveTo === null ? null : isoTime(terms.effectiveTo),
    // Only when named: the digest of terms without a signatory is what it always was.
    ...(terms.grantedBy !== undefined ? { granted_by: terms.grantedBy } : {}),
  };
}

/**
 * SHA-256 (hex) of the terms' RFC 8785 canonical JSON. Audit events carry it, so the log proves
 * which terms each version had even if the mandate tables were altered afterwards.
 */
export function termsDigest(terms: MandateTerms): string {
  return createHash('sha256').update(canonicalize(termsDocument(terms))).digest('hex');
}

/** The top-level fields whose values differ (empty when the terms are equal). */
export function changedFields(a: MandateTerms, b: MandateTerms): string[] {
  const x = termsDocument(a);
  const y = termsDocument(b);
  // Both sides' keys: a member only one of them has (granted_by) is a change too.
  return [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((k) => canonicalize(x[k] ?? null) !== canonicalize(y[k] ?? null));
}
