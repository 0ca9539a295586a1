import { Counter } from 'prom-client';
import type { Config } from '../config.ts';
import type { Context } from '../context.ts';
import { metricsRegistry } from '../metrics.ts';
import { OAuthError } from '../oauth-error.ts';
import type { AuthenticatedClient } from './authentication/types.ts';
import type { ClientMetadata } from './metadata.ts';
import { isFapi2 } from './profile.ts';
import type { SecretRotation } from './store.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

const day = 86_400_000;

/** Default rollover window of `clearance clients rotate-secret` (one day), and the longest allowed (30 days). */
export const defaultRotationOverlapSeconds = 86_400;
export const maxRotationOverlapSeconds = 30 * 86_400;

/**
 * The maximum age of a new client secret under the client's profile, in ms (undefined: forever):
 * CLEARANCE_CLIENT_SECRET_MAX_AGE_DAYS by default (0 turns expiry off), the shorter
 * CLEARANCE_INSTITUTIONAL_CLIENT_SECRET_MAX_AGE_DAYS under the institutional profile. Under FAPI 2.0
 * there is no secret to age: a client under it authenticates by key (FAPI 2.0 SP §5.3.2.1).
 */
export function secretMaxAge(config: Pick<Config, 'profile' | 'institutional' | 'clientSecretMaxAgeDays' | 'clientSecretMaxAgeDaysInstitutional'>): (metadata: ClientMetadata) => number | undefined {
  return (metadata) => {
    if (isFapi2(config, { metadata })) return undefined;
    const days = config.institutional ? Math.min(config.clientSecretMaxAgeDaysInstitutional, config.clientSecretMaxAgeDays || Infinity) : config.clientSecretMaxAgeDays;
    return days > 0 ? days * day : undefined;
  };
}

/**
 * RFC 7591 §3.2.1 `client_secret_expires_at` of a client with a secret, for registration responses
 * and admin views: seconds since the epoch, 0 when it never expires. Undefined without a secret.
 */
export async function clientSecretView(ctx: Pick<Context, 'clients'>, clientId: string): Promise<{ client_secret_expires_at: number; client_secret_issued_at?: number; previous_client_secret_valid_until?: number } | undefined> {
  const client = await ctx.clients.get(clientId);
  if (!client?.secretHash) return undefined;
  const record = await ctx.clients.secretRecord(clientId);
  const seconds = (ms: number | null | undefined) => (ms ? Math.floor(ms / 1000) : undefined);
  return {
    client_secret_expires_at: seconds(record?.expiresAt) ?? 0,
    ...(record?.createdAt ? { client_secret_issued_at: seconds(record.createdAt)! } : {}),
    ...(record?.previousValidUntil ? { previous_client_secret_valid_until: seconds(record.previousValidUntil)! } : {}),
  };
}

/**
 * Rotates a client's secret (`clearance clients rotate-secret`, POST /admin/clients/{id}/rotate-secret):
 * a new secret, valid at once for the profile's maximum age, and the one it replaces still valid
 * for `overlapSeconds` (its rollover window) so the client's instances can move over one by one.
 * One transaction with its `client.secret_rotated` event. The new secret is returned to show once;
 * only its digest is kept. `invalid_request` for a client without a secret, `not_found` for none.
 */
export async function rotateClientSecret(
  ctx: Pick<Context, 'clients' | 'audit' | 'clock'>,
  clientId: string,
  options: { overlapSeconds: number; actor: string; via: 'cli' | 'admin-api' },
): Promise<SecretRotation> {
  const { overlapSeconds } = options;
  if (!Number.isInteger(overlapSeconds) || overlapSeconds < 0 || overlapSeconds > maxRotationOverlapSeconds) {
    throw new OAuthError('invalid_request', `overlap must be a whole number of seconds from 0 to ${maxRotationOverlapSeconds}`);
  }
  const client = await ctx.clients.get(clientId);
  if (!client) throw new OAuthError('not_found', 'no such client');
  if (!client.secretHash) {
    throw new OAuthError('invalid_request', `client ${clientId} authenticates with ${client.metadata.token_endpoint_auth_method}, not a secret: there is nothing to rotate`);
  }
  const rotation = await ctx.audit.recordWith(async (trx) => {
    const made = await ctx.clients.rotateSecret(trx, clientId, overlapSeconds * 1000);
    if (!made) throw new OAuthError('invalid_request', `client ${clientId} has no secret to rotate`);
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return {
      value: made,
      events: [{
        type: 'client.secret_rotated',
        actor: options.actor,
        client: clientId,
        details: { via: options.via, overlap_seconds: overlapSeconds, expires_at: iso(made.expiresAt), previous_valid_until: iso(made.previousValidUntil) },
      }],
    };
  });
  ctx.clients.invalidate();
  return rotation;
}

const previousSecretUses = new Counter({
  name: 'clearance_client_previous_secret_uses_total',
  help: 'Authentications with the secret a rotation replaced, during its rollover window (clients still to move over).',
  labelNames: ['client_id'],
  registers: [metricsRegistry],
});

/** At most one `client.previous_secret_used` event per client per this many ms, per process. */
const stragglerEventIntervalMs = 60_000;
/** Per audit log (one per Context), so two servers in one process keep their own pace. */
const lastStragglerEvents = new WeakMap<object, Map<string, number>>();

/**
 * A client authenticated with the secret a rotation replaced: counted every time, logged and
 * audited (`client.previous_secret_used`, with when the window ends) at most once a minute per
 * client and process, so operators see which clients have yet to take the new secret before the
 * window closes on them, without one event per request.
 */
export async function notePreviousSecretUse(ctx: Pick<Context, 'audit' | 'clock' | 'log'>, authenticated: AuthenticatedClient, requestId?: string): Promise<void> {
  const id = authenticated.client.metadata.client_id;
  previousSecretUses.labels(id).inc();
  const now = ctx.clock.now();
  let lastStragglerEvent = lastStragglerEvents.get(ctx.audit);
  if (!lastStragglerEvent) lastStragglerEvents.set(ctx.audit, (lastStragglerEvent = new BoundedMap(10_000)));
  if (now - (lastStragglerEvent.get(id) ?? -Infinity) < stragglerEventIntervalMs) return;
  lastStragglerEvent.set(id, now);
  const until = authenticated.client.previousSecret ? new Date(authenticated.client.previousSecret.validUntil).toISOString() : null;
  ctx.log.warn({ client: id, previous_valid_until: until }, 'client authenticated with its previous secret (rollover window of a rotation)');
  await ctx.audit.record({ type: 'client.previous_secret_used', requestId, client: id, actor: id, details: { previous_valid_until: until } });
}
