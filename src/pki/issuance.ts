import { createHash, randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { openApprovalRequest } from '../approvals/requests.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { Authority } from './authority.ts';
import { leafExtensions, newSerial, pemOf, signCertificate } from './build.ts';
import { CsrError, readCsr, type CheckedCsr } from './csr.ts';
import { NameError, renderNames, type SanEntry } from './names.ts';
import { defaultApproverRole, ekuOid, loadProfiles, reservedEku, type CertificateProfile } from './profiles.ts';
import type { CustodyKey } from './custody/custody.ts';

/** A refused issuance: `code` is recorded in `pki.issuance_refused`; the message is the requester's. */
export class PkiRefusal extends Error {
  override name = 'PkiRefusal';
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export interface IssueInput {
  profile: string;
  csr: unknown;
  /** Whom the certificate identifies (the token's subject, a device id, an agent id). */
  holder: string;
  /** Who asked: a client id, a person's id, `cli:<operator>`. */
  requestedBy: string;
  requesterType: 'user' | 'client';
  /** Seconds as asked (a request body's value, unchecked); a whole number, at most the profile's `max_lifetime`. */
  lifetimeSeconds?: unknown;
  requestId?: string;
  txn?: string;
}

export interface IssuedCertificate {
  status: 'issued';
  serial: string;
  profile: string;
  holder: string;
  notAfter: number;
  /** The certificate and the chain above it up to (not including) the root, PEM. */
  chainPem: string;
  certificatePem: string;
}

export interface PendingIssuance {
  status: 'pending_approval';
  requestId: string;
  approvalRequest: string;
  expiresAt: number;
}

/** How long an issuance waits for its approval. */
const approvalTtlMs = 8 * 3600_000;

/**
 * A certificate for `holder` under a profile (docs/pki.md "Issuance"), each rule in order:
 * the profile exists; the CSR parses and proves possession of its key; the profile grants no EKU
 * reserved to the CA (a profile stored before that rule may); the key type is one the profile
 * allows; the names are the profile's, rendered for the holder and inside its name constraints;
 * the CSR asks for no other name; the lifetime is at most the profile's and the issuing CA's.
 * A profile with `approval: required` waits for a second person (the certificate is
 * issued when they approve); otherwise the certificate is signed and recorded with
 * `pki.certificate_issued` in one transaction.
 */
export async function requestCertificate(ctx: Context, input: IssueInput): Promise<IssuedCertificate | PendingIssuance> {
  try {
    const { profile, version, csr, plan } = await prepareIssuance(ctx, input.profile, input.csr, input.holder, input.lifetimeSeconds);
    if (profile.approval === 'required') return await openPendingIssuance(ctx, input, profile, csr, plan.lifetimeSeconds);
    return await ctx.audit.recordWith(async (trx) => {
      const issued = await signAndRecord(ctx, trx, { ...input, profile, version, csr, ...plan, renewedFrom: null, approvalRequest: null });
      return { value: issued.certificate, events: [issued.event] };
    });
  } catch (error) {
    if (error instanceof PkiRefusal) await recordRefusal(ctx, input, error);
    throw error;
  }
}

/**
 * The rules every issuance checks before it signs, in order: the profile exists, the CSR proves
 * possession, the names and lifetime are the profile's (planIssuance). Inside a transaction pass it
 * as `trx`: the profile is then read through it, never through the cache (which would read through
 * the store, and on SQLite wait for the transaction it is in).
 */
export async function prepareIssuance(ctx: Context, profileName: string, csrText: unknown, holder: string, lifetime: unknown, trx?: Transaction<Database>) {
  const { profile, version } = await profileOf(ctx, profileName, trx);
  const csr = await checkedCsr(csrText);
  return { profile, version, csr, plan: planIssuance(profile, csr, holder, lifetime) };
}

/** A profile as it is now: from this node's cache, or read through `trx` when inside one. */
export async function profileOf(ctx: Context, name: string, trx?: Transaction<Database>): Promise<{ profile: CertificateProfile; version: number }> {
  const found = (trx ? await loadProfiles(trx) : await ctx.pki.profiles()).get(name);
  if (!found) throw new PkiRefusal('unknown_profile', `no certificate profile ${name}`);
  return found;
}

export async function checkedCsr(text: unknown): Promise<CheckedCsr> {
  try {
    return await readCsr(text);
  } catch (error) {
    if (error instanceof CsrError) throw new PkiRefusal('invalid_csr', error.message);
    throw error;
  }
}

/** The names and lifetime a request gets, or the PkiRefusal that says why it gets none. */
export function planIssuance(profile: CertificateProfile, csr: CheckedCsr, holder: string, asked: unknown): { subject: string; sans: SanEntry[]; lifetimeSeconds: number } {
  checkGrantableEkus(profile);
  if (!profile.key_types.includes(csr.keyType)) {
    throw new PkiRefusal('key_type', `profile ${profile.name} takes ${profile.key_types.join(', ')} keys, not ${csr.keyType}`);
  }
  let names;
  try {
    names = renderNames(profile, holder);
  } catch (error) {
    if (error instanceof NameError) throw new PkiRefusal('names', error.message);
    throw error;
  }
  // The CA decides the names; a CSR asking for one it would not give is refused, not trimmed.
  for (const asked of csr.requestedSans) {
    if (!names.sans.some((given) => given.type === asked.type && given.value === asked.value)) {
      throw new PkiRefusal('names', `csr asks for ${asked.type} name ${asked.value}, which profile ${profile.name} does not give ${holder}`);
    }
  }
  if (asked !== undefined && (typeof asked !== 'number' || !Number.isInteger(asked) || asked < 60)) {
    throw new PkiRefusal('lifetime', 'lifetime must be a whole number of seconds, at least 60');
  }
  const lifetimeSeconds = asked as number | undefined;
  if (lifetimeSeconds !== undefined && lifetimeSeconds > profile.max_lifetime) {
    throw new PkiRefusal('lifetime', `profile ${profile.name} issues for at most ${profile.max_lifetime} s, not ${lifetimeSeconds}`);
  }
  return { ...names, lifetimeSeconds: lifetimeSeconds ?? profile.default_lifetime ?? profile.max_lifetime };
}

/**
 * A profile stored before the rule of src/pki/profiles.ts (or written around apply) may still name
 * an EKU reserved to the CA's own roles: nothing is issued under it until it is changed. Checked
 * when an issuance is planned and again when it is signed.
 */
function checkGrantableEkus(profile: CertificateProfile): void {
  const reserved = profile.ekus.find((entry) => reservedEku(entry) !== undefined);
  if (reserved !== undefined) {
    throw new PkiRefusal('reserved_eku', `profile ${profile.name} grants ${reserved}, which ${reservedEku(reserved)}; nothing is issued under it until it is applied without it`);
  }
}

interface SignInput {
  profile: CertificateProfile;
  version: number;
  csr: CheckedCsr;
  holder: string;
  subject: string;
  sans: SanEntry[];
  lifetimeSeconds: number;
  requestedBy: string;
  renewedFrom: string | null;
  approvalRequest: string | null;
  requestId?: string;
  txn?: string;
}

/** Signs with the active issuing CA and records the certificate and its event in `trx`. */
export async function signAndRecord(ctx: Context, trx: Transaction<Database>, input: SignInput): Promise<{ certificate: IssuedCertificate; event: AuditEvent }> {
  // The last gate before the CA's key signs, whichever way the request came.
  checkGrantableEkus(input.profile);
  const { authority, key, chain } = await ctx.pki.authorities.issuing(trx);
  const now = ctx.clock.now();
  // RFC 5280 §6.1.3: a certificate outliving its issuer would fail validation; never issue one.
  // Whole seconds: what the certificate says (X.509 times have no fractions) is what is recorded.
  const notAfter = Math.floor(Math.min(now + input.lifetimeSeconds * 1000, authority.notAfter) / 1000) * 1000;
  const serial = newSerial();
  const certificate = await signLeaf(ctx, authority, key, input, serial, now, notAfter);
  const pem = pemOf(certificate);
  const der = Buffer.from(certificate.rawData);
  const spkiSha256 = createHash('sha256').update(input.csr.spki).digest('base64url');
  await trx
    .insertInto('pki_certificates')
    .values({
      serial,
      authority_id: authority.id,
      profile: input.profile.name,
      profile_version: input.version,
      holder: input.holder,
      subject: input.subject,
      sans: JSON.stringify(input.sans.map((s) => `${s.type}:${s.value}`)),
      thumbprint: createHash('sha256').update(der).digest('base64url'),
      spki_sha256: spkiSha256,
      certificate: pem,
      not_before: now - 60_000,
      not_after: notAfter,
      status: 'valid',
      revoked_at: null,
      revocation_reason: null,
      revoked_by: null,
      requested_by: input.requestedBy,
      renewed_from: input.renewedFrom,
      approval_request: input.approvalRequest,
      created_at: now,
    })
    .execute();
  const event: AuditEvent = {
    type: input.renewedFrom ? 'pki.certificate_renewed' : 'pki.certificate_issued',
    actor: input.requestedBy,
    subject: input.holder,
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    ...(input.txn !== undefined ? { txn: input.txn } : {}),
    details: {
      control: 'financial',
      serial,
      profile: input.profile.name,
      profile_version: input.version,
      authority: authority.id,
      subject_dn: input.subject,
      sans: input.sans.map((s) => `${s.type}:${s.value}`),
      key_type: input.csr.keyType,
      spki_sha256: spkiSha256,
      not_after: notAfter,
      ...(input.renewedFrom ? { renewed_from: input.renewedFrom } : {}),
      ...(input.approvalRequest ? { approval_request: input.approvalRequest } : {}),
    },
  };
  const chainPem = [pem, ...chain.filter((a: Authority) => a.role !== 'root').map((a: Authority) => a.pem)].join('');
  return { certificate: { status: 'issued', serial, profile: input.profile.name, holder: input.holder, notAfter, chainPem, certificatePem: pem }, event };
}

async function signLeaf(ctx: Context, authority: Authority, key: CustodyKey, input: SignInput, serial: string, now: number, notAfter: number) {
  const issuer = ctx.config.issuer;
  return signCertificate(
    {
      serial,
      subject: input.subject,
      publicKey: input.csr.spki,
      // A minute back: a relying party whose clock is a little behind accepts it at once.
      notBefore: new Date(now - 60_000),
      notAfter: new Date(notAfter),
      extensions: leafExtensions({
        ekuOids: input.profile.ekus.map(ekuOid),
        policies: input.profile.policies,
        sans: input.sans,
        crlUrl: `${issuer}/pki/crl/${authority.id}`,
        ocspUrl: `${issuer}/pki/ocsp`,
        caIssuersUrl: `${issuer}/pki/ca/${authority.id}`,
        keyEncipherment: input.csr.keyType.startsWith('RSA'),
      }),
    },
    authority.certificate,
    key,
  );
}

async function openPendingIssuance(ctx: Context, input: IssueInput, profile: CertificateProfile, csr: CheckedCsr, lifetimeSeconds: number): Promise<PendingIssuance> {
  const id = randomUUID();
  const spkiSha256 = createHash('sha256').update(csr.spki).digest('base64url');
  const request = await openApprovalRequest(
    ctx,
    {
      kind: 'certificate_issue',
      requester: input.requestedBy,
      requesterType: input.requesterType,
      subject: input.holder,
      content: {
        pki_request: id,
        profile: profile.name,
        holder: input.holder,
        key_type: csr.keyType,
        spki_sha256: spkiSha256,
        lifetime_seconds: lifetimeSeconds,
        approver_role: profile.approver_role ?? defaultApproverRole,
        requested_by: input.requestedBy,
      },
      requiredApprovals: 1,
      subjectMustApprove: false,
      ttlMs: approvalTtlMs,
    },
    async (trx, opened) => {
      const csrText = typeof input.csr === 'string' ? input.csr.trim() : '';
      await trx
        .insertInto('pki_requests')
        .values({ id, profile: profile.name, holder: input.holder, csr: csrText, lifetime_seconds: lifetimeSeconds, requested_by: input.requestedBy, status: 'pending', serial: null, created_at: ctx.clock.now() })
        .execute();
      return [
        {
          type: 'pki.issuance_pending',
          actor: input.requestedBy,
          subject: input.holder,
          txn: opened.id,
          details: { control: 'financial', pki_request: id, approval_request: opened.id, profile: profile.name, key_type: csr.keyType, spki_sha256: spkiSha256 },
        },
      ];
    },
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  );
  return { status: 'pending_approval', requestId: id, approvalRequest: request.id, expiresAt: request.expiresAt };
}

/** `pki.issuance_refused` with the refusal's reason code (also for a refusal made before the CA's rules, src/pki/holder.ts). */
export async function recordRefusal(ctx: Context, input: Pick<IssueInput, 'profile' | 'holder' | 'requestedBy' | 'requestId'>, refusal: PkiRefusal): Promise<void> {
  await ctx.audit.record({
    type: 'pki.issuance_refused',
    actor: input.requestedBy,
    subject: input.holder,
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    details: { control: 'financial', profile: input.profile, reason: refusal.code },
  });
}
