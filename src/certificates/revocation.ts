import type { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_deltaCRLIndicator, id_ce_issuerAltName, id_ce_issuingDistributionPoint, IssuingDistributionPoint } from '@peculiar/asn1-x509';
import { certificateSerial, ocspRequest, readOcspResponse } from '../guard/ocsp.ts';
import * as x509 from '../pki/x509.ts';
import { BoundedMap } from '../jose/bounded-map.ts';
import { FetchRefused, pinnedRequest, type PinnedResponse, type Resolver } from '../federation/fetch.ts';
import { withinSpan } from '../clock.ts';

/**
 * Whether an external CA revoked a certificate it issued (RFC 5280 §6.3 with a CRL, RFC 6960 with
 * OCSP): one checker for every certificate Clearance did not issue itself — people's smart cards
 * (src/identity/certificates) and mTLS clients bound to a partner's trust anchor
 * (src/clients/trust-anchors). Clearance's own CA is never asked this way: its status store
 * answers at once (src/pki/status.ts).
 *
 * - OCSP, asked first when enabled: the configured URL, else the certificate's AIA; a response
 *   must verify (signed by the CA or a delegated responder: any certificate it issued for
 *   OCSPSigning, RFC 6960 §4.2.2.2, as Clearance cannot know which one another CA designated;
 *   naming this certificate, not past its nextUpdate, not dated in the future; src/guard/ocsp.ts).
 *   A `good` or `revoked` answer is reused for `cacheSeconds` (never past its nextUpdate; 0:
 *   every check asks).
 * - CRL, when enabled and OCSP gave no answer: the configured URL, else the certificate's first
 *   http(s) CRL distribution point; the CRL must be signed by the issuing CA (with its key, which
 *   may sign CRLs) and be current, and is kept for `refreshSeconds` per node (never past its
 *   nextUpdate). When a fetch fails, a CRL still within its nextUpdate is used: its issuer vouches
 *   for it until then. A CRL that does not cover the certificate in full is no answer
 *   (RFC 5280 §6.3.3 (b), §5.2.4, §5.2.5): a delta CRL, an indirect one, one of only some reasons
 *   or of attribute certificates only, one of CA certificates only for an end entity (of end
 *   entities only for a CA), one for another distribution point than the certificate names, one
 *   with a critical extension not understood here.
 *
 * Where it fetches (docs/federation.md "SSRF rules for fetching", http allowed): a URL a certificate
 * names was written by a CA outside Clearance, so its host's every address is checked and the
 * connection pinned to the checked one; a private address needs `allowPrivateNetwork` (the
 * partner's `allow_private_network`, the person authority's `revocation.allow_private_network`).
 * A URL the operator configured may lead to the private network. Never, whoever names it: the
 * cloud metadata services, unspecified, multicast and reserved addresses. No redirects, no
 * credentials in the URL, the timeout, 64 KiB for OCSP and 16 MiB for a CRL.
 *
 * Any failure to get a verified answer is `unavailable` with why, for the caller's soft- or
 * hard-fail choice; `unknown` (the OCSP responder does not know the certificate) is an answer,
 * never one to fail open on. Concurrent checks of one CRL or one OCSP question share one fetch.
 */
export type RevocationAnswer =
  | { status: 'good'; source: 'ocsp' | 'crl' }
  | { status: 'revoked'; source: 'ocsp' | 'crl'; revokedAt?: number; reason?: number }
  | { status: 'unknown' }
  /**
   * `refused`: Clearance's own fetch rules refused a responder or CRL (an address the profile does
   * not allow): a configuration to fix, never a soft-failable outage — callers refuse it whatever
   * their soft- or hard-fail choice.
   */
  | { status: 'unavailable'; detail: string; refused?: true };

/** Where to ask, and how long to wait and remember. At least one of `ocsp` and `crl`. */
export interface RevocationSources {
  ocsp?: { url?: string; cacheSeconds: number };
  crl?: { url?: string; refreshSeconds: number };
  /** How long one request (OCSP or CRL) may take. */
  timeoutMs: number;
  /** Whether a URL a certificate names may lead to a private, loopback or link-local address. */
  allowPrivateNetwork: boolean;
  /** Names the setting above in a refusal: "partner bravo's profile". */
  privateNetworkSetting: string;
  /** How host names resolve (tests); the system resolver by default. */
  resolve?: Resolver;
}

/** Clock difference tolerated between Clearance and the CA's responder. */
const skewMs = 5 * 60_000;
const maxOcspBytes = 64 * 1024;
const maxCrlBytes = 16 * 1024 * 1024;

class Unavailable extends Error {}

/** Asks the CA that issued `leaf` (whose certificate is `issuer`) whether it revoked it. */
export async function revocationStatus(sources: RevocationSources, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const why: string[] = [];
  let refused = false;
  if (sources.ocsp) {
    const answer = await asking(() => ocspStatus(sources.ocsp!, sources, leaf, issuer, now), sources.timeoutMs);
    if (answer.status !== 'unavailable') return answer;
    why.push(sources.crl ? `OCSP: ${answer.detail}` : answer.detail);
    refused ||= answer.refused === true;
  }
  if (sources.crl) {
    const answer = await asking(() => crlStatus(sources.crl!, sources, leaf, issuer, now), sources.timeoutMs);
    if (answer.status !== 'unavailable') return answer;
    why.push(sources.ocsp ? `CRL: ${answer.detail}` : answer.detail);
    refused ||= answer.refused === true;
  }
  return { status: 'unavailable', detail: why.join('; ') || 'no revocation source is enabled', ...(refused ? { refused: true as const } : {}) };
}

async function asking(ask: () => Promise<RevocationAnswer>, timeoutMs: number): Promise<RevocationAnswer> {
  try {
    return await ask();
  } catch (error) {
    if (error instanceof Unavailable) return { status: 'unavailable', detail: error.message };
    if (error instanceof FetchRefused) return { status: 'unavailable', detail: error.message, refused: true };
    // The fetch's refusals and failures (FetchError: an address the rules refuse, the network,
    // the time limit, the size limit) and the OCSP reader's refusals (OcspError).
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
const ocspAnswers = new BoundedMap<string, { held?: HeldOcsp; loading?: Promise<HeldOcsp> }>(10_000);

async function ocspStatus(ocsp: NonNullable<RevocationSources['ocsp']>, sources: RevocationSources, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = ocsp.url ?? ocspUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no OCSP responder, and none is configured');
  const from: Where = { url, configured: ocsp.url !== undefined, sources };
  if (ocsp.cacheSeconds === 0) return (await askOcsp(from, leaf, issuer, now, 0)).answer;
  const key = `${issuer.fingerprint256} ${certificateSerial(leaf)} ${url}`;
  let slot = ocspAnswers.get(key);
  const held = slot?.held;
  if (held && withinSpan(now, held.fetchedAt, ocsp.cacheSeconds * 1000) && now < held.until) return held.answer;
  if (!slot) {
    slot = {};
    ocspAnswers.set(key, slot);
  }
  const entry = slot;
  entry.loading ??= askOcsp(from, leaf, issuer, now, ocsp.cacheSeconds).finally(() => (entry.loading = undefined));
  const fresh = await entry.loading;
  // `unknown` is not kept: the responder may learn of the certificate in a moment.
  if (fresh.answer.status === 'good' || fresh.answer.status === 'revoked') entry.held = fresh;
  return fresh.answer;
}

async function askOcsp(from: Where, leaf: X509Certificate, issuer: X509Certificate, now: number, cacheSeconds: number): Promise<HeldOcsp> {
  const response = await request(from, { method: 'POST', headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' }, body: ocspRequest(leaf, issuer) }, maxOcspBytes);
  if (!ok(response)) throw new Unavailable(`the OCSP responder answered ${response.status}`);
  // Another firm's CA: its RFC 6960 delegated responders answer for it (src/guard/ocsp.ts).
  const answer = readOcspResponse(response.body, leaf, issuer, { at: now, skewMs, responder: 'delegated' });
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
  /** What its issuingDistributionPoint limits it to (RFC 5280 §5.2.5); absent: every certificate of its issuer. */
  scope?: CrlScope;
}

interface CrlScope {
  /** onlyContainsUserCerts / onlyContainsCACerts. */
  only?: 'end_entities' | 'cas';
  /** The distribution point's full name (its URIs): the CRL is the one for certificates naming it. */
  point?: string[];
}

/** CRLs per issuing CA and URL, on this node; a few CAs, so a few entries. */
const crls = new BoundedMap<string, { held?: HeldCrl; loading?: Promise<HeldCrl> }>(64);

async function crlStatus(crl: NonNullable<RevocationSources['crl']>, sources: RevocationSources, leaf: X509Certificate, issuer: X509Certificate, now: number): Promise<RevocationAnswer> {
  const url = crl.url ?? crlUrlOf(leaf);
  if (!url) throw new Unavailable('the certificate names no CRL distribution point, and none is configured');
  const key = `${issuer.fingerprint256} ${url}`;
  let slot = crls.get(key);
  if (!slot) {
    slot = {};
    crls.set(key, slot);
  }
  const current = (held: HeldCrl | undefined) => held !== undefined && (held.nextUpdate === undefined || now <= held.nextUpdate + skewMs);
  let held = slot.held;
  if (!held || !current(held) || now - held.fetchedAt >= crl.refreshSeconds * 1000 || now < held.fetchedAt) {
    const entry = slot;
    entry.loading ??= fetchCrl({ url, configured: crl.url !== undefined, sources }, issuer, now).finally(() => (entry.loading = undefined));
    try {
      held = await entry.loading;
      entry.held = held;
    } catch (error) {
      // The CRL held is still its issuer's word until its nextUpdate.
      if (!(held && held.nextUpdate !== undefined && current(held))) throw error;
    }
  }
  if (!current(held)) throw new Unavailable('the CRL is past its nextUpdate');
  const gap = scopeGap(held!.scope, leaf);
  if (gap) throw new Unavailable(`the CRL does not cover this certificate: ${gap}`);
  const revoked = held!.revoked.get(certificateSerial(leaf));
  return revoked ? { status: 'revoked', source: 'crl', ...revoked } : { status: 'good', source: 'crl' };
}

/** Fetches and verifies a CRL (RFC 5280 §6.3.3): DER or PEM, the issuer's name, its signature, its dates. */
async function fetchCrl(from: Where, issuer: X509Certificate, now: number): Promise<HeldCrl> {
  const response = await request(from, { method: 'GET', headers: { accept: 'application/pkix-crl, application/x-pkcs7-crl, */*' } }, maxCrlBytes);
  if (!ok(response)) throw new Unavailable(`the CRL distribution point answered ${response.status}`);
  const body = response.body;
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(body.subarray(0, 5).toString('latin1') === '-----' ? body.toString('latin1') : body);
  } catch {
    throw new Unavailable('the CRL cannot be read');
  }
  const ca = new x509.X509Certificate(issuer.raw);
  // RFC 5280 §6.3.3 (f), (g): the CRL issuer is the certificate's issuer (an indirect CRL is refused
  // below), its key may sign CRLs, and the CRL's signature verifies with THAT key.
  if (crl.issuer !== ca.subject) throw new Unavailable('the CRL is not the issuing CA’s (its issuer differs)');
  const usages = ca.getExtension(x509.KeyUsagesExtension);
  if (usages && (usages.usages & x509.KeyUsageFlags.cRLSign) === 0) throw new Unavailable('the issuing CA’s key may not sign CRLs (no cRLSign in its keyUsage)');
  if (!(await crl.verify({ publicKey: ca }))) throw new Unavailable('the CRL’s signature does not verify with the issuing CA’s key');
  if (crl.thisUpdate.getTime() > now + skewMs) throw new Unavailable('the CRL is dated in the future');
  const nextUpdate = crl.nextUpdate?.getTime();
  if (nextUpdate !== undefined && now > nextUpdate + skewMs) throw new Unavailable('the CRL is past its nextUpdate');
  const scope = crlScope(crl);
  const revoked = new Map(crl.entries.map((e) => [normalSerial(e.serialNumber), { revokedAt: e.revocationDate.getTime(), ...(e.reason !== undefined ? { reason: Number(e.reason) } : {}) }]));
  return { revoked, fetchedAt: now, nextUpdate, ...(scope ? { scope } : {}) };
}

/** The CRL extensions understood here; a critical one of any other kind makes the CRL unusable (RFC 5280 §5.2). */
const knownCrlExtensions: ReadonlySet<string> = new Set([id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_issuerAltName, id_ce_issuingDistributionPoint]);
/** RFC 5280 §5.3.3: an entry's certificateIssuer: the entries of an indirect CRL. */
const certificateIssuer = '2.5.29.29';

/**
 * What a CRL covers, or Unavailable when it can never answer for a certificate alone: a delta CRL
 * (RFC 5280 §5.2.4: only the changes since a base CRL, which says nothing of what it omits), an
 * indirect CRL (§5.2.5: entries of other CAs' certificates, whose serials may collide with this
 * CA's), a CRL of only some revocation reasons (a certificate absent from it may be revoked for
 * another), one of attribute certificates only, and one with a critical extension not understood.
 */
function crlScope(crl: x509.X509Crl): CrlScope | undefined {
  let scope: CrlScope | undefined;
  for (const extension of crl.extensions) {
    if (extension.type === id_ce_deltaCRLIndicator) throw new Unavailable('the CRL is a delta CRL (deltaCRLIndicator), not a complete one');
    if (extension.type !== id_ce_issuingDistributionPoint) {
      if (extension.critical && !knownCrlExtensions.has(extension.type)) throw new Unavailable(`the CRL has a critical extension not understood here (${extension.type})`);
      continue;
    }
    let idp: IssuingDistributionPoint;
    try {
      idp = AsnConvert.parse(extension.value, IssuingDistributionPoint);
    } catch {
      throw new Unavailable('the CRL’s issuingDistributionPoint cannot be read');
    }
    if (idp.indirectCRL) throw new Unavailable('the CRL is an indirect CRL');
    if (idp.onlySomeReasons !== undefined) throw new Unavailable('the CRL covers only some revocation reasons (onlySomeReasons)');
    if (idp.onlyContainsAttributeCerts) throw new Unavailable('the CRL covers attribute certificates only');
    if (idp.distributionPoint?.nameRelativeToCRLIssuer !== undefined) throw new Unavailable('the CRL names its distribution point relative to its issuer, which is not matched here');
    const point = idp.distributionPoint?.fullName?.flatMap((name) => (name.uniformResourceIdentifier !== undefined ? [name.uniformResourceIdentifier] : []));
    if (idp.distributionPoint?.fullName !== undefined && point!.length === 0) throw new Unavailable('the CRL’s distribution point is not named by a URI');
    scope = {
      ...(idp.onlyContainsUserCerts ? { only: 'end_entities' as const } : idp.onlyContainsCACerts ? { only: 'cas' as const } : {}),
      ...(point !== undefined ? { point } : {}),
    };
  }
  if (crl.entries.some((entry) => entry.extensions.some((e) => e.type === certificateIssuer))) throw new Unavailable('the CRL has entries of another certificate issuer (an indirect CRL)');
  return scope;
}

/**
 * RFC 5280 §6.3.3 (b) (2): why a CRL of `scope` does not cover `certificate`, or undefined when it
 * does: an end entity against a CRL of CA certificates only (and the converse), a certificate whose
 * CRL distribution points do not name the CRL's one.
 */
function scopeGap(scope: CrlScope | undefined, certificate: X509Certificate): string | undefined {
  if (!scope) return undefined;
  const { ca, crlNames } = pointersOf(certificate);
  if (scope.only === 'cas' && !ca) return 'it holds CA certificates only (onlyContainsCACerts), and this is an end-entity certificate';
  if (scope.only === 'end_entities' && ca) return 'it holds end-entity certificates only (onlyContainsUserCerts), and this is a CA certificate';
  if (scope.point && !scope.point.some((uri) => crlNames.includes(uri))) return 'it is the CRL of another distribution point than the certificate names';
  return undefined;
}

function normalSerial(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}

/** A URL to ask, whether the operator configured it or a certificate names it, and the rules for it. */
interface Where {
  url: string;
  configured: boolean;
  sources: RevocationSources;
}

/** One request under the SSRF rules (src/federation/fetch.ts), http allowed; the body refused past `maxBytes`. */
function request(from: Where, init: { method: string; headers: Record<string, string>; body?: Buffer }, maxBytes: number): Promise<PinnedResponse> {
  const { sources } = from;
  return pinnedRequest(from.url, init, {
    allowHttp: true,
    allowPrivateNetwork: from.configured || sources.allowPrivateNetwork,
    privateNetworkSetting: sources.privateNetworkSetting,
    timeoutMs: sources.timeoutMs,
    maxBytes,
    ...(sources.resolve ? { resolve: sources.resolve } : {}),
  });
}

function ok(response: PinnedResponse): boolean {
  return response.status >= 200 && response.status < 300;
}

/** RFC 5280 §4.2.2.1: the certificate's OCSP responder (http or https). */
function ocspUrlOf(leaf: X509Certificate): string | undefined {
  return pointersOf(leaf).ocsp;
}

/** RFC 5280 §4.2.1.13: the first http(s) full name of the certificate's CRL distribution points. */
function crlUrlOf(leaf: X509Certificate): string | undefined {
  return pointersOf(leaf).crl;
}

interface Pointers {
  ocsp?: string;
  crl?: string;
  /** Every URI its CRL distribution points name (for a CRL's issuingDistributionPoint). */
  crlNames: string[];
  /** basicConstraints cA: which of a CRL's onlyContains… scopes covers it. */
  ca: boolean;
}

/** Where a certificate says to ask, read once per certificate (by SHA-256): parsing it costs milliseconds, a cached answer microseconds. */
const pointers = new BoundedMap<string, Pointers>(10_000);

function pointersOf(leaf: X509Certificate): Pointers {
  const key = leaf.fingerprint256;
  let found = pointers.get(key);
  if (!found) {
    const parsed = new x509.X509Certificate(leaf.raw);
    const ocsp = parsed.getExtension(x509.AuthorityInfoAccessExtension)?.ocsp.map((name) => name.value).find(isHttp);
    const crlNames = (parsed.getExtension(x509.CRLDistributionPointsExtension)?.distributionPoints ?? []).flatMap(
      (point) => point.distributionPoint?.fullName?.flatMap((name) => (name.uniformResourceIdentifier !== undefined ? [name.uniformResourceIdentifier] : [])) ?? [],
    );
    const crl = crlNames.find(isHttp);
    found = { ...(ocsp ? { ocsp } : {}), ...(crl ? { crl } : {}), crlNames, ca: parsed.getExtension(x509.BasicConstraintsExtension)?.ca === true };
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
