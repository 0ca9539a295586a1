import { createHash } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { bumpGeneration } from '../../storage/generations.ts';
import { driftSettings, type Partner } from '../definition.ts';
import type { JsonFetcher } from '../fetch.ts';
import type { PartnerBaselineTables } from '../tables.ts';
import { compareBaseline, type DriftChanges } from './compare.ts';
import { observePartner, type BaselineKey, type Observation } from './observe.ts';

export type BaselineRow = Selectable<PartnerBaselineTables['partner_baselines']>;
export type DriftDeps = Pick<Context, 'audit' | 'clock' | 'storage' | 'partners' | 'log'>;

/**
 * The scheduled drift check (src/signals/service.ts runs it every pass; docs/federation.md
 * "Drift"): each partner whose `next_check_at` has come is claimed by one conditional update
 * (the version read; the claim also sets the next check, `drift_check_interval` on), so any
 * number of nodes may run the pass at once and each check runs once; then its live keys and
 * metadata are compared with the baseline (./compare.ts) and the outcome written with its events
 * and alerts in one transaction. A partner without a row gets one, due now. A failing check of one
 * partner is logged and never stops the others. Returns how many partners were checked.
 */
export async function checkPartnerDrift(ctx: DriftDeps, options: { fetch?: JsonFetcher } = {}): Promise<number> {
  const partners = await ctx.partners.list();
  if (partners.length === 0) return 0;
  const now = ctx.clock.now();
  const db = ctx.storage.db;
  let rows = await db.selectFrom('partner_baselines').selectAll().execute();
  const known = new Set(rows.map((r) => r.partner_id));
  const missing = partners.filter((p) => !known.has(p.id));
  if (missing.length > 0) {
    await db
      .insertInto('partner_baselines')
      .values(missing.map((p) => newRow(p.id, now)))
      .onConflict((oc) => oc.column('partner_id').doNothing())
      .execute();
    rows = await db.selectFrom('partner_baselines').selectAll().execute();
  }
  const byId = new Map(rows.map((r) => [r.partner_id, r]));
  let checked = 0;
  for (const partner of partners) {
    const row = byId.get(partner.id);
    if (!row || Number(row.next_check_at) > now) continue;
    const version = Number(row.version) + 1;
    const claimed = await db
      .updateTable('partner_baselines')
      .set({ next_check_at: now + driftSettings(partner).interval * 1000, version, updated_at: now })
      .where('partner_id', '=', partner.id)
      .where('version', '=', Number(row.version))
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) continue;
    try {
      await checkOne(ctx, partner, { ...row, version }, await observePartner(partner, options.fetch));
      checked++;
    } catch (error) {
      ctx.log.error({ err: error, partner: partner.id }, 'partner drift check failed; checking again at its next interval');
    }
  }
  return checked;
}

export function newRow(partnerId: string, now: number): BaselineRow {
  return {
    partner_id: partnerId,
    status: 'active',
    keys: null,
    issuer: null,
    metadata_digest: null,
    profile_digest: null,
    last_success_at: null,
    unreachable_since: null,
    unreachable_reported_at: null,
    suspended_at: null,
    suspended_reason: null,
    next_check_at: now,
    version: 0,
    updated_at: now,
  };
}

/** The digest of a profile as stored: a baseline taken under another profile (apply changed it) is taken again. */
export function profileDigest(partner: Partner): string {
  return createHash('sha256').update(JSON.stringify(partner)).digest('base64url');
}

/** Compares one observation with the claimed row and writes the outcome (row, events, alerts) in one transaction. */
async function checkOne(ctx: DriftDeps, partner: Partner, row: BaselineRow, observed: Observation): Promise<void> {
  const now = ctx.clock.now();
  const { grace, onDrift } = driftSettings(partner);
  const sameProfile = row.keys !== null && row.profile_digest === profileDigest(partner);
  const hadMetadata = sameProfile && row.metadata_digest !== null;
  const observedKeys = 'keys' in observed.keys ? observed.keys.keys : undefined;
  const observedIssuer = observed.metadata.found ? observed.metadata.issuer : undefined;
  // No baseline yet (or a new profile): today's keys are the baseline, and the metadata must name the profile's issuer.
  const baselineKeys: BaselineKey[] = sameProfile ? (JSON.parse(row.keys!) as BaselineKey[]) : (observedKeys ?? []);
  const changes = compareBaseline({ keys: baselineKeys, issuer: hadMetadata ? row.issuer : partner.issuer }, { ...(observedKeys ? { keys: observedKeys } : {}), ...(observedIssuer !== undefined ? { issuer: observedIssuer } : {}) });

  // Keys behind a jwks_uri must be readable; metadata only once the partner has published some.
  const keysError = 'error' in observed.keys ? observed.keys.error : undefined;
  const metadataError = !observed.metadata.found && hadMetadata ? observed.metadata.error : undefined;
  const unreachable = keysError !== undefined || metadataError !== undefined;
  const since = unreachable ? Number(row.unreachable_since ?? now) : null;
  const raiseUnreachable = unreachable && row.unreachable_reported_at === null && now - since! >= grace * 1000;

  const events: AuditEvent[] = [];
  const alerts: Parameters<typeof alertInsert>[2][] = [];
  const action = onDrift === 'suspend' ? 'suspend' : 'alert';
  if (changes) {
    // The profile rule `partner check` applies: every allowed algorithm still has a key of its type.
    const withoutKey = observedKeys ? partner.algorithms.filter((alg) => !observedKeys.some((k) => k.algorithms.includes(alg))) : [];
    const details = { partner: partner.id, ...changes, algorithms_without_key: withoutKey, metadata_changed: metadataChanged(row, observed, hadMetadata), action };
    events.push({ type: 'partner.drifted', actor: 'clearance', issuer: partner.issuer, details });
    alerts.push({ type: 'partner.drifted', data: { ...details, issuer: partner.issuer } });
  }
  if (raiseUnreachable) {
    const details = {
      partner: partner.id,
      unreachable_since: new Date(since!).toISOString(),
      grace_seconds: grace,
      ...(keysError !== undefined ? { keys_error: keysError } : {}),
      ...(metadataError !== undefined ? { metadata_error: metadataError } : {}),
      action,
    };
    events.push({ type: 'partner.unreachable', actor: 'clearance', issuer: partner.issuer, details });
    alerts.push({ type: 'partner.unreachable', data: { ...details, issuer: partner.issuer } });
  }
  const suspend = onDrift === 'suspend' && row.status === 'active' && events.length > 0;
  const reason = suspend ? suspensionReason(changes, raiseUnreachable) : undefined;
  if (suspend) {
    const details = { partner: partner.id, reason };
    events.push({ type: 'partner.suspended', actor: 'clearance', issuer: partner.issuer, details });
    alerts.push({ type: 'partner.suspended', data: { ...details, issuer: partner.issuer } });
  }

  const written = await ctx.audit.recordWith(async (trx) => {
    const result = await trx
      .updateTable('partner_baselines')
      .set({
        // A drift moves the baseline (each change is raised once); a suspension holds until re-approval.
        // Keys not read leave the baseline as it was (none yet: still none, so the first keys read are the baseline).
        ...(observedKeys ? { keys: JSON.stringify(observedKeys), profile_digest: profileDigest(partner) } : sameProfile ? {} : { keys: null, profile_digest: null }),
        ...(observed.metadata.found ? { issuer: observed.metadata.issuer, metadata_digest: observed.metadata.digest } : hadMetadata ? {} : { issuer: null, metadata_digest: null }),
        ...(observedKeys ? { last_success_at: now } : {}),
        unreachable_since: since,
        unreachable_reported_at: unreachable ? (raiseUnreachable ? now : row.unreachable_reported_at) : null,
        ...(suspend ? { status: 'suspended', suspended_at: now, suspended_reason: reason! } : {}),
        updated_at: now,
      })
      .where('partner_id', '=', partner.id)
      .where('version', '=', row.version)
      .executeTakeFirst();
    // Re-approved meanwhile: the operator's baseline stands; this look is dropped.
    if (Number(result.numUpdatedRows) !== 1) return { value: false, events: [] };
    for (const alert of alerts) await alertInsert(trx, ctx.clock, alert).execute();
    if (suspend) await bumpGeneration(trx, 'partners');
    return { value: suspend, events };
  });
  if (written) ctx.partners.invalidate();
}

function metadataChanged(row: BaselineRow, observed: Observation, hadMetadata: boolean): boolean {
  return hadMetadata && observed.metadata.found && observed.metadata.digest !== row.metadata_digest;
}

function suspensionReason(changes: DriftChanges | undefined, unreachable: boolean): string {
  const what: string[] = [];
  if (changes?.keys_added.length) what.push(`${changes.keys_added.length} key(s) added`);
  if (changes?.keys_removed.length) what.push(`${changes.keys_removed.length} key(s) removed`);
  if (changes?.algorithms_changed.length) what.push('key algorithms changed');
  if (changes?.issuer) what.push('issuer changed');
  if (unreachable) what.push('keys or metadata unreachable past the grace');
  return `drift: ${what.join(', ')}`;
}
