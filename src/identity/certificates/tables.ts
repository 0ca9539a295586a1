/** Person-certificate sign-in's table (migration 0046_person_certificates). Times are epoch ms. */
export interface PersonCertificateTables {
  /**
   * The certificate authorities trusted to sign people in (apply's `person_certificates`,
   * src/identity/certificates/settings.ts), one row each: the whole list is replaced by an apply
   * that names the section.
   */
  person_certificate_authorities: {
    name: string;
    /** JSON: the authority as validated (PersonCertificateAuthority). */
    definition: string;
    created_at: number;
    updated_at: number;
  };
}
