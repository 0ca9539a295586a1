import { OAuthError } from '../../oauth-error.ts';
import type { LimitDecision, LimitRefusal } from './limiter.ts';

/**
 * How a refused request is answered (docs/risk.md "Rate limits"): 429 (RFC 6585 §4) with
 * `Retry-After` in seconds (RFC 9110 §10.2.3) and the IETF RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers-11 §3, §4): the policy that refused —
 * `RateLimit-Policy: "client";q=600000;w=60` — and its service limit — `RateLimit: "client";r=0;t=7`,
 * whose effective window `t` is the Retry-After, as §6 asks (Retry-After no earlier than the end
 * of the window).
 *
 * Only refusals carry them. The draft leaves it to the server (§6.2: "not required to return
 * RateLimit header fields in every response"), and on an allowed response they would cost every
 * request a bucket read-back and header formatting, and tell any caller the deployment's capacity
 * (§8.2) — a server-wide endpoint quota included. A caller learns the policy when it meets it.
 */
export function rateLimitHeaders(refusal: LimitRefusal): Record<string, string> {
  const seconds = String(refusal.retryAfterSeconds);
  return {
    'retry-after': seconds,
    'ratelimit-policy': `"${refusal.kind}";q=${refusal.quota.quota};w=${refusal.quota.windowSeconds}`,
    ratelimit: `"${refusal.kind}";r=0;t=${seconds}`,
  };
}

/**
 * The OAuth JSON answer to a refused request: `temporarily_unavailable` with status 429. RFC 6749
 * registers no error code for rate limiting; `temporarily_unavailable` (§4.1.2.1) is the
 * registered code whose meaning fits ("unable to handle the request due to a temporary
 * overloading"), and the status says which overload it is. node-oidc-provider has no rate limiting
 * of its own and leaves it to middleware in front of it (`provider.use`); here it is part of the
 * server so that limits hold across nodes. Cache-Control: no-store, as every OAuth JSON answer
 * (src/http/json.ts).
 */
export function rateLimitedError(refusal: LimitRefusal): OAuthError {
  return new OAuthError('temporarily_unavailable', rateLimitDescriptions[refusal.kind], {
    status: 429,
    headers: rateLimitHeaders(refusal),
    detail: `rate limit: ${refusal.kind} (${refusal.quota.quota} per ${refusal.quota.windowSeconds} s)`,
  });
}

const rateLimitDescriptions: Record<LimitRefusal['kind'], string> = {
  address: 'too many requests from this address; retry later',
  endpoint: 'this endpoint is receiving too many requests; retry later',
  client: 'too many requests from this client; retry later',
  person: 'too many sign-in attempts for this account; retry later',
};

/** Throws the 429 of a refusal (for protocol steps that answer through the error handler). */
export async function enforce(decision: LimitDecision): Promise<void> {
  const refusal = await decision;
  if (refusal) throw rateLimitedError(refusal);
}

