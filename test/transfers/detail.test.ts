import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { base58 } from '@scure/base';
import { describeAuthorizationDetails, parseAuthorizationDetails, tokenAuthorizationDetails, type DetailVocabulary } from '../../src/authorization/authorization-details.ts';
import { defaultInstrumentClasses } from '../../src/entities/directory.ts';
import { canonicalize } from '../../src/jose/canonical-json.ts';
import { OAuthError } from '../../src/oauth-error.ts';
import { accountIdProblem, assetTypeProblem, parseAccountId, parseAssetType, parseChainId } from '../../src/transfers/caip.ts';
import { beneficiaryNameHmac, beneficiaryNameKey, destinationForRecord, type Destination } from '../../src/transfers/destination-input.ts';
import { assetKey, destinationKey, isCryptoAsset, transferFacts, type TransferDetail } from '../../src/transfers/detail.ts';

const vocabulary: DetailVocabulary = { instrumentClasses: new Set(defaultInstrumentClasses.map((c) => c.id)) };

export const ether = 'eip155:1/slip44:60';
export const bitcoin = 'bip122:000000000019d6689c085ae165831e93/slip44:0';
/** The EIP-55 specification's own example address. */
export const evmAddress = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';

/** The FATF travel rule's data in IVMS 101: a natural-person originator, a legal-person beneficiary with its LEI. */
export const travelRule = {
  originator: {
    originatorPersons: [{ naturalPerson: { name: { nameIdentifier: [{ primaryIdentifier: 'Doe', secondaryIdentifier: 'Jane', nameIdentifierType: 'LEGL' }] }, countryOfResidence: 'DE' } }],
    accountNumber: ['CR-ACC-1'],
  },
  beneficiary: {
    beneficiaryPersons: [
      {
        legalPerson: {
          name: { nameIdentifier: [{ legalPersonName: 'Example Custodian SA', legalPersonNameIdentifierType: 'LEGL' }] },
          geographicAddress: [{ addressType: 'BIZZ', streetName: 'Rue de Example', buildingNumber: '1', townName: 'Paris', country: 'FR' }],
          nationalIdentification: { nationalIdentifier: '5493001KJTIIGC8Y1R12', nationalIdentifierType: 'LEIX' },
        },
      },
    ],
    accountNumber: [`eip155:1:${evmAddress}`],
  },
};

export const ibanWithdrawal = {
  type: 'transfer',
  transfer_type: 'withdrawal',
  asset: 'EUR',
  amount: '2500.00',
  source_account: 'CR-ACC-1',
  destination: { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX', name: 'Example Supplier GmbH' },
  purpose: 'Invoice 2026-117',
};

export const cryptoWithdrawal = {
  type: 'transfer',
  transfer_type: 'withdrawal',
  asset: ether,
  amount: '1.5',
  source_account: 'CR-ACC-1',
  destination: { kind: 'blockchain', account: `eip155:1:${evmAddress}` },
  travel_rule: travelRule,
};

function refuses(value: unknown, pattern: RegExp, options: DetailVocabulary = vocabulary): void {
  assert.throws(
    () => parseAuthorizationDetails([value], options),
    (error: unknown) => error instanceof OAuthError && error.error === 'invalid_authorization_details' && pattern.test(error.description ?? ''),
    JSON.stringify(value),
  );
}

function withDestination(destination: Record<string, unknown>, base: Record<string, unknown> = cryptoWithdrawal): Record<string, unknown> {
  return { ...base, destination };
}

describe('the transfer authorization_details type', () => {
  test('accepts a withdrawal to an IBAN, a crypto withdrawal with its travel rule, an internal transfer and a collateral movement', () => {
    const internal = { type: 'transfer', transfer_type: 'internal', asset: 'USD', amount: 1000, source_account: 'CR-ACC-1', destination: { kind: 'internal', account: 'CR-ACC-2' } };
    const collateral = { ...internal, transfer_type: 'collateral', asset: bitcoin, amount: '0.25', actions: ['initiate'], travel_rule: travelRule };
    const details = [ibanWithdrawal, cryptoWithdrawal, internal, collateral];
    assert.deepEqual(parseAuthorizationDetails(JSON.stringify(details), vocabulary), details);
  });

  test('validates IBAN and BIC with ibantools', () => {
    refuses({ ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89370400440532013001' } }, /^authorization_details\[0\]\.destination\.iban is not a valid IBAN/);
    refuses({ ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89 3704 0044 0532 0130 00' } }, /destination\.iban is not a valid IBAN \(ISO 13616, in electronic format/);
    refuses({ ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADE' } }, /^authorization_details\[0\]\.destination\.bic is not a valid BIC \(ISO 9362\)$/);
    refuses({ ...ibanWithdrawal, destination: { kind: 'iban', iban: 'DE89370400440532013000', name: 'Ex\u0430mple GmbH' } }, /destination\.name mixes Latin with Cyrillic/);
  });

  test('validates EVM addresses with their EIP-55 checksum when in mixed case', () => {
    assert.ok(parseAuthorizationDetails([withDestination({ kind: 'blockchain', account: `eip155:1:${evmAddress.toLowerCase()}` })], vocabulary));
    refuses(withDestination({ kind: 'blockchain', account: `eip155:1:${evmAddress.slice(0, -1)}D` }), /^authorization_details\[0\]\.destination\.account has a wrong EIP-55 checksum/);
    refuses(withDestination({ kind: 'blockchain', account: 'eip155:1:0x1234' }), /destination\.account is not an EVM address/);
  });

  test('validates Bitcoin addresses on the chain\'s own network: base58check, bech32 and bech32m', () => {
    const btc = (address: string) => ({ ...cryptoWithdrawal, asset: bitcoin, destination: { kind: 'blockchain', account: `bip122:000000000019d6689c085ae165831e93:${address}` } });
    for (const address of ['1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2', 'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq', 'bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0']) {
      assert.ok(parseAuthorizationDetails([btc(address)], vocabulary), address);
    }
    refuses(btc('tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx'), /destination\.account is a testnet address, not one of Bitcoin mainnet/);
    refuses(btc('bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx'), /destination\.account is not a valid Bitcoin mainnet address/);
    refuses(btc('1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3'), /is not a valid Bitcoin mainnet address/);
  });

  test('validates Solana addresses as 32-byte keys in base58', () => {
    const sol = 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp';
    const key = base58.encode(new Uint8Array(32).fill(7));
    const entry = (address: string) => ({ ...cryptoWithdrawal, asset: `${sol}/slip44:501`, destination: { kind: 'blockchain', account: `${sol}:${address}` } });
    assert.ok(parseAuthorizationDetails([entry(key)], vocabulary));
    refuses(entry(base58.encode(new Uint8Array(31).fill(7))), /is not a Solana address/);
  });

  test('refuses a chain namespace it cannot validate, naming the supported ones (fail closed)', () => {
    refuses(withDestination({ kind: 'blockchain', account: 'cosmos:cosmoshub-4:cosmos1t2uflqwqe0fsj0shcfkrvpukewcw40yjj6hdc0' }), /destination\.account names chain namespace cosmos, whose addresses Clearance cannot validate \(supported: eip155, bip122, solana\)/);
    refuses({ ...cryptoWithdrawal, asset: 'cosmos:cosmoshub-4/slip44:118' }, /^authorization_details\[0\]\.asset names chain namespace cosmos/);
    refuses({ ...cryptoWithdrawal, asset: 'bip122:12a765e31ffd4059bada1e25190f6e98/slip44:2' }, /asset names chain bip122:12a765e31ffd4059bada1e25190f6e98, which is not a Bitcoin network Clearance validates/);
    refuses({ ...cryptoWithdrawal, asset: 'eip155:1/erc721:0x06012c8cf97BEaD5deAe237070F9587f8E7A266d' }, /asset names asset namespace erc721, which a transfer on eip155 cannot use/);
    refuses({ ...cryptoWithdrawal, asset: 'ETH' }, /asset is not an ISO 4217 currency code/);
    refuses({ ...cryptoWithdrawal, asset: 'ether' }, /asset is neither an ISO 4217 currency code nor a CAIP-19 asset type/);
  });

  test('holds the destination to the asset and the transfer type', () => {
    refuses(withDestination({ kind: 'blockchain', account: `eip155:137:${evmAddress}` }), /^authorization_details\[0\]\.destination\.account is on chain eip155:137, not on the asset's chain eip155:1$/);
    refuses({ ...ibanWithdrawal, destination: { kind: 'blockchain', account: `eip155:1:${evmAddress}` } }, /destination\.kind must be iban or internal for a currency/);
    refuses(withDestination({ kind: 'iban', iban: 'DE89370400440532013000' }), /destination\.kind must be blockchain or internal for a crypto asset/);
    refuses({ ...ibanWithdrawal, transfer_type: 'collateral' }, /destination\.kind must be internal for a collateral movement/);
    refuses({ ...ibanWithdrawal, transfer_type: 'internal', destination: { kind: 'internal', account: 'CR-ACC-1' } }, /destination\.account is the source account/);
    refuses(withDestination({ kind: 'wire', account: 'x' }), /^authorization_details\[0\]\.destination\.kind must be one of internal, iban, blockchain$/);
    refuses(withDestination({ account: 'x' }), /destination\.kind is required/);
  });

  test('asks for the travel rule of a crypto transfer at or above the configured threshold, and only of crypto transfers', () => {
    const { travel_rule: _, ...bare } = cryptoWithdrawal;
    refuses(bare, /^authorization_details\[0\]\.travel_rule is required for a crypto-asset transfer \(the FATF travel rule/);
    const threshold: DetailVocabulary = { ...vocabulary, travelRuleThreshold: '1000' };
    assert.ok(parseAuthorizationDetails([{ ...bare, amount: '999.99999999' }], threshold));
    refuses({ ...bare, amount: '1000' }, /travel_rule is required for a crypto-asset transfer of 1,000 or more/, threshold);
    refuses({ ...bare, amount: 1500 }, /travel_rule is required/, threshold);
    refuses({ ...ibanWithdrawal, travel_rule: travelRule }, /travel_rule is only for crypto-asset transfers/);
  });

  test('validates the travel rule data as IVMS 101: names, codes, LEIs, no unknown fields', () => {
    const rule = (beneficiary: unknown) => ({ ...cryptoWithdrawal, travel_rule: { ...travelRule, beneficiary } });
    refuses(rule({ beneficiaryPersons: [{}] }), /travel_rule\.beneficiary\.beneficiaryPersons\[0\] must hold exactly one of naturalPerson, legalPerson/);
    refuses(rule({ beneficiaryPersons: [{ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'X', legalPersonNameIdentifierType: 'NICK' }] } } }] }), /legalPersonNameIdentifierType must be one of LEGL, SHRT, TRAD/);
    refuses(
      rule({ beneficiaryPersons: [{ legalPerson: { name: { nameIdentifier: [{ legalPersonName: 'X', legalPersonNameIdentifierType: 'LEGL' }] }, nationalIdentification: { nationalIdentifier: '5493001KJTIIGC8Y1R13', nationalIdentifierType: 'LEIX' } } }] }),
      /^authorization_details\[0\]\.travel_rule\.beneficiary\.beneficiaryPersons\[0\]\.legalPerson\.nationalIdentification\.nationalIdentifier is not a valid LEI/,
    );
    refuses(rule({ beneficiaryPersons: [{ naturalPerson: { name: { nameIdentifier: [{ primaryIdentifier: 'Do\u200Be', nameIdentifierType: 'LEGL' }] } } }] }), /primaryIdentifier contains an invisible or control character/);
    refuses(rule({ ...travelRule.beneficiary, wallet: 'x' }), /travel_rule\.beneficiary\.wallet is not a field of this type/);
    refuses({ ...cryptoWithdrawal, travel_rule: { originator: travelRule.originator } }, /travel_rule\.beneficiary is required/);
  });

  test('refuses unknown fields, bad amounts and hidden characters in the purpose', () => {
    refuses({ ...ibanWithdrawal, memo: 'x' }, /^authorization_details\[0\]\.memo is not a field of this type$/);
    refuses({ ...ibanWithdrawal, destination: { ...ibanWithdrawal.destination, reference: 'x' } }, /destination\.reference is not a field of this type/);
    refuses({ ...ibanWithdrawal, amount: '0.00' }, /amount must be a positive decimal amount/);
    refuses({ ...ibanWithdrawal, amount: -1 }, /amount must be a positive decimal amount/);
    refuses({ ...ibanWithdrawal, transfer_type: 'deposit' }, /transfer_type must be one of withdrawal, internal, collateral/);
    refuses({ ...ibanWithdrawal, actions: ['approve'] }, /actions\[0\] must be one of initiate/);
    refuses({ ...ibanWithdrawal, purpose: 'Invoice\u202E711' }, /purpose contains an invisible or control character/);
    refuses({ ...ibanWithdrawal, purpose: 'x'.repeat(141) }, /purpose is too long/);
    const { source_account: _, ...noSource } = ibanWithdrawal;
    refuses(noSource, /source_account is required/);
  });

  test('keys destinations for the address book: internal, IBAN upper case, CAIP-10 with EVM addresses lower-cased', () => {
    assert.equal(destinationKey({ kind: 'internal', account: 'CR-ACC-2' }), 'internal:CR-ACC-2');
    assert.equal(destinationKey({ kind: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX' }), 'iban:DE89370400440532013000');
    assert.equal(destinationKey({ kind: 'blockchain', account: `eip155:1:${evmAddress}` }), `caip10:eip155:1:${evmAddress.toLowerCase()}`);
    const sol = `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp:${base58.encode(new Uint8Array(32).fill(7))}`;
    assert.equal(destinationKey({ kind: 'blockchain', account: sol }), `caip10:${sol}`);
    assert.equal(isCryptoAsset(ether), true);
    assert.equal(isCryptoAsset('USD'), false);
  });

  test('keys assets for controls, totals and policies: an ERC-20 address lower-cased, everything else as given', () => {
    const usdc = 'eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48';
    assert.equal(assetKey(usdc), usdc.toLowerCase());
    assert.equal(assetKey(`eip155:1/erc20:0x${usdc.slice(-40).toUpperCase()}`), usdc.toLowerCase());
    assert.equal(assetKey('USD'), 'USD');
    assert.equal(assetKey('eip155:1/slip44:60'), 'eip155:1/slip44:60');
    const spl = 'solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp/token:EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v';
    assert.equal(assetKey(spl), spl, 'a base58 mint is case-sensitive');
  });

  test('parses CAIP-2, CAIP-10 and CAIP-19 by the specs\' grammar', () => {
    assert.deepEqual(parseChainId('eip155:1'), { id: 'eip155:1', namespace: 'eip155', reference: '1' });
    assert.deepEqual(parseAccountId(`eip155:1:${evmAddress}`)?.address, evmAddress);
    assert.deepEqual(parseAssetType(ether), { chain: { id: 'eip155:1', namespace: 'eip155', reference: '1' }, assetNamespace: 'slip44', assetReference: '60' });
    assert.equal(parseChainId('EIP155:1'), undefined);
    assert.equal(parseChainId('ab:1'), undefined);
    assert.equal(parseAssetType('eip155:1/slip44:60/1'), undefined);
    assert.equal(assetTypeProblem('eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48'), undefined);
    assert.match(accountIdProblem('eip155:01:0x0') ?? '', /not an EIP-155 chain id|not an EVM address/);
  });

  test('tokens and audit events carry the travel rule as its SHA-256, and the consent line names the persons', () => {
    const keys = { beneficiaryName: () => assert.fail('no named IBAN here') };
    const [token] = tokenAuthorizationDetails([cryptoWithdrawal], keys);
    const digest = createHash('sha256').update(canonicalize(travelRule)).digest('base64url');
    const { travel_rule: _, ...rest } = cryptoWithdrawal;
    assert.deepEqual(token, { ...rest, travel_rule_sha256: digest });
    assert.doesNotMatch(JSON.stringify(token), /Doe|Example Custodian/);
    // Idempotent: a token's entry (token exchange narrows by equality) stays as it is.
    assert.deepEqual(tokenAuthorizationDetails([token!], keys), [token]);
    assert.equal(transferFacts(token as unknown as TransferDetail).travel_rule_present, true);
    assert.deepEqual(describeAuthorizationDetails([ibanWithdrawal, cryptoWithdrawal]), [
      'Withdraw EUR 2,500.00 from account CR-ACC-1 to IBAN DE89370400440532013000 (BIC COBADEFFXXX, Example Supplier GmbH) for "Invoice 2026-117"',
      `Withdraw ETH 1.5 (${ether}) from account CR-ACC-1 to blockchain address ${evmAddress} on eip155:1; travel rule: originator Jane Doe, beneficiary Example Custodian SA`,
    ]);
  });

  test("tokens and audit events carry an IBAN beneficiary's name as the address book's keyed name_hmac, never the name", () => {
    const { name: _, ...unnamed } = ibanWithdrawal.destination;
    const nameKey = beneficiaryNameKey(randomBytes(32));
    let asked = 0;
    const keys = { beneficiaryName: () => (asked++, nameKey) };
    const [token] = tokenAuthorizationDetails([ibanWithdrawal], keys);
    assert.equal(asked, 1, 'the key is derived when a named IBAN asks for it');
    assert.deepEqual(token, { ...ibanWithdrawal, destination: { ...unnamed, name_hmac: beneficiaryNameHmac(nameKey, 'Example Supplier GmbH') } });
    assert.deepEqual(destinationForRecord(ibanWithdrawal.destination as Destination, nameKey), token!.destination, "the address book's records say the same");
    assert.doesNotMatch(JSON.stringify(token), /Example Supplier/);
    // Idempotent (token exchange narrows by equality); the same destination; the consent line of the token's form names no one.
    assert.deepEqual(tokenAuthorizationDetails([token!], keys), [token]);
    assert.equal(destinationKey((token as unknown as TransferDetail).destination), destinationKey(ibanWithdrawal.destination as Destination));
    assert.deepEqual(describeAuthorizationDetails([token!]), ['Withdraw EUR 2,500.00 from account CR-ACC-1 to IBAN DE89370400440532013000 (BIC COBADEFFXXX, beneficiary named (see the address book)) for "Invoice 2026-117"']);
    const unnamedWithdrawal = { ...ibanWithdrawal, destination: unnamed };
    assert.deepEqual(tokenAuthorizationDetails([unnamedWithdrawal], keys), [unnamedWithdrawal]);
    assert.equal(asked, 1, 'and only then');
  });
});
