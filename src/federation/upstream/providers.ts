import type { Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import type { LegalEntity } from '../../entities/definition.ts';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { open, seal } from '../../keys/sealed-box.ts';
import { sealSecret } from '../../signals/webhook-secret.ts';
import type { Database } from '../../storage/schema.ts';
import type { Validator } from '../../validation.ts';
import { providerIdPattern, readIdentityProvider, type IdentityProvider, type IdentityProviderEntry, type OidcProvider, type SamlProvider } from './definition.ts';

/**
 * The `identity_providers` section of apply (docs/identity-brokering.md): upstream identity
 * providers created or updated, never removed (their links and history stay); `enabled: false`
 * disables one, which ends the sessions its people hold through it, in apply's transaction.
 */

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/** Reads and cross-checks the section: ids, issuers and domains unique; the legal entity declared, the desks its own; a secret for every provider. */
export async function planIdentityProviders(
  ctx: Pick<Context, 'storage' | 'entities'>,
  v: Validator,
  list: List,
  duplicates: Duplicates,
  documentEntities: readonly LegalEntity[],
): Promise<IdentityProviderEntry[]> {
  const entries = list('identity_providers', (p, x) => readIdentityProvider(v, p, x));
  duplicates(v, 'identity_providers', entries.map((e) => [e.item.provider.id, e.at]), 'id');
  duplicates(v, 'identity_providers', entries.map((e) => [e.item.provider.issuer, e.at]), 'issuer');
  if (entries.length === 0) return [];
  const snapshot = await ctx.entities.snapshot();
  const deskOwner = new Map<string, string>([...snapshot.desks].map(([id, d]) => [id, d.lei]));
  const entities = new Set(snapshot.legalEntities.keys());
  for (const entity of documentEntities) {
    entities.add(entity.lei);
    for (const desk of entity.desks) deskOwner.set(desk.id, entity.lei);
  }
  const stored = await listProviders(ctx.storage.db);
  // A domain belongs to one provider: stored ones keep theirs unless the document declares them anew.
  const redeclared = new Set(entries.map((e) => e.item.provider.id));
  const domainOwner = new Map<string, string>();
  for (const p of stored) if (!redeclared.has(p.provider.id)) for (const d of p.provider.domains) domainOwner.set(d, p.provider.id);
  for (const { item, at } of entries) {
    const { provider } = item;
    const path = `identity_providers[${at}]`;
    if (!entities.has(provider.legal_entity)) v.fail(`${path}.legal_entity`, `no legal entity "${provider.legal_entity}" (declare it under legal_entities)`);
    provider.desks.forEach((desk, i) => {
      const owner = deskOwner.get(desk);
      if (owner === undefined) v.fail(`${path}.desks[${i}]`, `no desk "${desk}"`);
      else if (owner !== provider.legal_entity) v.fail(`${path}.desks[${i}]`, `desk "${desk}" belongs to ${owner}, not to the provider's legal entity`);
    });
    provider.domains.forEach((domain, i) => {
      const holder = domainOwner.get(domain);
      if (holder !== undefined && holder !== provider.id) v.fail(`${path}.domains[${i}]`, `"${domain}" is already a domain of identity provider ${holder}`);
      else domainOwner.set(domain, provider.id);
    });
    const holder = stored.find((s) => s.provider.issuer === provider.issuer && s.provider.id !== provider.id);
    if (holder) v.fail(`${path}.issuer`, `is already the issuer of identity provider ${holder.provider.id}`);
    if (provider.kind === 'oidc' && provider.token_endpoint_auth_method !== 'private_key_jwt') {
      // A stored secret counts; a stored private_key_jwt key does not (switching back needs a secret).
      const hasSecret = item.clientSecret !== undefined || stored.some((s) => s.provider.id === provider.id && s.secretSealed !== null && s.provider.kind === 'oidc' && s.provider.token_endpoint_auth_method !== 'private_key_jwt');
      if (!hasSecret) v.fail(`${path}.client_secret`, `is required for ${provider.token_endpoint_auth_method} (none is stored for this provider)`);
    }
    const kindOf = stored.find((s) => s.provider.id === provider.id)?.provider.kind;
    if (kindOf !== undefined && kindOf !== provider.kind) v.fail(`${path}.kind`, `identity provider ${provider.id} is ${kindOf}; a provider's kind does not change (declare another id)`);
  }
  return entries.map((e) => e.item);
}

export type IdentityProviderChange = { kind: 'identity_provider'; id: string; outcome: 'created' | 'updated' | 'unchanged' };

/** The section's writes in apply's transaction; a provider disabled here has its people's sessions through it ended (`identity_provider.disabled`). */
export async function executeIdentityProviders(
  trx: Transaction<Database>,
  now: number,
  masterKey: Buffer,
  entries: readonly IdentityProviderEntry[],
  events: AuditEvent[],
  actor: string,
): Promise<IdentityProviderChange[]> {
  const changes: IdentityProviderChange[] = [];
  for (const { provider, clientSecret } of entries) {
    const row = await trx.selectFrom('identity_providers').selectAll().where('id', '=', provider.id).executeTakeFirst();
    let sealed = row?.secret_sealed ?? null;
    if (clientSecret !== undefined) sealed = sealSecret(masterKey, sealed, clientSecret, sealingBinding(provider.id));
    // private_key_jwt: a key of its own, made once (kept while the method stays), never a secret.
    if (provider.kind === 'oidc' && provider.token_endpoint_auth_method === 'private_key_jwt' && !isSealedKey(masterKey, sealed, provider.id)) {
      sealed = seal(masterKey, Buffer.from(JSON.stringify(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' })), 'utf8'), sealingBinding(provider.id));
    }
    const values = { kind: provider.kind, definition: JSON.stringify(provider), secret_sealed: sealed, enabled: provider.enabled ? 1 : 0 };
    if (!row) {
      await trx.insertInto('identity_providers').values({ id: provider.id, ...values, created_at: now, updated_at: now }).execute();
      changes.push({ kind: 'identity_provider', id: provider.id, outcome: 'created' });
      continue;
    }
    if (row.definition === values.definition && row.secret_sealed === values.secret_sealed && Number(row.enabled) === values.enabled) {
      changes.push({ kind: 'identity_provider', id: provider.id, outcome: 'unchanged' });
      continue;
    }
    await trx.updateTable('identity_providers').set({ ...values, updated_at: now }).where('id', '=', provider.id).execute();
    changes.push({ kind: 'identity_provider', id: provider.id, outcome: 'updated' });
    if (Number(row.enabled) === 1 && !provider.enabled) {
      const ended = await trx
        .updateTable('sessions')
        .set({ ended_at: now, end_reason: 'provider_disabled' })
        .where('assurance_provider', '=', provider.id)
        .where('ended_at', 'is', null)
        .executeTakeFirst();
      events.push({ type: 'identity_provider.disabled', actor, details: { provider: provider.id, issuer: provider.issuer, sessions_ended: Number(ended.numUpdatedRows) } });
    }
  }
  return changes;
}

/** A provider as stored. */
export interface StoredProvider<P extends IdentityProvider = IdentityProvider> {
  provider: P;
  secretSealed: string | null;
}

/** The stored provider when it is an OpenID Provider. */
export function asOidc(stored: StoredProvider | undefined): StoredProvider<OidcProvider> | undefined {
  return stored?.provider.kind === 'oidc' ? (stored as StoredProvider<OidcProvider>) : undefined;
}

/** The stored provider when it is a SAML IdP. */
export function asSaml(stored: StoredProvider | undefined): StoredProvider<SamlProvider> | undefined {
  return stored?.provider.kind === 'saml' ? (stored as StoredProvider<SamlProvider>) : undefined;
}

function fromRow(row: Database['identity_providers']): StoredProvider {
  // `enabled` is the column's: the one apply and the disable path write together.
  return { provider: { ...(JSON.parse(row.definition) as IdentityProvider), enabled: Number(row.enabled) === 1 }, secretSealed: row.secret_sealed };
}

export async function listProviders(db: Kysely<Database>): Promise<StoredProvider[]> {
  return (await db.selectFrom('identity_providers').selectAll().orderBy('id').execute()).map(fromRow);
}

/** The provider with this id (enabled or not); undefined for an unknown or malformed id. */
export async function findProvider(db: Kysely<Database>, id: string): Promise<StoredProvider | undefined> {
  if (!providerIdPattern.test(id)) return undefined;
  const row = await db.selectFrom('identity_providers').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? fromRow(row) : undefined;
}

function isSealedKey(masterKey: Buffer, sealed: string | null, id: string): boolean {
  return sealed !== null && open(masterKey, sealed, sealingBinding(id)).toString('utf8').startsWith('{');
}

/** The public key a private_key_jwt provider's assertions are verified with (kid `upstream-<id>`), for <issuer>/broker/oidc/jwks. */
export function providerPublicJwk(masterKey: Buffer, stored: StoredProvider<OidcProvider>): Record<string, unknown> | undefined {
  if (stored.provider.token_endpoint_auth_method !== 'private_key_jwt' || !isSealedKey(masterKey, stored.secretSealed, stored.provider.id)) return undefined;
  const jwk = JSON.parse(providerSecret(masterKey, stored)) as Record<string, unknown>;
  const publicJwk = createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'jwk' });
  return { ...publicJwk, kid: `upstream-${stored.provider.id}`, alg: 'ES256', use: 'sig' };
}

/** The client secret at the upstream — or, for private_key_jwt, the private JWK as JSON — opened with the master key. */
export function providerSecret(masterKey: Buffer, stored: StoredProvider<OidcProvider>): string {
  if (!stored.secretSealed) throw new Error(`identity provider ${stored.provider.id} has no client secret`);
  return open(masterKey, stored.secretSealed, sealingBinding(stored.provider.id)).toString('utf8');
}

/** What binds a sealed secret to its row (a sealed value copied onto another row does not open). */
function sealingBinding(id: string): string {
  return `identity_providers:${id}`;
}
