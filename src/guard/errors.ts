/**
 * The guard's one error type. Every refusal is a GuardError with the HTTP status to answer, a
 * registered error code (RFC 6750 §3.1, RFC 9449 §7.1, §12.2; the idempotency guard's own codes),
 * a public description, a `detail` for logs only, and the response headers — the
 * `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1) and a `DPoP-Nonce` where one applies.
 */

/** The error codes a guard refusal carries. */
export type GuardErrorCode =
  /** RFC 6750 §3.1: a malformed request (an access token in the URL, two Authorization headers). */
  | 'invalid_request'
  /** RFC 6750 §3.1: the token is missing, malformed, expired, not for this resource, or its binding fails. */
  | 'invalid_token'
  /** RFC 6750 §3.1: the token lacks a scope or authorization_details entry the request needs. */
  | 'insufficient_scope'
  /** RFC 9449 §7.1: the DPoP proof is missing or invalid. */
  | 'invalid_dpop_proof'
  /** RFC 9449 §9: retry with the nonce in the DPoP-Nonce header. */
  | 'use_dpop_nonce'
  /** The policy decision point denied the request (or could not be asked: fail closed). */
  | 'access_denied'
  /**
   * RFC 9470 §3: the person's authentication behind the token is too weak or too old for this
   * request: the challenge carries the `acr_values` and/or `max_age` to authorize again with.
   */
  | 'insufficient_user_authentication'
  /** A settlement-affecting instruction needs a token that carries a `txn`. */
  | 'txn_required'
  /** The same instruction (txn + action) was already processed, or is being processed. */
  | 'duplicate_instruction'
  /** The txn + action was used before for a different instruction (another fingerprint). */
  | 'instruction_conflict'
  /** The guard cannot verify now (the issuer's keys cannot be fetched, the replay cache is full). */
  | 'temporarily_unavailable';

export interface GuardErrorInit {
  status: number;
  error: GuardErrorCode;
  description: string;
  detail?: string | undefined;
  headers?: Record<string, string>;
}

/** A refusal by the guard, ready to become an HTTP response. */
export class GuardError extends Error {
  readonly status: number;
  readonly error: GuardErrorCode;
  /** Public: safe to send to the client. */
  readonly description: string;
  /** For logs only: never send it. */
  readonly detail: string | undefined;
  /** Response headers: `www-authenticate`, `dpop-nonce`, ... (lower-case names). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(init: GuardErrorInit) {
    super(`${init.error}: ${init.description}`);
    this.name = 'GuardError';
    this.status = init.status;
    this.error = init.error;
    this.description = init.description;
    this.detail = init.detail;
    this.headers = init.headers ?? {};
  }

  /** The ready `WWW-Authenticate` value, when the refusal is an authentication challenge. */
  get wwwAuthenticate(): string | undefined {
    return this.headers['www-authenticate'];
  }

  /** The JSON body: `{ error, error_description }` (RFC 6749 §5.2 shape). */
  toJSON(): { error: string; error_description: string } {
    return { error: this.error, error_description: this.description };
  }
}

/** One record of the idempotency guard, as a refusal carries it. */
export interface InstructionRecord {
  txn: string;
  action: string;
  fingerprint?: string;
  /** `processing` while the first call's work runs; `done` once it finished. */
  state: 'processing' | 'done';
  /** When the first call claimed the instruction (ISO 8601). */
  startedAt: string;
  /** When its work finished (ISO 8601), once done. */
  processedAt?: string;
  /** What the work returned (JSON), once done: a reference such as `{ "order_id": "..." }`. */
  result?: unknown;
}

/** A second identical instruction (409 duplicate_instruction), or one with another fingerprint (409 instruction_conflict). */
export class DuplicateInstructionError extends GuardError {
  /** The first instruction's record: when it was processed and what it returned. */
  readonly record: InstructionRecord;

  constructor(error: 'duplicate_instruction' | 'instruction_conflict', record: InstructionRecord) {
    super({
      status: 409,
      error,
      description:
        error === 'instruction_conflict'
          ? `txn ${record.txn} was already used for a different ${record.action} instruction`
          : record.state === 'done'
            ? `this ${record.action} instruction for txn ${record.txn} was already processed`
            : `this ${record.action} instruction for txn ${record.txn} is being processed`,
    });
    this.name = 'DuplicateInstructionError';
    this.record = record;
  }

  override toJSON(): { error: string; error_description: string; instruction: InstructionRecord } {
    // The first record tells a retrying client what happened; a conflicting one learns only that the slot is taken.
    const { txn, action, state, startedAt, processedAt, result } = this.record;
    const instruction: InstructionRecord =
      this.error === 'instruction_conflict'
        ? { txn, action, state, startedAt }
        : { txn, action, state, startedAt, ...(processedAt !== undefined ? { processedAt } : {}), ...(result !== undefined ? { result } : {}) };
    return { ...super.toJSON(), instruction };
  }
}

export type Scheme = 'Bearer' | 'DPoP';

/** How challenges are written: the realm, and the DPoP proof algorithms accepted (RFC 9449 §7.1 `algs`). */
export interface ChallengeOptions {
  realm?: string | undefined;
  dpopAlgorithms: readonly string[];
}

/**
 * A `WWW-Authenticate` value (RFC 6750 §3, RFC 9449 §7.1, RFC 9470 §3) in the scheme the client used, or both
 * schemes when it used none. Without `error` (no credentials were sent) the challenge carries no
 * error code (RFC 6750 §3.1).
 */
export function challengeValue(
  schemes: readonly Scheme[],
  options: ChallengeOptions,
  params: { error?: string; description?: string; scope?: string; acrValues?: string; maxAge?: number } = {},
): string {
  const common = [
    ...(options.realm !== undefined ? [`realm="${quoted(options.realm)}"`] : []),
    ...(params.error !== undefined ? [`error="${params.error}"`] : []),
    ...(params.description !== undefined ? [`error_description="${quoted(params.description)}"`] : []),
    ...(params.scope !== undefined ? [`scope="${quoted(params.scope)}"`] : []),
    // RFC 9470 §3: the levels and the freshness that would meet the resource's requirements.
    ...(params.acrValues !== undefined ? [`acr_values="${quoted(params.acrValues)}"`] : []),
    ...(params.maxAge !== undefined ? [`max_age="${Math.max(0, Math.floor(params.maxAge))}"`] : []),
  ];
  return schemes
    .map((scheme) => {
      const list = scheme === 'DPoP' ? [...common, `algs="${options.dpopAlgorithms.join(' ')}"`] : common;
      return list.length > 0 ? `${scheme} ${list.join(', ')}` : scheme;
    })
    .join(', ');
}

/** RFC 7230 §3.2.6 quoted-string content, restricted to RFC 6750 §3's printable set. */
function quoted(text: string): string {
  const safe = text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?');
  return safe.length > 300 ? `${safe.slice(0, 297)}...` : safe;
}
