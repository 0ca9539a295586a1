import { X509Certificate } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Context } from '../../context.ts';
import { loadProfiles, type CertificateProfile } from '../../pki/profiles.ts';
import { bumpGeneration, GenerationCache } from '../../storage/generations.ts';
import type { Database } from '../../storage/schema.ts';
import { join, type Validator } from '../../validation.ts';

/**
 * Apply's `person_certificates` section (docs/certificate-sign-in.md, docs/apply.md): the
 * certificate authorities trusted to sign people in with a client certificate — a smart card, or
 * a certificate kept in software — each with what its certificates mean and how they map to a
 * person.
 *
 *   person_certificates:
 *     authorities:
 *       - name: corporate-smartcards
 *         certificates: |                      # PEM: the CA certificates that sign people's certificates
 *           -----BEGIN CERTIFICATE-----
 *           ...
 *         hardware_policy_oids: [1.3.6.1.4.1.99999.1.2]   # policies that mean "key on a PIN-protected hardware token"
 *         software_certificates: single_factor            # or refuse
 *         revocation: { method: ocsp, timeout_ms: 2000, on_unavailable: refuse }
 *         mapping:
 *           - { certificate: san_upn, person: email }
 *       - name: clearance-smartcards
 *         clearance_profile: person-smartcard  # certificates of Clearance's own CA (src/pki) of this profile
 *         hardware_policy_oids: [1.3.6.1.4.1.99999.1.2]
 *         mapping:
 *           - { certificate: san_email, person: email }
 *
 * When the section is present its `authorities` are the whole list: one not named is removed (a
 * CA no longer trusted stops signing people in at the next apply). An empty list turns
 * certificate sign-in off. Read at every certificate sign-in and sign-in page, through a cache
 * that an apply anywhere refreshes within a second (`person_certificates` generation).
 */

/** Where in a certificate a mapping rule reads the person's name. */
export const mappingSources = ['san_email', 'san_upn', 'subject_cn', 'subject_serial_number', 'subject_email'] as const;
export type MappingSource = (typeof mappingSources)[number];

/**
 * One mapping rule: a certificate field, read as the person's `username` or `email`. `domains`
 * keeps only values at those domains (for email-shaped fields); `local_part` reads only what is
 * before the `@` (a UPN `alice@corp.example` as username `alice`).
 */
export interface MappingRule {
  certificate: MappingSource;
  person: 'username' | 'email';
  domains?: string[];
  local_part?: boolean;
}

/**
 * How an external CA's certificates are checked for revocation (Clearance's own CA: its status
 * store, always). `on_unavailable: refuse` (hard fail, the default): no answer in `timeout_ms` (or
 * one that does not verify) refuses the sign-in; `allow` (soft fail) lets it go on, recorded as
 * `revocation: unavailable` in its audit event.
 */
export interface RevocationCheck {
  method: 'ocsp' | 'crl';
  /** The responder or CRL's URL; else the certificate's own (AIA OCSP, CRL distribution point). */
  url?: string;
  timeout_ms: number;
  /** CRL only: seconds a fetched CRL is used before it is fetched again (never past its nextUpdate). */
  refresh_seconds: number;
  on_unavailable: 'refuse' | 'allow';
  /**
   * Whether a responder or CRL the certificate names may be on a private, loopback or link-local
   * address (default false: the CA's word is not the network's; docs/federation.md "SSRF rules for
   * fetching"). A configured `url` may be, as the operator wrote it.
   */
  allow_private_network?: true;
}

/** One trusted authority as stored (`person_certificate_authorities.definition`). */
export interface PersonCertificateAuthority {
  name: string;
  description?: string;
  /** PEM: the CA certificates that sign people's certificates (an external CA). */
  certificates?: string;
  /** A certificate profile of Clearance's own CA, whose certificates sign people in. */
  clearance_profile?: string;
  /** Certificate policy OIDs (RFC 5280 §4.2.1.4) under which the key is on a PIN-protected hardware token. */
  hardware_policy_oids: string[];
  /** A certificate with none of those policies: signs in at the lowest level, or is refused. */
  software_certificates: 'single_factor' | 'refuse';
  /** External CAs only. */
  revocation?: RevocationCheck;
  /** In order: the first rule whose field the certificate has decides. */
  mapping: MappingRule[];
}

export interface PersonCertificatesSection {
  authorities: PersonCertificateAuthority[];
}

/** An authority ready to check certificates with: its CA certificates parsed. */
export interface LoadedAuthority {
  definition: PersonCertificateAuthority;
  /** The external CA's certificates (empty for Clearance's own CA). */
  anchors: X509Certificate[];
}

/** The generation an apply that changes the section bumps. */
export const personCertificatesGeneration = 'person_certificates';

const namePattern = /^[a-z][a-z0-9-]{0,39}$/;
const oidPattern = /^[0-2](\.(0|[1-9][0-9]{0,9})){1,20}$/;
const domainPattern = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;
const authorityFields = ['name', 'description', 'certificates', 'clearance_profile', 'hardware_policy_oids', 'software_certificates', 'revocation', 'mapping'];
const revocationFields = ['method', 'url', 'timeout_ms', 'refresh_seconds', 'on_unavailable', 'allow_private_network'];
const ruleFields = ['certificate', 'person', 'domains', 'local_part'];
const maxBundleLength = 256 * 1024;

/**
 * Validates apply's `person_certificates` section, recording every problem under `path`. A
 * `clearance_profile` must name a profile (stored, or in this document's `certificate_profiles`)
 * that authenticates clients and is not a `device` profile: a device certificate identifies a
 * device, never a person (AMENDMENTS).
 */
export async function planPersonCertificates(
  ctx: Pick<Context, 'storage' | 'clock'>,
  v: Validator,
  path: string,
  value: unknown,
  documentProfiles: readonly CertificateProfile[] = [],
): Promise<PersonCertificatesSection | undefined> {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['authorities']);
  const profiles = new Map([...(await loadProfiles(ctx.storage.db))].map(([name, stored]) => [name, stored.profile]));
  for (const profile of documentProfiles) profiles.set(profile.name, profile);
  const now = ctx.clock.now();
  // The valid entries with their index: the checks across entries still run when some are invalid
  // (every problem in one pass), at exact paths.
  const listPath = join(path, 'authorities');
  const entries: { authority: PersonCertificateAuthority; at: number }[] = [];
  if (!Array.isArray(o.authorities)) v.fail(listPath, 'must be an array');
  else {
    o.authorities.forEach((x: unknown, at: number) => {
      const authority = readAuthority(v, `${listPath}[${at}]`, x, profiles, now);
      if (authority) entries.push({ authority, at });
    });
  }
  const seen = new Map<string, number>();
  for (const { authority, at } of entries) {
    const first = seen.get(authority.name);
    if (first !== undefined) v.fail(`${listPath}[${at}].name`, `"${authority.name}" is also defined at ${listPath}[${first}]`);
    else seen.set(authority.name, at);
  }
  // One CA, one meaning: the authority that checks a certificate is the one holding its issuer.
  const holders = new Map<string, number>();
  for (const { authority, at } of entries) {
    for (const pem of pemBlocks(authority.certificates ?? '')) {
      const fingerprint = new X509Certificate(pem).fingerprint256;
      const first = holders.get(fingerprint);
      if (first !== undefined && first !== at) v.fail(`${listPath}[${at}].certificates`, `holds a CA certificate that ${listPath}[${first}] holds too`);
      else holders.set(fingerprint, at);
    }
  }
  const authorities = entries.map((e) => e.authority);
  return v.problems.length === before ? { authorities } : undefined;
}

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function readAuthority(v: Validator, path: string, value: unknown, profiles: ReadonlyMap<string, CertificateProfile>, now: number): PersonCertificateAuthority | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, authorityFields);
  const name = v.string(join(path, 'name'), o.name, { pattern: namePattern, patternMessage: 'must be 1 to 40 of a-z, 0-9 and -, starting with a letter' });
  const description = o.description === undefined ? undefined : v.string(join(path, 'description'), o.description, { maxLength: 300 });
  if ((o.certificates === undefined) === (o.clearance_profile === undefined)) {
    v.fail(path, 'needs exactly one of certificates (an external CA) and clearance_profile (Clearance’s own CA)');
  }
  const certificates = o.certificates === undefined ? undefined : readBundle(v, join(path, 'certificates'), o.certificates, now);
  const profile = o.clearance_profile === undefined ? undefined : readProfile(v, join(path, 'clearance_profile'), o.clearance_profile, profiles);
  const hardware =
    o.hardware_policy_oids === undefined
      ? []
      : v.array(join(path, 'hardware_policy_oids'), o.hardware_policy_oids, (p, x) => v.string(p, x, { pattern: oidPattern, patternMessage: 'must be a dotted OID' }), { unique: true });
  const software = o.software_certificates === undefined ? 'single_factor' : (v.string(join(path, 'software_certificates'), o.software_certificates, { oneOf: ['single_factor', 'refuse'] }) as PersonCertificateAuthority['software_certificates'] | undefined);
  if (software === 'refuse' && hardware?.length === 0) v.fail(join(path, 'hardware_policy_oids'), 'names no policy, and software certificates are refused: no certificate could sign anyone in');
  let revocation: RevocationCheck | undefined;
  if (o.certificates !== undefined) {
    // An external CA's certificates are checked for revocation at every sign-in (issue 22 item 6).
    revocation = o.revocation === undefined ? (v.fail(join(path, 'revocation'), 'is required for an external CA: method ocsp or crl'), undefined) : readRevocation(v, join(path, 'revocation'), o.revocation);
  } else if (o.revocation !== undefined) {
    v.fail(join(path, 'revocation'), 'is not set for Clearance’s own CA: its certificates are checked against its own status at once');
  }
  const mapping = v.array(join(path, 'mapping'), o.mapping, (p, x) => readRule(v, p, x), { nonEmpty: true });
  if (v.problems.length > before) return undefined;
  return {
    name: name!,
    ...(description !== undefined ? { description } : {}),
    ...(certificates !== undefined ? { certificates } : {}),
    ...(profile !== undefined ? { clearance_profile: profile } : {}),
    hardware_policy_oids: hardware!,
    software_certificates: software!,
    ...(revocation ? { revocation } : {}),
    mapping: mapping!,
  };
}

/** A PEM bundle of CA certificates, each valid now; stored as the certificates re-encoded. */
function readBundle(v: Validator, path: string, value: unknown, now: number): string | undefined {
  const text = v.string(path, value, { maxLength: maxBundleLength });
  if (text === undefined) return undefined;
  const blocks = pemBlocks(text);
  if (blocks.length === 0) return v.fail(path, 'must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----)');
  const pems: string[] = [];
  for (const [i, block] of blocks.entries()) {
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block);
    } catch {
      return v.fail(path, `certificate ${i + 1} cannot be read`);
    }
    if (!certificate.ca) return v.fail(path, `certificate ${i + 1} (${certificate.subject.replaceAll('\n', ', ')}) is not a CA certificate`);
    if (now > certificate.validToDate.getTime()) return v.fail(path, `certificate ${i + 1} (${certificate.subject.replaceAll('\n', ', ')}) expired on ${certificate.validToDate.toISOString()}`);
    pems.push(certificate.toString());
  }
  return pems.join('');
}

function readProfile(v: Validator, path: string, value: unknown, profiles: ReadonlyMap<string, CertificateProfile>): string | undefined {
  const name = v.string(path, value, { maxLength: 40 });
  if (name === undefined) return undefined;
  const profile = profiles.get(name);
  if (!profile) return v.fail(path, `"${name}" is not a certificate profile (declare it under certificate_profiles)`);
  // AMENDMENTS: a device certificate identifies a device, never a person.
  if (profile.kind === 'device') return v.fail(path, `"${name}" is a device profile: a device certificate never signs a person in`);
  if (!profile.ekus.includes('client_auth')) return v.fail(path, `"${name}" does not give client_auth among its ekus`);
  return name;
}

function readRevocation(v: Validator, path: string, value: unknown): RevocationCheck | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, revocationFields);
  const method = v.string(join(path, 'method'), o.method, { oneOf: ['ocsp', 'crl'] }) as RevocationCheck['method'] | undefined;
  let url: string | undefined;
  if (o.url !== undefined) {
    url = v.string(join(path, 'url'), o.url, { maxLength: 2000 });
    if (url !== undefined && !(URL.canParse(url) && ['http:', 'https:'].includes(new URL(url).protocol))) url = v.fail(join(path, 'url'), 'must be an http or https URL');
  }
  const timeout = o.timeout_ms === undefined ? 2000 : v.integer(join(path, 'timeout_ms'), o.timeout_ms, { min: 100, max: 10_000 });
  const refresh = o.refresh_seconds === undefined ? 3600 : v.integer(join(path, 'refresh_seconds'), o.refresh_seconds, { min: 0, max: 86_400 });
  if (o.refresh_seconds !== undefined && method === 'ocsp') v.fail(join(path, 'refresh_seconds'), 'is for crl: every OCSP sign-in asks the responder');
  const fail = o.on_unavailable === undefined ? 'refuse' : (v.string(join(path, 'on_unavailable'), o.on_unavailable, { oneOf: ['refuse', 'allow'] }) as RevocationCheck['on_unavailable'] | undefined);
  const allowPrivate = o.allow_private_network === undefined ? false : v.boolean(join(path, 'allow_private_network'), o.allow_private_network);
  if (v.problems.length > before) return undefined;
  return { method: method!, ...(url !== undefined ? { url } : {}), timeout_ms: timeout!, refresh_seconds: refresh!, on_unavailable: fail!, ...(allowPrivate ? { allow_private_network: true as const } : {}) };
}

function readRule(v: Validator, path: string, value: unknown): MappingRule | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ruleFields);
  const certificate = v.string(join(path, 'certificate'), o.certificate, { oneOf: mappingSources }) as MappingSource | undefined;
  const person = v.string(join(path, 'person'), o.person, { oneOf: ['username', 'email'] }) as MappingRule['person'] | undefined;
  const domains =
    o.domains === undefined
      ? undefined
      : v.array(join(path, 'domains'), o.domains, (p, x) => (typeof x === 'string' ? v.string(p, x.toLowerCase(), { pattern: domainPattern, patternMessage: 'must be a domain name' }) : v.fail(p, 'must be a domain name')), { nonEmpty: true, unique: true });
  const localPart = o.local_part === undefined ? false : v.boolean(join(path, 'local_part'), o.local_part);
  if (localPart && person === 'email') v.fail(join(path, 'local_part'), 'reads a username: an email is matched whole');
  // `alice@anywhere` must not become username alice: only the named domains' local parts are usernames.
  if (localPart && domains === undefined && o.domains === undefined) v.fail(join(path, 'domains'), 'is required with local_part: the domains whose local parts are usernames');
  if (v.problems.length > before) return undefined;
  return { certificate: certificate!, person: person!, ...(domains ? { domains } : {}), ...(localPart ? { local_part: true } : {}) };
}

/** One change of an apply, per authority. */
export interface PersonCertificateChange {
  kind: 'person_certificate_authority';
  id: string;
  outcome: 'created' | 'updated' | 'unchanged' | 'removed';
}

/**
 * Stores the section inside the apply transaction: its authorities are the whole list (one not
 * named is removed), and the generation every node's cache watches is bumped when anything changed.
 */
export async function executePersonCertificates(trx: Transaction<Database>, now: number, section: PersonCertificatesSection): Promise<PersonCertificateChange[]> {
  const stored = new Map((await trx.selectFrom('person_certificate_authorities').select(['name', 'definition']).execute()).map((r) => [r.name, r.definition]));
  const changes: PersonCertificateChange[] = [];
  for (const authority of section.authorities) {
    const definition = JSON.stringify(authority);
    const existing = stored.get(authority.name);
    stored.delete(authority.name);
    if (existing === definition) {
      changes.push({ kind: 'person_certificate_authority', id: authority.name, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('person_certificate_authorities').values({ name: authority.name, definition, created_at: now, updated_at: now }).execute();
    else await trx.updateTable('person_certificate_authorities').set({ definition, updated_at: now }).where('name', '=', authority.name).execute();
    changes.push({ kind: 'person_certificate_authority', id: authority.name, outcome: existing === undefined ? 'created' : 'updated' });
  }
  for (const name of stored.keys()) {
    await trx.deleteFrom('person_certificate_authorities').where('name', '=', name).execute();
    changes.push({ kind: 'person_certificate_authority', id: name, outcome: 'removed' });
  }
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, personCertificatesGeneration);
  return changes;
}

const caches = new WeakMap<object, GenerationCache<LoadedAuthority[]>>();

/** The trusted authorities in force (none: certificate sign-in is off), cached per node. */
export function personCertificateAuthorities(ctx: Pick<Context, 'storage' | 'clock'>): Promise<LoadedAuthority[]> {
  let cache = caches.get(ctx.storage.db);
  if (!cache) {
    cache = new GenerationCache(ctx.storage.db, personCertificatesGeneration, () => loadAuthorities(ctx.storage.db), ctx.clock);
    caches.set(ctx.storage.db, cache);
  }
  return cache.get();
}

/** After an apply committed on this node: the next read loads the authorities again. */
export function forgetPersonCertificates(db: Kysely<Database>): void {
  caches.get(db)?.invalidate();
}

async function loadAuthorities(db: Kysely<Database>): Promise<LoadedAuthority[]> {
  const rows = await db.selectFrom('person_certificate_authorities').select(['definition']).orderBy('name').execute();
  return rows.map((row) => {
    const definition = JSON.parse(row.definition) as PersonCertificateAuthority;
    const anchors = pemBlocks(definition.certificates ?? '').map((pem) => new X509Certificate(pem));
    return { definition, anchors };
  });
}
