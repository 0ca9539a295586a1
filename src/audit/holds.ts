import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { isTxn } from '../transactions/txn.ts';

/**
 * Legal holds (issue 17 item 5; docs/audit.md "Legal hold"). Compliance places a hold on a txn, a
 * subject, a client or a time range, under a matter reference; pruning (retention.ts) never
 * removes an event an active hold covers.
 *
 * The log only ever loses a sealed prefix, behind a signed pruning record that lets the rest
 * verify (retention.ts, pruning.ts), so a hold stops the prefix before the first event it covers:
 * nothing held is removed, nor anything after it. That keeps more than the hold names, by design —
 * the evidence of the held events stays provable exactly as before, with no second kind of proof.
 */
export const holdKinds = ['txn', 'subject', 'client', 'range'] as const;
export type HoldKind = (typeof holdKinds)[number];

export interface Hold {
  id: string;
  kind: HoldKind;
  /** The txn, subject or client held (kinds other than range). */
  value?: string;
  /** The range held (kind range): [from, to) in epoch ms. */
  from?: number;
  to?: number;
  /** The legal matter the hold serves (a case or request reference). */
  matterRef: string;
  placedBy: string;
  placedAt: number;
  /** Set once a two-person release was approved (hold-release.ts): the hold keeps nothing since. */
  releasedAt?: number;
  /** Who asked for the release and who approved it, in order. */
  releasedBy?: string[];
  /** The approval request for its release (waiting, or the one that released it). */
  releaseRequest?: string;
}

export class HoldError extends Error {
  override name = 'HoldError';
}

export interface HoldRequest {
  txn?: string | undefined;
  subject?: string | undefined;
  client?: string | undefined;
  /** A time range: both ends, epoch ms, from < to. */
  from?: number | undefined;
  to?: number | undefined;
  matterRef?: string | undefined;
}

const textPattern = /^[^\p{Cc}]{1,256}$/u;

/** Checks a hold request: exactly one scope, a matter reference; refuses with a HoldError naming what is wrong. */
export function readHoldRequest(request: HoldRequest): Omit<Hold, 'id' | 'placedBy' | 'placedAt'> {
  const matterRef = request.matterRef?.trim();
  if (!matterRef || !textPattern.test(matterRef)) throw new HoldError('a hold needs its matter reference (--matter): 1 to 256 printable characters');
  const scopes = [request.txn !== undefined, request.subject !== undefined, request.client !== undefined, request.from !== undefined || request.to !== undefined].filter(Boolean).length;
  if (scopes !== 1) throw new HoldError('a hold covers exactly one of: a txn, a subject, a client, or a time range (--since and --until)');
  if (request.txn !== undefined) {
    if (!isTxn(request.txn)) throw new HoldError('txn must be 1 to 64 letters, digits or . _ : -');
    return { kind: 'txn', value: request.txn, matterRef };
  }
  if (request.subject !== undefined || request.client !== undefined) {
    const value = (request.subject ?? request.client)!;
    if (!textPattern.test(value)) throw new HoldError('the subject or client must be 1 to 256 printable characters');
    return { kind: request.subject !== undefined ? 'subject' : 'client', value, matterRef };
  }
  const { from, to } = request;
  if (from === undefined || to === undefined || !Number.isSafeInteger(from) || !Number.isSafeInteger(to)) throw new HoldError('a time range needs both ends (--since and --until)');
  if (from >= to) throw new HoldError('the time range is inverted or empty: --since must be before --until');
  return { kind: 'range', from, to, matterRef };
}

/** Places a hold, with its `audit.hold_placed` event in the same transaction. */
export async function placeHold(ctx: Pick<Context, 'audit' | 'clock'>, request: HoldRequest, placedBy: string): Promise<Hold> {
  const hold: Hold = { id: `hold-${randomUUID()}`, ...readHoldRequest(request), placedBy, placedAt: ctx.clock.now() };
  return ctx.audit.recordWith(async (trx) => {
    await trx
      .insertInto('audit_holds')
      .values({ id: hold.id, kind: hold.kind, value: hold.value ?? null, from_time: hold.from ?? null, to_time: hold.to ?? null, matter_ref: hold.matterRef, placed_by: placedBy, placed_at: hold.placedAt, released_at: null })
      .execute();
    // Filed under what it holds, so the evidence of a txn, a person or a client shows its holds.
    const about = hold.kind === 'txn' ? { txn: hold.value! } : hold.kind === 'subject' ? { subject: hold.value! } : hold.kind === 'client' ? { client: hold.value! } : {};
    return { value: hold, events: [{ type: 'audit.hold_placed', actor: placedBy, ...about, details: holdDetails(hold) }] };
  });
}

/** What an event or a bundle says of a hold: never more than the hold itself names. */
export function holdDetails(hold: Hold): Record<string, unknown> {
  return {
    hold_id: hold.id,
    kind: hold.kind,
    ...(hold.value !== undefined ? { value: hold.value } : {}),
    ...(hold.from !== undefined ? { from: hold.from, to: hold.to } : {}),
    matter_ref: hold.matterRef,
    placed_by: hold.placedBy,
    placed_at: hold.placedAt,
    ...(hold.releasedAt !== undefined ? { released_at: hold.releasedAt, released_by: hold.releasedBy ?? [] } : {}),
  };
}

/** A stored hold. */
export function holdFromRow(r: Database['audit_holds']): Hold {
  return {
    id: r.id,
    kind: r.kind as HoldKind,
    ...(r.value !== null ? { value: r.value } : {}),
    ...(r.from_time !== null ? { from: Number(r.from_time), to: Number(r.to_time) } : {}),
    matterRef: r.matter_ref,
    placedBy: r.placed_by,
    placedAt: Number(r.placed_at),
    ...(r.released_at !== null ? { releasedAt: Number(r.released_at), releasedBy: JSON.parse(r.released_by ?? '[]') as string[] } : {}),
    ...(r.release_request !== null ? { releaseRequest: r.release_request } : {}),
  };
}

/** The active holds (not released), oldest first. */
export async function activeHolds(db: Kysely<Database>): Promise<Hold[]> {
  return listHolds(db, { released: false });
}

/** Every hold, oldest first; `released: false` only the active ones. */
export async function listHolds(db: Kysely<Database>, options: { released?: boolean } = {}): Promise<Hold[]> {
  let query = db.selectFrom('audit_holds').selectAll();
  if (options.released === false) query = query.where('released_at', 'is', null);
  const rows = await query.orderBy('placed_at').orderBy('id').execute();
  return rows.map(holdFromRow);
}

/** The hold with this id, or undefined. */
export async function findHold(db: Kysely<Database>, id: string): Promise<Hold | undefined> {
  const row = await db.selectFrom('audit_holds').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? holdFromRow(row) : undefined;
}

/**
 * Whether a hold covers an event: its txn, subject or client is the one held, or its time falls
 * in the range. What a bundle states (bundle.ts), and what pruning keeps (through the index).
 */
export function holdCovers(hold: Pick<Hold, 'kind' | 'value' | 'from' | 'to'>, event: { txn?: string | undefined; subject?: string | undefined; client?: string | undefined; time: number }): boolean {
  switch (hold.kind) {
    case 'txn':
      return event.txn === hold.value;
    case 'subject':
      return event.subject === hold.value;
    case 'client':
      return event.client === hold.value;
    case 'range':
      return event.time >= hold.from! && event.time < hold.to!;
  }
}

const indexPrefix: Record<Exclude<HoldKind, 'range'>, string> = { txn: 'txn:', subject: 'sub:', client: 'cli:' };

/**
 * The first event each active hold covers, lowest first (holds covering no event left out). Only
 * sealed events can be pruned, and the sealer indexes their txn, subject and client
 * (`audit_index`), so a txn, subject or client hold is one index lookup; a range, one lookup on
 * the time index.
 */
export async function heldFrom(db: Kysely<Database>): Promise<{ hold: Hold; seq: number }[]> {
  const found: { hold: Hold; seq: number }[] = [];
  for (const hold of await activeHolds(db)) {
    const row =
      hold.kind === 'range'
        ? await db.selectFrom('audit_events').select(({ fn }) => fn.min('seq').as('seq')).where('time', '>=', hold.from!).where('time', '<', hold.to!).executeTakeFirst()
        : await db.selectFrom('audit_index').select(({ fn }) => fn.min('seq').as('seq')).where('key', '=', `${indexPrefix[hold.kind]}${hold.value}`).executeTakeFirst();
    if (row?.seq !== null && row?.seq !== undefined) found.push({ hold, seq: Number(row.seq) });
  }
  return found.sort((a, b) => a.seq - b.seq);
}
