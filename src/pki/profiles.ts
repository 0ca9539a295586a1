import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';

/**
 * Certificate profiles (apply's `certificate_profiles`, docs/pki.md): what one kind of certificate
 * may hold and who may have it. A request names a profile; the CA, not the request, decides the
 * names in the certificate (rendered from the profile's templates with the holder's id), the
 * extended key usages and policy OIDs that encode its allowed use, and the lifetime (at most
 * `max_lifetime`). A profile with `approval: required` issues only after a second person holding
 * `approver_role` approved (src/approvals/kinds/certificate-issue.ts).
 */
export interface CertificateProfile {
  name: string;
  description?: string;
  /** Key types a CSR may carry. */
  key_types: CsrKeyType[];
  /** Seconds. */
  max_lifetime: number;
  /** Seconds; what an issuance gets when it asks for nothing shorter. Defaults to `max_lifetime`. */
  default_lifetime?: number;
  /** Extended key usages: names below or dotted OIDs, none reserved to the CA (reservedEkus). */
  ekus: string[];
  /** Certificate policy OIDs (RFC 5280 §4.2.1.4) that state the allowed use. */
  policies: string[];
  /** The subject DN template, e.g. `CN={holder}, O=Example Broker`. */
  subject: string;
  /** SAN templates by type; `{holder}` is the holder's id. */
  san: { dns?: string[]; uri?: string[]; email?: string[] };
  /** Permitted subtrees the rendered names must fall in: DNS suffixes, URI prefixes, email domains. */
  name_constraints?: { dns?: string[]; uri?: string[]; email?: string[] };
  approval: 'none' | 'required';
  /** The role a person holds to approve an issuance of this profile (default `pki-approver`). */
  approver_role?: string;
  /** Certificates of this profile authenticate clients to Clearance with tls_client_auth (needs EKU client_auth). */
  client_auth: boolean;
  /** Whether the holder may renew over mTLS with the current certificate (default true). */
  renewable: boolean;
  /**
   * `workload` (default): the certificate's holder is the subject of the token that asks for it.
   * `device`: a managed device (e.g. a trader workstation) — the enrolling service's token names
   * the device in the request's `holder`; a person signing in over mTLS with it has a session on
   * that device (docs/pki.md "Managed devices"). A device certificate never authenticates a person.
   */
  kind: 'workload' | 'device';
}

export type CsrKeyType = 'EC-P256' | 'EC-P384' | 'Ed25519' | 'RSA-2048' | 'RSA-3072' | 'RSA-4096';
export const csrKeyTypes: readonly CsrKeyType[] = ['EC-P256', 'EC-P384', 'Ed25519', 'RSA-2048', 'RSA-3072', 'RSA-4096'];

/**
 * Extended key usage names (RFC 5280 §4.2.1.12). `ocsp_signing` is named so a profile stored by an
 * older release still reads; no profile may grant it (reservedEkus below).
 */
export const ekuOids: Record<string, string> = {
  server_auth: '1.3.6.1.5.5.7.3.1',
  client_auth: '1.3.6.1.5.5.7.3.2',
  code_signing: '1.3.6.1.5.5.7.3.3',
  email_protection: '1.3.6.1.5.5.7.3.4',
  time_stamping: '1.3.6.1.5.5.7.3.8',
  ocsp_signing: '1.3.6.1.5.5.7.3.9',
};

/**
 * Extended key usages no profile may grant, by OID, with why (in ASCII: it ends up in an
 * error_description): they belong to the CA's own roles. OCSPSigning is its delegated OCSP
 * responder's (src/pki/authority.ts builds one per issuing CA): a relying party following RFC 6960
 * §4.2.2.2 takes an OCSP answer signed by ANY certificate the CA issued with that EKU, so a holder
 * of one — an agent, a person — could answer `good` for a revoked certificate. anyExtendedKeyUsage
 * (RFC 5280 §4.2.1.12) stands for every usage, OCSPSigning included, wherever a relying party
 * honours it. timeStamping is not reserved: the CA runs no TSA (evidence is stamped by the TSA of
 * CLEARANCE_TSA_URL, trusted through CLEARANCE_TSA_TRUST, src/pki/tsa.ts).
 */
const reservedEkus: Readonly<Record<string, string>> = {
  '1.3.6.1.5.5.7.3.9': "is reserved to the CA's own OCSP responder (RFC 6960 section 4.2.2.2): a certificate with it could sign OCSP answers about every certificate of the CA",
  '2.5.29.37.0': "is anyExtendedKeyUsage: every usage, the CA's own OCSP signing included (RFC 5280 section 4.2.1.12)",
};

/** Why a profile's EKU entry (a name or a dotted OID) may not be granted, or undefined when it may. */
export function reservedEku(entry: string): string | undefined {
  return Object.hasOwn(reservedEkus, ekuOid(entry)) ? reservedEkus[ekuOid(entry)] : undefined;
}

export const defaultApproverRole = 'pki-approver';
/** No profile issues for longer than a year; workloads and agents are meant to get hours. */
const maxProfileLifetime = 366 * 86400;
const namePattern = /^[a-z][a-z0-9-]{0,39}$/;
const oidPattern = /^[0-2](\.(0|[1-9][0-9]{0,9})){1,20}$/;
const templatePattern = /^[^\p{Cc}]{1,300}$/u;

/** `8h`, `30m`, `2d`, `90s` or a number of seconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^([1-9][0-9]{0,6})([smhd])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
}

const fields = ['name', 'description', 'key_types', 'max_lifetime', 'default_lifetime', 'ekus', 'policies', 'subject', 'san', 'name_constraints', 'approval', 'approver_role', 'client_auth', 'renewable', 'kind'];

/** Reads one `certificate_profiles` entry; every problem is recorded at its path. */
export function readCertificateProfile(v: Validator, path: string, value: unknown): CertificateProfile | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, fields);
  const before = v.problems.length;
  const name = v.string(`${path}.name`, o.name, { pattern: namePattern, patternMessage: 'must be 1 to 40 of a-z, 0-9 and -, starting with a letter' });
  const description = o.description === undefined ? undefined : v.string(`${path}.description`, o.description, { maxLength: 300, pattern: templatePattern });
  const keyTypes = v.array(`${path}.key_types`, o.key_types, (p, x) => v.string(p, x, { oneOf: csrKeyTypes }) as CsrKeyType | undefined, { nonEmpty: true, unique: true });
  const maxLifetime = lifetime(v, `${path}.max_lifetime`, o.max_lifetime);
  const defaultLifetime = o.default_lifetime === undefined ? undefined : lifetime(v, `${path}.default_lifetime`, o.default_lifetime);
  if (maxLifetime !== undefined && defaultLifetime !== undefined && defaultLifetime > maxLifetime) v.fail(`${path}.default_lifetime`, 'must not exceed max_lifetime');
  const ekus = v.array(`${path}.ekus`, o.ekus, (p, x) => eku(v, p, x), { nonEmpty: true, unique: true });
  const policies = o.policies === undefined ? [] : v.array(`${path}.policies`, o.policies, (p, x) => v.string(p, x, { pattern: oidPattern, patternMessage: 'must be a dotted OID' }), { unique: true });
  const subject = o.subject === undefined ? 'CN={holder}' : v.string(`${path}.subject`, o.subject, { pattern: templatePattern });
  const san = readNames(v, `${path}.san`, o.san ?? {});
  const constraints = o.name_constraints === undefined ? undefined : readNames(v, `${path}.name_constraints`, o.name_constraints);
  const approval = o.approval === undefined ? 'none' : (v.string(`${path}.approval`, o.approval, { oneOf: ['none', 'required'] }) as 'none' | 'required' | undefined);
  const approverRole = o.approver_role === undefined ? undefined : v.string(`${path}.approver_role`, o.approver_role, { pattern: /^[a-z][a-z0-9_-]{0,39}$/ });
  const clientAuth = o.client_auth === undefined ? false : v.boolean(`${path}.client_auth`, o.client_auth);
  const renewable = o.renewable === undefined ? true : v.boolean(`${path}.renewable`, o.renewable);
  const kind = o.kind === undefined ? 'workload' : (v.string(`${path}.kind`, o.kind, { oneOf: ['workload', 'device'] }) as 'workload' | 'device' | undefined);
  if (clientAuth && ekus && !ekus.includes('client_auth')) v.fail(`${path}.client_auth`, 'needs client_auth among the ekus');
  if (san && (san.dns?.length ?? 0) + (san.uri?.length ?? 0) + (san.email?.length ?? 0) === 0 && subject && !subject.includes('{holder}')) {
    v.fail(`${path}.san`, 'names nobody: give a SAN template or a subject with {holder}, so a certificate identifies its holder');
  }
  if (v.problems.length > before) return undefined;
  return {
    name: name!,
    ...(description !== undefined ? { description } : {}),
    key_types: keyTypes!,
    max_lifetime: maxLifetime!,
    ...(defaultLifetime !== undefined ? { default_lifetime: defaultLifetime } : {}),
    ekus: ekus!,
    policies: policies!,
    subject: subject!,
    san: san!,
    ...(constraints ? { name_constraints: constraints } : {}),
    approval: approval!,
    ...(approverRole !== undefined ? { approver_role: approverRole } : {}),
    client_auth: clientAuth!,
    renewable: renewable!,
    kind: kind!,
  };
}

function lifetime(v: Validator, path: string, value: unknown): number | undefined {
  const seconds = parseDuration(value);
  if (seconds === undefined) return v.fail(path, 'must be a duration such as 8h, 30m or 2d, or a number of seconds');
  if (seconds < 60 || seconds > maxProfileLifetime) return v.fail(path, 'must be from 1 minute to 366 days');
  return seconds;
}

function eku(v: Validator, path: string, value: unknown): string | undefined {
  if (typeof value !== 'string' || !(Object.hasOwn(ekuOids, value) || oidPattern.test(value))) {
    return v.fail(path, `must be one of ${grantable.join(', ')} or a dotted OID`);
  }
  // RFC 6960 §4.2.2.2: whoever holds a certificate of the CA for OCSPSigning answers for the CA.
  const reserved = reservedEku(value);
  if (reserved) return v.fail(path, `${value} ${reserved}; no certificate profile may grant it`);
  return value;
}

/** The EKU names a profile may use. */
const grantable = Object.keys(ekuOids).filter((name) => reservedEku(name) === undefined);

function readNames(v: Validator, path: string, value: unknown): { dns?: string[]; uri?: string[]; email?: string[] } | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, ['dns', 'uri', 'email']);
  const out: { dns?: string[]; uri?: string[]; email?: string[] } = {};
  for (const type of ['dns', 'uri', 'email'] as const) {
    if (o[type] === undefined) continue;
    const items = v.array(`${path}.${type}`, o[type], (p, x) => v.string(p, x, { maxLength: 300, pattern: /^[\x21-\x7e]+$/, patternMessage: 'must be printable ASCII without spaces' }), { unique: true });
    if (items) out[type] = items;
  }
  return out;
}

/** The OID of an EKU entry (a name or an OID). */
export function ekuOid(entry: string): string {
  return Object.hasOwn(ekuOids, entry) ? ekuOids[entry]! : entry;
}

/** Stored profiles with their versions. */
export async function loadProfiles(db: Kysely<Database> | Transaction<Database>): Promise<Map<string, { profile: CertificateProfile; version: number }>> {
  const rows = await db.selectFrom('pki_profiles').selectAll().execute();
  return new Map(rows.map((row) => [row.name, { profile: JSON.parse(row.definition) as CertificateProfile, version: Number(row.version) }]));
}

/** Creates or updates a profile in the apply transaction; a change is a new version. */
export async function upsertProfile(trx: Transaction<Database>, now: number, profile: CertificateProfile): Promise<'created' | 'updated' | 'unchanged'> {
  const definition = JSON.stringify(profile);
  const row = await trx.selectFrom('pki_profiles').selectAll().where('name', '=', profile.name).executeTakeFirst();
  if (!row) {
    await trx.insertInto('pki_profiles').values({ name: profile.name, definition, version: 1, updated_at: now }).execute();
    return 'created';
  }
  if (row.definition === definition) return 'unchanged';
  await trx.updateTable('pki_profiles').set({ definition, version: Number(row.version) + 1, updated_at: now }).where('name', '=', profile.name).execute();
  return 'updated';
}

/** An issuance scope: `pki:issue:` and a profile name (three parts, so not a business verb scope). */
export const issueScopePattern = /^pki:issue:[a-z][a-z0-9-]{0,39}$/;

/** The scope a token carries to ask for a certificate of `profile` (resource server `<issuer>/pki`). */
export function issueScope(profile: string): string {
  return `pki:issue:${profile}`;
}
