export interface ReplayTables {
  /**
   * Single-use identifiers (client assertion `jti`, later DPoP proof `jti`), each under a scoped key
   * such as `client_assertion:<client_id>:<jti>`. The primary key makes a second use fail on every
   * node at once (DESIGN §6); a row is kept until `expires_at` (ms), after which the identifier's
   * token is rejected anyway and the row may be pruned.
   */
  jti_replay: { key: string; expires_at: number };
}
