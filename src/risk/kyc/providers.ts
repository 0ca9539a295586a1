import type { Kysely, Transaction } from 'kysely';
import { readJwks } from '../../federation/definition.ts';
import { openSecretKey, readHmacSecret, sealSecret } from '../../signals/webhook-secret.ts';
import type { Database } from '../../storage/schema.ts';
import { join, type Validator } from '../../validation.ts';
import { providerPattern } from './record.ts';

/**
 * KYC providers (docs/risk.md "KYC/AML lifecycle"): the `kyc.providers` section of apply names each
 * identity-verification or KYB provider whose signed webhooks (POST /kyc/webhooks/{id},
 * ./webhook.ts) change KYC records, and how it signs:
 * - `hmac`: HMAC-SHA256 with `secret` (Standard Webhooks: at least 32 characters; a `whsec_`
 *   prefix means the rest is base64), write-only: stored only sealed with the master key (bound to
 *   the provider's id), never returned, logged or audited; an entry that omits it keeps the stored one;
 * - `jws`: a compact JWS verified with the provider's public keys, `jwks` (a JWK Set).
 * When the section is present it is the whole list: providers it does not name are removed (their
 * webhooks are refused from then on).
 */
export interface KycProviderEntry {
  id: string;
  signing: 'hmac' | 'jws';
  /** The HMAC secret as given in the document; never stored in clear. */
  secret?: string;
  jwks?: { keys: Record<string, unknown>[] };
}

/** A provider as stored (the secret stays sealed). */
export interface KycProvider {
  id: string;
  signing: 'hmac' | 'jws';
  secretSealed?: string;
  jwks?: { keys: Record<string, unknown>[] };
}

/** Reads the `kyc` section: `{ providers: [...] }`. */
export function readKycSection(v: Validator, value: unknown): KycProviderEntry[] | undefined {
  const o = v.object('kyc', value);
  if (!o) return undefined;
  v.knownKeys('kyc', o, ['providers']);
  if (o.providers === undefined) return [];
  const entries = v.array('kyc.providers', o.providers, (p, x) => readProvider(v, p, x));
  if (!entries) return undefined;
  v.uniqueIds('kyc.providers', entries);
  return entries;
}

function readProvider(v: Validator, path: string, value: unknown): KycProviderEntry | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['id', 'signing', 'secret', 'jwks']);
  const id = v.string(join(path, 'id'), o.id, { pattern: providerPattern, patternMessage: 'must be lowercase letters, digits, _ and - (at most 64)' });
  const signing = v.string(join(path, 'signing'), o.signing, { oneOf: ['hmac', 'jws'] }) as 'hmac' | 'jws' | undefined;
  const secret = readHmacSecret(v, path, o.secret, signing);
  let jwks: KycProviderEntry['jwks'];
  if (signing === 'jws') {
    if (o.jwks === undefined) v.fail(join(path, 'jwks'), 'is required for jws signing (the provider\'s public keys)');
    else jwks = readJwks(v, join(path, 'jwks'), o.jwks);
  } else if (o.jwks !== undefined) {
    v.fail(join(path, 'jwks'), 'is for jws signing only');
  }
  if (v.problems.length > before || id === undefined || signing === undefined) return undefined;
  return { id, signing, ...(secret !== undefined ? { secret } : {}), ...(jwks ? { jwks } : {}) };
}

/** The section checked against what is stored: an hmac provider needs a secret unless one is stored. */
export async function planKycProviders(db: Kysely<Database>, v: Validator, value: unknown): Promise<KycProviderEntry[] | undefined> {
  const entries = readKycSection(v, value);
  if (!entries) return undefined;
  for (const [i, entry] of entries.entries()) {
    if (entry.signing !== 'hmac' || entry.secret !== undefined) continue;
    const stored = await db.selectFrom('kyc_providers').select('secret_sealed').where('id', '=', entry.id).executeTakeFirst();
    if (!stored?.secret_sealed) v.fail(`kyc.providers[${i}].secret`, 'is required for hmac signing (none is stored for this provider)');
  }
  return entries;
}

export type KycProviderChange = { kind: 'kyc_provider'; id: string; outcome: 'created' | 'updated' | 'unchanged' | 'removed' };

/** The section's writes in apply's transaction: the listed providers created or updated, the others removed. */
export async function executeKycProviders(trx: Transaction<Database>, now: number, masterKey: Buffer, entries: readonly KycProviderEntry[]): Promise<KycProviderChange[]> {
  const changes: KycProviderChange[] = [];
  const existing = new Map((await trx.selectFrom('kyc_providers').selectAll().execute()).map((row) => [row.id, row]));
  for (const entry of entries) {
    const row = existing.get(entry.id);
    existing.delete(entry.id);
    let sealed = entry.signing === 'hmac' ? (row?.secret_sealed ?? null) : null;
    if (entry.signing === 'hmac' && entry.secret !== undefined) sealed = sealSecret(masterKey, sealed, entry.secret, sealingBinding(entry.id));
    // planKycProviders found a secret for every hmac provider; a race with another apply is refused here.
    if (entry.signing === 'hmac' && sealed === null) throw new Error(`KYC provider ${entry.id} signs with hmac but has no secret`);
    const values = { signing: entry.signing, secret_sealed: sealed, jwks: entry.jwks ? JSON.stringify(entry.jwks) : null };
    if (!row) {
      await trx.insertInto('kyc_providers').values({ id: entry.id, ...values, created_at: now, updated_at: now }).execute();
      changes.push({ kind: 'kyc_provider', id: entry.id, outcome: 'created' });
    } else if (row.signing === values.signing && row.secret_sealed === values.secret_sealed && row.jwks === values.jwks) {
      changes.push({ kind: 'kyc_provider', id: entry.id, outcome: 'unchanged' });
    } else {
      await trx.updateTable('kyc_providers').set({ ...values, updated_at: now }).where('id', '=', entry.id).execute();
      changes.push({ kind: 'kyc_provider', id: entry.id, outcome: 'updated' });
    }
  }
  for (const id of existing.keys()) {
    await trx.deleteFrom('kyc_providers').where('id', '=', id).execute();
    changes.push({ kind: 'kyc_provider', id, outcome: 'removed' });
  }
  return changes;
}

/** The provider with this id; undefined when none is declared. */
export async function findKycProvider(db: Kysely<Database>, id: string): Promise<KycProvider | undefined> {
  if (!providerPattern.test(id)) return undefined;
  const row = await db.selectFrom('kyc_providers').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id,
    signing: row.signing as 'hmac' | 'jws',
    ...(row.secret_sealed !== null ? { secretSealed: row.secret_sealed } : {}),
    ...(row.jwks !== null ? { jwks: JSON.parse(row.jwks) as { keys: Record<string, unknown>[] } } : {}),
  };
}

/** The HMAC key of an hmac provider (its secret opened with the master key). */
export function providerHmacKey(masterKey: Buffer, provider: KycProvider): Buffer {
  if (!provider.secretSealed) throw new Error(`KYC provider ${provider.id} has no secret`);
  return openSecretKey(masterKey, provider.secretSealed, sealingBinding(provider.id));
}

/** What binds a sealed secret to its row (a sealed value copied onto another row does not open). */
function sealingBinding(id: string): string {
  return `kyc_providers:${id}`;
}
