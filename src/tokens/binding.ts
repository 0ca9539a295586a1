import { OAuthError } from '../oauth-error.ts';
import type { Confirmation } from './claims.ts';
import type { VerifiedDpopProof } from './dpop.ts';

/** How an access token is sender-constrained, and the token_type that says so. */
export interface SenderBinding {
  /** The token's `cnf` (RFC 7800), absent for a bearer token. */
  cnf?: Confirmation;
  /** RFC 9449 §5: `DPoP` for a DPoP-bound token; `Bearer` otherwise (RFC 8705 §3 keeps Bearer). */
  tokenType: 'Bearer' | 'DPoP';
  /** For the audit event. */
  kind: 'dpop' | 'mtls' | 'none';
}

/** What the token request proved possession of. */
export interface PresentedKeys {
  /** The request's verified DPoP proof (RFC 9449 §5). */
  dpop?: VerifiedDpopProof | undefined;
  /** RFC 8705 §3.1: the thumbprint of the client certificate of the TLS connection (or trusted proxy). */
  certificateThumbprint?: string | undefined;
}

/**
 * The binding of an access token issued to a request: to the DPoP proof's key when there is a
 * proof (`cnf.jkt`, token_type DPoP, RFC 9449 §6), else to the client certificate when one was
 * presented (`cnf.x5t#S256`, RFC 8705 §3.1), else none (a bearer token). A request that carries
 * both gets a DPoP-bound token: the client asked for DPoP explicitly.
 */
export function senderBinding(keys: PresentedKeys): SenderBinding {
  if (keys.dpop) return { cnf: { jkt: keys.dpop.jkt }, tokenType: 'DPoP', kind: 'dpop' };
  if (keys.certificateThumbprint) return { cnf: { 'x5t#S256': keys.certificateThumbprint }, tokenType: 'Bearer', kind: 'mtls' };
  return { tokenType: 'Bearer', kind: 'none' };
}

/**
 * Refuses to issue a bearer token where only sender-constrained ones may go: to a resource server
 * registered with `require_sender_constraint` (DESIGN §4), or to a client under the FAPI 2.0
 * profile (FAPI 2.0 SP §5.3.2.1: only sender-constrained access tokens), for every grant.
 */
export function requireSenderConstraint(binding: SenderBinding, required: { resource: boolean; fapi: boolean }): void {
  if (binding.kind !== 'none') return;
  if (required.resource) {
    throw new OAuthError('invalid_request', 'the resource requires sender-constrained tokens; send a DPoP proof or use mTLS', {
      detail: 'bearer token refused: the resource server requires sender-constrained tokens',
    });
  }
  if (required.fapi) {
    throw new OAuthError('invalid_request', 'this client may only receive sender-constrained tokens (FAPI 2.0); send a DPoP proof or use mTLS', {
      detail: 'bearer token refused: FAPI 2.0 profile',
    });
  }
}
