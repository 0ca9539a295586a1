export interface LifecycleTables {
  /**
   * Who runs a scheduled lifecycle step (src/lifecycle/lease.ts): one row per step name. A lease
   * whose `expires_at` has passed is free; a node that crashed mid-step gives it up that way.
   */
  lifecycle_leases: {
    name: string;
    /** The node (and scheduler instance) holding it: `<host>:<pid>/<instance>`. */
    holder: string;
    acquired_at: number;
    expires_at: number;
  };
  /**
   * A leaver's revoked credentials (src/lifecycle/credential-hold.ts; migration 0063): one row per
   * person the leaver operation revoked the password and factors of, until they come back through
   * an approved recovery. While it exists nothing signs them in and no administrator sets their
   * password.
   */
  credential_holds: {
    user_id: string;
    /** Epoch ms: when the credentials were revoked (the offboarding). */
    held_since: number;
  };
}
