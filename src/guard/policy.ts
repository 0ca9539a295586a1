import { checkedUrl } from './token.ts';
import type { VerifiedAccess } from './guard.ts';
import { traceContextHeaders } from './trace-context.ts';

/**
 * Asking Clearance's policy decision point (the OpenID AuthZEN Authorization API 1.0, §6 Access
 * Evaluation) from the enforcement point. The resource server authenticates as its own client,
 * one allowed `access:evaluate`: with client_secret_basic, or with a Bearer access token for
 * `<issuer>/access` that it got with client_credentials (how a private_key_jwt or mTLS client
 * calls it). Anything but a well-formed 200 with `decision: true` is a deny: fail closed.
 */

export interface PolicyOptions {
  /** How the resource server proves it is an `access:evaluate` client. */
  credentials:
    | { clientId: string; clientSecret: string }
    /** A Bearer access token for `<issuer>/access` with scope access:evaluate (called per request; cache it). */
    | { accessToken: () => string | Promise<string> };
  /** Default `<issuer>/access/v1/evaluation`. */
  endpoint?: string;
  /** Give up (deny) after this many milliseconds. Default 2000. */
  timeoutMs?: number;
}

/** What to ask: the AuthZEN action, resource and context; the subject comes from the token. */
export interface PolicyQuestion {
  /** A scope such as `order:create` (AuthZEN `action.name`). */
  action: string;
  /** AuthZEN resource: `{ type: 'instrument', id: 'EURUSD', properties: { instrument_class: 'fx' } }`, an account, a resource server. */
  resource: { type: string; id: string; properties?: Record<string, unknown> };
  /**
   * The policy context: notional, currency, region, venue, ... (docs/policy.md). For a
   * person's token the guard adds the token's `acr` and `auth_time`, so step-up policies see how
   * the person signed in. A context that sets `acr` or `auth_time` itself is a programming error
   * (askPolicy throws a TypeError): a route that forwarded its client's context could otherwise
   * claim a stronger or fresher sign-in than the token's. So are `txn` and `mandate`: the guard sends the token's.
   */
  context?: Record<string, unknown>;
  /** Default: the token's user (`sub`), or its client when `sub` is the client itself. */
  subject?: { type: 'user' | 'client' | 'agent'; id: string };
  /** Sent as X-Request-ID, so the decision's audit event names this request. */
  requestId?: string;
}

/** The decision. `decision` is true only for a well-formed permit. */
export interface PolicyDecision {
  decision: boolean;
  /** The PDP's reasons (rule ids) and policy version, when it gave them. */
  reasons?: string[];
  policyVersion?: string;
  /** Why the guard denied without a decision (network, time-out, status, malformed answer). */
  failure?: string;
  /**
   * On a deny, when the PDP says the person's stronger or fresher authentication would lift it
   * (its `step_up`): what to ask for — requirePolicy turns it into the RFC 9470 challenge.
   */
  stepUp?: { acrValues: string; maxAge?: number };
}

const maxResponseBytes = 64 * 1024;

/** What only the token may say in the context: how the person signed in, the trade's txn, and the mandate it runs under. */
const tokenContext = ['acr', 'auth_time', 'txn', 'mandate'] as const;

/**
 * Asks the PDP; resolves a deny on any error or time-out. Never throws, but for a programming
 * error: a question whose context sets `acr` or `auth_time` rejects with a TypeError.
 */
export async function askPolicy(
  issuer: string,
  options: PolicyOptions | undefined,
  access: VerifiedAccess,
  question: PolicyQuestion,
  allowHttp: boolean,
): Promise<PolicyDecision> {
  const claimed = tokenContext.filter((name) => question.context !== undefined && Object.hasOwn(question.context, name));
  if (claimed.length > 0) {
    throw new TypeError(`askPolicy: the question's context sets ${claimed.join(' and ')}; only the token says how the person signed in, its txn and its mandate (the guard sends them)`);
  }
  try {
    if (!options) return { decision: false, failure: 'the guard has no policy options' };
    const endpoint = checkedUrl(options.endpoint ?? `${issuer}/access/v1/evaluation`, 'policy.endpoint', allowHttp);
    const subject = question.subject ?? (access.subject === access.clientId ? { type: 'client', id: access.clientId } : { type: 'user', id: access.subject });
    // How the person signed in, as the token says: a step-up policy decides on it.
    const authentication = {
      ...(access.acr !== undefined ? { acr: access.acr } : {}),
      ...(access.authTime !== undefined ? { auth_time: access.authTime } : {}),
    };
    // The token's values last: nothing in the question overrides them. Its txn files the decision
    // under the trade (docs/audit.md "One txn from the first action").
    // Its mandate (id and version): Clearance loads the version's terms and holds the order to them
    // (docs/mandates.md "Orders under a mandate").
    const fromToken = {
      ...(subject.type === 'user' ? authentication : {}),
      ...(access.txn !== undefined ? { txn: access.txn } : {}),
      ...(access.mandate !== undefined ? { mandate: { id: access.mandate.id, version: access.mandate.v } } : {}),
    };
    const context = Object.keys(fromToken).length > 0 ? { ...question.context, ...fromToken } : question.context;
    const body = {
      subject,
      action: { name: question.action },
      resource: question.resource,
      ...(context !== undefined && Object.keys(context).length > 0 ? { context } : {}),
    };
    const response = await fetch(endpoint, {
      method: 'POST',
      redirect: 'error',
      signal: AbortSignal.timeout(options.timeoutMs ?? 2_000),
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        authorization: await authorization(options.credentials),
        ...(question.requestId !== undefined ? { 'x-request-id': question.requestId } : {}),
        ...traceContextHeaders(),
      },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 200) return { decision: false, failure: `the PDP answered ${response.status}: ${text.slice(0, 200)}` };
    if (text.length > maxResponseBytes) return { decision: false, failure: 'the PDP answer is too large' };
    const answer = JSON.parse(text) as { decision?: unknown; context?: { reasons?: unknown; policy_version?: unknown; step_up?: unknown } };
    // AuthZEN §6.2: decision is a boolean; anything else is not a permit.
    if (typeof answer.decision !== 'boolean') return { decision: false, failure: 'the PDP answer has no boolean decision' };
    const reasons = answer.context?.reasons;
    const version = answer.context?.policy_version;
    const stepUp = answer.decision ? undefined : readStepUp(answer.context?.step_up);
    return {
      decision: answer.decision,
      ...(Array.isArray(reasons) && reasons.every((r) => typeof r === 'string') ? { reasons } : {}),
      ...(typeof version === 'string' ? { policyVersion: version } : {}),
      ...(stepUp ? { stepUp } : {}),
    };
  } catch (error) {
    return { decision: false, failure: `the PDP could not be asked: ${(error as Error).message}` };
  }
}

/** Clearance's `step_up` decision context: `{ acr_values, max_age? }`; anything malformed is ignored (a plain deny). */
function readStepUp(value: unknown): PolicyDecision['stepUp'] {
  if (typeof value !== 'object' || value === null) return undefined;
  const { acr_values: acrValues, max_age: maxAge } = value as { acr_values?: unknown; max_age?: unknown };
  if (typeof acrValues !== 'string' || !/^[\x21-\x7e]+( [\x21-\x7e]+)*$/.test(acrValues) || acrValues.length > 512) return undefined;
  if (maxAge !== undefined && (!Number.isInteger(maxAge) || (maxAge as number) < 0)) return undefined;
  return { acrValues, ...(maxAge !== undefined ? { maxAge: maxAge as number } : {}) };
}

/** RFC 6749 §2.3.1: Basic with form-urlencoded client_id and secret; or the Bearer token. */
async function authorization(credentials: PolicyOptions['credentials']): Promise<string> {
  if ('accessToken' in credentials) return `Bearer ${await credentials.accessToken()}`;
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(credentials.clientId)}:${encode(credentials.clientSecret)}`).toString('base64')}`;
}
