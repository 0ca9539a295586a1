import { AuditGuardError, assertNoSecrets } from '../audit/guard.ts';
import { OAuthError } from '../oauth-error.ts';
import { transferType } from '../transfers/detail.ts';
import {
  accountSchema,
  capitalize,
  formatAmount,
  instrumentSchema,
  list,
  listWords,
  moneySchema,
  nameSchema,
  object,
  text,
  type AuthorizationDetail,
  type DetailType,
  type DetailVocabulary,
  type JsonSchema,
} from './details/common.ts';
import { compileDetailTypes, describeError } from './details/validator.ts';
import type { TokenFormKeys } from './details/common.ts';

/**
 * RFC 9396 Rich Authorization Requests: the registry of `authorization_details` types Clearance
 * accepts, each with a JSON Schema (draft 2020-12, validated with Ajv: details/validator.ts) that
 * every entry must satisfy, and the plain-language lines a person sees on the consent page.
 * Anything else is refused with `invalid_authorization_details` (RFC 9396 §5). Instrument classes
 * are not a fixed list: they are the entity model's (`DetailVocabulary`), the same ones policies
 * and mandates use. The schemas are served at /authorization-details/schemas/{type}.json and
 * advertised in discovery (src/endpoints/authorization-details-schemas).
 */

export { amountSchema, compareAmounts, formatAmount, legalNameProblem } from './details/common.ts';
export type { AuthorizationDetail, DetailType, DetailVocabulary, JsonSchema, TokenFormKeys } from './details/common.ts';
export { iso4217 } from './details/iso4217.ts';

/** An order within limits: what a trader lets an order-entry app do for them. */
export const orderType: DetailType = {
  type: 'order',
  description: 'Create (or amend, cancel) orders in one instrument, on one side, up to a maximum notional, on one venue, for one account.',
  schema: object(
    {
      type: { const: 'order' },
      actions: list(text({ enum: ['create', 'amend', 'cancel'] })),
      instrument: instrumentSchema,
      side: text({ enum: ['buy', 'sell'] }),
      max_notional: moneySchema,
      // ISO 10383 market identifier code.
      venue: text({ pattern: '^[A-Z0-9]{4}$' }),
      account: accountSchema,
    },
    ['type', 'instrument', 'side', 'max_notional', 'venue', 'account'],
  ),
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

/** A settlement instruction: what a back-office app may submit for a person. */
export const settlementInstructionType: DetailType = {
  type: 'settlement_instruction',
  description: 'Submit (or amend) settlement instructions from one account to one counterparty, up to a maximum amount.',
  schema: object(
    {
      type: { const: 'settlement_instruction' },
      actions: list(text({ enum: ['submit', 'amend'] })),
      settlement_type: text({ enum: ['dvp', 'fop', 'cash'] }),
      account: accountSchema,
      counterparty_lei: text({ format: 'lei' }),
      // The counterparty's legal name as the instruction gives it: screened, with the LEI, against
      // the sanctions/PEP list at issuance (src/risk/kyc/enforce.ts), and shown on the consent page.
      counterparty_name: nameSchema(),
      max_amount: moneySchema,
      instrument: instrumentSchema,
      // ISO 8601 calendar date.
      value_date: text({ pattern: '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])$', format: 'date' }),
    },
    ['type', 'settlement_type', 'account', 'counterparty_lei', 'max_amount'],
  ),
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

const registered: readonly DetailType[] = [orderType, settlementInstructionType, transferType];

/** Every registered type, by name. */
export const detailTypes: ReadonlyMap<string, DetailType> = new Map(registered.map((t) => [t.type, t]));

// Compiled once, at startup: a schema that does not compile stops Clearance from starting.
const { compiled, formats } = compileDetailTypes(registered);

/** Most entries accepted in one request. */
export const maxDetails = 20;

/**
 * Parses and validates `authorization_details` (RFC 9396 §2): a JSON array (as text from a form, or
 * as JSON from a request object) of objects each of a registered type, valid against the type's
 * JSON Schema (no unknown fields, naming only instrument classes `vocabulary` declares) and its
 * rules across fields. Throws `invalid_authorization_details` (RFC 9396 §5) naming the first problem.
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
    const registeredType = compiled.get(entry.type);
    if (!registeredType) throw invalid(`${path}.type ${JSON.stringify(entry.type).slice(0, 80)} is not supported`);
    // RFC 9396 §5: an entry that does not conform to its type's definition.
    if (!registeredType.validate.call(vocabulary, entry)) throw invalid(describeError(registeredType.validate.errors ?? [], path, formats));
    const problem = registeredType.type.check?.(entry as AuthorizationDetail, vocabulary);
    if (problem) throw invalid(`${path}.${problem}`);
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

/**
 * The entries as access tokens, introspection, token responses and audit events carry them
 * (DESIGN §4: no personal data in tokens beyond the subject identifier): each type that holds
 * personal data replaces it with a digest (a transfer's travel-rule data with
 * `travel_rule_sha256`, its beneficiary's name with `name_hmac` under `keys`,
 * src/transfers/detail.ts). Idempotent: an entry already in this form is returned as it is, so
 * narrowing a token's entries (token exchange) keeps them equal.
 */
export function tokenAuthorizationDetails(details: readonly AuthorizationDetail[], keys: TokenFormKeys): AuthorizationDetail[] {
  return details.map((d) => detailTypes.get(d.type)?.forToken?.(d, keys) ?? d);
}

/** The JSON Schema of a registered type, as discovery serves it (with `$schema`), or undefined. */
export function detailTypeSchema(type: string): JsonSchema | undefined {
  const t = detailTypes.get(type);
  if (!t) return undefined;
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', title: t.type, description: t.description, ...t.schema };
}

function invalid(description: string): OAuthError {
  return new OAuthError('invalid_authorization_details', description);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
