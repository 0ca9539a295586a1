import type { X509Certificate } from 'node:crypto';
import { pathToAnchor } from '../../certificates/path.ts';
import { revocationStatus, type RevocationSources } from '../../certificates/revocation.ts';
import type { Clock } from '../../clock.ts';
import type { Partner } from '../../federation/definition.ts';
import type { PartnerRevocation } from '../../federation/trust-anchors.ts';
import { certificateFacts } from '../../identity/certificates/fields.ts';
import type { TrustedCertificate } from '../../pki/status.ts';
import { CertificateRefused, type CertificateRefusalReason } from '../authentication/errors.ts';
import type { ClientMetadata } from '../metadata.ts';
import { clientCaBundle, resolveAnchor } from './resolve.ts';
import { parseAnchorValue, type AnchorValue } from './value.ts';

/**
 * Per-client trust anchors for tls_client_auth (docs/client-authentication.md "Trust anchors and
 * revocation"). A TLS listener or proxy validates a client certificate against ONE bundle of CAs;
 * with several partners' CAs in it, partner A's CA could issue a certificate with partner B's
 * client's DN and the subject match would accept it. A client registered with
 * `tls_client_auth_trust_anchor` is authenticated only when, besides all of RFC 8705 §2.1:
 *
 * 1. the anchor resolves (src/clients/trust-anchors/resolve.ts): a partner's anchor still declared,
 *    a thumbprint still in the bundle — else refused, fail closed;
 * 2. `clearance`: the certificate is one of Clearance's own CA (checked with its status store);
 * 3. otherwise Clearance builds the certificate's path itself and it ends at that anchor
 *    (src/certificates/path.ts: every signature, CA flag, key usage, validity and path length) —
 *    from the chain the client sent in the TLS handshake, the intermediates the partner's profile
 *    lists (a proxy passes the leaf only) and the CAs of CLEARANCE_TLS_CLIENT_CA; how the TLS stack
 *    linked the chain is not believed;
 * 4. under a partner's anchor, the certificate is checked for revocation as the partner's profile
 *    says (src/certificates/revocation.ts: OCSP from its AIA, then its CRL distribution point;
 *    hard fail refuses without an answer, soft fail lets the client in and says so).
 *
 * Every refusal is `invalid_client` with its reason (CertificateRefused).
 */

/** How an anchored certificate was accepted, for the audit trail. */
export interface AnchoredCertificate {
  /** The anchor as events name it: `partner:<id>/<name>`, `sha256:<hex>`, or `clearance`. */
  anchor: string;
  partner?: string;
  /**
   * `good`: the partner CA's OCSP or CRL said so; `unavailable`: no answer, and the profile fails
   * soft; `off`: the profile checks none; `not_checked`: the anchor is no partner's, so no
   * revocation setting applies; `clearance`: Clearance's own status store.
   */
  revocation: 'good' | 'unavailable' | 'off' | 'not_checked' | 'clearance';
  revocationDetail?: string;
}

/** What the check sees of the presented certificate. */
export interface PresentedClientCertificate {
  certificate: X509Certificate;
  /** The other certificates the client sent in the TLS handshake (none through a proxy's header). */
  chain?: () => readonly X509Certificate[];
  /** Set when it is a usable certificate of Clearance's own CA. */
  own?: TrustedCertificate;
}

export interface TrustAnchorOptions {
  clock: Clock;
  /** The partners in service (the partner store's cache: reloaded within a second of an apply anywhere). */
  partners: () => Promise<readonly Partner[]>;
  /** CLEARANCE_TLS_CLIENT_CA, when Clearance terminates TLS itself. */
  clientCaFile?: string;
}

export class ClientTrustAnchors {
  readonly #options: TrustAnchorOptions;
  readonly #values = new WeakMap<ClientMetadata, AnchorValue | { error: string }>();

  constructor(options: TrustAnchorOptions) {
    this.#options = options;
  }

  /** Checks a tls_client_auth client's certificate against its registered anchor; throws CertificateRefused. */
  async check(metadata: ClientMetadata, presented: PresentedClientCertificate): Promise<AnchoredCertificate> {
    const id = metadata.client_id;
    const { certificate } = presented;
    const facts = { certificate: certificateFacts(certificate) };
    let value = this.#values.get(metadata);
    if (!value) {
      value = parseAnchorValue(metadata.tls_client_auth_trust_anchor ?? '');
      this.#values.set(metadata, value);
    }
    const untrusted = (detail: string, anchor?: string) =>
      new CertificateRefused('certificate_untrusted_anchor', detail, 'the client certificate was not issued under the trust anchor registered for this client', { ...facts, ...(anchor ? { trust_anchor: anchor } : {}) });
    if ('error' in value) throw untrusted(`client ${id}'s tls_client_auth_trust_anchor cannot be read: ${value.error}`);
    const resolved = resolveAnchor(value, { partners: await this.#options.partners(), bundle: clientCaBundle(this.#options.clientCaFile) });
    if ('error' in resolved) throw untrusted(`client ${id}'s tls_client_auth_trust_anchor ${resolved.error}`);
    const anchor = resolved.label;
    if (resolved.kind === 'clearance') {
      if (!presented.own) throw untrusted(`client ${id} is bound to Clearance's own CA, and presented a certificate of another CA (issuer ${certificateFacts(certificate).issuer})`, anchor);
      return { anchor, revocation: 'clearance' };
    }
    const now = this.#options.clock.now();
    const pool = [...(presented.chain?.() ?? []), ...resolved.intermediates, ...clientCaBundle(this.#options.clientCaFile)];
    const path = pathToAnchor(certificate, [resolved.certificate], pool, now);
    if (!path.ok) throw untrusted(`client ${id}'s certificate does not chain to its trust anchor ${anchor}: ${path.detail}`, anchor);
    const partner = resolved.partner;
    const accepted = { anchor, ...(partner ? { partner: partner.partner } : {}) };
    if (presented.own) return { ...accepted, revocation: 'clearance' };
    if (!partner) return { ...accepted, revocation: 'not_checked' };
    if (partner.revocation.mode === 'off') return { ...accepted, revocation: 'off' };
    const answer = await revocationStatus(sourcesOf(partner.revocation), certificate, path.path[1]!, now);
    const refuse = (reason: CertificateRefusalReason, detail: string, description: string) => new CertificateRefused(reason, `client ${id}'s certificate ${detail}`, description, { ...facts, trust_anchor: anchor, partner: partner.partner });
    switch (answer.status) {
      case 'good':
        return { ...accepted, revocation: 'good' };
      case 'revoked':
        throw refuse('certificate_revoked', `was revoked by its CA (${answer.source}${answer.revokedAt !== undefined ? `, at ${new Date(answer.revokedAt).toISOString()}` : ''})`, 'the client certificate has been revoked');
      case 'unknown':
        throw refuse('certificate_revocation_unknown', 'is unknown to its CA’s OCSP responder', 'the client certificate is not known to its certificate authority');
      case 'unavailable':
        if (partner.revocation.mode === 'hard') {
          throw refuse('certificate_revocation_unavailable', `could not be checked for revocation (partner ${partner.partner} fails hard): ${answer.detail}`, 'the revocation status of the client certificate could not be checked');
        }
        return { ...accepted, revocation: 'unavailable', revocationDetail: answer.detail };
    }
  }
}

function sourcesOf(revocation: PartnerRevocation): RevocationSources {
  return {
    ...(revocation.ocsp ? { ocsp: { cacheSeconds: revocation.cache_seconds } } : {}),
    ...(revocation.crl ? { crl: { refreshSeconds: revocation.cache_seconds } } : {}),
    timeoutMs: revocation.timeout_ms,
  };
}
