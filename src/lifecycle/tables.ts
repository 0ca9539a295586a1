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
}
