/** The passkey tables (migration 0018_passkeys). Times are epoch milliseconds. */
export interface PasskeyTables {
  passkeys: {
    /** Clearance's handle (UUID): what pages, URLs and forms name. */
    id: string;
    /** The WebAuthn credential id, base64url (at most 1023 bytes, WebAuthn L3 §5.8.3); unique. */
    credential_id: string;
    /** The person it signs in (users.id); also its user handle (WebAuthn L3 §5.4.3), as UTF-8. */
    user_id: string;
    /** The person's name for it ("Work laptop"), 1–64 characters. */
    name: string;
    /** The credential public key as the authenticator gave it: a COSE_Key (RFC 9052 §7), base64url. */
    public_key: string;
    /** The signature counter last seen (0 for authenticators that keep none). */
    sign_count: number;
    /** JSON array of the transports the browser reported at registration (`internal`, `usb`, `hybrid`, …). */
    transports: string;
    /** 1: backup eligible (BE flag): a synced passkey whose key can leave the device. */
    backup_eligible: number;
    /** 1: backed up (BS flag), as last seen. */
    backed_up: number;
    /** The authenticator model's AAGUID, lowercase and hyphenated (all zeros when not disclosed). */
    aaguid: string;
    /** The attestation statement format (`none`, `packed`, `fido-u2f`, `tpm`, `apple`). */
    attestation_format: string;
    /** 1: its attestation was verified and chained to a configured root at registration. */
    attested: number;
    created_at: number;
    last_used_at: number | null;
  };
  passkey_challenges: {
    /** SHA-256 of the challenge, base64url: the challenge itself is never stored. */
    id: string;
    /** Which ceremony it is for: `register`, `login` (after a username), `login_discoverable`. */
    purpose: string;
    /** What it is bound to: the interaction id (sign-in) or the session id (account page). */
    binding: string;
    /** The person the ceremony is for; null for a username-less sign-in or an unknown username. */
    user_id: string | null;
    expires_at: number;
  };
}
