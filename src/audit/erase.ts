import { sql, type Kysely, type Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { StoredAuditEvent } from './events.ts';
import { isPostgres, writersLockKey } from './dialect.ts';
import { activeHolds, holdCovers, type Hold } from './holds.ts';
import { sealedFieldsOf } from './personal-data.ts';
import { invalidateSubjectKeys, subjectKeysGeneration } from './subject-keys.ts';

/**
 * Erasure by key destruction — crypto-shredding (issue 24 item 4; docs/privacy.md "Erasure"). The
 * subject's keys are overwritten in the database (the row stays, a tombstone naming when, by whom
 * and why); every personal field sealed under them is gone for good, in every copy of the log and
 * every backup made after the keys' backups expire, while the events — the non-personal facts and
 * the Merkle leaves over their ciphertext — stay and verify as before.
 *
 * Refused while a legal hold covers the subject (GDPR Art. 17(3)(e): data needed for legal claims):
 * a hold on the subject itself, or any hold (txn, client, range) covering one of the events whose
 * fields the erasure would destroy.
 */
export class EraseError extends Error {
  override name = 'EraseError';
  /** The holds that refused it, when that is the reason. */
  readonly holds: Hold[];
  constructor(message: string, holds: Hold[] = []) {
    super(message);
    this.holds = holds;
  }
}

export interface Erasure {
  subject: string;
  /** The key generations destroyed. */
  generations: number[];
  /** Events whose personal fields were sealed under them. */
  events: number;
  erasedAt: number;
}

const textPattern = /^[^\p{Cc}]{1,256}$/u;
const reasonPattern = /^[^\p{Cc}]{1,512}$/u;

/**
 * Destroys every live key of `subject`, in one transaction with its `audit.subject_erased` event
 * (the subject id, the generations, how many events: nothing personal; the reason stays on the
 * tombstone, since a free text may name people). Every node stops using the keys: this process's
 * caches at once, the others' through the generation bump. Throws EraseError when nothing is
 * recorded for the subject, when it was erased already, or when a legal hold covers it; a refusal
 * under a hold is recorded (`audit.erasure_refused`, reason `legal_hold`).
 *
 * The events are found in two parts. The whole log up to a barrier (every event at or below it
 * committed) is scanned first, outside the transaction — it may be long and must not hold the
 * write lock. Inside the erasing transaction, with the subject's key rows locked (`FOR UPDATE` on
 * PostgreSQL; SQLite's single writer serialises), the events committed since the barrier are
 * scanned again, and the holds are checked over both: an event sealed meanwhile — by a node still
 * writing with the key it has cached, under a txn a hold covers — refuses the erasure too.
 * `hooks.afterScan` runs between the two (tests make that moment happen).
 */
export async function eraseSubject(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage'>,
  subject: string,
  by: { actor: string; reason?: string | undefined; requestId?: string | undefined },
  hooks: { afterScan?: () => Promise<void> } = {},
): Promise<Erasure> {
  if (!textPattern.test(subject)) throw new EraseError('the subject must be 1 to 256 printable characters');
  const reason = by.reason?.trim();
  if (reason !== undefined && reason !== '' && !reasonPattern.test(reason)) throw new EraseError('the reason must be 1 to 512 printable characters');
  const db = ctx.storage.db;
  const rows = await db.selectFrom('audit_subject_keys').select(['kid', 'generation', 'erased_at']).where('subject', '=', subject).orderBy('generation').execute();
  if (rows.length === 0) throw new EraseError(`no personal data of ${subject} is recorded in the audit log (no key)`);
  const live = rows.filter((row) => row.erased_at === null);
  if (live.length === 0) throw new EraseError(`${subject} was erased already (${new Date(Number(rows.at(-1)!.erased_at)).toISOString()})`);
  const kids = live.map((row) => row.kid);
  // Outside the transaction: the scan reads the whole log, and must not hold the write lock meanwhile.
  const upto = await committedUpTo(db);
  const scanned = await eventsSealedUnder(db, kids, { upto });
  await hooks.afterScan?.();
  const now = ctx.clock.now();
  const erasure: Erasure = { subject, generations: live.map((row) => Number(row.generation)), events: 0, erasedAt: now };
  let refused: EraseError | undefined;
  try {
    await ctx.audit.recordWith(async (trx) => {
      // The key rows first: a second erasure of the subject waits here, then finds them erased.
      await lockKeyRows(trx, subject, kids);
      // Events sealed under the keys since the scan (a node writing with its cached key), found in
      // the transaction: the holds are checked over them too.
      const events = [...scanned, ...(await eventsSealedUnder(trx, kids, { after: upto }))];
      erasure.events = events.length;
      // Checked in the transaction: a hold placed after the scan still refuses.
      const holding = (await activeHolds(trx)).filter((hold) => (hold.kind === 'subject' && hold.value === subject) || events.some((event) => holdCovers(hold, event)));
      if (holding.length > 0) {
        throw (refused = new EraseError(`a legal hold covers ${subject}: ${holding.map((h) => `${h.id} (matter ${h.matterRef})`).join(', ')}; release it first`, holding));
      }
      const erased = await trx
        .updateTable('audit_subject_keys')
        .set({ sealed_key: null, erased_at: now, erased_by: by.actor, erase_reason: reason || null })
        .where('subject', '=', subject)
        .where('kid', 'in', kids)
        .where('erased_at', 'is', null)
        .executeTakeFirst();
      if (Number(erased.numUpdatedRows) !== live.length) throw new EraseError(`${subject} was erased meanwhile by another request`);
      await bumpGeneration(trx, subjectKeysGeneration);
      return {
        value: undefined,
        events: [
          {
            type: 'audit.subject_erased',
            actor: by.actor,
            subject,
            ...(by.requestId ? { requestId: by.requestId } : {}),
            details: { subject_id: subject, generations: erasure.generations, events: erasure.events },
          },
        ],
      };
    });
  } catch (error) {
    if (error === refused && refused !== undefined) await recordErasureRefused(ctx, subject, by, 'legal_hold', { holds: refused.holds.map((h) => h.id) });
    throw error;
  }
  invalidateSubjectKeys(db);
  return erasure;
}

/** Why an erasure was refused (`audit.erasure_refused`): a hold, or the caller's role, sign-in or scope (src/endpoints/admin/erasure.ts). */
export type ErasureRefusal = 'legal_hold' | 'not_compliance' | 'insufficient_authentication' | 'stale_authentication' | 'outside_scope' | 'no_firm';

/**
 * Puts a refused erasure on the record: who asked, for which subject id, why (and the holds).
 * Nothing personal: the subject id, as `audit.subject_erased` names it, never the reason text.
 */
export async function recordErasureRefused(ctx: Pick<Context, 'audit'>, subject: string, by: { actor: string; requestId?: string | undefined }, reason: ErasureRefusal, details: Record<string, unknown> = {}): Promise<void> {
  await ctx.audit.record({
    type: 'audit.erasure_refused',
    actor: by.actor,
    subject,
    ...(by.requestId ? { requestId: by.requestId } : {}),
    decision: { allow: false, reasons: [reason] },
    details: { subject_id: subject, reason, ...details },
  });
}

/**
 * The highest seq below which every event has committed: on PostgreSQL read with the audit writers'
 * lock held exclusively for an instant (the sealer's barrier, src/audit/sealer.ts), since a seq is
 * taken before its transaction commits; on SQLite the writer is single, so the maximum is that.
 */
async function committedUpTo(db: Kysely<Database>): Promise<number> {
  if (!isPostgres(db)) {
    const row = await db.selectFrom('audit_events').select(({ fn }) => fn.max('seq').as('seq')).executeTakeFirst();
    return Number(row?.seq ?? -1);
  }
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${writersLockKey})`.execute(trx);
    const { rows } = await sql<{ upto: number | null }>`select max(seq) as upto from audit_events`.execute(trx);
    return Number(rows[0]?.upto ?? -1);
  });
}

/** Locks the subject's live key rows for the erasing transaction (PostgreSQL; SQLite's writer is single). */
async function lockKeyRows(trx: Transaction<Database>, subject: string, kids: readonly string[]): Promise<void> {
  await trx
    .selectFrom('audit_subject_keys')
    .select('kid')
    .where('subject', '=', subject)
    .where('kid', 'in', kids)
    .$if(isPostgres(trx), (qb) => qb.forUpdate())
    .execute();
}

/**
 * The events whose personal fields are sealed under one of `kids`, among those at or below `upto`
 * or above `after`. The key id is inside the event's JSON, not a column: a text search of the log,
 * then each candidate checked by parsing. An erasure is rare and deliberate; it may read the whole log.
 */
async function eventsSealedUnder(db: Kysely<Database> | Transaction<Database>, kids: readonly string[], range: { upto?: number; after?: number }): Promise<StoredAuditEvent[]> {
  const found: StoredAuditEvent[] = [];
  for (const kid of kids) {
    // `_` (in `psk_`) is a LIKE wildcard: it may match more, never less; the parse keeps the exact ones.
    let query = db.selectFrom('audit_events').select('event').where('event', 'like', `%"kid":"${kid}"%`);
    if (range.upto !== undefined) query = query.where('seq', '<=', range.upto);
    if (range.after !== undefined) query = query.where('seq', '>', range.after);
    const rows = await query.orderBy('seq').execute();
    for (const row of rows) {
      const event = JSON.parse(row.event) as StoredAuditEvent;
      const sealed = sealedFieldsOf(event);
      if (sealed?.kid === kid) found.push(event);
    }
  }
  return found;
}
