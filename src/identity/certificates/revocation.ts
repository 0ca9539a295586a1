import type { X509Certificate } from 'node:crypto';
import { certificateSerial, ocspRequest, readOcspResponse } from '../../guard/ocsp.ts';
import * as x509 from '../../pki/x509.ts';
import type { RevocationCheck } from './settings.ts';

/**
 * Whether an external CA revoked a person's certificate (RFC 5280 §6.3 with a CRL, RFC 6960 with
 * OCSP), as the authority's `revocation` says to ask. Clearance's own CA is never asked this way:
 * its status store answers at once (src/pki/status.ts).
 *
 * - OCSP: every sign-in asks the responder (the configured URL, else the certificate's AIA): a
 *   request for the certificate, a response that must verify (signed by the CA or its delegated
 *   OCSPSigning responder, naming this certificate, not past its nextUpdate; src/guard/ocsp.ts).
 *   Nothing is cached: a revocation counts from the responder's next answer.
 * - CRL: the configured URL, else the certificate's CRL distribution point; the CRL must be signed
 *   by the issuing CA, be current (thisUpdate not in the future, nextUpdate not past), and is kept
 *   for `refresh_seconds` (never past its nextUpdate) per node. When a fetch fails, a CRL still
 *   within its nextUpdate is used: its issuer vouches for it until then.
 *
 * Any failure to get a verified answer is `unavailable` with why, for the caller's soft- or
 * hard-fail choice (`on_unavailable`); `unknown` (the responder does not know the certificate)
 * is no answer to fail open on.
 */
export type RevocationAnswer =
  | { status: 'good' }
  | { status: 'revoked'; revokedAt?: number; reason?: number }
  | { status: 'unknown' }
  | { status: 'unavailable'; detail: string };

/** Clock difference tolerated between Clearance and the CA's responder. */
const skewMs = 5 * 60_000;
const maxOcspBytes = 64 * 1024;
const maxCrlBytes = 16 * 1024 * 1024;

class Unavailable extends Error {}

/** Asks the CA that issued `leaf` (whose certificate is `issuer`) whether it revoked it. */
export async function revocationStatus(check: RevocationCheck, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  try {
    return check.method === 'ocsp' ? await ocspStatus(check, leaf, issuer, now) : await crlStatus(check, leaf, issuer, now);
  } catch (error) {
    if (error instanceof Unavailable) return { status: 'unavailable', detail: error.message };
    // fetch's network errors and timeouts, and the OCSP reader's refusals (OcspError).
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { status: 'unavailable', detail: `${(error as Error).name === 'TimeoutError' ? `no answer within ${check.timeout_ms} ms` : (error as Error).message}${cause ? ` (${cause})` : ''}` };
  }
}

async function ocspStatus(check: RevocationCheck, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = check.url ?? ocspUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no OCSP responder, and the authority configures none');
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
    body: ocspRequest(leaf, issuer),
    redirect: 'error',
    signal: AbortSignal.timeout(check.timeout_ms),
  });
  if (!response.ok) throw new Unavailable(`the OCSP responder answered ${response.status}`);
  const answer = readOcspResponse(await readLimited(response, maxOcspBytes), leaf, issuer, { at: now, skewMs });
  // RFC 6960 §4.2.2.1: a response whose thisUpdate is in the future is not yet valid.
  if (answer.thisUpdate > now + skewMs) throw new Unavailable('the OCSP response is dated in the future');
  if (answer.status === 'revoked') return { status: 'revoked', ...(answer.revokedAt !== undefined ? { revokedAt: answer.revokedAt } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) };
  return { status: answer.status };
}

interface HeldCrl {
  /** The revoked serials (lower-case hex without leading zero bytes, as certificateSerial gives them). */
  revoked: Map<string, { revokedAt: number; reason?: number }>;
  fetchedAt: number;
  nextUpdate: number | undefined;
}

/** CRLs per issuing CA and URL, on this node; a few authorities, so a few entries. */
const crls = new Map<string, { held?: HeldCrl; loading?: Promise<HeldCrl> }>();
const maxHeldCrls = 64;

async function crlStatus(check: RevocationCheck, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = check.url ?? crlUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no CRL distribution point, and the authority configures none');
  const key = `${issuer.fingerprint256} ${url}`;
  let slot = crls.get(key);
  if (!slot) {
    if (crls.size >= maxHeldCrls) crls.delete(crls.keys().next().value!);
    slot = {};
    crls.set(key, slot);
  }
  const current = (held: HeldCrl | undefined) => held !== undefined && (held.nextUpdate === undefined || now <= held.nextUpdate + skewMs);
  let held = slot.held;
  if (!held || !current(held) || now - held.fetchedAt >= check.refresh_seconds * 1000 || now < held.fetchedAt) {
    const entry = slot;
    entry.loading ??= fetchCrl(url, issuer, check.timeout_ms, now).finally(() => (entry.loading = undefined));
    try {
      held = await entry.loading;
      entry.held = held;
    } catch (error) {
      // The CRL held is still its issuer's word until its nextUpdate.
      if (!(held && held.nextUpdate !== undefined && current(held))) throw error;
    }
  }
  if (!current(held)) throw new Unavailable('the CRL is past its nextUpdate');
  const revoked = held!.revoked.get(certificateSerial(leaf));
  return revoked ? { status: 'revoked', ...revoked } : { status: 'good' };
}

/** Fetches and verifies a CRL (RFC 5280 §6.3.3): DER or PEM, the issuer's name, its signature, its dates. */
async function fetchCrl(url: string, issuer: X509Certificate, timeoutMs: number, now: number): Promise<HeldCrl> {
  const response = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Unavailable(`the CRL distribution point answered ${response.status}`);
  const body = await readLimited(response, maxCrlBytes);
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(body.subarray(0, 5).toString('latin1') === '-----' ? body.toString('latin1') : body);
  } catch {
    throw new Unavailable('the CRL cannot be read');
  }
  const ca = new x509.X509Certificate(issuer.raw);
  if (crl.issuer !== ca.subject) throw new Unavailable('the CRL is not the issuing CA’s (its issuer differs)');
  if (!(await crl.verify({ publicKey: ca }))) throw new Unavailable('the CRL’s signature does not verify with the issuing CA’s key');
  if (crl.thisUpdate.getTime() > now + skewMs) throw new Unavailable('the CRL is dated in the future');
  const nextUpdate = crl.nextUpdate?.getTime();
  if (nextUpdate !== undefined && now > nextUpdate + skewMs) throw new Unavailable('the CRL is past its nextUpdate');
  const revoked = new Map(crl.entries.map((e) => [normalSerial(e.serialNumber), { revokedAt: e.revocationDate.getTime(), ...(e.reason !== undefined ? { reason: Number(e.reason) } : {}) }]));
  return { revoked, fetchedAt: now, nextUpdate };
}

function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}

/** The body, refused past `limit` bytes. */
async function readLimited(response: Response, limit: number): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > limit) throw new Unavailable(`the answer is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let total = 0;
  if (!response.body) return Buffer.alloc(0);
  for await (const chunk of response.body) {
    total += chunk.byteLength;
    if (total > limit) throw new Unavailable(`the answer is larger than ${limit} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** RFC 5280 §4.2.2.1: the certificate's OCSP responder (http or https). */
function ocspUrlOf(leaf: X509Certificate): string | undefined {
  const access = new x509.X509Certificate(leaf.raw).getExtension(x509.AuthorityInfoAccessExtension);
  return access?.ocsp.map((name) => name.value).find(isHttp);
}

/** RFC 5280 §4.2.1.13: the first http(s) full name of the certificate's CRL distribution points. */
function crlUrlOf(leaf: X509Certificate): string | undefined {
  const points = new x509.X509Certificate(leaf.raw).getExtension(x509.CRLDistributionPointsExtension)?.distributionPoints ?? [];
  for (const point of points) {
    for (const name of point.distributionPoint?.fullName ?? []) {
      if (name.uniformResourceIdentifier && isHttp(name.uniformResourceIdentifier)) return name.uniformResourceIdentifier;
    }
  }
  return undefined;
}

function isHttp(value: string): boolean {
  return /^https?:\/\//i.test(value);
}

/** Forgets the CRLs this node holds (tests, and an operator's reload). */
export function forgetCrls(): void {
  crls.clear();
}
