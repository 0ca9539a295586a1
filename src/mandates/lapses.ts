import { sql } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { alertInsert } from '../signals/alerts.ts';

/**
 * Lapses in flight (issue 17 item 2; docs/mandates.md "Lapses in flight"). A trade executed under
 * a mandate may still be settling when the mandate lapses — revoked, superseded by an amendment,
 * or past its effective_to. Each such trade is an exception someone must look at: for every txn
 * that used the lapsed version within the in-flight window before the lapse
 * (`CLEARANCE_MANDATE_IN_FLIGHT_WINDOW`, default 3 days), Clearance raises
 * `mandate.lapsed_in_flight` (filed under the txn) and one alert for the lapse.
 *
 * Run by the periodic signal service (src/signals/service.ts) on every node: a node takes a lapse
 * by inserting its `mandate_lapses` row in the transaction that records the events, so a lapse is
 * raised once however many nodes run the pass. A lapse is looked at once it is `settleMs` old, so
 * the events of requests in progress at the moment of the lapse are committed and found.
 */

/** How long after a lapse the pass waits, so requests under way at the lapse have committed. */
export const settleMs = 10_000;
const batch = 50;

type Deps = Pick<Context, 'storage' | 'clock' | 'audit' | 'config'>;

interface Lapse {
  mandateId: string;
  version: number;
  lapse: 'revoked' | 'superseded' | 'expired';
  at: number;
}

/** Raises the lapses of the last window not raised yet; returns how many events it wrote. */
export async function raiseLapsesInFlight(ctx: Deps): Promise<number> {
  const now = ctx.clock.now();
  const windowMs = ctx.config.mandateInFlightWindowSeconds * 1000;
  let raised = 0;
  for (const lapse of await pendingLapses(ctx, now - windowMs, now - settleMs)) raised += await raise(ctx, lapse, windowMs);
  return raised;
}

/** Accepted versions that lapsed in (since, until] and whose lapse no node has raised. */
async function pendingLapses(ctx: Deps, since: number, until: number): Promise<Lapse[]> {
  const within = (column: 'mv.revoked_at' | 'mv.superseded_at' | 'mv.effective_to' | 'mv.reassign_by') => sql<boolean>`(${sql.ref(column)} > ${since} and ${sql.ref(column)} <= ${until})`;
  const rows = await ctx.storage.db
    .selectFrom('mandate_versions as mv')
    .leftJoin('mandate_lapses as ml', (join) => join.onRef('ml.mandate_id', '=', 'mv.mandate_id').onRef('ml.version', '=', 'mv.version'))
    .select(['mv.mandate_id', 'mv.version', 'mv.revoked_at', 'mv.superseded_at', 'mv.effective_to', 'mv.reassign_by'])
    .where('ml.mandate_id', 'is', null)
    .where('mv.accepted_at', 'is not', null)
    .where((eb) => eb.or([within('mv.revoked_at'), within('mv.superseded_at'), within('mv.effective_to'), within('mv.reassign_by')]))
    .limit(batch)
    .execute();
  return rows.map((row) => {
    // The first of its ends is the lapse (an expired version may have been revoked before).
    const ends = [
      ['revoked', row.revoked_at],
      ['superseded', row.superseded_at],
      ['expired', row.effective_to !== null && Number(row.effective_to) <= until ? row.effective_to : null],
      // The reassignment deadline after the person who granted it left (src/lifecycle/leaver.ts) is an expiry too.
      ['expired', row.reassign_by !== null && Number(row.reassign_by) <= until ? row.reassign_by : null],
    ] as const;
    const [lapse, at] = ends.filter(([, t]) => t !== null).map(([k, t]) => [k, Number(t)] as const).sort((a, b) => a[1] - b[1])[0]!;
    return { mandateId: row.mandate_id, version: Number(row.version), lapse, at };
  });
}

async function raise(ctx: Deps, lapse: Lapse, windowMs: number): Promise<number> {
  return ctx.audit.recordWith(async (trx) => {
    const txns = await txnsUnder(trx, lapse, windowMs);
    const taken = await trx
      .insertInto('mandate_lapses')
      .values({ mandate_id: lapse.mandateId, version: lapse.version, lapse: lapse.lapse, lapsed_at: lapse.at, txns: txns.length, raised_at: ctx.clock.now() })
      .onConflict((oc) => oc.columns(['mandate_id', 'version']).doNothing())
      .returning('mandate_id')
      .executeTakeFirst();
    // Another node took it (or a rerun): nothing twice.
    if (!taken || txns.length === 0) return { value: 0, events: [] };
    const mandate = { id: lapse.mandateId, v: lapse.version };
    const details = { lapse: lapse.lapse, lapsed_at: lapse.at, in_flight_window_ms: windowMs };
    await alertInsert(trx, ctx.clock, { type: 'mandate.lapsed_in_flight', data: { mandate, ...details, txns } }).execute();
    const events: AuditEvent[] = txns.map((txn) => ({ type: 'mandate.lapsed_in_flight', txn, mandate, details }));
    return { value: events.length, events };
  });
}

/**
 * The txns with an event under the version in the window before its lapse. The stored event is
 * RFC 8785 canonical JSON, so the version reads exactly `"mandate":{"id":"…","v":N}` (mandate ids
 * hold no characters JSON escapes; `_` is escaped for LIKE). The time index bounds the scan.
 */
async function txnsUnder(trx: Parameters<Parameters<Deps['audit']['recordWith']>[0]>[0], lapse: Lapse, windowMs: number): Promise<string[]> {
  const pattern = `%"mandate":{"id":"${lapse.mandateId.replaceAll('!', '!!').replaceAll('_', '!_').replaceAll('%', '!%')}","v":${lapse.version}}%`;
  const rows = await trx
    .selectFrom('audit_events')
    .select('txn')
    .distinct()
    .where('time', '>=', lapse.at - windowMs)
    .where('time', '<', lapse.at)
    .where('txn', 'is not', null)
    .where(sql<boolean>`event like ${pattern} escape '!'`)
    .orderBy('txn')
    .execute();
  return rows.map((r) => r.txn!);
}
