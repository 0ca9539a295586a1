import { keccak_256 } from '@noble/hashes/sha3.js';
import { base58 } from '@scure/base';
import { Address, NETWORK, TEST_NETWORK } from '@scure/btc-signer';

/**
 * Chain-agnostic identifiers (ChainAgnostic CAIPs) for crypto-asset transfers, parsed with the
 * specs' own grammar, and the address of each supported chain namespace validated with its field's
 * library. A namespace (or a Bitcoin network) not listed here is refused, naming the supported
 * ones: Clearance does not pass on an address it cannot check (fail closed).
 *
 * - CAIP-2 chain id: `namespace:reference`, namespace `[-a-z0-9]{3,8}`, reference `[-_a-zA-Z0-9]{1,32}`;
 * - CAIP-10 account id: `chain_id:account_address`, address `[-.%a-zA-Z0-9]{1,128}`;
 * - CAIP-19 asset type: `chain_id/asset_namespace:asset_reference`, asset namespace `[-a-z0-9]{3,8}`,
 *   asset reference `[-.%a-zA-Z0-9]{1,128}` (an asset id adds `/token_id`, for non-fungible tokens,
 *   which a transfer of an amount does not name: refused).
 */

const chainIdPattern = /^([-a-z0-9]{3,8}):([-_a-zA-Z0-9]{1,32})$/;
const accountIdPattern = /^([-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}):([-.%a-zA-Z0-9]{1,128})$/;
const assetTypePattern = /^([-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32})\/([-a-z0-9]{3,8}):([-.%a-zA-Z0-9]{1,128})$/;

/** A CAIP-2 chain id, split. */
export interface ChainId {
  /** The whole id, e.g. `eip155:1`. */
  id: string;
  namespace: string;
  reference: string;
}

/** A CAIP-10 account id, split. */
export interface AccountId {
  chain: ChainId;
  address: string;
}

/** A CAIP-19 asset type, split. */
export interface AssetType {
  chain: ChainId;
  assetNamespace: string;
  assetReference: string;
}

/** Parses a CAIP-2 chain id, or undefined when it does not follow the grammar. */
export function parseChainId(value: string): ChainId | undefined {
  const m = chainIdPattern.exec(value);
  return m ? { id: value, namespace: m[1]!, reference: m[2]! } : undefined;
}

/** Parses a CAIP-10 account id, or undefined when it does not follow the grammar. */
export function parseAccountId(value: string): AccountId | undefined {
  const m = accountIdPattern.exec(value);
  if (!m) return undefined;
  return { chain: parseChainId(m[1]!)!, address: m[2]! };
}

/** Parses a CAIP-19 asset type, or undefined when it does not follow the grammar. */
export function parseAssetType(value: string): AssetType | undefined {
  const m = assetTypePattern.exec(value);
  if (!m) return undefined;
  return { chain: parseChainId(m[1]!)!, assetNamespace: m[2]!, assetReference: m[3]! };
}

/** What Clearance knows of a chain namespace: how to check a chain reference, an address, an asset. */
interface Namespace {
  /** The chain reference's problem, or undefined (e.g. a Bitcoin network Clearance does not know). */
  reference(reference: string): string | undefined;
  /** The address's problem on that chain, or undefined. */
  address(address: string, reference: string): string | undefined;
  /** The asset namespaces (CAIP-19) a transfer may name on the chain, and each reference's problem. */
  assets: Record<string, (assetReference: string, reference: string) => string | undefined>;
  /** The address as a destination key compares it (src/transfers/detail.ts destinationKey). */
  normalise(address: string): string;
  /**
   * The asset references (per CAIP-19 asset namespace) that have more than one spelling, as
   * src/transfers/detail.ts `assetKey` compares them; an asset namespace not named here is
   * case-sensitive (a base58 mint) or has one spelling (a SLIP-44 number), and is kept as given.
   */
  assetKeys?: Record<string, (assetReference: string) => string>;
}

/** SLIP-44 coin type: a non-negative integer. */
const slip44 = (ref: string): string | undefined => (/^(0|[1-9]\d{0,9})$/.test(ref) ? undefined : 'is not a SLIP-44 coin type');

// --- EVM (CAIP-2 namespace eip155: reference = EIP-155 chain id) ---------------------------------

/**
 * EIP-55: a 20-byte hex address; all lower or all upper case carries no checksum and is accepted
 * as such; mixed case is a checksum, and must be the right one (keccak-256 of the lower-case hex,
 * a letter upper-cased where the hash's nibble is 8 or more). A mistyped address with a checksum
 * is caught here, before the funds are gone.
 */
export function evmAddressProblem(address: string): string | undefined {
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) return 'is not an EVM address (0x and 40 hexadecimal digits)';
  const hex = address.slice(2);
  if (hex === hex.toLowerCase() || hex === hex.toUpperCase()) return undefined;
  return hex === eip55(hex) ? undefined : 'has a wrong EIP-55 checksum (mixed case that is not the address\'s checksum)';
}

function eip55(hex: string): string {
  const lower = hex.toLowerCase();
  const hash = keccak_256(new TextEncoder().encode(lower));
  let out = '';
  for (let i = 0; i < lower.length; i++) {
    const nibble = (hash[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    out += nibble >= 8 ? lower[i]!.toUpperCase() : lower[i]!;
  }
  return out;
}

const eip155: Namespace = {
  reference: (ref) => (/^[1-9]\d{0,31}$/.test(ref) ? undefined : 'is not an EIP-155 chain id'),
  address: (address) => evmAddressProblem(address),
  assets: {
    slip44,
    // An ERC-20 token by its contract address.
    erc20: (ref) => evmAddressProblem(ref),
  },
  normalise: (address) => address.toLowerCase(),
  // An ERC-20 contract address is hex: lower, upper and EIP-55 case name one contract (EIP-55's
  // case is only a checksum), so the limits of one token are found whichever spelling is sent.
  assetKeys: { erc20: (ref) => ref.toLowerCase() },
};

// --- Bitcoin (CAIP-2 namespace bip122: reference = the first 32 hex digits of the genesis block hash) -------

/** The Bitcoin networks Clearance validates addresses for, by CAIP-2 reference. */
const bitcoinNetworks: Record<string, { name: string; network: typeof NETWORK }> = {
  '000000000019d6689c085ae165831e93': { name: 'mainnet', network: NETWORK },
  '000000000933ea01ad0ee984209779ba': { name: 'testnet3', network: TEST_NETWORK },
  '00000000da84f2bafbbc53dee25a72ae': { name: 'testnet4', network: TEST_NETWORK },
  '00000008819873e925422c1ff0f99f7c': { name: 'signet', network: TEST_NETWORK },
};

/**
 * A Bitcoin address on the chain's own network (@scure/btc-signer `Address(network).decode`):
 * base58check P2PKH/P2SH with the network's version byte, or a segwit address with the network's
 * human-readable part, bech32 for witness version 0 (BIP 173) and bech32m for 1 and above
 * (BIP 350), with a program of the right length. A testnet address for a mainnet chain (or the
 * reverse) is refused: the network is part of the address.
 */
function bitcoinAddressProblem(address: string, reference: string): string | undefined {
  const chain = bitcoinNetworks[reference];
  if (!chain) return 'is on a Bitcoin network Clearance does not validate';
  try {
    Address(chain.network).decode(address);
    return undefined;
  } catch {
    const other = Object.values(bitcoinNetworks).find((n) => n.network !== chain.network && decodes(address, n.network));
    return other ? `is a ${other.network === NETWORK ? 'mainnet' : 'testnet'} address, not one of Bitcoin ${chain.name}` : `is not a valid Bitcoin ${chain.name} address`;
  }
}

function decodes(address: string, network: typeof NETWORK): boolean {
  try {
    Address(network).decode(address);
    return true;
  } catch {
    return false;
  }
}

const bip122: Namespace = {
  reference: (ref) => (bitcoinNetworks[ref] ? undefined : `is not a Bitcoin network Clearance validates (supported: ${Object.entries(bitcoinNetworks).map(([r, n]) => `bip122:${r} (${n.name})`).join(', ')})`),
  address: bitcoinAddressProblem,
  assets: { slip44: (ref) => slip44(ref) ?? (ref === '0' || ref === '1' ? undefined : 'is not the coin of a Bitcoin network (slip44:0, or slip44:1 on a test network)') },
  // Bech32 is case-insensitive (and all lower case is canonical); base58 is case-sensitive.
  normalise: (address) => (/^(bc|tb)1/i.test(address) ? address.toLowerCase() : address),
};

// --- Solana (CAIP-2 namespace solana: reference = the first 32 characters of the genesis hash) ----------

/**
 * A Solana address: a 32-byte public key (or program-derived address) in base58 (@scure/base).
 * That is all a Solana address is, and what @solana/addresses `isAddress` checks too.
 */
function solanaAddressProblem(address: string): string | undefined {
  if (address.length < 32 || address.length > 44) return 'is not a Solana address (a 32-byte key in base58)';
  try {
    return base58.decode(address).length === 32 ? undefined : 'is not a Solana address (a 32-byte key in base58)';
  } catch {
    return 'is not a Solana address (a 32-byte key in base58)';
  }
}

const solana: Namespace = {
  reference: (ref) => (/^[1-9A-HJ-NP-Za-km-z]{32}$/.test(ref) ? undefined : 'is not a Solana genesis hash prefix'),
  address: (address) => solanaAddressProblem(address),
  assets: {
    slip44: (ref) => (ref === '501' ? undefined : 'is not the coin of Solana (slip44:501)'),
    // An SPL token by its mint address.
    token: (ref) => solanaAddressProblem(ref),
  },
  normalise: (address) => address,
};

const namespaces: Record<string, Namespace> = { eip155, bip122, solana };

/** The chain namespaces whose addresses Clearance validates. */
export const supportedNamespaces: readonly string[] = Object.keys(namespaces);

function namespaceProblem(chain: ChainId): string | undefined {
  const ns = namespaces[chain.namespace];
  if (!ns) return `names chain namespace ${chain.namespace}, whose addresses Clearance cannot validate (supported: ${supportedNamespaces.join(', ')})`;
  const problem = ns.reference(chain.reference);
  return problem ? `names chain ${chain.id}, which ${problem}` : undefined;
}

/** Why a CAIP-10 account id is refused as a transfer destination, or undefined. */
export function accountIdProblem(value: string): string | undefined {
  const account = parseAccountId(value);
  if (!account) return 'is not a CAIP-10 account id (namespace:reference:address)';
  const chain = namespaceProblem(account.chain);
  if (chain) return chain;
  const problem = namespaces[account.chain.namespace]!.address(account.address, account.chain.reference);
  return problem ? `${problem}` : undefined;
}

/** Why a CAIP-19 asset type is refused as a transfer's asset, or undefined. */
export function assetTypeProblem(value: string): string | undefined {
  const asset = parseAssetType(value);
  if (!asset) return 'is neither an ISO 4217 currency code nor a CAIP-19 asset type (chain_id/asset_namespace:asset_reference)';
  const chain = namespaceProblem(asset.chain);
  if (chain) return chain;
  const ns = namespaces[asset.chain.namespace]!;
  const check = ns.assets[asset.assetNamespace];
  if (!check) return `names asset namespace ${asset.assetNamespace}, which a transfer on ${asset.chain.namespace} cannot use (supported: ${Object.keys(ns.assets).join(', ')})`;
  const problem = check(asset.assetReference, asset.chain.reference);
  return problem ? `names asset reference ${asset.assetReference}, which ${problem}` : undefined;
}

/**
 * A CAIP-19 asset type in its canonical spelling, for comparison (the limits and totals of an asset,
 * src/transfers/detail.ts `assetKey`): an ERC-20 contract address lower-cased; anything else as
 * given (the grammar already makes chain and asset namespaces lower case; a SLIP-44 number has one
 * spelling; a Solana mint is base58, which is case-sensitive). A value that is not a CAIP-19 asset
 * type is returned as it is.
 */
export function normalisedAssetType(value: string): string {
  const asset = parseAssetType(value);
  if (!asset) return value;
  const key = namespaces[asset.chain.namespace]?.assetKeys?.[asset.assetNamespace];
  return key ? `${asset.chain.id}/${asset.assetNamespace}:${key(asset.assetReference)}` : value;
}

/** A CAIP-10 account id with its address normalised for comparison (EVM lower-cased hex; others as given). */
export function normalisedAccountId(value: string): string {
  const account = parseAccountId(value);
  if (!account) return value;
  const ns = namespaces[account.chain.namespace];
  return `${account.chain.id}:${ns ? ns.normalise(account.address) : account.address}`;
}
