import type { Config } from '../config.ts';
import type { AuthMethod, ClientMetadata } from './metadata.ts';

/**
 * The FAPI 2.0 Security Profile switch (docs/configuration.md, "FAPI 2.0"): server-wide with
 * CLEARANCE_PROFILE=fapi2, or per client with `profile: fapi2` in its metadata.
 */
export function isFapi2(config: Pick<Config, 'profile'>, client: { metadata: Pick<ClientMetadata, 'profile'> }): boolean {
  return config.profile === 'fapi2' || client.metadata.profile === 'fapi2';
}

/**
 * FAPI 2.0 SP §5.3.2.1: confidential clients only, authenticated with private_key_jwt or mutual
 * TLS (RFC 8705 tls_client_auth / self_signed_tls_client_auth); never a shared secret.
 */
export const fapiAuthMethods: readonly AuthMethod[] = ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'];
