import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { pkiResourceServer } from '../resource-servers/builtins.ts';
import { bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';
import { profilesGeneration } from './index.ts';
import { issueScope, readCertificateProfile, upsertProfile, type CertificateProfile } from './profiles.ts';

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/** Reads `certificate_profiles` (planApply's helper); the scopes they add are offered to clients in the same document. */
export function planCertificateProfiles(v: Validator, list: List, duplicates: Duplicates): { profiles: CertificateProfile[]; scopes: string[] } {
  const entries = list('certificate_profiles', (p, x) => readCertificateProfile(v, p, x));
  duplicates(v, 'certificate_profiles', entries.map((e) => [e.item.name, e.at]), 'name');
  const profiles = entries.map((e) => e.item);
  return { profiles, scopes: profiles.map((p) => issueScope(p.name)) };
}

/**
 * Writes the profiles inside the apply transaction (a change is a new version; profiles are never
 * removed by apply, so a certificate's profile stays readable) and gives the CA API's resource
 * server one `pki:issue:<profile>` scope per profile.
 */
export async function executeCertificateProfiles(ctx: Context, trx: Transaction<Database>, profiles: CertificateProfile[]): Promise<{ kind: 'certificate_profile'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  if (profiles.length === 0) return [];
  const now = ctx.clock.now();
  const changes = [];
  for (const profile of profiles) changes.push({ kind: 'certificate_profile' as const, id: profile.name, outcome: await upsertProfile(trx, now, profile) });
  if (changes.some((c) => c.outcome !== 'unchanged')) {
    await bumpGeneration(trx, profilesGeneration);
    const names = (await trx.selectFrom('pki_profiles').select('name').execute()).map((p) => p.name);
    await ctx.resourceServers.upsert(trx, pkiResourceServer(ctx.config.issuer, names));
  }
  return changes;
}
