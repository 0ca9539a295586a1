import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { AdminRefusal } from '../admin-refusal.ts';
import { changeKycRecord, KycConflict, lockKycPrincipal } from '../kyc/changes.ts';
import type { KycPrincipal } from '../kyc/record.ts';
import { readKycRecord } from '../kyc/store.ts';
import { matchFromRow, type ScreeningMatch } from './matches.ts';

/** Compliance's decision on a screening match. */
export type MatchDecision = 'confirm' | 'clear';

export const maxDecisionReasonLength = 1000;

/** The decision cannot be made (already decided, unknown); `status` is the HTTP status the admin API answers. */
export class MatchDecisionRefused extends AdminRefusal {
  override name = 'MatchDecisionRefused';
}

/**
 * Compliance decides a match (docs/risk.md "Sanctions and PEP screening"), with a reason, in one
 * transaction: an open match `confirmed` or `cleared`, a confirmed one `cleared` (the entry was
 * delisted, or confirmed in error), by a conditional update on the status read (a second, racing
 * decision is refused), and `screening.decided` recorded.
 * - confirm: the principal stays frozen, whatever anyone else changes, until the match is cleared;
 * - clear: a false positive. When no other match of the principal is open or confirmed, their KYC record goes
 *   back to the status the freeze kept (`kyc.updated`; `pending` when they had no record before)
 *   — unless someone else froze it too, before the hit or after it (an administrator, a provider,
 *   apply: `frozenBy`, ../kyc/changes.ts): that freeze stays until an administrator lifts it, and
 *   `screening.decided` names it (`freeze_kept_by`);
 *   the entry will not match them again until it changes (./matches.ts).
 */
export async function decideScreeningMatch(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage' | 'risk'>,
  id: string,
  decision: MatchDecision,
  reason: string,
  by: { actor: string; requestId?: string },
): Promise<ScreeningMatch> {
  for (let attempt = 0; ; attempt++) {
    try {
      const decided = await ctx.audit.recordWith(async (trx) => {
        const now = ctx.clock.now();
        const found = await trx.selectFrom('screening_matches').select(['principal_type', 'principal_id']).where('id', '=', id).executeTakeFirst();
        if (!found) throw new MatchDecisionRefused('no such screening match', 404);
        // The principal locked, the match and the others are read as they are now (lockKycPrincipal).
        await lockKycPrincipal(trx, { type: found.principal_type, id: found.principal_id } as KycPrincipal);
        const row = (await trx.selectFrom('screening_matches').selectAll().where('id', '=', id).executeTakeFirst())!;
        // open → confirmed or cleared; confirmed → cleared (the entry was delisted, or confirmed in error).
        const from = decision === 'confirm' ? ['open'] : ['open', 'confirmed'];
        if (!from.includes(row.status)) throw new MatchDecisionRefused(`the match was ${row.status} already`, 409);
        const status = decision === 'confirm' ? 'confirmed' : 'cleared';
        const updated = await trx
          .updateTable('screening_matches')
          .set({ status, decided_at: now, decided_by: by.actor, reason })
          .where('id', '=', id)
          .where('status', '=', row.status)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1) throw new MatchDecisionRefused('the match was decided already', 409);
        const match = matchFromRow({ ...row, status, decided_at: now, decided_by: by.actor, reason });
        const events: AuditEvent[] = [
          {
            type: 'screening.decided',
            ...(by.requestId ? { requestId: by.requestId } : {}),
            actor: by.actor,
            subject: match.principal.id,
            decision: { allow: decision === 'clear', reasons: [decision] },
            details: { match_id: id, principal_type: match.principal.type, principal_id: match.principal.id, entry_id: match.entryId, list: match.list, decision, reason },
          },
        ];
        if (decision === 'confirm') {
          // A confirmed match holds a freeze, whatever happened to the record since the hit.
          const record = await readKycRecord(trx, match.principal);
          if (record?.status !== 'frozen') {
            const { principal: _p, status: _s, previousStatus: _ps, version: _v, updatedAt: _u, updatedBy: _b, declared: _d, frozenBy: _f, ...facts } = record ?? ({} as Partial<NonNullable<typeof record>>);
            const refrozen = await changeKycRecord(trx, ctx.clock, {
              principal: match.principal,
              fields: { ...facts, status: 'frozen' },
              source: 'compliance',
              actor: by.actor,
              reason,
              ...(by.requestId ? { requestId: by.requestId } : {}),
            });
            events.push(...refrozen.events);
          }
        }
        if (decision === 'clear') {
          const open = await trx
            .selectFrom('screening_matches')
            .select('id')
            .where('principal_type', '=', match.principal.type)
            .where('principal_id', '=', match.principal.id)
            .where('status', 'in', ['open', 'confirmed'])
            .executeTakeFirst();
          const record = await readKycRecord(trx, match.principal);
          if (!open && record?.status === 'frozen' && record.frozenBy !== undefined) {
            // Someone else froze it too (an administrator, a provider, apply): their freeze stays
            // until an administrator lifts it; the decision says whose it is.
            const [decided] = events;
            decided!.details = { ...decided!.details, freeze_kept_by: record.frozenBy };
          } else if (!open && record?.status === 'frozen') {
            const { principal: _p, status: _s, previousStatus, version, updatedAt: _u, updatedBy: _b, declared: _d, frozenBy: _f, ...facts } = record;
            const restored = await changeKycRecord(trx, ctx.clock, {
              principal: match.principal,
              fields: { ...facts, status: previousStatus ?? 'pending' },
              source: 'compliance',
              actor: by.actor,
              liftsFreeze: true,
              reason,
              expectedVersion: version,
              ...(by.requestId ? { requestId: by.requestId } : {}),
            });
            events.push(...restored.events);
          }
        }
        return { value: match, events };
      });
      ctx.risk.kyc.invalidate();
      return decided;
    } catch (error) {
      if (error instanceof KycConflict && attempt < 3) continue;
      throw error;
    }
  }
}
