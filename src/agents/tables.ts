/** Algorithmic agents (migration 0040_agents, docs/agents.md). Times are epoch ms. */
export interface AgentTables {
  /** Deployment pipelines whose keys sign workload attestations (apply's `pipelines`). */
  agent_pipelines: {
    id: string;
    name: string | null;
    /** The public JWK Set, JSON. */
    jwks: string;
    updated_at: number;
  };
  /** One identity per strategy, environment and desk (apply's `agents`). */
  agents: {
    id: string;
    /** The OAuth client (kind agent) the agent authenticates as. */
    client_id: string;
    strategy: string;
    environment: string;
    owner_lei: string;
    desk: string | null;
    /** JSON arrays. */
    venues: string;
    instrument_classes: string;
    notional_max: number | null;
    notional_currency: string | null;
    /** JSON array of pipeline ids allowed to attest it. */
    pipelines: string;
    certificate_profile: string;
    /** JSON array of key storages the attestation may claim (hsm, tpm, software). */
    key_storage: string;
    /** 'active' | 'disabled'. */
    status: string;
    updated_at: number;
    /**
     * When the agent was flagged for a human to look at (migration 0047): the person who owns its
     * model left (src/lifecycle/leaver.ts). Flagged, not disabled; null when not flagged.
     */
    flagged_at?: number | null;
    /** Why: `owner_offboarded`. */
    flag_reason?: string | null;
  };
  /** A model version bound to an agent: no trading authority until approved (a second person, `model-risk`). */
  agent_models: {
    id: string;
    agent_id: string;
    version: string;
    /** `sha256:<hex>` of the model artifact. */
    model_digest: string;
    /** `sha256:<hex>` of the container image that runs it. */
    image_digest: string;
    /** 'pending' | 'approved' | 'denied' | 'retired'. */
    status: string;
    /** The person who validated it (and asked for approval). */
    validated_by: string;
    validation_ref: string | null;
    approval_request: string;
    approved_by: string | null;
    approved_at: number | null;
    /** Whether approving this version retires the agent's other approved versions (their certificates revoked). */
    retire_previous: number;
    retired_at: number | null;
    created_at: number;
  };
  /** Single-use attestation nonces (SHA-256 of the nonce), minutes long. */
  agent_nonces: {
    nonce_hash: string;
    agent_id: string;
    expires_at: number;
    used_at: number | null;
  };
  /** Which model version each attested certificate was issued for. */
  agent_credentials: {
    serial: string;
    agent_id: string;
    model_id: string;
    pipeline_id: string;
    attestation_jti: string;
    created_at: number;
  };
}
