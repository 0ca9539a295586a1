import type { Config } from '../config.ts';
import { derivedKey, resolveMasterKey } from '../keys/master-key.ts';
import { legalNameProblem, type TokenFormKeys } from '../authorization/authorization-details.ts';
import { accountPattern } from '../entities/definition.ts';
import { electronicFormatIBAN, isValidBIC, isValidIBAN } from 'ibantools';
import { join, type Validator } from '../validation.ts';
import { accountIdProblem } from './caip.ts';
import { beneficiaryNameHmac, type TransferDestination } from './detail.ts';

/**
 * A destination as the address book takes it (the `destination` of a `transfer` entry,
 * docs/transfers.md): an internal account, a bank account (IBAN and BIC, ISO 13616 / ISO 9362),
 * or a blockchain account (CAIP-10). Its identity is `destinationKey` (src/transfers/detail.ts):
 * the book stores and matches by that key, so two spellings of one IBAN are one destination.
 */
export type Destination = TransferDestination;

export const destinationKinds = ['internal', 'iban', 'blockchain'] as const;

/**
 * Reads a destination from a document or request body, recording each problem at its path, by the
 * same rules as the `transfer` type at issuance (src/transfers/detail.ts): the IBAN and BIC with
 * ibantools (ISO 13616 check digits and the country's length; ISO 9362), the blockchain account as
 * CAIP-10 with its address checked per chain namespace (src/transfers/caip.ts), the beneficiary's
 * name by the legal-name rule. The IBAN is kept in its electronic format (no spaces, upper case).
 */
export function readDestination(v: Validator, path: string, input: unknown): Destination | undefined {
  const o = v.object(path, input);
  if (!o) return undefined;
  const kind = v.string(join(path, 'kind'), o.kind, { oneOf: destinationKinds }) as Destination['kind'] | undefined;
  if (kind === undefined) return undefined;
  const before = v.problems.length;
  if (kind === 'internal') {
    v.knownKeys(path, o, ['kind', 'account']);
    const account = v.string(join(path, 'account'), o.account, { pattern: accountPattern, patternMessage: 'must be an account identifier' });
    return v.problems.length === before ? { kind, account: account! } : undefined;
  }
  if (kind === 'iban') {
    v.knownKeys(path, o, ['kind', 'iban', 'bic', 'name']);
    const raw = v.string(join(path, 'iban'), o.iban, { maxLength: 64 });
    const iban = raw === undefined ? undefined : (electronicFormatIBAN(raw) ?? raw).toUpperCase();
    if (iban !== undefined && !isValidIBAN(iban)) v.fail(join(path, 'iban'), 'must be a valid IBAN (ISO 13616: country, check digits, account of the country\'s length)');
    const bic = o.bic === undefined ? undefined : v.string(join(path, 'bic'), o.bic, { maxLength: 11 });
    if (bic !== undefined && !isValidBIC(bic)) v.fail(join(path, 'bic'), 'must be a valid BIC (ISO 9362)');
    const name = o.name === undefined ? undefined : v.string(join(path, 'name'), o.name, { maxLength: 140 });
    if (name !== undefined) {
      const problem = legalNameProblem(name);
      if (problem) v.fail(join(path, 'name'), problem);
    }
    if (v.problems.length !== before) return undefined;
    return { kind, iban: iban!, ...(bic !== undefined ? { bic } : {}), ...(name !== undefined ? { name } : {}) };
  }
  v.knownKeys(path, o, ['kind', 'account']);
  const account = v.string(join(path, 'account'), o.account, { maxLength: 200 });
  const problem = account === undefined ? undefined : accountIdProblem(account);
  if (problem) v.fail(join(path, 'account'), problem);
  return v.problems.length === before ? { kind, account: account! } : undefined;
}

/**
 * The key of beneficiary-name digests (`name_hmac`), derived from the master key as the pairwise
 * subject key is (src/identity/pairwise.ts): HKDF-SHA-256, its own info string, 32 bytes.
 */
export function beneficiaryNameKey(masterKey: Buffer): Buffer {
  let key = nameKeys.get(masterKey);
  if (key === undefined) {
    key = derivedKey(masterKey, 'clearance beneficiary-name v1');
    nameKeys.set(masterKey, key);
  }
  return key;
}

/** Derived once per master key (resolveMasterKey gives one Buffer per configuration): every issuance asks for it. */
const nameKeys = new WeakMap<Buffer, Buffer>();

/**
 * The keys of a token's form of authorization details for this configuration (authorization-details.ts
 * tokenAuthorizationDetails): derived only when an entry asks (a named IBAN), from the master key
 * that seals now.
 */
export function tokenFormKeys(config: Config): TokenFormKeys {
  return { beneficiaryName: () => beneficiaryNameKey(resolveMasterKey(config).key) };
}

/** HMAC-SHA-256 (hex) of a beneficiary's name under `beneficiaryNameKey`: what the log and tokens say of the name. */
export { beneficiaryNameHmac };

/**
 * What an audit event or an approval request (whose content is in `approval.requested`) may say of
 * a destination: everything but a beneficiary's name, which is personal data when the beneficiary
 * is a person and the log is immutable — a keyed HMAC of it instead (`name_hmac`, under a key
 * derived from the master key). An unsalted hash could be reversed by hashing likely names, and
 * would stay in the log for good; the HMAC says nothing without the key, while the server (which
 * holds it) can still tell whether the name approved is the name in the book.
 */
export function destinationForRecord(destination: Destination, nameKey: Buffer): Record<string, unknown> {
  if (destination.kind !== 'iban' || destination.name === undefined) return { ...destination };
  const { name, ...rest } = destination;
  return { ...rest, name_hmac: beneficiaryNameHmac(nameKey, name) };
}
