/**
 * What an authorization request keeps of a what-you-see-is-what-you-sign approval (the
 * interactions table's JSON columns, migration 0020; src/approvals/ceremony.ts).
 */

/** A ceremony the consent page started: the challenge is approvalChallenge(digest, nonce). */
export interface ApprovalChallenge {
  /** approvalDigest of the request's entries to approve. */
  digest: string;
  /** 16 random bytes, base64url. */
  nonce: string;
  /** Epoch ms. */
  expiresAt: number;
}

/** A verified approval: what the code and its tokens carry (the evidence is in the audit event). */
export interface ApprovalRecord {
  /** A UUID, named by `approval.given`, `code.issued` and `token.issued`. */
  id: string;
  digest: string;
  /** The passkey's credential id (base64url). */
  credentialId: string;
  /** Epoch ms. */
  at: number;
}
