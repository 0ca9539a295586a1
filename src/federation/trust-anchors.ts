import { X509Certificate } from 'node:crypto';
import { caShapeProblem } from '../certificates/path.ts';
import { join, type Validator } from '../validation.ts';

/**
 * A partner's certificate authorities for mutual TLS (docs/federation.md "Trust anchors"): the CAs
 * that vouch for the partner's clients' certificates, each named, so that a client registered with
 * `tls_client_auth_trust_anchor: partner:<partner id>/<name>` is authenticated only with a
 * certificate whose chain ends at that CA (src/clients/trust-anchors) — and how certificates under
 * them are checked for revocation.
 *
 *   trust_anchors:
 *     - name: mtls-root                 # a-z, 0-9 and -, starting with a letter
 *       certificate: |                  # PEM: exactly one CA certificate, the anchor
 *         -----BEGIN CERTIFICATE-----
 *       intermediates: |                # PEM, optional: issuing CAs under it (for the proxy's leaf-only header)
 *         -----BEGIN CERTIFICATE-----
 *   revocation: { mode: hard, ocsp: true, crl: true, timeout_ms: 2000, cache_seconds: 300 }
 */
export interface PartnerTrustAnchor {
  name: string;
  /** PEM of one CA certificate (re-encoded as read). */
  certificate: string;
  /** PEM of CA certificates between the anchor and the clients' certificates. */
  intermediates?: string;
}

/**
 * How certificates under a partner's anchors are checked for revocation (src/certificates/revocation.ts):
 * `hard` — no verified answer refuses the client (the default); `soft` — it is let in, and its
 * `client.authenticated` event says `revocation: unavailable` and why; `off` — not checked.
 */
export interface PartnerRevocation {
  mode: 'hard' | 'soft' | 'off';
  /** Ask the certificate's OCSP responder (AIA) first. */
  ocsp: boolean;
  /** Then its CRL distribution point. */
  crl: boolean;
  /** How long one request may take, in ms. */
  timeout_ms: number;
  /** How long an OCSP answer or a CRL is reused, in seconds (never past its nextUpdate). */
  cache_seconds: number;
}

export const defaultPartnerRevocation: PartnerRevocation = { mode: 'hard', ocsp: true, crl: true, timeout_ms: 2000, cache_seconds: 300 };

/** A profile's revocation setting with its defaults (absent: hard fail, OCSP then CRL). */
export function partnerRevocation(partner: { revocation?: Partial<PartnerRevocation> }): PartnerRevocation {
  return { ...defaultPartnerRevocation, ...partner.revocation };
}

export const anchorNamePattern = /^[a-z][a-z0-9-]{0,39}$/;
const maxPemLength = 64 * 1024;

/** Reads `trust_anchors` and `revocation` of a `partners[]` entry; only the fields given are returned. */
export function readPartnerCertificateTrust(
  v: Validator,
  path: string,
  object: Record<string, unknown>,
): { trust_anchors?: PartnerTrustAnchor[]; revocation?: Partial<PartnerRevocation> } {
  const anchors =
    object.trust_anchors === undefined ? undefined : v.array(join(path, 'trust_anchors'), object.trust_anchors, (p, x) => readAnchor(v, p, x), { nonEmpty: true });
  if (anchors) {
    const seen = new Map<string, number>();
    anchors.forEach((anchor, i) => {
      const first = seen.get(anchor.name);
      if (first !== undefined) v.fail(`${join(path, 'trust_anchors')}[${i}].name`, `"${anchor.name}" is also the name of trust_anchors[${first}]`);
      else seen.set(anchor.name, i);
    });
  }
  let revocation: Partial<PartnerRevocation> | undefined;
  if (object.revocation !== undefined) {
    if (object.trust_anchors === undefined) v.fail(join(path, 'revocation'), 'applies to certificates under the partner’s trust_anchors, and the profile has none');
    else revocation = readRevocation(v, join(path, 'revocation'), object.revocation);
  }
  return { ...(anchors ? { trust_anchors: anchors } : {}), ...(revocation ? { revocation } : {}) };
}

function readAnchor(v: Validator, path: string, value: unknown): PartnerTrustAnchor | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['name', 'certificate', 'intermediates']);
  const name = v.string(join(path, 'name'), o.name, { pattern: anchorNamePattern, patternMessage: 'must be 1 to 40 of a-z, 0-9 and -, starting with a letter' });
  const certificates = readCaPems(v, join(path, 'certificate'), o.certificate);
  if (certificates && certificates.length !== 1) v.fail(join(path, 'certificate'), `must be exactly one CA certificate (it holds ${certificates.length}); list issuing CAs under intermediates`);
  const intermediates = o.intermediates === undefined ? undefined : readCaPems(v, join(path, 'intermediates'), o.intermediates);
  if (v.problems.length > before || !name || !certificates) return undefined;
  return { name, certificate: certificates[0]!, ...(intermediates ? { intermediates: intermediates.join('') } : {}) };
}

/**
 * PEM text holding one or more CA certificates (basicConstraints cA, keyCertSign when key usages
 * are stated); each re-encoded. Whether they are valid now, and how they chain, is checked when
 * the document is planned (src/clients/trust-anchors/plan.ts), with the server's clock.
 */
export function readCaPems(v: Validator, path: string, value: unknown): string[] | undefined {
  const text = v.string(path, value, { maxLength: maxPemLength });
  if (text === undefined) return undefined;
  const blocks = pemBlocks(text);
  if (blocks.length === 0) return v.fail(path, 'must hold a PEM certificate (-----BEGIN CERTIFICATE-----)');
  const pems: string[] = [];
  for (const [i, block] of blocks.entries()) {
    const at = blocks.length === 1 ? '' : ` (certificate ${i + 1})`;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(block);
    } catch {
      return v.fail(path, `holds a certificate that cannot be read${at}`);
    }
    const problem = caShapeProblem(certificate, 0, `the certificate${at}`);
    if (problem) return v.fail(path, problem);
    pems.push(certificate.toString());
  }
  return pems;
}

export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function readRevocation(v: Validator, path: string, value: unknown): Partial<PartnerRevocation> | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['mode', 'ocsp', 'crl', 'timeout_ms', 'cache_seconds']);
  const mode = o.mode === undefined ? undefined : (v.string(join(path, 'mode'), o.mode, { oneOf: ['hard', 'soft', 'off'] }) as PartnerRevocation['mode'] | undefined);
  const ocsp = o.ocsp === undefined ? undefined : v.boolean(join(path, 'ocsp'), o.ocsp);
  const crl = o.crl === undefined ? undefined : v.boolean(join(path, 'crl'), o.crl);
  const timeout = o.timeout_ms === undefined ? undefined : v.integer(join(path, 'timeout_ms'), o.timeout_ms, { min: 100, max: 10_000 });
  const cache = o.cache_seconds === undefined ? undefined : v.integer(join(path, 'cache_seconds'), o.cache_seconds, { min: 0, max: 86_400 });
  if ((mode ?? 'hard') !== 'off' && ocsp === false && crl === false) v.fail(path, `mode ${mode ?? 'hard'} needs ocsp or crl (or mode off: no revocation check)`);
  if (v.problems.length > before) return undefined;
  return {
    ...(mode !== undefined ? { mode } : {}),
    ...(ocsp !== undefined ? { ocsp } : {}),
    ...(crl !== undefined ? { crl } : {}),
    ...(timeout !== undefined ? { timeout_ms: timeout } : {}),
    ...(cache !== undefined ? { cache_seconds: cache } : {}),
  };
}
