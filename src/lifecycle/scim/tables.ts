/** SCIM's own table (migration 0048_scim). Times are epoch milliseconds. */
export interface ScimTables {
  scim_users: {
    /** The person (`users.id`), which is also the SCIM resource id. */
    user_id: string;
    /** RFC 7643 §3.1 `externalId`: the provisioning client's identifier of the person (caseExact). */
    external_id: string | null;
    /** When a SCIM DELETE offboarded the person and took them out of SCIM's view; null while visible. */
    hidden_at: number | null;
    /** When SCIM created the person; null for a person SCIM adopted (made by apply or the admin API). */
    provisioned_at: number | null;
    updated_at: number;
  };
}
