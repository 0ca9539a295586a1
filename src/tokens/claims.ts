import type { ApprovalsClaimEntry } from '../approvals/claims.ts';

/** RFC 8705 §3.1 / RFC 9449 §6.1: the key or certificate a token is bound to. */
export interface Confirmation {
  'x5t#S256'?: string;
  jkt?: string;
}

/** Claims of a Clearance access token: RFC 9068 §2.2 plus the vocabulary of DESIGN §4. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  /** Exactly one audience per token (RFC 8707, DESIGN §4). */
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope?: string;
  cnf?: Confirmation;
  authorization_details?: unknown[];
  /** RFC 8693 §4.1 delegation chain, newest actor outermost. */
  act?: Record<string, unknown>;
  txn?: string;
  mandate?: { id: string; v: number };
  /** The consent grant a person's token was issued under (src/authorization/consent.ts); revoking it makes the token inactive. */
  grant_id?: string;
  /**
   * The refresh token family a person's token was issued with, at the code redemption that opened
   * it or a refresh of it (src/tokens/refresh-tokens.ts): revoking the family (RFC 7009 §2.1)
   * makes the token inactive (src/tokens/liveness.ts). Absent from a token no family goes with
   * (client_credentials, a client not registered for refresh_token, token exchange).
   */
  refresh_family?: string;
  auth_time?: number;
  acr?: string;
  amr?: string[];
  /** What-you-see-is-what-you-sign: the approval digest of the order entries the person approved (src/approvals). */
  authorization_details_digest?: string;
  /**
   * Four-eyes: the second persons who approved the token's request (src/approvals/claims.ts) —
   * each one's sub, acr, time and the digest of their evidence in the request's `txn`.
   */
  approvals?: ApprovalsClaimEntry[];
  /** Issued to an emergency account under a break-glass activation (src/approvals/break-glass). */
  break_glass?: true;
  /** The break-glass activation the token was issued under: dead once it ends (src/tokens/liveness.ts). */
  break_glass_activation?: string;
  /**
   * Issued to an algorithmic agent (src/agents, docs/agents.md) authenticated with a certificate
   * attested for an approved model version: which agent, strategy and model version, and the
   * approval that gave that version trading authority.
   */
  agent?: AgentClaim;
  /**
   * A token exchanged from an agent's token (RFC 8693), at any hop: every agent it stands on — the
   * subject's, an actor's, an earlier hop's — by its model version's approval (src/agents/
   * authority.ts). It is live only while each of them is (src/tokens/liveness.ts).
   */
  agents?: AgentReference[];
  /** The managed device the person signed in from (a `device` profile certificate of Clearance's CA over mTLS). */
  device_id?: string;
  /**
   * The issuer of the upstream identity provider that signed the person in (src/federation/upstream): the
   * source of assurance of `acr` and `amr` (docs/identity-brokering.md). Absent for a local sign-in.
   */
  assurance_source?: string;
  /**
   * A partner's subject (origin_iss) mapped here (src/federation/subject.ts): the local person its
   * identity is linked to, and the legal entity its partner names — carried down an exchange chain
   * so every hop decides about the same person and firm.
   */
  origin_person?: string;
  origin_lei?: string;
}

export interface AgentClaim {
  id: string;
  strategy: string;
  environment: string;
  model_version: string;
  model_digest: string;
  /** The approval request that approved the model version. */
  approval: string;
}

/** An agent a token stands on, by the approval of the model version it was attested for. */
export interface AgentReference {
  id: string;
  approval: string;
}

/** RFC 9068 §2.1: the media type of JWT access tokens, as `typ`. */
export const accessTokenTyp = 'at+jwt';
