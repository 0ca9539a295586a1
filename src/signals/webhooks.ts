import type { Kysely, Transaction } from 'kysely';
import type { Config } from '../config.ts';
import { isLoopbackHost } from '../jose/loopback.ts';
import type { Database } from '../storage/schema.ts';
import { join, type Validator } from '../validation.ts';
import { alertTypes } from './alerts.ts';
import { openSecretKey, readHmacSecret, sealSecret } from './webhook-secret.ts';

/**
 * Alert webhooks (docs/recovery.md "Alerts"): the `alerts.webhooks` section of apply names each
 * endpoint, the alert types it receives (or `*`), and how deliveries are signed:
 * - `hmac`: HMAC-SHA256 with `secret` (at least 32 characters; a `whsec_` prefix means the rest is
 *   base64, as Standard Webhooks libraries expect). The secret is write-only: stored only sealed
 *   with the master key (bound to the webhook's id), never returned, logged or audited; an entry
 *   that omits it keeps the stored one.
 * - `jws`: a detached JWS with Clearance's current signing key (verified with its JWKS).
 * The URL is https (http only to a loopback host, only in development and with
 * `allow_private_network`); every delivery follows the SSRF rules of partner fetches
 * (src/federation/fetch.ts): its addresses checked, private ones only with
 * `allow_private_network`, no redirects. When the section is present it is the whole list:
 * endpoints it does not name are removed (their pending deliveries stop).
 */
export interface WebhookEntry {
  id: string;
  url: string;
  /** Alert types, or ['*'] for all. */
  types: string[];
  signing: 'hmac' | 'jws';
  /** The HMAC secret as given in the document; never stored in clear. */
  secret?: string;
  allowPrivateNetwork: boolean;
}

export interface Webhook {
  id: string;
  url: string;
  types: string[];
  signing: 'hmac' | 'jws';
  allowPrivateNetwork: boolean;
  createdAt: number;
  /** Sealed; opened only to sign (hmacKey). */
  secretSealed?: string;
}

const fields = ['id', 'url', 'types', 'signing', 'secret', 'allow_private_network'] as const;

/** Reads the `alerts` section: `{ webhooks: [...] }`. */
export function readAlertsSection(v: Validator, value: unknown, config: Pick<Config, 'mode'>): WebhookEntry[] | undefined {
  const o = v.object('alerts', value);
  if (!o) return undefined;
  v.knownKeys('alerts', o, ['webhooks']);
  if (o.webhooks === undefined) return [];
  const entries = v.array('alerts.webhooks', o.webhooks, (p, x) => readWebhookEntry(v, p, x, config));
  if (!entries) return undefined;
  v.uniqueIds('alerts.webhooks', entries);
  return entries;
}

function readWebhookEntry(v: Validator, path: string, value: unknown, config: Pick<Config, 'mode'>): WebhookEntry | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  v.knownKeys(path, o, fields);
  const before = v.problems.length;
  const id = v.string(join(path, 'id'), o.id, { maxLength: 64, pattern: /^[a-z0-9][a-z0-9_-]*$/, patternMessage: 'must be lowercase letters, digits, _ and -' });
  const allowPrivateNetwork = o.allow_private_network === undefined ? false : v.boolean(join(path, 'allow_private_network'), o.allow_private_network);
  const url = v.string(join(path, 'url'), o.url, { maxLength: 2048 });
  if (url !== undefined) checkWebhookUrl(v, join(path, 'url'), url, config, allowPrivateNetwork === true);
  const types = v.array(join(path, 'types'), o.types, (p, t) => v.string(p, t, { oneOf: ['*', ...alertTypes] }), { nonEmpty: true, unique: true });
  if (types && types.includes('*') && types.length > 1) v.fail(join(path, 'types'), '"*" stands alone');
  const signing = v.string(join(path, 'signing'), o.signing, { oneOf: ['hmac', 'jws'] }) as 'hmac' | 'jws' | undefined;
  const secret = readHmacSecret(v, path, o.secret, signing);
  if (v.problems.length > before || id === undefined || url === undefined || types === undefined || signing === undefined || allowPrivateNetwork === undefined) return undefined;
  return { id, url, types, signing, ...(secret !== undefined ? { secret } : {}), allowPrivateNetwork };
}

function checkWebhookUrl(v: Validator, path: string, raw: string, config: Pick<Config, 'mode'>, allowPrivateNetwork: boolean): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    v.fail(path, 'must be an absolute URL');
    return;
  }
  if (url.username || url.password) v.fail(path, 'must not carry credentials');
  if (url.hash) v.fail(path, 'must not have a fragment');
  if (url.protocol === 'https:') return;
  if (url.protocol !== 'http:') v.fail(path, 'must be https');
  else if (config.mode === 'production') v.fail(path, 'must be https in production');
  else if (!isLoopbackHost(url.hostname) || !allowPrivateNetwork) v.fail(path, 'must be https (http only to a loopback host, in development, with allow_private_network)');
}

/**
 * The section checked against what is stored: an hmac endpoint needs a secret in the document
 * unless one is stored for it already.
 */
export async function planAlerts(db: Kysely<Database>, v: Validator, value: unknown, config: Pick<Config, 'mode'>): Promise<WebhookEntry[] | undefined> {
  const entries = readAlertsSection(v, value, config);
  if (!entries) return undefined;
  for (const [i, entry] of entries.entries()) {
    if (entry.signing !== 'hmac' || entry.secret !== undefined) continue;
    const stored = await db.selectFrom('alert_webhooks').select('secret_sealed').where('id', '=', entry.id).executeTakeFirst();
    if (!stored?.secret_sealed) v.fail(`alerts.webhooks[${i}].secret`, 'is required for hmac signing (none is stored for this endpoint)');
  }
  return entries;
}

/**
 * The section's writes in apply's transaction: the listed endpoints created or updated (a new
 * secret sealed; an hmac endpoint without a secret anywhere is a problem found here, since only
 * the stored row can tell), the others removed. Returns each outcome, or a problem.
 */
export async function executeWebhooks(
  trx: Transaction<Database>,
  now: number,
  masterKey: Buffer,
  entries: readonly WebhookEntry[],
): Promise<{ kind: 'alert_webhook'; id: string; outcome: 'created' | 'updated' | 'unchanged' | 'removed' }[]> {
  const changes: { kind: 'alert_webhook'; id: string; outcome: 'created' | 'updated' | 'unchanged' | 'removed' }[] = [];
  const existing = new Map((await trx.selectFrom('alert_webhooks').selectAll().execute()).map((row) => [row.id, row]));
  for (const entry of entries) {
    const row = existing.get(entry.id);
    existing.delete(entry.id);
    let sealed = row?.secret_sealed ?? null;
    if (entry.signing === 'jws') sealed = null;
    else if (entry.secret !== undefined) sealed = sealSecret(masterKey, sealed, entry.secret, sealingBinding(entry.id));
    else if (sealed === null) throw new WebhookSecretMissing(entry.id);
    const values = { url: entry.url, types: JSON.stringify(entry.types), signing: entry.signing, secret_sealed: sealed, allow_private_network: entry.allowPrivateNetwork ? 1 : 0 };
    if (!row) {
      await trx.insertInto('alert_webhooks').values({ id: entry.id, ...values, created_at: now, updated_at: now }).execute();
      changes.push({ kind: 'alert_webhook', id: entry.id, outcome: 'created' });
    } else if (row.url === values.url && row.types === values.types && row.signing === values.signing && row.secret_sealed === values.secret_sealed && Number(row.allow_private_network) === values.allow_private_network) {
      changes.push({ kind: 'alert_webhook', id: entry.id, outcome: 'unchanged' });
    } else {
      await trx.updateTable('alert_webhooks').set({ ...values, updated_at: now }).where('id', '=', entry.id).execute();
      changes.push({ kind: 'alert_webhook', id: entry.id, outcome: 'updated' });
    }
  }
  for (const id of existing.keys()) {
    await trx.deleteFrom('alert_deliveries').where('webhook_id', '=', id).where('status', '=', 'pending').execute();
    await trx.deleteFrom('alert_webhooks').where('id', '=', id).execute();
    changes.push({ kind: 'alert_webhook', id, outcome: 'removed' });
  }
  return changes;
}

/** An hmac endpoint with no secret in the document and none stored. */
export class WebhookSecretMissing extends Error {
  override name = 'WebhookSecretMissing';
  readonly webhookId: string;
  constructor(webhookId: string) {
    super(`alert webhook ${webhookId} signs with hmac but has no secret`);
    this.webhookId = webhookId;
  }
}

/** What binds a sealed secret to its row (a sealed value copied onto another row does not open). */
function sealingBinding(id: string): string {
  return `alert_webhooks:${id}`;
}

/** The HMAC key of an endpoint: its secret's bytes (base64-decoded after a `whsec_` prefix). */
export function hmacKey(masterKey: Buffer, webhook: Pick<Webhook, 'id' | 'secretSealed'>): Buffer {
  if (!webhook.secretSealed) throw new Error(`alert webhook ${webhook.id} has no secret`);
  return openSecretKey(masterKey, webhook.secretSealed, sealingBinding(webhook.id));
}

/** Every endpoint (the secret stays sealed). */
export async function listWebhooks(db: Kysely<Database>): Promise<Webhook[]> {
  const rows = await db.selectFrom('alert_webhooks').selectAll().orderBy('id').execute();
  return rows.map((row) => ({
    id: row.id,
    url: row.url,
    types: JSON.parse(row.types) as string[],
    signing: row.signing as 'hmac' | 'jws',
    allowPrivateNetwork: Number(row.allow_private_network) === 1,
    createdAt: Number(row.created_at),
    ...(row.secret_sealed !== null ? { secretSealed: row.secret_sealed } : {}),
  }));
}
