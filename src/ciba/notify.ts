import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { FetchError, type FetchRules } from '../federation/fetch.ts';
import { postForStatus } from '../signals/post.ts';
import { openAuthReqId, openNotificationToken, type CibaRequest } from './store.ts';

/**
 * The ping of CIBA Core §10.2: once a ping-mode request settles (approved or denied), the client's
 * `backchannel_client_notification_endpoint` is POSTed `{"auth_req_id": ...}` with
 * `Authorization: Bearer <client_notification_token>`; the client then calls the token endpoint.
 *
 * The endpoint is the client's, so it is an outgoing request to an address a client chose: the
 * SSRF rules of partner fetches apply (src/signals/post.ts over src/federation/fetch.ts, docs/federation.md) — https only,
 * every resolved address public, the connection pinned to the checked address, no redirects. In
 * development mode loopback and private addresses (and http to a loopback host) are allowed, as a
 * partner profile's `allow_private_network` would. A short timeout, three attempts with a short
 * back-off; §10.2: a 2xx answer (204 expected, 200 accepted) is delivery. The outcome is audited
 * (`ciba.notified`, `ciba.notification_failed`) — never the auth_req_id or the token. A failed
 * ping loses nothing: the client may still poll (§10.2, the interval applies).
 */

export const notificationTimeoutMs = 3000;
export const notificationAttempts = 3;
/** Waits between attempts, in ms. */
export const notificationBackoffMs = [250, 1000];

/** How the ping is sent: `postJson` by default, injectable for tests. */
export type Poster = (url: string, body: unknown, headers: Record<string, string>, rules: FetchRules) => Promise<number>;

export interface NotifyOptions {
  post?: Poster;
  sleep?: (ms: number) => Promise<void>;
}

/** The one SSRF-safe POST of outgoing notifications (src/signals/post.ts), with a JSON body. */
export async function postJsonForStatus(url: string, body: unknown, headers: Record<string, string>, rules: FetchRules): Promise<number> {
  return (await postForStatus(url, JSON.stringify(body), { ...headers, 'content-type': 'application/json' }, rules)).status;
}

/** The ping's outcome, after every attempt. */
export type NotificationOutcome = { delivered: true; attempts: number; status: number } | { delivered: false; attempts: number; reason: string };

export async function notifyClient(ctx: Context, request: CibaRequest, outcome: 'approved' | 'denied', options: NotifyOptions = {}): Promise<NotificationOutcome> {
  const post = options.post ?? postJsonForStatus;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref()));
  const endpoint = request.notificationEndpoint;
  let result: NotificationOutcome;
  let token: string | undefined;
  let authReqId: string | undefined;
  try {
    token = openNotificationToken(ctx.identity.factorKeys.master, request);
    authReqId = openAuthReqId(ctx.identity.factorKeys.master, request);
  } catch {
    // Sealed under another master key: nothing to send (the client may still poll).
    token = undefined;
  }
  if (endpoint === undefined || token === undefined || authReqId === undefined) {
    result = { delivered: false, attempts: 0, reason: 'no notification endpoint or token' };
  } else {
    const rules: FetchRules = { allowPrivateNetwork: ctx.config.mode === 'development', timeoutMs: notificationTimeoutMs, maxBytes: 16 * 1024 };
    let attempts = 0;
    let reason = 'not sent';
    result = { delivered: false, attempts, reason };
    for (; attempts < notificationAttempts; ) {
      attempts++;
      try {
        const status = await post(endpoint, { auth_req_id: authReqId }, { authorization: `Bearer ${token}` }, rules);
        if (status >= 200 && status < 300) {
          result = { delivered: true, attempts, status };
          break;
        }
        reason = `answered HTTP ${status}`;
      } catch (error) {
        reason = error instanceof FetchError ? error.message : 'the request failed';
        // A refused destination stays refused: no point in trying again.
        if (error instanceof FetchError && /never fetched|private network|not https|carries credentials|not an absolute URL/.test(reason)) {
          result = { delivered: false, attempts, reason };
          break;
        }
      }
      result = { delivered: false, attempts, reason };
      if (attempts < notificationAttempts) await sleep(notificationBackoffMs[attempts - 1] ?? 1000);
    }
  }
  const event: AuditEvent = {
    type: result.delivered ? 'ciba.notified' : 'ciba.notification_failed',
    txn: request.requestId,
    actor: 'clearance',
    client: request.clientId,
    decision: { allow: result.delivered, reasons: [result.delivered ? `delivered (HTTP ${result.status})` : result.reason] },
    details: {
      request_id: request.requestId,
      outcome,
      attempts: result.attempts,
      ...(endpoint !== undefined ? { endpoint: originOf(endpoint) } : {}),
    },
  };
  try {
    await ctx.audit.record(event);
  } catch (error) {
    ctx.log.error({ err: error, txn: request.requestId }, 'the CIBA notification outcome could not be audited');
  }
  return result;
}

/** The endpoint's origin and path (never a query string, which could carry something of the client's). */
function originOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return 'invalid URL';
  }
}
