import type { X509Certificate } from 'node:crypto';
import { pathToAnchor } from '../../certificates/path.ts';
import { revocationStatus, type RevocationSources } from '../../certificates/revocation.ts';
import type { Clock } from '../../clock.ts';
import type { Partner } from '../../federation/definition.ts';
import { certificateFacts } from '../../identity/certificates/fields.ts';
import type { TrustedCertificate } from '../../pki/status.ts';
import { CertificateRefused, type CertificateRefusalReason } from '../authentication/errors.ts';
import type { ClientMetadata } from '../metadata.ts';
import { clientCaBundle, resolveAnchor, type PartnerAnchor } from './resolve.ts';
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
 * 4. under a partner's anchor, every certificate of the built path but the anchor — the client's
 *    and each intermediate CA's — is checked for revocation as the partner's profile says, each
 *    against the issuer the path names for it (src/certificates/revocation.ts: OCSP from its AIA,
 *    then its CRL distribution point; hard fail refuses without an answer for any of them, soft
 *    fail lets the client in and says so). A revoked issuing CA revokes what it issued
 *    (RFC 5280 §6.3: the status of each certificate in the path).
 *
 * Every refusal is `invalid_client` with its reason (CertificateRefused). Under the institutional
 * profile (CLEARANCE_INSTITUTIONAL=true) a tls_client_auth client without an anchor is refused here
 * as well (`trust_anchor_required`): registration refuses one, and this catches one stored before
 * the profile was switched on, or written around it.
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
  /** CLEARANCE_INSTITUTIONAL: every tls_client_auth client must be bound to an anchor. */
  institutional?: boolean;
}

export class ClientTrustAnchors {
  readonly #options: TrustAnchorOptions;
  readonly #values = new WeakMap<ClientMetadata, AnchorValue | { error: string }>();

  constructor(options: TrustAnchorOptions) {
    this.#options = options;
  }

  /** Whether a tls_client_auth client without an anchor must be checked (and so refused) here. */
  get institutional(): boolean {
    return this.#options.institutional === true;
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
    if (metadata.tls_client_auth_trust_anchor === undefined) {
      // docs/client-authentication.md "Trust anchors and revocation": the institutional profile binds
      // every CA-issued client certificate to its CA; a stored client without one is not let in.
      if (this.institutional) {
        throw new CertificateRefused('trust_anchor_required', `client ${id} uses tls_client_auth without tls_client_auth_trust_anchor, which the institutional profile (CLEARANCE_INSTITUTIONAL=true) requires`, 'the client is not bound to the certificate authority that issues its certificates', facts);
      }
      throw untrusted(`client ${id} has no tls_client_auth_trust_anchor`);
    }
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
    // RFC 5280 §6.3: every certificate of the path but the anchor (a trust anchor is not revoked by
    // a CRL or OCSP of its own: it is removed from the profile), each against the issuer above it.
    const sources = sourcesOf(partner);
    const answers = await Promise.all(path.path.slice(0, -1).map(async (member, depth) => ({ depth, member, answer: await revocationStatus(sources, member, path.path[depth + 1]!, now) })));
    const refuse = (reason: CertificateRefusalReason, detail: string, description: string) => new CertificateRefused(reason, `client ${id}'s certificate ${detail}`, description, { ...facts, trust_anchor: anchor, partner: partner.partner });
    // Which certificate an answer is about: the client's, or the CA certificate above it (never its subject: facts).
    const which = (depth: number, member: X509Certificate) => (depth === 0 ? '' : ` (its issuing CA certificate at depth ${depth}, serial ${certificateFacts(member).serial})`);
    const revoked = answers.find((a) => a.answer.status === 'revoked');
    if (revoked && revoked.answer.status === 'revoked') {
      const { answer } = revoked;
      throw refuse('certificate_revoked', `was revoked by its CA${which(revoked.depth, revoked.member)} (${answer.source}${answer.revokedAt !== undefined ? `, at ${new Date(answer.revokedAt).toISOString()}` : ''})`, 'the client certificate has been revoked');
    }
    const unknown = answers.find((a) => a.answer.status === 'unknown');
    if (unknown) throw refuse('certificate_revocation_unknown', `is unknown to its CA’s OCSP responder${which(unknown.depth, unknown.member)}`, 'the client certificate is not known to its certificate authority');
    const unavailable = answers.flatMap((a) => (a.answer.status === 'unavailable' ? [`${a.depth === 0 ? 'the certificate' : `the CA certificate at depth ${a.depth}`}: ${a.answer.detail}`] : []));
    if (unavailable.length === 0) return { ...accepted, revocation: 'good' };
    // One certificate of the path: its detail as it was; several: each named.
    const detail = unavailable.length === 1 && answers[0]!.answer.status === 'unavailable' ? (answers[0]!.answer as { detail: string }).detail : unavailable.join('; ');
    // A responder the fetch rules refuse (an address the profile does not allow) is a configuration
    // to fix, not an outage a soft-failing profile rides out: refused as in hard mode.
    const refusedByRules = answers.some((a) => a.answer.status === 'unavailable' && a.answer.refused);
    if (partner.revocation.mode === 'hard' || refusedByRules) {
      const why = partner.revocation.mode === 'hard' ? `partner ${partner.partner} fails hard` : `Clearance's fetch rules refuse a responder of partner ${partner.partner}, which soft fail does not ride out`;
      throw refuse('certificate_revocation_unavailable', `could not be checked for revocation (${why}): ${detail}`, 'the revocation status of the client certificate could not be checked');
    }
    return { ...accepted, revocation: 'unavailable', revocationDetail: detail };
  }
}

function sourcesOf(partner: PartnerAnchor): RevocationSources {
  const { revocation } = partner;
  return {
    ...(revocation.ocsp ? { ocsp: { cacheSeconds: revocation.cache_seconds } } : {}),
    ...(revocation.crl ? { crl: { refreshSeconds: revocation.cache_seconds } } : {}),
    timeoutMs: revocation.timeout_ms,
    allowPrivateNetwork: partner.allowPrivateNetwork,
    privateNetworkSetting: `partner ${partner.partner}'s profile`,
  };
}
