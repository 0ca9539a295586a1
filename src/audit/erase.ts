import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import type { StoredAuditEvent } from './events.ts';
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
 * recorded for the subject, when it was erased already, or when a legal hold covers it.
 */
export async function eraseSubject(ctx: Pick<Context, 'audit' | 'clock' | 'storage'>, subject: string, by: { actor: string; reason?: string | undefined; requestId?: string | undefined }): Promise<Erasure> {
  if (!textPattern.test(subject)) throw new EraseError('the subject must be 1 to 256 printable characters');
  const reason = by.reason?.trim();
  if (reason !== undefined && reason !== '' && !reasonPattern.test(reason)) throw new EraseError('the reason must be 1 to 512 printable characters');
  const db = ctx.storage.db;
  const rows = await db.selectFrom('audit_subject_keys').select(['kid', 'generation', 'erased_at']).where('subject', '=', subject).orderBy('generation').execute();
  if (rows.length === 0) throw new EraseError(`no personal data of ${subject} is recorded in the audit log (no key)`);
  const live = rows.filter((row) => row.erased_at === null);
  if (live.length === 0) throw new EraseError(`${subject} was erased already (${new Date(Number(rows.at(-1)!.erased_at)).toISOString()})`);
  // Outside the transaction: the scan reads the whole log, and must not hold the write lock meanwhile.
  const events = await eventsSealedUnder(db, live.map((row) => row.kid));
  const now = ctx.clock.now();
  const erasure: Erasure = { subject, generations: live.map((row) => Number(row.generation)), events: events.length, erasedAt: now };
  await ctx.audit.recordWith(async (trx) => {
    // Checked in the transaction: a hold placed after the scan still refuses.
    const holding = (await activeHolds(trx)).filter((hold) => (hold.kind === 'subject' && hold.value === subject) || events.some((event) => holdCovers(hold, event)));
    if (holding.length > 0) {
      throw new EraseError(`a legal hold covers ${subject}: ${holding.map((h) => `${h.id} (matter ${h.matterRef})`).join(', ')}; release it first`, holding);
    }
    const erased = await trx
      .updateTable('audit_subject_keys')
      .set({ sealed_key: null, erased_at: now, erased_by: by.actor, erase_reason: reason || null })
      .where('subject', '=', subject)
      .where('kid', 'in', live.map((row) => row.kid))
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
  invalidateSubjectKeys(db);
  return erasure;
}

/**
 * The events whose personal fields are sealed under one of `kids`. The key id is inside the
 * event's JSON, not a column: a text search of the log, then each candidate checked by parsing.
 * An erasure is rare and deliberate; it may read the whole log.
 */
async function eventsSealedUnder(db: Kysely<Database>, kids: readonly string[]): Promise<StoredAuditEvent[]> {
  const wanted = new Set(kids);
  const found: StoredAuditEvent[] = [];
  for (const kid of kids) {
    // `_` (in `psk_`) is a LIKE wildcard: it may match more, never less; the parse keeps the exact ones.
    const rows = await db.selectFrom('audit_events').select('event').where('event', 'like', `%"kid":"${kid}"%`).orderBy('seq').execute();
    for (const row of rows) {
      const event = JSON.parse(row.event) as StoredAuditEvent;
      const sealed = sealedFieldsOf(event);
      if (sealed && wanted.has(sealed.kid) && sealed.kid === kid) found.push(event);
    }
  }
  return found;
}
