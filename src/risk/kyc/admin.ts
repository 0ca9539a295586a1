import type { Context } from '../../context.ts';
import { AdminRefusal } from '../admin-refusal.ts';
import { changeKycRecord, lockKycPrincipal, type KycChanged } from './changes.ts';
import type { KycFields, KycPrincipal } from './record.ts';
import { readKycRecord } from './store.ts';

/** An administrator's change the record cannot take (`status`: the HTTP status the admin API answers). */
export class KycChangeRefused extends AdminRefusal {
  override name = 'KycChangeRefused';
}

/**
 * An administrator's change of a KYC record (PUT /admin/kyc/...), in one transaction with its
 * `kyc.updated` event: the fields written as given. An administrator may freeze a record and lift
 * a freeze — but not while a screening match of the principal is open or confirmed: those are
 * compliance's to decide first (POST /admin/screening/matches/{id}/decision), so a sanctions hit
 * is never lifted around its decision (KycChangeRefused, 409). `expectedVersion` (the version the
 * administrator read) makes a change of a record changed meanwhile a conflict (KycConflict).
 */
export async function changeKycByAdmin(
  ctx: Pick<Context, 'audit' | 'clock' | 'risk' | 'clients'>,
  principal: KycPrincipal,
  fields: KycFields,
  by: { actor: string; reason?: string; expectedVersion?: number; requestId?: string; claimsFreeze?: boolean },
): Promise<KycChanged> {
  const changed = await ctx.audit.recordWith(async (trx) => {
    // Before the matches are read: a match being recorded meanwhile is seen, or waits (lockKycPrincipal).
    await lockKycPrincipal(trx, principal);
    const record = await readKycRecord(trx, principal);
    if (record?.status === 'frozen' && fields.status !== 'frozen') {
      const held = await trx
        .selectFrom('screening_matches')
        .select(['id', 'status'])
        .where('principal_type', '=', principal.type)
        .where('principal_id', '=', principal.id)
        .where('status', 'in', ['open', 'confirmed'])
        .executeTakeFirst();
      if (held) throw new KycChangeRefused(`the freeze is held by a ${held.status} screening match (${held.id}); it is lifted by compliance's decision`, 409);
    }
    const result = await changeKycRecord(trx, ctx.clock, {
      principal,
      fields,
      source: 'admin',
      actor: by.actor,
      liftsFreeze: true,
      ...(by.claimsFreeze === false ? { claimsFreeze: false } : {}),
      ...(by.reason !== undefined ? { reason: by.reason } : {}),
      ...(by.expectedVersion !== undefined ? { expectedVersion: by.expectedVersion } : {}),
      ...(by.requestId ? { requestId: by.requestId } : {}),
    });
    return { value: result, events: result.events };
  });
  ctx.risk.kyc.invalidate();
  if (changed.clientsEnded.length > 0) ctx.clients.invalidate();
  return changed;
}
