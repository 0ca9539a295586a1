import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import { listProviders, type StoredProvider } from './providers.ts';
import { withinSpan } from '../../clock.ts';

/**
 * The declared identity providers as the sign-in page needs them (whether to offer "Sign in through
 * your organisation", and which one a domain, LEI or idp_hint names), read at most every 30 seconds
 * per node instead of once per page: the page is on the sign-in's round-trip budget (issue 13).
 * Apply on this node forgets it at once (`forgetProviderDirectory`); another node's apply shows
 * within 30 s. Starting a sign-in reads the provider itself, so a disabled one is never used.
 */
const ttlMs = 30_000;
const cache = new WeakMap<object, { at: number; providers: Promise<StoredProvider[]> }>();

export function providerDirectory(db: Kysely<Database>, now: number): Promise<StoredProvider[]> {
  const cached = cache.get(db);
  if (cached && withinSpan(now, cached.at, ttlMs)) return cached.providers;
  const providers = listProviders(db);
  cache.set(db, { at: now, providers });
  providers.catch(() => cache.delete(db));
  return providers;
}

export function forgetProviderDirectory(db: Kysely<Database>): void {
  cache.delete(db);
}

/**
 * The enabled provider a person's words name (home-realm discovery): an email address by its
 * domain, an LEI by the provider's legal entity (the first of that entity's providers), or a
 * provider's id.
 */
export function providerForRealm(providers: readonly StoredProvider[], realm: string): StoredProvider | undefined {
  const text = realm.trim();
  const enabled = providers.filter((p) => p.provider.enabled);
  const at = text.lastIndexOf('@');
  if (at > 0) {
    const domain = text.slice(at + 1).toLowerCase();
    return enabled.find((p) => p.provider.domains.includes(domain));
  }
  const upper = text.toUpperCase();
  return enabled.find((p) => p.provider.legal_entity === upper) ?? enabled.find((p) => p.provider.id === text.toLowerCase()) ?? enabled.find((p) => p.provider.domains.includes(text.toLowerCase()));
}
