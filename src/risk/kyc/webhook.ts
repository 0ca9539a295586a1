import { createHmac, timingSafeEqual } from 'node:crypto';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { Context } from '../../context.ts';
import { findUserByUsername } from '../../identity/users.ts';
import { Validator, formatProblem } from '../../validation.ts';
import { changeKycRecord } from './changes.ts';
import { findKycProvider, providerHmacKey, type KycProvider } from './providers.ts';
import { readKycFields, type KycPrincipal, type KycRecord } from './record.ts';

/**
 * A KYC provider's webhook (docs/risk.md "KYC/AML lifecycle"): a signed event that changes one
 * person's or legal entity's record. The rules, in order:
 * 1. the provider is one apply declares (`kyc.providers`); an unknown one is refused exactly as a
 *    bad signature is (nothing tells which providers exist);
 * 2. the signature verifies:
 *    - `hmac` (Standard Webhooks 1.0, "symmetric"): `webhook-signature` holds one or more
 *      space-separated `v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`;
 *      each is compared in constant time with the one computed, over the exact bytes received;
 *    - `jws`: the body is a compact JWS (RFC 7515 §7.1) verified with the provider's JWK Set
 *      (asymmetric algorithms only); its payload is the event with `jti` (the webhook id), `iat`
 *      (the timestamp) and `aud`, this endpoint's URL (`<issuer>/kyc/webhooks/<provider>`): a
 *      provider that signs for several deployments with one key cannot have an event meant for one
 *      replayed at another (each keeps its own replay record);
 * 3. the timestamp is within `webhookToleranceSeconds` of Clearance's clock (an old delivery, or
 *    one from the future, is refused: Standard Webhooks "Verifying webhooks");
 * 4. the event is valid: exactly one of `username` and `lei`, naming a known person or legal
 *    entity, and the KYC members (`status`, `level`, `review_due`, `evidence_ref`); the record's
 *    provider is the sender;
 * 5. in one transaction: the webhook id is used (single use per provider, by the table's primary
 *    key: a replay, even after the tolerance, is refused and changes nothing), the record changed
 *    (./changes.ts: a frozen record stays frozen, the provider's status becoming what it returns
 *    to), and `kyc.updated` recorded with the provider.
 * Webhook ids are kept twice as long as the tolerance (./expiry.ts prunes them): after that, the
 * timestamp check alone refuses the old delivery.
 */

/** Standard Webhooks' recommended tolerance: five minutes either way. */
export const webhookToleranceSeconds = 300;

/** Why a delivery was refused; `unknown_provider` is answered as `signature`. */
export type WebhookRefusal = 'unknown_provider' | 'signature' | 'timestamp' | 'replay' | 'malformed' | 'unknown_principal';

export class KycWebhookRefused extends Error {
  override name = 'KycWebhookRefused';
  readonly reason: WebhookRefusal;
  constructor(reason: WebhookRefusal, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** A delivery as the endpoint received it: the headers it needs and the exact body. */
export interface KycWebhookDelivery {
  provider: string;
  /** `webhook-id`, `webhook-timestamp`, `webhook-signature` (hmac). */
  headers: { id?: string; timestamp?: string; signature?: string };
  body: string;
  requestId?: string;
}

const idPattern = /^[A-Za-z0-9_.:+=/-]{1,128}$/;
const jwsAlgorithms = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'EdDSA', 'Ed25519'];

/** Verifies and applies a delivery; throws KycWebhookRefused, or KycConflict (./changes.ts) on a concurrent change. */
export async function receiveKycWebhook(ctx: Context, delivery: KycWebhookDelivery): Promise<{ record: KycRecord; changed: boolean; webhookId: string }> {
  const provider = await findKycProvider(ctx.storage.db, delivery.provider);
  if (!provider) throw new KycWebhookRefused('unknown_provider', 'the webhook is not signed by a known provider');
  const { webhookId, timestamp, event } = provider.signing === 'hmac' ? verifyHmac(ctx, provider, delivery) : await verifyJws(provider, delivery, `${ctx.config.issuer}/kyc/webhooks/${provider.id}`);
  // Standard Webhooks: a timestamp too far from our clock either way is refused.
  if (Math.abs(ctx.clock.now() / 1000 - timestamp) > webhookToleranceSeconds) throw new KycWebhookRefused('timestamp', `the webhook timestamp is more than ${webhookToleranceSeconds} seconds from the server's clock`);

  const v = new Validator();
  const o = v.object('event', event);
  const fields = o && readKycFields(v, 'event', o, ['username', 'lei', 'jti', 'iat', 'aud']);
  if (o && (o.username === undefined) === (o.lei === undefined)) v.fail('event', 'must name exactly one of username and lei');
  if (o?.username !== undefined) v.string('event.username', o.username, { maxLength: 256 });
  if (o?.lei !== undefined) v.string('event.lei', o.lei, { pattern: /^[0-9A-Z]{20}$/, patternMessage: 'must be an LEI (20 characters, A-Z and 0-9)' });
  if (!fields || !v.ok) throw new KycWebhookRefused('malformed', v.problems.map(formatProblem).join('; '));
  const principal = await principalOf(ctx, o!);

  const now = ctx.clock.now();
  const changed = await ctx.audit.recordWith(async (trx) => {
    const used = await trx
      .insertInto('kyc_webhook_ids')
      .values({ provider: provider.id, webhook_id: webhookId, received_at: now })
      .onConflict((oc) => oc.columns(['provider', 'webhook_id']).doNothing())
      .returning('webhook_id')
      .execute();
    if (used.length === 0) throw new KycWebhookRefused('replay', 'this webhook id was received already');
    const result = await changeKycRecord(trx, ctx.clock, {
      principal,
      fields: { ...fields, provider: provider.id },
      source: 'provider',
      actor: provider.id,
      ...(delivery.requestId ? { requestId: delivery.requestId } : {}),
    });
    return { value: result, events: result.events.map((e) => ({ ...e, details: { ...e.details, webhook_id: webhookId } })) };
  });
  ctx.risk.kyc.invalidate();
  if (changed.clientsEnded.length > 0) ctx.clients.invalidate();
  return { record: changed.after, changed: changed.changed, webhookId };
}

function verifyHmac(ctx: Context, provider: KycProvider, delivery: KycWebhookDelivery): { webhookId: string; timestamp: number; event: unknown } {
  const { id, timestamp, signature } = delivery.headers;
  if (id === undefined || timestamp === undefined || signature === undefined || !idPattern.test(id) || !/^[0-9]{1,12}$/.test(timestamp)) {
    throw new KycWebhookRefused('signature', 'webhook-id, webhook-timestamp and webhook-signature are required');
  }
  const expected = createHmac('sha256', providerHmacKey(ctx.identity.factorKeys.master, provider)).update(`${id}.${timestamp}.${delivery.body}`, 'utf8').digest();
  // Several signatures may be sent (a secret being rotated): any one that matches will do.
  const matches = signature
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .some((s) => {
      const given = Buffer.from(s.slice(3), 'base64');
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
  if (!matches) throw new KycWebhookRefused('signature', 'the webhook signature does not verify');
  let event: unknown;
  try {
    event = JSON.parse(delivery.body);
  } catch {
    throw new KycWebhookRefused('malformed', 'the body is not JSON');
  }
  return { webhookId: id, timestamp: Number(timestamp), event };
}

async function verifyJws(provider: KycProvider, delivery: KycWebhookDelivery, audience: string): Promise<{ webhookId: string; timestamp: number; event: unknown }> {
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(delivery.body.trim(), createLocalJWKSet(provider.jwks as JSONWebKeySet), { algorithms: jwsAlgorithms }));
  } catch {
    throw new KycWebhookRefused('signature', 'the webhook signature does not verify');
  }
  let event: Record<string, unknown>;
  try {
    event = JSON.parse(Buffer.from(payload).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new KycWebhookRefused('malformed', 'the JWS payload is not JSON');
  }
  if (typeof event !== 'object' || event === null || typeof event.jti !== 'string' || !idPattern.test(event.jti) || typeof event.iat !== 'number' || !Number.isInteger(event.iat)) {
    throw new KycWebhookRefused('malformed', 'the JWS payload must carry jti (the webhook id) and iat (its timestamp)');
  }
  // Answered as a bad signature: an event signed for another deployment is not one for us.
  if (event.aud !== audience) throw new KycWebhookRefused('signature', `the JWS payload's aud must be ${audience}`);
  return { webhookId: event.jti, timestamp: event.iat, event };
}

async function principalOf(ctx: Context, event: Record<string, unknown>): Promise<KycPrincipal> {
  if (typeof event.username === 'string') {
    const user = await findUserByUsername(ctx, event.username);
    if (!user || user.username !== event.username) throw new KycWebhookRefused('unknown_principal', 'no such user');
    return { type: 'User', id: user.id };
  }
  const lei = event.lei as string; // validated: an LEI
  if (!(await ctx.entities.snapshot()).legalEntities.has(lei)) throw new KycWebhookRefused('unknown_principal', 'no such legal entity');
  return { type: 'LegalEntity', id: lei };
}
