/** Identity brokering's tables (migration 0045_identity_brokering; docs/identity-brokering.md). Times are epoch ms. */
export interface BrokeringTables {
  /** Upstream identity providers declared in apply (`identity_providers`). */
  identity_providers: {
    id: string;
    /** `oidc`. */
    kind: string;
    /** JSON: the declaration (src/federation/upstream/definition.ts IdentityProvider), without its secret. */
    definition: string;
    /** The client secret at the upstream, sealed with the master key and bound to `identity_providers:<id>`; null for private_key_jwt or none. */
    secret_sealed: string | null;
    /** 1 while people may sign in through it; 0 once apply disabled it (its people's sessions ended). */
    enabled: number;
    created_at: number;
    updated_at: number;
  };
  /**
   * Which local person an upstream identity is: linked by (issuer, subject) — never by email. One
   * upstream identity is one person; a person may have several upstream identities.
   */
  user_links: {
    issuer: string;
    subject: string;
    user_id: string;
    provider_id: string;
    /** `provisioned` (just in time, at the first sign-in) or `admin` (an administrator linked an existing person). */
    linked_by: string;
    created_at: number;
    last_login_at: number | null;
  };
  /**
   * A sign-in sent to an upstream and not yet back: single use, bound to the interaction and to the
   * browser. The state is stored only as its SHA-256; the nonce and PKCE verifier are derived from
   * the state with a key of the master key's (src/federation/upstream/upstream-logins.ts), so nothing here
   * lets a copy of the table finish a sign-in.
   */
  upstream_logins: {
    state_hash: string;
    interaction_id: string;
    provider_id: string;
    /** SHA-256 of the browser-binding cookie value of the browser that left. */
    browser_hash: string;
    created_at: number;
    expires_at: number;
    consumed_at: number | null;
    /**
     * JSON: a SAML IdP's verified answer (src/federation/upstream/saml.ts), posted to the ACS without the
     * browser's cookies and kept here until the browser that left brings the state back; null otherwise.
     */
    result: string | null;
    /**
     * JSON: what Clearance asked of the upstream when it sent the person there (./freshness.ts
     * UpstreamAsk: `maxAge`, `login`, `because`), checked against its answer; null when nothing was
     * asked, or opened by a release before migration 0066_upstream_login_ask.
     */
    asked: string | null;
  };
  /**
   * Clearance's key pair as a SAML service provider (one, id `sp`): RSA-2048, made at first use. The
   * private key signs AuthnRequests and decrypts encrypted assertions; sealed with the master key.
   */
  saml_service_provider: {
    id: string;
    private_key_sealed: string;
    /** PEM: the self-signed certificate published in the SP metadata. */
    certificate: string;
    created_at: number;
  };
}
