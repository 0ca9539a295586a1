import { createHash, createHmac } from 'node:crypto';
import { electronicFormatIBAN, isValidBIC, isValidIBAN } from 'ibantools';
import {
  accountSchema,
  amountSchema,
  compareAmounts,
  formatAmount,
  list,
  nameSchema,
  object,
  text,
  type AuthorizationDetail,
  type DetailType,
  type DetailVocabulary,
} from '../authorization/details/common.ts';
import { iso4217 } from '../authorization/details/iso4217.ts';
import { isValidLei } from '../entities/lei.ts';
import { canonicalize } from '../jose/canonical-json.ts';
import { accountIdProblem, assetTypeProblem, normalisedAccountId, normalisedAssetType, parseAccountId, parseAssetType, supportedNamespaces } from './caip.ts';
import { personName, travelRuleProblem, travelRuleSchema, type TravelRule } from './ivms101.ts';

/**
 * The `transfer` authorization_details type (RFC 9396): moving funds — a withdrawal to a bank
 * account or a blockchain address, an internal transfer between the firm's accounts, a collateral
 * movement — of one asset (an ISO 4217 currency, or a crypto asset as a CAIP-19 asset type), one
 * amount, from one source account to one destination. The shape is agreed with destination control
 * (src/transfers/enforce.ts, which matches `destinationKey` against the address book), and the
 * decision point sees every field (src/policy/issuance.ts `detailRequests`).
 *
 * Validation, all at the request (RFC 9396 §5 `invalid_authorization_details`): the JSON Schema
 * (no unknown fields), the IBAN and BIC with ibantools (ISO 13616 check digits and the country's
 * length; ISO 9362), the CAIP-19 asset and the CAIP-10 destination per chain namespace (EIP-55,
 * Bitcoin per network, Solana keys: caip.ts; any other namespace refused), then the rules across
 * fields (`transferProblem`): the destination that goes with the asset and the transfer type, and
 * the FATF travel rule's originator and beneficiary (IVMS 101, ivms101.ts) for a crypto-asset
 * transfer at or above CLEARANCE_TRAVEL_RULE_THRESHOLD.
 */

export const transferTypes = ['withdrawal', 'internal', 'collateral'] as const;
export type TransferType = (typeof transferTypes)[number];

/**
 * A transfer's destination: exactly one kind. An IBAN's beneficiary `name` is as the client sent it;
 * tokens and audit events carry `name_hmac` instead (`forToken`, `destinationForToken`).
 */
export type TransferDestination =
  | { kind: 'internal'; account: string }
  | { kind: 'iban'; iban: string; bic?: string; name?: string; name_hmac?: string }
  | { kind: 'blockchain'; account: string };

/** A validated `transfer` entry. */
export interface TransferDetail {
  type: 'transfer';
  transfer_type: TransferType;
  /** Only `initiate` for now; absent: `["initiate"]`. */
  actions?: 'initiate'[];
  /** An ISO 4217 currency code, or a CAIP-19 asset type (`isCryptoAsset`). */
  asset: string;
  /** A positive decimal, in the asset's units. */
  amount: string | number;
  source_account: string;
  destination: TransferDestination;
  purpose?: string;
  /** The FATF travel rule's data (IVMS 101), as the client sent it; never in a token (`forToken`). */
  travel_rule?: TravelRule;
  /** In tokens and audit events only: base64url SHA-256 of the RFC 8785 canonical `travel_rule`. */
  travel_rule_sha256?: string;
}

/** Whether an asset is a crypto asset (a CAIP-19 asset type) rather than an ISO 4217 currency. */
export function isCryptoAsset(asset: string): boolean {
  return parseAssetType(asset) !== undefined;
}

/**
 * The normalised, comparable identity of a destination, as the address book stores and matches it:
 * `internal:<account>`, `iban:<IBAN in electronic format, upper case>` (the BIC and the name are
 * not part of it: the IBAN alone names the account), `caip10:<chain_id>:<address>` with the address
 * normalised (EVM hex lower-cased, as EIP-55 case is only a checksum; a Bitcoin bech32 address
 * lower-cased, as bech32 is case-insensitive; others as given).
 */
export function destinationKey(d: TransferDestination): string {
  switch (d.kind) {
    case 'internal':
      return `internal:${d.account}`;
    case 'iban':
      return `iban:${(electronicFormatIBAN(d.iban) ?? d.iban).toUpperCase()}`;
    case 'blockchain':
      return `caip10:${normalisedAccountId(d.account)}`;
  }
}

/**
 * The normalised, comparable identity of an asset, as the transfer controls, the rolling totals and
 * the decision point's `asset` use it: the canonical CAIP-19 spelling of a crypto asset (an ERC-20
 * contract's hex address lower-cased: lower, upper and EIP-55 case name one token; caip.ts
 * `normalisedAssetType`), an ISO 4217 code as it is (the type accepts upper case only). Without
 * it, a token's limits configured under one spelling would not apply to another.
 */
export function assetKey(asset: string): string {
  return normalisedAssetType(asset);
}

/** base64url SHA-256 of the RFC 8785 canonical JSON of the travel-rule data: what tokens and audit events carry instead. */
export function travelRuleDigest(rule: unknown): string {
  return createHash('sha256').update(canonicalize(rule)).digest('base64url');
}

/** Text shown to the person and kept in evidence: no invisible or control characters. */
const hiddenCharacters = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;

const formats = {
  iban: (v: string) => (isValidIBAN(v) ? undefined : 'is not a valid IBAN (ISO 13616, in electronic format: no spaces, upper case)'),
  bic: (v: string) => (isValidBIC(v) ? undefined : 'is not a valid BIC (ISO 9362)'),
  'transfer-asset': (v: string) => (/^[A-Z]{3}$/.test(v) ? (iso4217.has(v) ? undefined : 'is not an ISO 4217 currency code') : assetTypeProblem(v)),
  'caip10-account': (v: string) => accountIdProblem(v),
  'plain-text': (v: string) => (hiddenCharacters.test(v) ? 'contains an invisible or control character' : undefined),
};

const destinationSchema = {
  type: 'object',
  // Ajv's (OpenAPI's) discriminator: the error is the chosen kind's, not every kind's.
  discriminator: { propertyName: 'kind' },
  oneOf: [
    object({ kind: text({ const: 'internal' }), account: accountSchema }, ['kind', 'account']),
    object({ kind: text({ const: 'iban' }), iban: text({ maxLength: 34, format: 'iban' }), bic: text({ maxLength: 11, format: 'bic' }), name: nameSchema() }, ['kind', 'iban']),
    object({ kind: text({ const: 'blockchain' }), account: text({ maxLength: 180, format: 'caip10-account' }) }, ['kind', 'account']),
  ],
};

/** Moving funds: a withdrawal, an internal transfer, a collateral movement. */
export const transferType: DetailType = {
  type: 'transfer',
  description:
    'Initiate one transfer of funds — a withdrawal to a bank account (IBAN) or a blockchain address (CAIP-10), an internal transfer, or a collateral movement — of one asset (ISO 4217 currency or CAIP-19 crypto asset) and amount, from one account; crypto-asset transfers carry the FATF travel rule data (IVMS 101).',
  schema: object(
    {
      type: { const: 'transfer' },
      transfer_type: text({ enum: [...transferTypes] }),
      actions: list(text({ enum: ['initiate'] })),
      // CAIP-19: 8 + 1 + 32 + 1 + 8 + 1 + 128 characters at most.
      asset: text({ maxLength: 179, format: 'transfer-asset' }),
      amount: amountSchema,
      source_account: accountSchema,
      destination: destinationSchema,
      purpose: text({ maxLength: 140, format: 'plain-text' }),
      travel_rule: travelRuleSchema,
    },
    ['type', 'transfer_type', 'asset', 'amount', 'source_account', 'destination'],
  ),
  formats,
  check: (d, vocabulary) => transferProblem(d as unknown as TransferDetail, vocabulary),
  describe: (d) => describeTransfer(d as unknown as TransferDetail),
  forToken(d, keys) {
    const destination = (d as unknown as TransferDetail).destination;
    const named = destination.kind === 'iban' && destination.name !== undefined;
    if (d.travel_rule === undefined && !named) return d;
    // DESIGN §4: the person data stays out of the token (and so out of token.issued, the token
    // response, consent and CIBA events): the custodian checks the travel-rule data the client
    // sends it against its digest; the beneficiary's name becomes the address book's `name_hmac`.
    const { travel_rule, ...rest } = d;
    return {
      ...rest,
      ...(named ? { destination: destinationForToken(destination, keys.beneficiaryName()) } : {}),
      ...(travel_rule !== undefined ? { travel_rule_sha256: travelRuleDigest(travel_rule) } : {}),
    };
  },
};

/** HMAC-SHA-256 (hex) of a beneficiary's name under the beneficiary-name key (destination-input.ts `beneficiaryNameKey`). */
export function beneficiaryNameHmac(nameKey: Buffer, name: string): string {
  return createHmac('sha256', nameKey).update(name, 'utf8').digest('hex');
}

/**
 * A destination as tokens and audit events carry it: an IBAN's beneficiary `name` replaced by
 * `name_hmac` under `nameKey` (the keyed HMAC the address book's records carry, docs/transfers.md),
 * never the name. Idempotent: a destination without `name` is returned as it is.
 */
export function destinationForToken(destination: TransferDestination, nameKey: Buffer): TransferDestination {
  if (destination.kind !== 'iban' || destination.name === undefined) return destination;
  const { name, ...rest } = destination;
  return { ...rest, name_hmac: beneficiaryNameHmac(nameKey, name) };
}

/**
 * The rules across a transfer's fields, after its schema passed: the problem (path relative to
 * the entry) or undefined.
 */
export function transferProblem(d: TransferDetail, vocabulary: DetailVocabulary): string | undefined {
  const crypto = isCryptoAsset(d.asset);
  const kind = d.destination.kind;
  if (d.transfer_type !== 'withdrawal' && kind !== 'internal') {
    return `destination.kind must be internal for ${d.transfer_type === 'internal' ? 'an internal transfer' : 'a collateral movement'}`;
  }
  if (crypto && kind === 'iban') return 'destination.kind must be blockchain or internal for a crypto asset';
  if (!crypto && kind === 'blockchain') return 'destination.kind must be iban or internal for a currency';
  if (kind === 'blockchain') {
    const asset = parseAssetType(d.asset)!;
    const account = parseAccountId(d.destination.account)!;
    if (account.chain.id !== asset.chain.id) return `destination.account is on chain ${account.chain.id}, not on the asset's chain ${asset.chain.id}`;
  }
  if (kind === 'internal' && d.destination.account === d.source_account) return 'destination.account is the source account';
  if (d.travel_rule !== undefined) {
    // Data minimisation (GDPR Art. 5(1)(c)): personal data only where the rule asks for it.
    if (!crypto) return 'travel_rule is only for crypto-asset transfers';
    const problem = travelRuleProblem(d.travel_rule, isValidLei);
    if (problem) return `travel_rule.${problem}`;
  } else if (crypto && compareAmounts(d.amount, vocabulary.travelRuleThreshold ?? '0') >= 0) {
    // FATF Recommendation 16 (INR.15 §7(b)); EU Regulation 2023/1113 Art. 14: no de minimis threshold.
    const threshold = vocabulary.travelRuleThreshold ?? '0';
    return `travel_rule is required for a crypto-asset transfer${compareAmounts(threshold, '0') > 0 ? ` of ${formatAmount(threshold)} or more` : ''} (the FATF travel rule: originator and beneficiary in IVMS 101)`;
  }
  return undefined;
}

/** The native coins' symbols by CAIP-19 asset type, for the consent line. */
const nativeSymbols: Record<string, string> = {
  'eip155:1/slip44:60': 'ETH',
  'bip122:000000000019d6689c085ae165831e93/slip44:0': 'BTC',
  'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp/slip44:501': 'SOL',
};

function describeTransfer(d: TransferDetail): string {
  const asset = isCryptoAsset(d.asset) ? `${nativeSymbols[d.asset] ? `${nativeSymbols[d.asset]} ` : ''}${formatAmount(d.amount)} (${d.asset})` : `${d.asset} ${formatAmount(d.amount)}`;
  const to = destinationText(d.destination);
  const verb =
    d.transfer_type === 'withdrawal'
      ? `Withdraw ${asset} from account ${d.source_account} to ${to}`
      : d.transfer_type === 'internal'
        ? `Transfer ${asset} from account ${d.source_account} to ${to}`
        : `Move ${asset} of collateral from account ${d.source_account} to ${to}`;
  const purpose = d.purpose !== undefined ? ` for "${d.purpose}"` : '';
  // The person sees, on their own consent page, whose names travel with the transfer.
  const rule = d.travel_rule
    ? `; travel rule: originator ${d.travel_rule.originator.originatorPersons.map(personName).join(', ')}, beneficiary ${d.travel_rule.beneficiary.beneficiaryPersons.map(personName).join(', ')}`
    : d.travel_rule_sha256
      ? `; travel rule data sha256 ${d.travel_rule_sha256}`
      : '';
  return `${verb}${purpose}${rule}`;
}

function destinationText(d: TransferDestination): string {
  switch (d.kind) {
    case 'internal':
      return `account ${d.account}`;
    case 'iban': {
      // The request's form names the beneficiary; the token's form only says one is named.
      const extra = [d.bic !== undefined ? `BIC ${d.bic}` : undefined, d.name ?? (d.name_hmac !== undefined ? 'beneficiary named (see the address book)' : undefined)].filter((x) => x !== undefined);
      return `IBAN ${d.iban}${extra.length ? ` (${extra.join(', ')})` : ''}`;
    }
    case 'blockchain': {
      const account = parseAccountId(d.account)!;
      return `blockchain address ${account.address} on ${account.chain.id}`;
    }
  }
}

/** The chain namespaces a blockchain destination may be on, for the docs and errors. */
export { supportedNamespaces };

/** The decision point's view of a transfer entry (src/policy/issuance.ts detailRequests). */
export interface TransferFacts {
  transfer_type: TransferType;
  /** Canonical (`assetKey`). */
  asset: string;
  /** ISO 4217 code of a currency transfer. */
  currency?: string;
  /** CAIP-2 chain of a crypto-asset transfer. */
  chain?: string;
  destination_kind: TransferDestination['kind'];
  destination: string;
  purpose?: string;
  travel_rule_present: boolean;
}

/** What Cedar sees of a transfer, besides the amount (in whole units, as `notional`). */
export function transferFacts(d: TransferDetail): TransferFacts {
  const asset = parseAssetType(d.asset);
  return {
    transfer_type: d.transfer_type,
    // Canonical, so a policy naming a token's asset matches it however the request spelled it.
    asset: assetKey(d.asset),
    ...(asset ? { chain: asset.chain.id } : { currency: d.asset }),
    destination_kind: d.destination.kind,
    destination: destinationKey(d.destination),
    ...(d.purpose !== undefined ? { purpose: d.purpose } : {}),
    // In the token's form (refresh, exchange) the data is a digest: it was given all the same.
    travel_rule_present: d.travel_rule !== undefined || d.travel_rule_sha256 !== undefined,
  };
}

/** A type guard for entries of this type. */
export function isTransfer(detail: AuthorizationDetail): detail is AuthorizationDetail & TransferDetail {
  return detail.type === 'transfer';
}
