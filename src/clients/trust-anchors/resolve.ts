import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { caShapeProblem } from '../../certificates/path.ts';
import type { Partner } from '../../federation/definition.ts';
import { partnerRevocation, pemBlocks, type PartnerRevocation } from '../../federation/trust-anchors.ts';
import { anchorLabel, sha256Hex, type AnchorValue } from './value.ts';

/** Where anchors are looked up: the partners in force and the TLS listener's client CA bundle. */
export interface AnchorSources {
  partners: readonly Partner[];
  /** The CA certificates of CLEARANCE_TLS_CLIENT_CA (none without Clearance's own TLS listener). */
  bundle: readonly X509Certificate[];
}

/** A partner anchor the client's anchor is (by name, or by being the same certificate). */
export interface PartnerAnchor {
  partner: string;
  anchor: string;
  revocation: PartnerRevocation;
  /** The partner's `allow_private_network`: may its CA's OCSP responders and CRLs be on a private address. */
  allowPrivateNetwork: boolean;
}

export type ResolvedAnchor =
  | { kind: 'clearance'; label: string }
  | {
      kind: 'ca';
      label: string;
      certificate: X509Certificate;
      /** Issuing CAs under it that the partner's profile lists, for certificates that come without their chain. */
      intermediates: X509Certificate[];
      /** Set when the anchor is one of a partner's: its revocation setting applies. */
      partner?: PartnerAnchor;
    };

/**
 * Finds the CA a client's anchor names: a partner's named anchor; a thumbprint of one of the
 * partners' anchors or of a CA in the bundle; a PEM certificate (the partner's, when it is one of
 * theirs). An error says which lookup failed, for apply's problems and the audit detail.
 */
export function resolveAnchor(value: AnchorValue, sources: AnchorSources): ResolvedAnchor | { error: string } {
  const label = anchorLabel(value);
  switch (value.kind) {
    case 'clearance':
      return { kind: 'clearance', label };
    case 'partner': {
      const partner = sources.partners.find((p) => p.id === value.partner);
      if (!partner) return { error: `names partner "${value.partner}", which is not a partner in service` };
      const anchor = anchorsOf(partner).find((a) => a.name === value.name);
      if (!anchor) return { error: `names trust anchor "${value.name}", which partner ${partner.id} does not declare (its trust_anchors: ${anchorsOf(partner).map((a) => a.name).join(', ') || 'none'})` };
      return { kind: 'ca', label, certificate: anchor.certificate, intermediates: anchor.intermediates, partner: { partner: partner.id, anchor: anchor.name, revocation: partnerRevocation(partner), allowPrivateNetwork: partner.allow_private_network } };
    }
    case 'thumbprint':
    case 'certificate': {
      const sha256 = value.kind === 'thumbprint' ? value.sha256 : sha256Hex(value.certificate);
      for (const partner of sources.partners) {
        const anchor = anchorsOf(partner).find((a) => a.sha256 === sha256);
        if (anchor) return { kind: 'ca', label, certificate: anchor.certificate, intermediates: anchor.intermediates, partner: { partner: partner.id, anchor: anchor.name, revocation: partnerRevocation(partner), allowPrivateNetwork: partner.allow_private_network } };
      }
      if (value.kind === 'certificate') return { kind: 'ca', label, certificate: value.certificate, intermediates: [] };
      const inBundle = sources.bundle.find((c) => sha256Hex(c) === sha256);
      if (!inBundle) return { error: `is the thumbprint of no CA certificate in CLEARANCE_TLS_CLIENT_CA or among the partners' trust_anchors (${sha256})` };
      return { kind: 'ca', label, certificate: inBundle, intermediates: [] };
    }
  }
}

interface ParsedAnchor {
  name: string;
  certificate: X509Certificate;
  sha256: string;
  intermediates: X509Certificate[];
}

/** A profile's anchors parsed once per loaded profile (the partner cache hands out the same object until a change). */
const parsedAnchors = new WeakMap<Partner, ParsedAnchor[]>();

export function anchorsOf(partner: Partner): ParsedAnchor[] {
  let anchors = parsedAnchors.get(partner);
  if (!anchors) {
    // Validated at apply; one that cannot be read now (a stored profile from elsewhere) anchors nothing: fail closed, never a 500.
    anchors = (partner.trust_anchors ?? []).flatMap((a) => {
      try {
        const certificate = new X509Certificate(a.certificate);
        return [{ name: a.name, certificate, sha256: sha256Hex(certificate), intermediates: pemBlocks(a.intermediates ?? '').map((pem) => new X509Certificate(pem)) }];
      } catch {
        return [];
      }
    });
    parsedAnchors.set(partner, anchors);
  }
  return anchors;
}

const bundles = new Map<string, X509Certificate[]>();

/**
 * The CA certificates of the TLS listener's client CA file, read once per process (the listener
 * itself reads it once, at start). Certificates that are not CAs are left out; an unreadable file
 * is an empty bundle here (the listener would not have started with it).
 */
export function clientCaBundle(file: string | undefined): X509Certificate[] {
  if (!file) return [];
  let bundle = bundles.get(file);
  if (!bundle) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      text = '';
    }
    bundle = pemBlocks(text).flatMap((pem) => {
      try {
        const certificate = new X509Certificate(pem);
        return caShapeProblem(certificate, 0, 'the certificate') === undefined ? [certificate] : [];
      } catch {
        return [];
      }
    });
    bundles.set(file, bundle);
  }
  return bundle;
}
