import type { Generated } from 'kysely';

/**
 * The audit log's tables (DESIGN §5). All of them are append-only: on PostgreSQL a trigger
 * rejects UPDATE, TRUNCATE and any DELETE that a signed pruning record does not cover
 * (migration 0002_audit); SQLite has the same triggers.
 */
export interface AuditTables {
  /** Recorded events. */
  audit_events: {
    /** Insertion sequence (SQLite AUTOINCREMENT, PostgreSQL identity): the sealing order. Not the leaf index. */
    seq: Generated<number>;
    /** The event id (UUID), inside the hashed JSON too. */
    id: string;
    type: string;
    /** Epoch ms, copied from the event. */
    time: number;
    txn: string | null;
    subject: string | null;
    client: string | null;
    /** 'allow' | 'deny' when the event carries a decision. */
    decision: string | null;
    /** The event as RFC 8785 canonical JSON: exactly the bytes the leaf hash covers. */
    event: string;
    /** RFC 9162 §2.1.1 leaf hash: SHA-256(0x00 || event). */
    leaf_hash: Uint8Array;
  };
  /** The sealer's assignment of events to leaves of the Merkle tree. */
  audit_leaves: {
    leaf_index: number;
    event_seq: number;
    leaf_hash: Uint8Array;
  };
  /**
   * Lookup of events by transaction, subject and client (`txn:<id>`, `sub:<id>`, `cli:<id>`),
   * written by the sealer with the leaves; events not sealed yet are found by scanning the tail.
   */
  audit_index: {
    key: string;
    seq: number;
  };
  /** Cached interior hashes of perfect subtrees at levels 8, 16, 24, ... (256^k leaves), for proofs. */
  audit_nodes: {
    level: number;
    idx: number;
    hash: Uint8Array;
  };
  /** Signed checkpoints; each also stores the tree frontier and the sealer cursor at that size. */
  audit_checkpoints: {
    tree_size: number;
    origin: string;
    /** Standard base64 of the 32-byte root. */
    root_hash: string;
    time: number;
    key_id: string;
    /** Standard base64 Ed25519 signature over checkpointBody(). */
    signature: string;
    /** Frontier hashes (CompactMerkleTree.frontier()), standard base64, comma separated. */
    frontier: string;
    /** seq of the event at leaf tree_size - 1 (the sealer's cursor). */
    last_seq: number;
  };
  /** Legal holds (migration 0035, holds.ts): pruning never removes an event an active one covers. */
  audit_holds: {
    id: string;
    /** 'txn' | 'subject' | 'client' | 'range'. */
    kind: string;
    value: string | null;
    from_time: number | null;
    to_time: number | null;
    matter_ref: string;
    placed_by: string;
    placed_at: number;
    released_at: number | null;
    /** The approval request asking for its release (migration 0038, hold-release.ts), while it waits and after. */
    release_request: string | null;
    /** JSON array of the ids of who asked for the release and who approved it. */
    released_by: string | null;
  };
  /** Signed records of pruned prefixes: leaves below tree_size were removed. */
  audit_prunings: {
    tree_size: number;
    origin: string;
    root_hash: string;
    frontier: string;
    time: number;
    /** The retention policy applied, as JSON. */
    policy: string;
    key_id: string;
    signature: string;
  };
  /** Ed25519 keys that sign checkpoints, pruning records and bundles. Never deleted. */
  audit_keys: {
    key_id: string;
    /** The log identity checkpoints carry, fixed when the first key is created. */
    origin: string;
    /** SPKI DER, standard base64. */
    public_key: string;
    /** PKCS#8 sealed with the master key (keys/sealed-box.ts), bound to `audit_keys:<key_id>`. */
    private_key: string;
    master_key_id: string;
    created_at: number;
    /** A key in the PKCS#11 token (migration 0042): its custody reference; then private_key is empty. */
    key_ref: string | null;
    /**
     * The key it replaced, which signed the handover to it (migration 0059, audit-key.ts
     * `handoverBody`): null for the first key and for keys rotated in before handovers existed.
     */
    handover_from: string | null;
    /** Ed25519 by `handover_from` over the handover, standard base64. */
    handover_signature: string | null;
  };
}
