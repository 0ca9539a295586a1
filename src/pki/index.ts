import type { Kysely } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { Authorities } from './authority.ts';
import { Custodies } from './custody/custodies.ts';
import type { KeyCustody } from './custody/custody.ts';
import { SoftwareCustody } from './custody/software.ts';
import { loadProfiles, type CertificateProfile } from './profiles.ts';
import { CertificateStatus, checkOwnCertificate, IssuerMemory, type TrustOutcome } from './status.ts';
import type { X509Certificate } from 'node:crypto';

/** The generation an apply that changes certificate profiles bumps. */
export const profilesGeneration = 'pki_profiles';

/** The private CA's handles (src/pki, docs/pki.md): custody, its authorities, profiles, status. */
export interface Pki {
  custodies: Custodies;
  authorities: Authorities;
  status: CertificateStatus;
  profiles(): Promise<Map<string, { profile: CertificateProfile; version: number }>>;
  invalidateProfiles(): void;
  /** Whether a presented client certificate is the CA's, and usable now (src/pki/status.ts). */
  trust(certificate: X509Certificate): Promise<TrustOutcome>;
}

export function createPki(db: Kysely<Database>, masterKey: Buffer, clock: Clock, options: { pkcs11?: KeyCustody } = {}): Pki {
  const custodies = new Custodies(new SoftwareCustody(db, masterKey, clock), options.pkcs11);
  const authorities = new Authorities(db, custodies, clock);
  const status = new CertificateStatus(db, clock);
  const profiles = new GenerationCache(db, profilesGeneration, () => loadProfiles(db), clock);
  const issuers = new IssuerMemory();
  const pki: Pki = {
    custodies,
    authorities,
    status,
    profiles: () => profiles.get(),
    invalidateProfiles: () => profiles.invalidate(),
    trust: (certificate) => checkOwnCertificate({ authorities, status, profiles: pki.profiles, clock, issuers }, certificate),
  };
  return pki;
}
