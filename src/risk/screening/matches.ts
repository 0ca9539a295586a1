import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Database } from '../../storage/schema.ts';
import { changeKycRecord, KycConflict, lockKycPrincipal } from '../kyc/changes.ts';
import type { KycPrincipal } from '../kyc/record.ts';
import { readKycRecord } from '../kyc/store.ts';
import type { MatchedOn, ScreeningHit } from './matcher.ts';

/** Where a screening happened (the `screening.matched` event's `details.at`). */
export type ScreeningMoment = 'apply' | 'sign_in' | 'list_change' | 'admin';

export type MatchStatus = 'open' | 'confirmed' | 'cleared';

/** A screening match as compliance sees it. */
export interface ScreeningMatch {
  id: string;
  principal: KycPrincipal;
  entryId: string;
  entryDigest: string;
  listDigest: string;
  list: string;
  programme?: string;
  matchedOn: MatchedOn[];
  status: MatchStatus;
  createdAt: number;
  decidedAt?: number;
  decidedBy?: string;
  reason?: string;
}

/**
 * Records a screening hit against a principal, in one transaction: the match (open), the
 * principal's KYC record `frozen` with the status it had kept (../kyc/changes.ts: `kyc.updated`,
 * the `kyc.frozen` alert, a person's access tokens cut off), the `screening.matched` event and
 * alert. Nothing happens when this principal already has a match for this entry as it is now (by
 * the unique key of principal, entry and entry digest): an open or confirmed match already froze
 * them, and a cleared one keeps the entry from matching them again until the entry changes.
 * Returns the new match, or undefined when there was none to record.
 */
export async function recordScreeningHit(
  ctx: Pick<Context, 'audit' | 'clock' | 'risk'>,
  principal: KycPrincipal,
  hit: ScreeningHit,
  listDigest: string,
  at: ScreeningMoment,
): Promise<ScreeningMatch | undefined> {
  const id = randomUUID();
  const now = ctx.clock.now();
  const match: ScreeningMatch = {
    id,
    principal,
    entryId: hit.entry.id,
    entryDigest: hit.entry.digest,
    listDigest,
    list: hit.entry.list,
    ...(hit.entry.programme !== undefined ? { programme: hit.entry.programme } : {}),
    matchedOn: hit.matchedOn,
    status: 'open',
    createdAt: now,
  };
  for (let attempt = 0; ; attempt++) {
    try {
      const recorded = await ctx.audit.recordWith(async (trx) => {
        // Before the match is written: a freeze being lifted meanwhile then sees it (lockKycPrincipal).
        await lockKycPrincipal(trx, principal);
        const inserted = await trx
          .insertInto('screening_matches')
          .values({
            id,
            principal_type: principal.type,
            principal_id: principal.id,
            entry_id: match.entryId,
            entry_digest: match.entryDigest,
            list_digest: listDigest,
            list_name: match.list,
            programme: match.programme ?? null,
            matched_on: JSON.stringify(match.matchedOn),
            status: 'open',
            created_at: now,
            decided_at: null,
            decided_by: null,
            reason: null,
          })
          .onConflict((oc) => oc.columns(['principal_type', 'principal_id', 'entry_id', 'entry_digest']).doNothing())
          .returning('id')
          .execute();
        if (inserted.length === 0) return { value: false, events: [] };
        const record = await readKycRecord(trx, principal);
        const frozen = await changeKycRecord(trx, ctx.clock, {
          principal,
          // The review's facts stay; only the status changes (the one it had is kept to return to).
          fields: { status: 'frozen', ...pickFields(record ?? {}) },
          source: 'screening',
          actor: 'screening',
          ...(record ? { expectedVersion: record.version } : {}),
        });
        const facts = { match_id: id, principal_type: principal.type, principal_id: principal.id, entry_id: match.entryId, list: match.list, ...(match.programme !== undefined ? { programme: match.programme } : {}), matched_on: match.matchedOn, list_digest: listDigest, at };
        await alertInsert(trx, ctx.clock, { type: 'screening.matched', subject: principal.id, data: facts }).execute();
        const event: AuditEvent = { type: 'screening.matched', actor: 'screening', subject: principal.id, decision: { allow: false, reasons: [match.list] }, details: facts };
        // The match first: the freeze it caused follows it in the log.
        return { value: true, events: [event, ...frozen.events] };
      });
      if (recorded) ctx.risk.kyc.invalidate();
      return recorded ? match : undefined;
    } catch (error) {
      // Another writer changed the record between the read and the freeze: read it again.
      if (error instanceof KycConflict && attempt < 3) continue;
      throw error;
    }
  }
}

function pickFields(record: { level?: string; provider?: string; reviewDue?: number; evidenceRef?: string }) {
  return {
    ...(record.level !== undefined ? { level: record.level } : {}),
    ...(record.provider !== undefined ? { provider: record.provider } : {}),
    ...(record.reviewDue !== undefined ? { reviewDue: record.reviewDue } : {}),
    ...(record.evidenceRef !== undefined ? { evidenceRef: record.evidenceRef } : {}),
  };
}

/** The matches of a status (all when undefined), newest first. */
export async function listScreeningMatches(db: Kysely<Database>, options: { status?: MatchStatus; limit?: number } = {}): Promise<ScreeningMatch[]> {
  let query = db.selectFrom('screening_matches').selectAll();
  if (options.status) query = query.where('status', '=', options.status);
  const rows = await query.orderBy('created_at', 'desc').orderBy('id').limit(options.limit ?? 100).execute();
  return rows.map(matchFromRow);
}

export async function findScreeningMatch(db: Kysely<Database>, id: string): Promise<ScreeningMatch | undefined> {
  if (!/^[0-9a-f-]{36}$/.test(id)) return undefined;
  const row = await db.selectFrom('screening_matches').selectAll().where('id', '=', id).executeTakeFirst();
  return row && matchFromRow(row);
}

export function matchFromRow(row: Database['screening_matches']): ScreeningMatch {
  return {
    id: row.id,
    principal: { type: row.principal_type as KycPrincipal['type'], id: row.principal_id },
    entryId: row.entry_id,
    entryDigest: row.entry_digest,
    listDigest: row.list_digest,
    list: row.list_name,
    ...(row.programme !== null ? { programme: row.programme } : {}),
    matchedOn: JSON.parse(row.matched_on) as MatchedOn[],
    status: row.status as MatchStatus,
    createdAt: Number(row.created_at),
    ...(row.decided_at !== null ? { decidedAt: Number(row.decided_at) } : {}),
    ...(row.decided_by !== null ? { decidedBy: row.decided_by } : {}),
    ...(row.reason !== null ? { reason: row.reason } : {}),
  };
}
