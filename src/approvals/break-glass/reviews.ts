import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import type { Context } from '../../context.ts';
import { acr, acrSatisfies } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { unrecordableText } from '../../audit/free-text.ts';

/**
 * The review every ended break-glass activation opens (docs/recovery.md "Break-glass"): it stays
 * open until a compliance officer — a person holding the `compliance` role, authenticated
 * phishing-resistantly — closes it with a note saying what was reviewed. Nobody else can close it,
 * nor can a compliance officer who requested the activation or approved it (the review is the
 * check on them); each such refusal is `break_glass.review_refused` with its reason
 * (`not_compliance`, `insufficient_authentication`, `not_independent`); a closed review stays
 * closed; each closing is `break_glass.review_closed`.
 */
export interface Review {
  activationId: string;
  account: string;
  openedAt: number;
  closedAt?: number;
  closedBy?: string;
  note?: string;
}

/** A review as the admin API shows it (GET /admin/break-glass/reviews), and the console reads it. */
export interface ReviewView {
  activation_id: string;
  account: string;
  opened_at: number;
  closed_at: number | null;
  closed_by: string | null;
  note: string | null;
}

export function reviewView(r: Review): ReviewView {
  return { activation_id: r.activationId, account: r.account, opened_at: r.openedAt, closed_at: r.closedAt ?? null, closed_by: r.closedBy ?? null, note: r.note ?? null };
}

/** The role whose holders close reviews. */
export const complianceRole = 'compliance';
export const maxNoteLength = 2000;

export type CloseOutcome =
  | { ok: true; review: Review }
  | { ok: false; refusal: 'not_found' | 'already_closed' | 'not_compliance' | 'insufficient_authentication' | 'note_required' | /** The closer requested or approved the activation. */ 'not_independent' }
  /** The note holds a control character or a value the audit log refuses (src/audit/free-text.ts). */
  | { ok: false; refusal: 'note_unrecordable'; detail: string };

/**
 * Closes a review: the closer is an active person with the `compliance` role (read now, not
 * trusted from the caller), neither the activation's requester nor one of its approvers (refused
 * `not_independent`, recorded as `break_glass.review_refused`), authenticated at least
 * phishing-resistantly (`acr`), with a note (recordable: no control character, nothing shaped like
 * a token or key); one conditional update (a review is closed once).
 */
export async function closeReview(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage'>,
  input: { activationId: string; closer: string; acr: string | undefined; note: string; requestId?: string },
): Promise<CloseOutcome> {
  const review = await findReview(ctx.storage.db, input.activationId);
  if (!review) return { ok: false, refusal: 'not_found' };
  // Every refused closing of a real review is on the record: who tried, and why.
  const refuse = async (refusal: 'not_compliance' | 'insufficient_authentication' | 'not_independent', details: Record<string, unknown> = {}): Promise<CloseOutcome> => {
    await ctx.audit.record({
      type: 'break_glass.review_refused',
      txn: review.activationId,
      actor: input.closer,
      subject: review.account,
      ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
      decision: { allow: false, reasons: [refusal] },
      details: { break_glass: true, activation: review.activationId, account: review.account, ...details },
    });
    return { ok: false, refusal };
  };
  const person = await findUser(ctx, input.closer);
  if (!person || person.status !== 'active' || !person.roles.includes(complianceRole)) return refuse('not_compliance');
  if (!acrSatisfies(input.acr, acr.phishingResistant)) return refuse('insufficient_authentication', { acr: input.acr ?? null });
  const involvement = await involvementIn(ctx.storage.db, review.activationId, person.id);
  if (involvement) return refuse('not_independent', { closer_was: involvement });
  const note = input.note.trim();
  if (note.length === 0 || note.length > maxNoteLength) return { ok: false, refusal: 'note_required' };
  const unrecordable = unrecordableText(note);
  if (unrecordable) return { ok: false, refusal: 'note_unrecordable', detail: `note ${unrecordable}` };
  if (review.closedAt !== undefined) return { ok: false, refusal: 'already_closed' };
  const now = ctx.clock.now();
  const closed = await ctx.audit.recordWith(async (trx) => {
    const result = await trx
      .updateTable('break_glass_reviews')
      .set({ closed_at: now, closed_by: person.id, note })
      .where('activation_id', '=', review.activationId)
      .where('closed_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return { value: false, events: [] };
    return {
      value: true,
      events: [
        {
          type: 'break_glass.review_closed',
          txn: review.activationId,
          actor: person.id,
          subject: review.account,
          ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
          details: { break_glass: true, activation: review.activationId, account: review.account, acr: input.acr, note },
        },
      ],
    };
  });
  if (!closed) return { ok: false, refusal: 'already_closed' };
  return { ok: true, review: { ...review, closedAt: now, closedBy: person.id, note } };
}

/** How `person` took part in the activation (its approval request has the activation's id), or undefined. */
async function involvementIn(db: Kysely<Database>, activationId: string, person: string): Promise<'requester' | 'approver' | undefined> {
  const activation = await db.selectFrom('break_glass_activations').select('requester').where('id', '=', activationId).executeTakeFirst();
  const request = await db.selectFrom('approval_requests').select('requester').where('id', '=', activationId).executeTakeFirst();
  // Fail closed: a review whose activation cannot be read has no independent closer.
  if (!activation) return 'requester';
  if (activation.requester === person || request?.requester === person) return 'requester';
  const approved = await db.selectFrom('approval_decisions').select('approver').where('request_id', '=', activationId).where('approver', '=', person).where('decision', '=', 'approve').executeTakeFirst();
  return approved ? 'approver' : undefined;
}

export async function findReview(db: Kysely<Database>, activationId: string): Promise<Review | undefined> {
  if (activationId.length > 64) return undefined;
  const row = await db.selectFrom('break_glass_reviews').selectAll().where('activation_id', '=', activationId).executeTakeFirst();
  return row && reviewFromRow(row);
}

/** Reviews, newest first; `open: true` for those not closed yet. */
export async function listReviews(db: Kysely<Database>, filter: { open?: boolean; limit?: number } = {}): Promise<Review[]> {
  let query = db.selectFrom('break_glass_reviews').selectAll();
  if (filter.open === true) query = query.where('closed_at', 'is', null);
  if (filter.open === false) query = query.where('closed_at', 'is not', null);
  return (await query.orderBy('opened_at', 'desc').limit(filter.limit ?? 100).execute()).map(reviewFromRow);
}

function reviewFromRow(row: { activation_id: string; account: string; opened_at: number; closed_at: number | null; closed_by: string | null; note: string | null }): Review {
  return {
    activationId: row.activation_id,
    account: row.account,
    openedAt: Number(row.opened_at),
    ...(row.closed_at !== null ? { closedAt: Number(row.closed_at) } : {}),
    ...(row.closed_by !== null ? { closedBy: row.closed_by } : {}),
    ...(row.note !== null ? { note: row.note } : {}),
  };
}
