import type { TrustedCertificate } from '../../pki/status.ts';
import type { X509Certificate } from 'node:crypto';
import type { FormParameters } from '../../parameters.ts';
import type { AuthMethod } from '../metadata.ts';
import type { Client } from '../store.ts';
import type { AnchoredCertificate } from '../trust-anchors/check.ts';

/** What a client presented to authenticate, taken from the HTTP request by the endpoint. */
export interface ClientAuthInput {
  /** The form body (client_id, client_secret, client_assertion_type, client_assertion). */
  form: FormParameters;
  /** The Authorization header, if any. */
  authorization: string | undefined;
  /** The client certificate from the TLS connection or the trusted proxy header, if any. */
  certificate: X509Certificate | undefined;
  /** True when the TLS listener or the trusted proxy validated the certificate's chain (needed for tls_client_auth). */
  certificateChainVerified: boolean;
  /**
   * The other certificates the client sent in the TLS handshake to Clearance's own listener, read
   * when needed (a trust anchor's path is built from them); none through a proxy's header.
   */
  certificateChain?: () => readonly X509Certificate[];
  /** The source address (for throttling and audit). */
  sourceAddress: string;
  requestId?: string;
  /**
   * Accept a public client (`token_endpoint_auth_method: none`) identified by client_id alone.
   * Only endpoints and grants that serve public clients (authorization code with PKCE) set this.
   */
  allowPublic?: boolean;
}

/** A client that proved its identity with exactly one method. */
export interface AuthenticatedClient {
  client: Client;
  method: AuthMethod;
  /** RFC 8705 §3.1: base64url SHA-256 of the DER certificate, when one was presented. */
  certificateThumbprint?: string;
  /** The `jti` of the client assertion (private_key_jwt), for the audit event. */
  assertionJti?: string;
  /**
   * Set for an emergency account (src/approvals/break-glass): the activation in force that let it
   * authenticate, and what that activation may grant.
   */
  breakGlass?: { activation: string; scopes: string[]; audience: string; endsAt: number };
  /** Set when the client authenticated with the secret a rotation replaced, in its rollover window (a straggler). */
  previousSecret?: true;
  /** Set when mTLS used a certificate of Clearance's own CA: its serial, profile and holder (src/pki/status.ts). */
  caCertificate?: TrustedCertificate;
  /** Set when a tls_client_auth client bound to a trust anchor authenticated: the anchor, and how revocation was checked. */
  anchoredCertificate?: AnchoredCertificate;
}
