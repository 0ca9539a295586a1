import { OAuthError } from '../../oauth-error.ts';

/**
 * The public description of a failed credential check. It is the same for an unknown client, a
 * wrong secret, a bad signature or a method the client is not registered for, so a response never
 * tells a caller which of these it was; the `detail` (logs and audit only) does.
 */
export const authenticationFailed = 'client authentication failed';

/**
 * An `invalid_client` error (RFC 6749 §5.2, 401). `detail` says exactly what failed, for the log
 * and the `client.auth_failed` audit event; it must never contain a secret or a whole assertion.
 */
export function invalidClient(detail: string, description: string = authenticationFailed, status = 401): OAuthError {
  return new OAuthError('invalid_client', description, { status, detail });
}

/** Shortens a caller-supplied value for a log detail. */
export function quote(value: unknown, max = 80): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

/** Why a client certificate bound to a trust anchor was refused (src/clients/trust-anchors), for the audit trail. */
export type CertificateRefusalReason =
  /** Its chain does not end at the client's trust anchor (or the anchor is no longer declared). */
  | 'certificate_untrusted_anchor'
  | 'certificate_revoked'
  /** The CA's OCSP responder does not know the certificate. */
  | 'certificate_revocation_unknown'
  /** No verified revocation answer, and the partner's profile fails hard. */
  | 'certificate_revocation_unavailable'
  /** A tls_client_auth client without tls_client_auth_trust_anchor under CLEARANCE_INSTITUTIONAL=true. */
  | 'trust_anchor_required';

/**
 * An `invalid_client` refusal of a client certificate that carries its reason, and the facts about
 * the trust anchor and the certificate (serial, issuer, SHA-256: never its subject) that the
 * `client.auth_failed` event records (src/clients/authentication/endpoint-authentication.ts).
 */
export class CertificateRefused extends OAuthError {
  readonly reason: CertificateRefusalReason;
  readonly facts: Record<string, unknown>;

  constructor(reason: CertificateRefusalReason, detail: string, description: string, facts: Record<string, unknown>) {
    super('invalid_client', description, { status: 401, detail });
    this.reason = reason;
    this.facts = facts;
  }
}

/** What a refusal adds to its `client.auth_failed` event: the certificate refusal's reason and facts, if it was one. */
export function refusalDetails(error: OAuthError): Record<string, unknown> {
  return error instanceof CertificateRefused ? { reason: error.reason, ...error.facts } : {};
}
