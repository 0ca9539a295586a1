import { createHash, X509Certificate } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { collectAtScrape } from '../metrics.ts';
import type { Client } from './store.ts';

const day = 86_400_000;

/** Days before expiry at which a credential is warned of, each once (the soonest reached first). */
export const warningThresholdDays = [30, 7, 1] as const;

/** A credential of a client that expires: its secret, or a certificate it registered. */
export interface ExpiringCredential {
  clientId: string;
  kind: 'secret' | 'certificate';
  /** Stable for one credential, new for its replacement: `secret:<created_at>`, `certificate:<sha256>`. */
  credential: string;
  expiresAt: number;
  /** For a certificate: its serial and SHA-256, never anything secret. */
  details?: Record<string, unknown>;
}

/**
 * Every expiring credential of the registered clients: the secret's expiry (RFC 7591 §3.2.1), and
 * each certificate in the registered `jwks` (the first `x5c` of a key: self_signed_tls_client_auth
 * and private_key_jwt keys that carry one). A client registered with `jwks_uri` manages its own
 * certificates there; one of Clearance's CA's is tracked by the CA's metrics (docs/pki.md).
 */
export async function expiringCredentials(ctx: Pick<Context, 'clients' | 'storage'>): Promise<ExpiringCredential[]> {
  const clients = await ctx.clients.list();
  const rows = await ctx.storage.db
    .selectFrom('clients')
    .select(['client_id', 'secret_created_at', 'secret_expires_at'])
    .where('secret_hash', 'is not', null)
    .where('secret_expires_at', 'is not', null)
    .execute();
  const found: ExpiringCredential[] = rows.map((row) => ({
    clientId: row.client_id,
    kind: 'secret',
    credential: `secret:${Number(row.secret_created_at ?? 0)}`,
    expiresAt: Number(row.secret_expires_at),
  }));
  for (const client of clients) found.push(...certificatesOf(client));
  return found;
}

const certificateCache = new WeakMap<Client, ExpiringCredential[]>();

function certificatesOf(client: Client): ExpiringCredential[] {
  let found = certificateCache.get(client);
  if (found) return found;
  found = [];
  for (const jwk of client.metadata.jwks?.keys ?? []) {
    const x5c = (jwk as { x5c?: unknown }).x5c;
    if (!Array.isArray(x5c) || typeof x5c[0] !== 'string') continue;
    try {
      // RFC 7517 §4.7: the first certificate holds the key.
      const certificate = new X509Certificate(Buffer.from(x5c[0], 'base64'));
      const sha256 = createHash('sha256').update(certificate.raw).digest('hex');
      found.push({
        clientId: client.metadata.client_id,
        kind: 'certificate',
        credential: `certificate:${sha256}`,
        expiresAt: Date.parse(certificate.validTo),
        details: { serial: certificate.serialNumber, sha256, ...(typeof jwk.kid === 'string' ? { kid: jwk.kid } : {}) },
      });
    } catch {
      // Not a certificate: metadata validation leaves such keys out of authentication too.
    }
  }
  certificateCache.set(client, found);
  return found;
}

/**
 * The periodic warning pass (src/signals/service.ts runs it): for each credential within 30, 7 or
 * 1 days of its expiry, one `client.secret_expiring` or `client.certificate_expiring` event for the
 * soonest threshold it has reached — given once: the warning is a row keyed by client, credential
 * and threshold, inserted in the transaction of its event, so any number of nodes may run the pass
 * and each warning is given once. A rotated secret or a replaced certificate is a new credential
 * and is warned of afresh. Expired credentials are not warned of (authentication refuses them).
 * Resolves how many warnings were given.
 */
export async function warnExpiringClientCredentials(ctx: Pick<Context, 'clients' | 'storage' | 'audit' | 'clock'>): Promise<number> {
  const now = ctx.clock.now();
  const due = (await expiringCredentials(ctx)).flatMap((c) => {
    const left = c.expiresAt - now;
    if (left <= 0) return [];
    const threshold = [...warningThresholdDays].sort((a, b) => a - b).find((t) => left <= t * day);
    return threshold === undefined ? [] : [{ ...c, threshold }];
  });
  if (due.length === 0) return 0;
  // Read first, outside a transaction: most passes find every warning given already.
  const given = await ctx.storage.db
    .selectFrom('client_credential_warnings')
    .select(['client_id', 'credential', 'threshold_days'])
    .where('client_id', 'in', [...new Set(due.map((d) => d.clientId))])
    .execute();
  const seen = new Set(given.map((g) => `${g.client_id}\n${g.credential}\n${g.threshold_days}`));
  const fresh = due.filter((d) => !seen.has(`${d.clientId}\n${d.credential}\n${d.threshold}`));
  if (fresh.length === 0) return 0;
  return ctx.audit.recordWith(async (trx) => {
    const events: AuditEvent[] = [];
    for (const c of fresh) {
      const inserted = await trx
        .insertInto('client_credential_warnings')
        .values({ client_id: c.clientId, credential: c.credential, threshold_days: c.threshold, warned_at: now })
        .onConflict((oc) => oc.columns(['client_id', 'credential', 'threshold_days']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) !== 1) continue;
      events.push({
        type: c.kind === 'secret' ? 'client.secret_expiring' : 'client.certificate_expiring',
        actor: 'clearance',
        client: c.clientId,
        details: { threshold_days: c.threshold, expires_at: new Date(c.expiresAt).toISOString(), seconds_left: Math.floor((c.expiresAt - now) / 1000), ...c.details },
      });
    }
    return { value: events.length, events };
  });
}

/**
 * Scrape-time gauges (docs/operations.md "Metrics"): seconds until each client's secret expires,
 * and until its soonest registered certificate does — negative once expired, so an alert rule can
 * fire ahead of time (`< 7 * 86400`) and keep firing until the credential is replaced.
 */
export async function collectClientCredentialMetrics(ctx: Context, registry: Registry): Promise<void> {
  const now = ctx.clock.now();
  const gauge = new Gauge({
    name: 'clearance_client_credential_expiry_seconds',
    help: "Seconds until a client's secret, or its soonest registered certificate, expires (negative: expired).",
    labelNames: ['client_id', 'credential'],
    registers: [registry],
  });
  const soonest = new Map<string, number>();
  for (const c of await expiringCredentials(ctx)) {
    const key = `${c.clientId}\n${c.kind}`;
    soonest.set(key, Math.min(soonest.get(key) ?? Infinity, c.expiresAt));
  }
  for (const [key, expiresAt] of soonest) {
    const [clientId, kind] = key.split('\n') as [string, string];
    gauge.set({ client_id: clientId, credential: kind }, (expiresAt - now) / 1000);
  }
}

collectAtScrape('client_credentials', collectClientCredentialMetrics);
