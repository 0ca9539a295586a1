import { createHmac } from 'node:crypto';
import type { Context } from '../context.ts';
import type { AlertType } from './alerts.ts';

/**
 * The wire format of an alert webhook (docs/recovery.md "Alerts"): a CloudEvents 1.0 event in
 * structured JSON mode (`Content-Type: application/cloudevents+json`; CloudEvents JSON Event Format
 * §3) and its signature headers.
 */
export interface AlertEvent {
  specversion: '1.0';
  /** The alert's id: the same on every retry, so a receiver can drop duplicates. */
  id: string;
  /** Clearance's issuer identifier. */
  source: string;
  /** `clearance.` + the alert type, e.g. `clearance.break_glass.activated`. */
  type: string;
  /** RFC 3339: when the alert was raised. */
  time: string;
  subject?: string;
  datacontenttype: 'application/json';
  data: Record<string, unknown>;
}

export const cloudEventsContentType = 'application/cloudevents+json';

/** The CloudEvent of an alert row. */
export function alertEvent(issuer: string, alert: { id: string; type: AlertType | string; subject: string | null; data: Record<string, unknown>; createdAt: number }): AlertEvent {
  return {
    specversion: '1.0',
    id: alert.id,
    source: issuer,
    type: `clearance.${alert.type}`,
    time: new Date(alert.createdAt).toISOString(),
    ...(alert.subject !== null ? { subject: alert.subject } : {}),
    datacontenttype: 'application/json',
    data: alert.data,
  };
}

/**
 * The body and headers of one delivery attempt. Both signings send `webhook-id` (the event id) and
 * `webhook-timestamp` (Unix seconds, of this attempt):
 * - hmac (Standard Webhooks 1.0 "symmetric"): `webhook-signature: v1,<base64 of
 *   HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>` — the receiver recomputes it with
 *   the shared secret, compares in constant time, and refuses a timestamp far from its clock;
 * - jws: `clearance-signature: <protected>..<signature>`, a JWS (RFC 7515) in compact form with a
 *   detached payload (Appendix F): the payload is the body, base64url-encoded; the protected header
 *   names the key (`kid`, `alg`, `typ: cloudevents+json`). The receiver puts base64url(body) between
 *   the dots and verifies with the key of that kid in the issuer's JWKS.
 */
export async function signedDelivery(
  ctx: Pick<Context, 'keys'>,
  event: AlertEvent,
  signing: { method: 'hmac'; key: Buffer } | { method: 'jws' },
  nowSeconds: number,
): Promise<{ body: string; headers: Record<string, string> }> {
  // The one serialization: the JWS signs exactly these bytes (src/keys/jws.ts encodes JSON.stringify).
  const body = JSON.stringify(event);
  const headers: Record<string, string> = { 'content-type': cloudEventsContentType, 'webhook-id': event.id, 'webhook-timestamp': String(nowSeconds) };
  if (signing.method === 'hmac') {
    const mac = createHmac('sha256', signing.key).update(`${event.id}.${nowSeconds}.${body}`, 'utf8').digest('base64');
    headers['webhook-signature'] = `v1,${mac}`;
  } else {
    const jws = await ctx.keys.signJwt({ typ: 'cloudevents+json' }, event as unknown as Record<string, unknown>);
    const [header, payload, signature] = jws.split('.');
    if (payload !== Buffer.from(body, 'utf8').toString('base64url')) throw new Error('the JWS payload is not the body sent');
    headers['clearance-signature'] = `${header}..${signature}`;
  }
  return { body, headers };
}
