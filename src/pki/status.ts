import { X509Certificate as NodeCertificate } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { Authorities } from './authority.ts';
import { certificateSerial } from '../guard/ocsp.ts';
import type { CertificateProfile } from './profiles.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/** The generation a revocation bumps: every node reloads its revoked serials within a second. */
export const revocationsGeneration = 'pki_revocations';
/** How often a node asks whether anything was revoked elsewhere (docs/pki.md: propagation ≤ 1 s + a request). */
export const revocationCheckMs = 1000;

export interface Revocation {
  revokedAt: number;
  reason: number;
}

/** What the CA knows of one of its certificates. */
export interface KnownCertificate {
  serial: string;
  authorityId: string;
  profile: string;
  holder: string;
  notBefore: number;
  notAfter: number;
}

export type StatusAnswer = { status: 'good'; certificate: KnownCertificate } | { status: 'revoked'; certificate: KnownCertificate; revocation: Revocation } | { status: 'unknown' };

/**
 * Certificate status for the CA's own checks (mTLS client authentication, renewal) and its OCSP
 * responder: the revoked serials of unexpired certificates, cached per node and reloaded when a
 * revocation anywhere bumps `pki_revocations` (checked at most every second; at once on the node
 * that revoked). Issued certificates are immutable but for their status, so their rows are kept
 * in a bounded map after the first lookup.
 */
export class CertificateStatus {
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #revoked: GenerationCache<Map<string, Revocation>>;
  readonly #known = new BoundedMap<string, KnownCertificate>(10_000);
  readonly #expiredRevocations = new BoundedMap<string, Revocation>(10_000);

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
    this.#revoked = new GenerationCache(db, revocationsGeneration, () => this.#loadRevoked(), clock, revocationCheckMs);
  }

  /** The status of serial `serial` (lower-case hex) issued by `authorityId`. */
  async status(authorityId: string, serial: string): Promise<StatusAnswer> {
    const certificate = await this.#certificate(serial);
    if (!certificate || certificate.authorityId !== authorityId) return { status: 'unknown' };
    const revocation = (await this.#revoked.get()).get(serial) ?? (certificate.notAfter <= this.#clock.now() ? await this.#revocationOfExpired(serial) : undefined);
    return revocation ? { status: 'revoked', certificate, revocation } : { status: 'good', certificate };
  }

  invalidate(): void {
    this.#revoked.invalidate();
  }

  async #certificate(serial: string): Promise<KnownCertificate | undefined> {
    const cached = this.#known.get(serial);
    if (cached) return cached;
    const row = await this.#db
      .selectFrom('pki_certificates')
      .select(['serial', 'authority_id', 'profile', 'holder', 'not_before', 'not_after'])
      .where('serial', '=', serial)
      .executeTakeFirst();
    if (!row) return undefined;
    const known = { serial: row.serial, authorityId: row.authority_id, profile: row.profile, holder: row.holder, notBefore: Number(row.not_before), notAfter: Number(row.not_after) };
    this.#known.set(serial, known);
    return known;
  }

  /**
   * The revocation of an expired certificate, read from its row: the cached set forgets a serial a
   * day after it expires, but a revocation is final, and OCSP must not then answer `good` (RFC 6960
   * §2.2) to a relying party checking a signature made before expiry. Only OCSP asks about an
   * expired certificate (mTLS and renewal refuse it on its dates first); a found revocation is kept.
   */
  async #revocationOfExpired(serial: string): Promise<Revocation | undefined> {
    const known = this.#expiredRevocations.get(serial);
    if (known) return known;
    const row = await this.#db.selectFrom('pki_certificates').select(['revoked_at', 'revocation_reason']).where('serial', '=', serial).where('status', '=', 'revoked').executeTakeFirst();
    if (!row) return undefined;
    const revocation = { revokedAt: Number(row.revoked_at), reason: Number(row.revocation_reason ?? 0) };
    this.#expiredRevocations.set(serial, revocation);
    return revocation;
  }

  async #loadRevoked(): Promise<Map<string, Revocation>> {
    const rows = await this.#db
      .selectFrom('pki_certificates')
      .select(['serial', 'revoked_at', 'revocation_reason'])
      .where('status', '=', 'revoked')
      // An expired certificate fails on its dates; only the unexpired need remembering.
      .where('not_after', '>', this.#clock.now() - 86400_000)
      .execute();
    return new Map(rows.map((r) => [r.serial, { revokedAt: Number(r.revoked_at), reason: Number(r.revocation_reason ?? 0) }]));
  }
}

/** Which issuing authority signed a certificate, by its SHA-256 fingerprint; bounded. */
export class IssuerMemory {
  readonly #byFingerprint: BoundedMap<string, string>;

  constructor(limit = 10_000) {
    this.#byFingerprint = new BoundedMap(limit);
  }

  get(fingerprint: string): string | undefined {
    return this.#byFingerprint.get(fingerprint);
  }

  remember(fingerprint: string, authorityId: string): void {
    this.#byFingerprint.set(fingerprint, authorityId);
  }
}

/** A certificate that the CA issued, checked for use now: chain, dates, status. */
export interface TrustedCertificate {
  serial: string;
  profile: CertificateProfile;
  holder: string;
  authorityId: string;
}

export type TrustOutcome = { ours: false } | { ours: true; ok: true; certificate: TrustedCertificate } | { ours: true; ok: false; reason: string };

/**
 * Whether `presented` is one of the CA's certificates, and usable now: signed by one of its
 * issuing authorities (the signature checked here, whoever validated the TLS handshake), within its
 * validity period, not revoked, of a profile that still exists. A certificate of another CA is
 * `ours: false` and left to the existing rules.
 */
export async function checkOwnCertificate(
  deps: { authorities: Authorities; status: CertificateStatus; profiles: () => Promise<Map<string, { profile: CertificateProfile }>>; clock: Clock; issuers?: IssuerMemory },
  presented: NodeCertificate,
): Promise<TrustOutcome> {
  const issuing = (await deps.authorities.all()).filter((a) => a.role === 'issuing');
  // A certificate is immutable: which authority signed it is verified once per certificate, then
  // remembered by its SHA-256 (a client presents the same one on every request of its lifetime).
  const fingerprint = deps.issuers ? presented.fingerprint256 : undefined;
  const remembered = fingerprint && deps.issuers!.get(fingerprint);
  const issuer = remembered ? issuing.find((a) => a.id === remembered) : issuing.find((a) => presented.checkIssued(a.node) && presented.verify(a.node.publicKey));
  if (!issuer) return { ours: false };
  if (fingerprint && !remembered) deps.issuers!.remember(fingerprint, issuer.id);
  const now = deps.clock.now();
  if (now < presented.validFromDate.getTime() || now > presented.validToDate.getTime()) return { ours: true, ok: false, reason: 'the certificate is outside its validity period' };
  if (now > issuer.notAfter) return { ours: true, ok: false, reason: 'the issuing CA certificate has expired' };
  const serial = certificateSerial(presented);
  const answer = await deps.status.status(issuer.id, serial);
  if (answer.status === 'unknown') return { ours: true, ok: false, reason: `certificate ${serial} is not in the CA's records` };
  if (answer.status === 'revoked') return { ours: true, ok: false, reason: `certificate ${serial} was revoked at ${new Date(answer.revocation.revokedAt).toISOString()}` };
  const profile = (await deps.profiles()).get(answer.certificate.profile)?.profile;
  if (!profile) return { ours: true, ok: false, reason: `certificate ${serial}'s profile ${answer.certificate.profile} no longer exists` };
  return { ours: true, ok: true, certificate: { serial, profile, holder: answer.certificate.holder, authorityId: issuer.id } };
}
