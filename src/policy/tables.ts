/** The policy decision point's tables (migration 0008_policy). Times are epoch milliseconds. */
export interface PolicyTables {
  /** Versioned Cedar policy sets. A version never changes once stored; at most one is active. */
  policy_sets: {
    version: string;
    /** The Cedar policy text, as applied. */
    text: string;
    /** SHA-256 (hex) of `text`. */
    digest: string;
    /** The change request or ticket that introduced it (e.g. a pull request URL). */
    change_ref: string;
    author: string;
    /** Who approved its (latest) activation; never the author. */
    approver: string | null;
    /** 1 for the one active set, else 0. */
    active: number;
    created_at: number;
    /** The actor that stored it (cli:<user> or the admin client). */
    created_by: string;
    activated_at: number | null;
    activated_by: string | null;
  };
}
