import type { X509Certificate } from 'node:crypto';
import { certificateSerial, ocspRequest, readOcspResponse } from '../guard/ocsp.ts';
import * as x509 from '../pki/x509.ts';

/**
 * Whether an external CA revoked a certificate it issued (RFC 5280 §6.3 with a CRL, RFC 6960 with
 * OCSP): one checker for every certificate Clearance did not issue itself — people's smart cards
 * (src/identity/certificates) and mTLS clients bound to a partner's trust anchor
 * (src/clients/trust-anchors). Clearance's own CA is never asked this way: its status store
 * answers at once (src/pki/status.ts).
 *
 * - OCSP, asked first when enabled: the configured URL, else the certificate's AIA; a response
 *   must verify (signed by the CA or its delegated OCSPSigning responder, naming this certificate,
 *   not past its nextUpdate, not dated in the future; src/guard/ocsp.ts). A `good` or `revoked`
 *   answer is reused for `cacheSeconds` (never past its nextUpdate; 0: every check asks).
 * - CRL, when enabled and OCSP gave no answer: the configured URL, else the certificate's first
 *   http(s) CRL distribution point; the CRL must be signed by the issuing CA and be current, and is
 *   kept for `refreshSeconds` per node (never past its nextUpdate). When a fetch fails, a CRL still
 *   within its nextUpdate is used: its issuer vouches for it until then.
 *
 * Any failure to get a verified answer is `unavailable` with why, for the caller's soft- or
 * hard-fail choice; `unknown` (the OCSP responder does not know the certificate) is an answer,
 * never one to fail open on. Concurrent checks of one CRL or one OCSP question share one fetch.
 */
export type RevocationAnswer =
  | { status: 'good'; source: 'ocsp' | 'crl' }
  | { status: 'revoked'; source: 'ocsp' | 'crl'; revokedAt?: number; reason?: number }
  | { status: 'unknown' }
  | { status: 'unavailable'; detail: string };

/** Where to ask, and how long to wait and remember. At least one of `ocsp` and `crl`. */
export interface RevocationSources {
  ocsp?: { url?: string; cacheSeconds: number };
  crl?: { url?: string; refreshSeconds: number };
  /** How long one request (OCSP or CRL) may take. */
  timeoutMs: number;
}

/** Clock difference tolerated between Clearance and the CA's responder. */
const skewMs = 5 * 60_000;
const maxOcspBytes = 64 * 1024;
const maxCrlBytes = 16 * 1024 * 1024;

class Unavailable extends Error {}

/** Asks the CA that issued `leaf` (whose certificate is `issuer`) whether it revoked it. */
export async function revocationStatus(sources: RevocationSources, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const why: string[] = [];
  if (sources.ocsp) {
    const answer = await asking(() => ocspStatus(sources.ocsp!, sources.timeoutMs, leaf, issuer, now), sources.timeoutMs);
    if (answer.status !== 'unavailable') return answer;
    why.push(sources.crl ? `OCSP: ${answer.detail}` : answer.detail);
  }
  if (sources.crl) {
    const answer = await asking(() => crlStatus(sources.crl!, sources.timeoutMs, leaf, issuer, now), sources.timeoutMs);
    if (answer.status !== 'unavailable') return answer;
    why.push(sources.ocsp ? `CRL: ${answer.detail}` : answer.detail);
  }
  return { status: 'unavailable', detail: why.join('; ') || 'no revocation source is enabled' };
}

async function asking(ask: () => Promise<RevocationAnswer>, timeoutMs: number): Promise<RevocationAnswer> {
  try {
    return await ask();
  } catch (error) {
    if (error instanceof Unavailable) return { status: 'unavailable', detail: error.message };
    // fetch's network errors and timeouts, and the OCSP reader's refusals (OcspError).
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    return { status: 'unavailable', detail: `${(error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (error as Error).message}${cause ? ` (${cause})` : ''}` };
  }
}

interface HeldOcsp {
  answer: RevocationAnswer;
  fetchedAt: number;
  /** Never past the response's nextUpdate. */
  until: number;
}

/** OCSP answers per issuing CA, serial and responder, on this node; bounded, oldest dropped first. */
const ocspAnswers = new Map<string, { held?: HeldOcsp; loading?: Promise<HeldOcsp> }>();
const maxHeldOcsp = 10_000;

async function ocspStatus(ocsp: NonNullable<RevocationSources['ocsp']>, timeoutMs: number, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = ocsp.url ?? ocspUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no OCSP responder, and none is configured');
  if (ocsp.cacheSeconds === 0) return (await askOcsp(url, timeoutMs, leaf, issuer, now, 0)).answer;
  const key = `${issuer.fingerprint256} ${certificateSerial(leaf)} ${url}`;
  let slot = ocspAnswers.get(key);
  const held = slot?.held;
  if (held && now >= held.fetchedAt && now < held.until && now - held.fetchedAt < ocsp.cacheSeconds * 1000) return held.answer;
  if (!slot) {
    if (ocspAnswers.size >= maxHeldOcsp) ocspAnswers.delete(ocspAnswers.keys().next().value!);
    slot = {};
    ocspAnswers.set(key, slot);
  }
  const entry = slot;
  entry.loading ??= askOcsp(url, timeoutMs, leaf, issuer, now, ocsp.cacheSeconds).finally(() => (entry.loading = undefined));
  const fresh = await entry.loading;
  // `unknown` is not kept: the responder may learn of the certificate in a moment.
  if (fresh.answer.status === 'good' || fresh.answer.status === 'revoked') entry.held = fresh;
  return fresh.answer;
}

async function askOcsp(url: string, timeoutMs: number, leaf: X509Certificate, issuer: X509Certificate, now: number, cacheSeconds: number): Promise<HeldOcsp> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
    body: ocspRequest(leaf, issuer),
    redirect: 'error',
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok) throw new Unavailable(`the OCSP responder answered ${response.status}`);
  const answer = readOcspResponse(await readLimited(response, maxOcspBytes), leaf, issuer, { at: now, skewMs });
  // RFC 6960 §4.2.2.1: a response whose thisUpdate is in the future is not yet valid.
  if (answer.thisUpdate > now + skewMs) throw new Unavailable('the OCSP response is dated in the future');
  const until = Math.min(now + cacheSeconds * 1000, answer.nextUpdate ?? Number.POSITIVE_INFINITY);
  if (answer.status === 'revoked') {
    return { fetchedAt: now, until, answer: { status: 'revoked', source: 'ocsp', ...(answer.revokedAt !== undefined ? { revokedAt: answer.revokedAt } : {}), ...(answer.reason !== undefined ? { reason: answer.reason } : {}) } };
  }
  return { fetchedAt: now, until, answer: answer.status === 'good' ? { status: 'good', source: 'ocsp' } : { status: 'unknown' } };
}

interface HeldCrl {
  /** The revoked serials (lower-case hex without leading zero bytes, as certificateSerial gives them). */
  revoked: Map<string, { revokedAt: number; reason?: number }>;
  fetchedAt: number;
  nextUpdate: number | undefined;
}

/** CRLs per issuing CA and URL, on this node; a few CAs, so a few entries. */
const crls = new Map<string, { held?: HeldCrl; loading?: Promise<HeldCrl> }>();
const maxHeldCrls = 64;

async function crlStatus(crl: NonNullable<RevocationSources['crl']>, timeoutMs: number, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = crl.url ?? crlUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no CRL distribution point, and none is configured');
  const key = `${issuer.fingerprint256} ${url}`;
  let slot = crls.get(key);
  if (!slot) {
    if (crls.size >= maxHeldCrls) crls.delete(crls.keys().next().value!);
    slot = {};
    crls.set(key, slot);
  }
  const current = (held: HeldCrl | undefined) => held !== undefined && (held.nextUpdate === undefined || now <= held.nextUpdate + skewMs);
  let held = slot.held;
  if (!held || !current(held) || now - held.fetchedAt >= crl.refreshSeconds * 1000 || now < held.fetchedAt) {
    const entry = slot;
    entry.loading ??= fetchCrl(url, issuer, timeoutMs, now).finally(() => (entry.loading = undefined));
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
  return revoked ? { status: 'revoked', source: 'crl', ...revoked } : { status: 'good', source: 'crl' };
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
  return pointersOf(leaf).ocsp;
}

/** RFC 5280 §4.2.1.13: the first http(s) full name of the certificate's CRL distribution points. */
function crlUrlOf(leaf: X509Certificate): string | undefined {
  return pointersOf(leaf).crl;
}

/** Where a certificate says to ask, read once per certificate (by SHA-256): parsing it costs milliseconds, a cached answer microseconds. */
const pointers = new Map<string, { ocsp?: string; crl?: string }>();
const maxPointers = 10_000;

function pointersOf(leaf: X509Certificate): { ocsp?: string; crl?: string } {
  const key = leaf.fingerprint256;
  let found = pointers.get(key);
  if (!found) {
    const parsed = new x509.X509Certificate(leaf.raw);
    const ocsp = parsed.getExtension(x509.AuthorityInfoAccessExtension)?.ocsp.map((name) => name.value).find(isHttp);
    let crl: string | undefined;
    for (const point of parsed.getExtension(x509.CRLDistributionPointsExtension)?.distributionPoints ?? []) {
      crl ??= point.distributionPoint?.fullName?.map((name) => name.uniformResourceIdentifier).find((uri): uri is string => uri !== undefined && isHttp(uri));
    }
    found = { ...(ocsp ? { ocsp } : {}), ...(crl ? { crl } : {}) };
    if (pointers.size >= maxPointers) pointers.delete(pointers.keys().next().value!);
    pointers.set(key, found);
  }
  return found;
}

function isHttp(value: string): boolean {
  return /^https?:\/\//i.test(value);
}

/** Forgets the CRLs and OCSP answers this node holds (tests, and an operator's reload). */
export function forgetRevocationAnswers(): void {
  crls.clear();
  ocspAnswers.clear();
}
