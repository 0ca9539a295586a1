import type { Context } from '../../context.ts';
import { bumpGeneration } from '../../storage/generations.ts';
import { driftSettings } from '../definition.ts';
import type { JsonFetcher } from '../fetch.ts';
import { newRow, profileDigest } from './check.ts';
import { observePartner } from './observe.ts';

/** Why a re-approval was refused (no such partner, keys unreachable, metadata naming another issuer). */
export class PartnerApprovalRefused extends Error {
  readonly notFound: boolean;
  constructor(message: string, notFound = false) {
    super(message);
    this.notFound = notFound;
  }
}

export interface PartnerApproval {
  partner: string;
  previous_status: string;
  keys: { thumbprint: string; kid?: string }[];
  issuer: string | null;
}

/**
 * An operator re-approves a partner (`clearance partner approve`, `POST /admin/partners/{id}/approve`):
 * its keys and metadata as they are now become the baseline and a suspension ends, audited
 * `partner.reapproved`. Fails closed: keys that cannot be read, or metadata naming another issuer
 * than the profile's, are refused (nothing changes) — fix the partner or the profile first.
 */
export async function approvePartner(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage' | 'partners'>,
  id: string,
  by: { actor: string; requestId?: string },
  options: { fetch?: JsonFetcher } = {},
): Promise<PartnerApproval> {
  const partner = await ctx.partners.get(id);
  if (!partner) throw new PartnerApprovalRefused(`no partner "${id}"`, true);
  const observed = await observePartner(partner, options.fetch);
  if ('error' in observed.keys) throw new PartnerApprovalRefused(`the partner's keys cannot be read: ${observed.keys.error}`);
  if (observed.metadata.found && observed.metadata.issuer !== partner.issuer) {
    throw new PartnerApprovalRefused(`the partner's metadata names issuer ${JSON.stringify(observed.metadata.issuer)}, not the profile's ${partner.issuer}`);
  }
  const keys = observed.keys.keys;
  const metadata = observed.metadata.found ? observed.metadata : undefined;
  const approval = await ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    await trx.insertInto('partner_baselines').values(newRow(partner.id, now)).onConflict((oc) => oc.column('partner_id').doNothing()).execute();
    const row = await trx.selectFrom('partner_baselines').select(['status', 'version']).where('partner_id', '=', partner.id).executeTakeFirstOrThrow();
    await trx
      .updateTable('partner_baselines')
      .set({
        status: 'active',
        keys: JSON.stringify(keys),
        issuer: metadata?.issuer ?? null,
        metadata_digest: metadata?.digest ?? null,
        profile_digest: profileDigest(partner),
        last_success_at: now,
        unreachable_since: null,
        unreachable_reported_at: null,
        suspended_at: null,
        suspended_reason: null,
        next_check_at: now + driftSettings(partner).interval * 1000,
        // A check claimed before this approval finds another version and drops what it saw.
        version: Number(row.version) + 1,
        updated_at: now,
      })
      .where('partner_id', '=', partner.id)
      .execute();
    await bumpGeneration(trx, 'partners');
    const value: PartnerApproval = {
      partner: partner.id,
      previous_status: row.status,
      keys: keys.map((k) => ({ thumbprint: k.thumbprint, ...(k.kid !== undefined ? { kid: k.kid } : {}) })),
      issuer: metadata?.issuer ?? null,
    };
    return {
      value,
      events: [
        {
          type: 'partner.reapproved',
          actor: by.actor,
          issuer: partner.issuer,
          ...(by.requestId ? { requestId: by.requestId } : {}),
          details: { ...value, metadata_digest: metadata?.digest ?? null },
        },
      ],
    };
  });
  ctx.partners.invalidate();
  return approval;
}
