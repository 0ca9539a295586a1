import { createHash, X509Certificate } from 'node:crypto';
import { caShapeProblem } from '../../certificates/path.ts';
import { anchorNamePattern, pemBlocks } from '../../federation/trust-anchors.ts';
import type { Validator } from '../../validation.ts';

/**
 * The forms of a client's `tls_client_auth_trust_anchor` (docs/client-authentication.md "Trust
 * anchors and revocation"): the CA its certificates must chain to.
 *
 * - `partner:<partner id>/<anchor name>`: a named anchor of a partner's trust profile (the partner's
 *   revocation setting then applies);
 * - a SHA-256 thumbprint of the CA certificate's DER — hex as `openssl x509 -fingerprint -sha256`
 *   prints it (colons optional, any case), or base64url as in `x5t#S256` — of a CA in
 *   CLEARANCE_TLS_CLIENT_CA or among the partners' trust anchors;
 * - the CA certificate itself, PEM;
 * - `clearance`: Clearance's own CA (src/pki): only certificates it issued, checked against its own status.
 */
export type AnchorValue =
  | { kind: 'clearance' }
  | { kind: 'partner'; partner: string; name: string }
  | { kind: 'thumbprint'; sha256: string }
  | { kind: 'certificate'; certificate: X509Certificate };

const partnerIdPattern = '[A-Za-z0-9][A-Za-z0-9._-]{0,63}';
const namedPattern = new RegExp(`^partner:(${partnerIdPattern})/([^/]+)$`);
const hexPattern = /^(?:[0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$|^[0-9a-fA-F]{64}$/;
const base64urlPattern = /^[A-Za-z0-9_-]{43}$/;
const maxLength = 16 * 1024;

/** The metadata value read, or why not (a sentence for the operator). Parsing a PEM costs a certificate parse. */
export function parseAnchorValue(text: string): AnchorValue | { error: string } {
  const value = text.trim();
  if (value === 'clearance') return { kind: 'clearance' };
  if (value.startsWith('partner:')) {
    const named = namedPattern.exec(value);
    if (!named) return { error: 'must be partner:<partner id>/<anchor name>' };
    if (!anchorNamePattern.test(named[2]!)) return { error: `"${named[2]}" is not an anchor name (1 to 40 of a-z, 0-9 and -, starting with a letter)` };
    return { kind: 'partner', partner: named[1]!, name: named[2]! };
  }
  if (value.startsWith('-----BEGIN')) {
    const blocks = pemBlocks(value);
    if (blocks.length !== 1) return { error: `must be exactly one PEM certificate (it holds ${blocks.length}): the CA the client's certificates chain to` };
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(blocks[0]!);
    } catch {
      return { error: 'holds a PEM certificate that cannot be read' };
    }
    const problem = caShapeProblem(certificate, 0, 'the certificate');
    return problem ? { error: problem } : { kind: 'certificate', certificate };
  }
  if (hexPattern.test(value)) return { kind: 'thumbprint', sha256: value.replaceAll(':', '').toLowerCase() };
  if (base64urlPattern.test(value)) {
    const bytes = Buffer.from(value, 'base64url');
    // Canonical only: 32 bytes that encode back to the same text.
    if (bytes.length === 32 && bytes.toString('base64url') === value) return { kind: 'thumbprint', sha256: bytes.toString('hex') };
  }
  return { error: 'must be partner:<partner id>/<anchor name>, a SHA-256 thumbprint of the CA certificate (64 hex digits, colons optional, or 43 base64url characters), the CA certificate in PEM, or clearance' };
}

/** Reads the member in client metadata: the value as stored (a PEM re-encoded, anything else trimmed). */
export function readAnchorValue(v: Validator, path: string, value: unknown): string | undefined {
  const text = v.string(path, value, { maxLength });
  if (text === undefined) return undefined;
  const parsed = parseAnchorValue(text);
  if ('error' in parsed) return v.fail(path, parsed.error);
  return parsed.kind === 'certificate' ? parsed.certificate.toString() : text.trim();
}

/** A certificate's SHA-256 thumbprint as AnchorValue compares it: lower-case hex of its DER. */
export function sha256Hex(certificate: X509Certificate): string {
  return createHash('sha256').update(certificate.raw).digest('hex');
}

/** How an anchor is named in events and errors: never a whole PEM. */
export function anchorLabel(value: AnchorValue): string {
  switch (value.kind) {
    case 'clearance':
      return 'clearance';
    case 'partner':
      return `partner:${value.partner}/${value.name}`;
    case 'thumbprint':
      return `sha256:${value.sha256}`;
    case 'certificate':
      return `sha256:${sha256Hex(value.certificate)}`;
  }
}
