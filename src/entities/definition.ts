import { join, type Validator } from '../validation.ts';
import { isValidCountryCode } from './countries.ts';
import { isValidLei } from './lei.ts';
import { readKycFields, type KycFields } from '../risk/kyc/record.ts';

/**
 * The institutional vocabulary (DESIGN §3): legal entities with their desks and accounts, and the
 * reference lists they point at (regions, venues, instrument classes). Policies see these as Cedar
 * entities (src/policy/request.ts); `clearance apply` and `/admin/entities` read and write them.
 */

/** What a legal entity does in a trade's life. */
export const legalEntityRoles = ['broker', 'arranger', 'clearing', 'custodian', 'venue', 'asset_manager'] as const;
export type LegalEntityRole = (typeof legalEntityRoles)[number];

export interface Desk {
  id: string;
  name?: string;
  /** Instrument classes the desk trades (declared under `instrument_classes`). */
  product_classes: string[];
  /** IANA time zone of the desk (`Europe/London`): policies read the local time there (`context.local_time`). */
  time_zone?: string;
}

export interface Account {
  id: string;
  name?: string;
  /** A desk of the same legal entity, when the account is run by one. */
  desk?: string;
  /** Where the account's data must reside (a declared region). */
  region: string;
}

export interface LegalEntity {
  /** ISO 17442 Legal Entity Identifier, check digits verified. */
  lei: string;
  name: string;
  /** ISO 3166-1 alpha-2 country code. */
  jurisdiction: string;
  /** The region its data lives in (data residency), a declared region. */
  home_region: string;
  /**
   * Other declared regions where it permits its data (and its people's) to be processed; tokens
   * for a resource server in any other region than these and home_region are refused.
   */
  data_regions?: string[];
  roles: LegalEntityRole[];
  desks: Desk[];
  accounts: Account[];
  /**
   * Apply's declaration of the entity's KYC record (src/risk/kyc/apply.ts): read from the
   * document, never stored with the definition (the record is the source of truth).
   */
  kyc?: KycFields;
}

export interface Region {
  id: string;
  name?: string;
}

export interface Venue {
  id: string;
  name?: string;
  /** ISO 10383 market identifier code. */
  mic?: string;
  region?: string;
}

export interface InstrumentClass {
  id: string;
  name?: string;
  /** Complex products (derivatives and the like) for which suitability is assessed. */
  complex: boolean;
}

/** The reference lists, by kind as stored. */
export type ReferenceKind = 'region' | 'venue' | 'instrument_class';

export const deskPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
export const accountPattern = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;
export const regionPattern = /^[a-z0-9][a-z0-9-]{0,31}$/;
export const venuePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The same shape as a user's suitability entries (src/identity/users.ts). */
export const instrumentClassPattern = /^[a-z][a-z0-9_:-]{0,63}$/;
const micPattern = /^[A-Z0-9]{4}$/;

const legalEntityFields = ['lei', 'name', 'jurisdiction', 'home_region', 'data_regions', 'roles', 'desks', 'accounts', 'kyc'] as const;
const deskFields = ['id', 'name', 'product_classes', 'time_zone'] as const;
const accountFields = ['id', 'name', 'desk', 'region'] as const;

function optionalName(v: Validator, path: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  return v.string(path, value, { maxLength: 200, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
}

/** Reads one `legal_entities[]` entry; its desks and accounts are checked against each other here. */
export function readLegalEntity(v: Validator, path: string, input: unknown): LegalEntity | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, legalEntityFields);
  const lei = v.string(join(path, 'lei'), o.lei, { pattern: /^[0-9A-Z]{20}$/, patternMessage: 'must be a 20-character LEI (ISO 17442)' });
  if (lei !== undefined && !isValidLei(lei)) v.fail(join(path, 'lei'), 'must be a valid LEI (ISO 17442: 20 characters, check digits)');
  const name = v.string(join(path, 'name'), o.name, { maxLength: 200, pattern: /^[^\p{Cc}]*$/u, patternMessage: 'must not contain control characters' });
  const jurisdiction = v.string(join(path, 'jurisdiction'), o.jurisdiction, { pattern: /^[A-Z]{2}$/, patternMessage: 'must be an ISO 3166-1 alpha-2 country code such as GB' });
  if (jurisdiction !== undefined && !isValidCountryCode(jurisdiction)) v.fail(join(path, 'jurisdiction'), `"${jurisdiction}" is not an ISO 3166-1 alpha-2 country code`);
  const homeRegion = v.string(join(path, 'home_region'), o.home_region, { pattern: regionPattern, patternMessage: 'must be a region identifier (lowercase letters, digits and -)' });
  const dataRegions =
    o.data_regions === undefined
      ? undefined
      : v.array(join(path, 'data_regions'), o.data_regions, (p, r) => v.string(p, r, { pattern: regionPattern, patternMessage: 'must be a region identifier (lowercase letters, digits and -)' }), { unique: true });
  const roles = v.array(join(path, 'roles'), o.roles, (p, r) => v.string(p, r, { oneOf: legalEntityRoles }) as LegalEntityRole | undefined, { nonEmpty: true, unique: true });
  // The valid desks and accounts with their index, so the checks between them run at exact paths
  // even when some are invalid.
  const desks = items(v, join(path, 'desks'), o.desks, readDesk);
  const accounts = items(v, join(path, 'accounts'), o.accounts, readAccount);
  uniqueIds(v, join(path, 'desks'), desks);
  uniqueIds(v, join(path, 'accounts'), accounts);
  const own = new Set(desks.map((d) => d.item.id));
  for (const { item: a, at } of accounts) {
    if (a.desk !== undefined && !own.has(a.desk)) v.fail(join(path, `accounts[${at}].desk`), `"${a.desk}" is not a desk of this legal entity`);
  }
  const kyc = o.kyc === undefined ? undefined : readKycFields(v, join(path, 'kyc'), o.kyc);
  if (v.problems.length !== before) return undefined;
  return {
    lei: lei!,
    name: name!,
    jurisdiction: jurisdiction!,
    home_region: homeRegion!,
    ...(dataRegions ? { data_regions: dataRegions } : {}),
    roles: roles!,
    desks: desks.map((d) => d.item),
    accounts: accounts.map((a) => a.item),
    ...(kyc ? { kyc } : {}),
  };
}

function readDesk(v: Validator, path: string, input: unknown): Desk | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, deskFields);
  const id = v.string(join(path, 'id'), o.id, { pattern: deskPattern, patternMessage: 'must be 1–64 letters, digits and . _ : - (a desk identifier)' });
  const name = optionalName(v, join(path, 'name'), o.name);
  const productClasses = v.array(
    join(path, 'product_classes'),
    o.product_classes ?? [],
    (p, c) => v.string(p, c, { pattern: instrumentClassPattern, patternMessage: 'must be a lowercase instrument class such as fx or rates_derivatives' }),
    { unique: true },
  );
  const timeZone = o.time_zone === undefined ? undefined : v.string(join(path, 'time_zone'), o.time_zone, { maxLength: 64 });
  if (timeZone !== undefined && !isTimeZone(timeZone)) v.fail(join(path, 'time_zone'), 'must be an IANA time zone such as Europe/London or America/New_York');
  if (v.problems.length !== before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}), product_classes: productClasses!, ...(timeZone !== undefined ? { time_zone: timeZone } : {}) };
}

function readAccount(v: Validator, path: string, input: unknown): Account | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, accountFields);
  const id = v.string(join(path, 'id'), o.id, { pattern: accountPattern, patternMessage: 'must be 1–64 letters, digits and . _ : / - (an account identifier)' });
  const name = optionalName(v, join(path, 'name'), o.name);
  const desk = o.desk === undefined ? undefined : v.string(join(path, 'desk'), o.desk, { pattern: deskPattern, patternMessage: 'must be a desk identifier' });
  const region = v.string(join(path, 'region'), o.region, { pattern: regionPattern, patternMessage: 'must be a region identifier (lowercase letters, digits and -)' });
  if (v.problems.length !== before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}), ...(desk !== undefined ? { desk } : {}), region: region! };
}

function items<T>(v: Validator, path: string, value: unknown, read: (v: Validator, path: string, item: unknown) => T | undefined): { item: T; at: number }[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    v.fail(path, 'must be an array');
    return [];
  }
  return value.flatMap((x, at) => {
    const item = read(v, `${path}[${at}]`, x);
    return item === undefined ? [] : [{ item, at }];
  });
}

function uniqueIds(v: Validator, path: string, entries: { item: { id: string }; at: number }[]): void {
  const first = new Map<string, number>();
  for (const { item: { id }, at } of entries) {
    if (first.has(id)) v.fail(`${path}[${at}].id`, `"${id}" is also defined at ${path}[${first.get(id)}]`);
    else first.set(id, at);
  }
}

/** Reads one `regions[]` entry: `{ id, name? }`. */
export function readRegion(v: Validator, path: string, input: unknown): Region | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['id', 'name']);
  const id = v.string(join(path, 'id'), o.id, { pattern: regionPattern, patternMessage: 'must be 1–32 lowercase letters, digits and - (e.g. eu, uk, us-east)' });
  const name = optionalName(v, join(path, 'name'), o.name);
  if (v.problems.length !== before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}) };
}

/** Reads one `venues[]` entry: `{ id, name?, mic?, region? }`. */
export function readVenue(v: Validator, path: string, input: unknown): Venue | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['id', 'name', 'mic', 'region']);
  const id = v.string(join(path, 'id'), o.id, { pattern: venuePattern, patternMessage: 'must be 1–64 letters, digits and . _ - (a venue identifier)' });
  const name = optionalName(v, join(path, 'name'), o.name);
  const mic = o.mic === undefined ? undefined : v.string(join(path, 'mic'), o.mic, { pattern: micPattern, patternMessage: 'must be an ISO 10383 MIC: 4 uppercase letters or digits' });
  const region = o.region === undefined ? undefined : v.string(join(path, 'region'), o.region, { pattern: regionPattern, patternMessage: 'must be a region identifier' });
  if (v.problems.length !== before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}), ...(mic !== undefined ? { mic } : {}), ...(region !== undefined ? { region } : {}) };
}

/** Reads one `instrument_classes[]` entry: `{ id, name?, complex? }` (complex defaults to false). */
export function readInstrumentClass(v: Validator, path: string, input: unknown): InstrumentClass | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['id', 'name', 'complex']);
  const id = v.string(join(path, 'id'), o.id, { pattern: instrumentClassPattern, patternMessage: 'must be a lowercase instrument class such as fx or crypto_derivatives' });
  const name = optionalName(v, join(path, 'name'), o.name);
  const complex = o.complex === undefined ? false : v.boolean(join(path, 'complex'), o.complex);
  if (v.problems.length !== before) return undefined;
  return { id: id!, ...(name !== undefined ? { name } : {}), complex: complex! };
}

/** Whether `zone` is an IANA time zone this runtime knows (its ICU data). */
export function isTimeZone(zone: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+){0,2}$/.test(zone)) return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
