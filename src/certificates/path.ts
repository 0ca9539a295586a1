import type { X509Certificate } from 'node:crypto';
import * as x509 from '../pki/x509.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/**
 * Certification path validation up to ONE given trust anchor (RFC 5280 §6.1, the parts a client
 * certificate needs): Clearance builds the path itself, from the certificate up, with every link
 * checked cryptographically, rather than believing how a TLS stack or a proxy linked the
 * certificates it was sent. Used for mTLS clients bound to a trust anchor
 * (src/clients/trust-anchors): the chain must END at that anchor, not merely at some CA a TLS
 * bundle holds.
 *
 * Each link, child → issuer (§6.1.3, §6.1.4):
 * - the issuer's subject is the child's issuer name, and their key identifiers agree when both are
 *   present (node:crypto's checkIssued, OpenSSL's X509_check_issued);
 * - the child's signature verifies with the issuer's public key;
 * - the issuer is a CA: basicConstraints cA true (§4.2.1.9), and keyCertSign when it states its key
 *   usages (§4.2.1.3);
 * - the issuer is within its validity period now;
 * - its pathLenConstraint, when present, is not exceeded by the CA certificates below it (§6.1.4 (m)).
 *
 * The anchor is matched by its name and public key (RFC 5280 §6.1.1 (d): a trust anchor IS a name
 * and a key), so a certificate linked by a presented copy of the anchor (a re-issue with the same
 * name and key) still ends at it. The anchor's constraints (CA, key usage, validity, path length)
 * are those of the CONFIGURED anchor certificate, always: a presented copy is untrusted input, its
 * own signature unchecked (a self-signed certificate proves nothing), so its dates or path length
 * are never read, and the path returned ends at the configured certificate. The candidates for
 * intermediates are untrusted: each one is only a key to try. Name constraints and policy
 * processing are not applied.
 */
export type PathOutcome =
  /** `path[0]` is the certificate, `path[path.length - 1]` the anchor. */
  | { ok: true; path: X509Certificate[] }
  | { ok: false; detail: string };

/** Longest path tried: leaf, up to six intermediates, anchor. */
const maxDepth = 8;
/** Candidate intermediates considered; more than any real chain has. */
const maxCandidates = 32;
/**
 * Signature checks one search may make: a chain crafted with many look-alike CA certificates (one
 * name, one key) could otherwise make the depth-first search try every ordering of them.
 */
const maxLinkChecks = 256;

/**
 * Builds and validates a path from `certificate` to one of `anchors` (all of them name the same
 * trust: a CA certificate and, possibly, its re-issues) through `intermediates`, at `now`. The
 * certificate's own validity period and usages are the caller's to check.
 */
export function pathToAnchor(certificate: X509Certificate, anchors: readonly X509Certificate[], intermediates: readonly X509Certificate[], now: number): PathOutcome {
  // The anchor's own certificate is no end entity under it.
  if (anchors.some((a) => sameKeyAndName(a, certificate))) return { ok: false, detail: 'the certificate is the trust anchor itself, not one issued under it' };
  const pool = unique(intermediates).filter((c) => !anchors.some((a) => sameCertificate(a, c))).slice(0, maxCandidates);
  const reasons = new Set<string>();
  let checks = 0;
  const issuedBy = (child: X509Certificate, issuer: X509Certificate): boolean => {
    if (++checks > maxLinkChecks) throw new GaveUp();
    return links(child, issuer);
  };
  const search = (path: X509Certificate[]): X509Certificate[] | undefined => {
    const child = path[path.length - 1]!;
    for (const anchor of anchors) {
      if (!issuedBy(child, anchor)) continue;
      const problem = caProblem(anchor, path.length - 1, now, 'the anchor');
      if (problem) reasons.add(problem);
      else return [...path, anchor];
    }
    if (path.length >= maxDepth) return undefined;
    for (const candidate of pool) {
      if (path.some((c) => sameCertificate(c, candidate)) || !issuedBy(child, candidate)) continue;
      // A copy of the anchor (same name and key) in the chain the client sent: the child links to the
      // anchor's key, and the path ends at the configured anchor, with ITS constraints — never the
      // copy's, whose signature nobody checked (RFC 5280 §6.1.1 (d): the anchor's inputs are trusted
      // ones, not a presented certificate's).
      const configured = anchors.find((a) => sameKeyAndName(a, candidate));
      if (configured) {
        const problem = caProblem(configured, path.length - 1, now, 'the anchor');
        if (problem) reasons.add(problem);
        else return [...path, configured];
        continue;
      }
      const problem = caProblem(candidate, path.length - 1, now, `intermediate ${oneLine(candidate.subject)}`);
      if (problem) {
        reasons.add(problem);
        continue;
      }
      const found = search([...path, candidate]);
      if (found) return found;
    }
    return undefined;
  };
  let path: X509Certificate[] | undefined;
  try {
    path = search([certificate]);
  } catch (error) {
    if (!(error instanceof GaveUp)) throw error;
    return { ok: false, detail: `the chain offered for ${oneLine(certificate.subject)} took more than ${maxLinkChecks} signature checks; refused` };
  }
  if (path) return { ok: true, path };
  const why = [...reasons].slice(0, 3).join('; ');
  return { ok: false, detail: `no chain from ${oneLine(certificate.subject)} (issued by ${oneLine(certificate.issuer)}) ends at ${oneLine(anchors[0]?.subject ?? '')}${why ? `: ${why}` : ''}` };
}

class GaveUp extends Error {}

/** The child names `issuer` as its issuer and its signature verifies with the issuer's key. */
function links(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Why `ca` cannot issue the certificate below it, with `below` CA certificates between it and the
 * end entity (0: it signed the end entity); undefined when it can.
 */
export function caProblem(ca: X509Certificate, below: number, now: number, what: string): string | undefined {
  if (now < ca.validFromDate.getTime() || now > ca.validToDate.getTime()) return `${what} is not valid now (${ca.validFrom} – ${ca.validTo})`;
  return caShapeProblem(ca, below, what);
}

/** Why `ca` is not a CA certificate that may sign certificates `below` CA certificates above an end entity, whatever the time. */
export function caShapeProblem(ca: X509Certificate, below: number, what: string): string | undefined {
  const shape = caShape(ca);
  if (shape === 'unreadable') return `${what} cannot be read`;
  // RFC 5280 §4.2.1.9: a CA certificate's key may verify certificate signatures only with cA set.
  if (!shape.ca) return `${what} is not a CA certificate (basicConstraints cA is not set)`;
  // RFC 5280 §4.2.1.3: keyCertSign for a key that verifies certificate signatures.
  if (!shape.keyCertSign) return `${what} may not sign certificates (no keyCertSign in its keyUsage)`;
  // RFC 5280 §4.2.1.9: pathLenConstraint, the most non-self-issued intermediates below it.
  if (shape.pathLength !== undefined && below > shape.pathLength) return `${what} allows ${shape.pathLength} intermediate CA certificates below it, the chain has ${below}`;
  return undefined;
}

interface CaShape {
  ca: boolean;
  /** True when the certificate states no key usages, or keyCertSign among them. */
  keyCertSign: boolean;
  pathLength?: number;
}

/**
 * What the extensions say, read once per certificate (by SHA-256: a handshake's chain is new
 * objects each time): parsing them costs milliseconds, the rest of a path microseconds.
 */
const shapes = new BoundedMap<string, CaShape | 'unreadable'>(1000);

function caShape(certificate: X509Certificate): CaShape | 'unreadable' {
  const key = certificate.fingerprint256;
  let shape = shapes.get(key);
  if (shape === undefined) {
    try {
      const parsed = new x509.X509Certificate(certificate.raw);
      const constraints = parsed.getExtension(x509.BasicConstraintsExtension);
      const usages = parsed.getExtension(x509.KeyUsagesExtension);
      shape = {
        ca: constraints?.ca === true,
        keyCertSign: !usages || (usages.usages & x509.KeyUsageFlags.keyCertSign) !== 0,
        ...(constraints?.pathLength !== undefined ? { pathLength: constraints.pathLength } : {}),
      };
    } catch {
      shape = 'unreadable';
    }
    shapes.set(key, shape);
  }
  return shape;
}

function sameCertificate(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

/** RFC 5280 §6.1.1 (d): the same trust anchor — the same subject name and public key. */
export function sameKeyAndName(a: X509Certificate, b: X509Certificate): boolean {
  if (a.subject !== b.subject) return false;
  return a.publicKey.export({ type: 'spki', format: 'der' }).equals(b.publicKey.export({ type: 'spki', format: 'der' }));
}

function unique(certificates: readonly X509Certificate[]): X509Certificate[] {
  const seen = new Set<string>();
  return certificates.filter((c) => {
    if (seen.has(c.fingerprint256)) return false;
    seen.add(c.fingerprint256);
    return true;
  });
}

function oneLine(name: string): string {
  const text = name.split('\n').join(', ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
