/** The private CA's tables (migration 0039_pki, docs/pki.md). Times are epoch ms. */
export interface PkiTables {
  /** Software custody (src/pki/custody/software.ts): private keys sealed with the master key. */
  custody_keys: {
    ref: string;
    label: string;
    key_type: string;
    /** SPKI DER, base64. */
    public_key: string;
    /** PKCS#8 DER sealed with the master key, bound to `ref`. */
    private_key: string;
    master_key_id: string;
    created_at: number;
  };
  /** The CA's own certificates: the (offline) root, issuing intermediates, OCSP responders. */
  pki_authorities: {
    id: string;
    /** 'root' | 'issuing' | 'ocsp'. */
    role: string;
    /** The authority that signed this one's certificate (itself for the root). */
    issuer_id: string;
    subject: string;
    certificate: string;
    /** Custody reference of the private key; null for a root kept offline. */
    key_ref: string | null;
    not_before: number;
    not_after: number;
    /** 'active' | 'retired'. */
    status: string;
    created_at: number;
  };
  /** Certificate profiles declared in apply (`certificate_profiles`). */
  pki_profiles: {
    name: string;
    /** The profile as JSON (src/pki/profiles.ts). */
    definition: string;
    version: number;
    updated_at: number;
  };
  /** Every certificate the CA issued (and what became of it). */
  pki_certificates: {
    /** Lower-case hex, no leading zeros beyond one byte's. */
    serial: string;
    authority_id: string;
    profile: string;
    profile_version: number;
    /** Whom it identifies: the token subject it was issued for (a client id, an agent id, a device id). */
    holder: string;
    subject: string;
    /** JSON array of `type:value` SAN entries. */
    sans: string;
    /** base64url SHA-256 of the certificate (RFC 8705 `x5t#S256`). */
    thumbprint: string;
    /** base64url SHA-256 of the subject public key info. */
    spki_sha256: string;
    certificate: string;
    not_before: number;
    not_after: number;
    /** 'valid' | 'revoked'. */
    status: string;
    revoked_at: number | null;
    /** RFC 5280 §5.3.1 CRLReason code. */
    revocation_reason: number | null;
    revoked_by: string | null;
    /** Who asked for it (client id, person id or `cli:<user>`). */
    requested_by: string;
    /** The serial of the certificate it renewed. */
    renewed_from: string | null;
    /** The approval request that allowed it, for profiles that need one. */
    approval_request: string | null;
    created_at: number;
  };
  /** Issuance waiting for a second person's approval (profiles with `approval: required`). */
  pki_requests: {
    id: string;
    profile: string;
    holder: string;
    csr: string;
    lifetime_seconds: number;
    requested_by: string;
    /** 'pending' | 'issued' | 'denied' | 'refused' (the profile or CSR no longer passed when approved); expiry is the approval request's. */
    status: string;
    serial: string | null;
    created_at: number;
  };
  /** The latest CRL of each issuing authority; `crl_number` only grows (RFC 5280 §5.2.3). */
  pki_crls: {
    authority_id: string;
    crl_number: number;
    this_update: number;
    next_update: number;
    /** DER, base64. */
    crl: string;
  };
}
