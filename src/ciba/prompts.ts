import { sql, type Transaction } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import { recordRefusal } from '../audit/refusals.ts';
import { cibaGrantType } from '../clients/metadata.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { Database } from '../storage/schema.ts';
import { maxExpirySeconds } from './authentication-request.ts';

/**
 * Prompt bombing (MFA fatigue; docs/approvals.md "Prompts"): every backchannel request puts an
 * approval prompt on the person's device, and a client — or whoever holds its credentials — that
 * keeps asking wears the person down until one prompt is accepted. Two rules, per client and person:
 * - at most `cibaMaxOpenRequests` (CLEARANCE_CIBA_MAX_OPEN_REQUESTS, default 3) of the client's
 *   requests wait for the person at once (pending and unexpired): the next is refused until the
 *   person answered one, or one expired;
 * - a person who denied `recentDenialsLimit` (3) of the client's requests within
 *   `recentDenialsWindowMs` (10 minutes) is not prompted by it again for `quietAfterDenialsMs`
 *   (30 minutes) after the last of them. Only the person's own denials count (a second person's
 *   denial put nothing on their device).
 * A refusal is CIBA Core §13 `access_denied` (403: "The resource owner or OpenID Provider denied the
 * CIBA request") — the one registered error of the endpoint that says the OP declined to ask; not
 * `slow_down` (a token endpoint error, §11) nor 429 `temporarily_unavailable` (not registered for
 * this endpoint) — and is recorded as `token.refused` (reason `ciba_open_limit` /
 * `ciba_recently_denied`, the subject, the client; src/audit/refusals.ts limits a flood of them).
 */

export const recentDenialsLimit = 3;
export const recentDenialsWindowMs = 10 * 60_000;
export const quietAfterDenialsMs = 30 * 60_000;

/** Why a client may not prompt a person now, with what the record shows. */
export type PromptRefusal = { reason: 'ciba_open_limit'; open: number; limit: number } | { reason: 'ciba_recently_denied'; denied: number; until: number };

/** Who is about to be prompted: the client, the person, and the request being opened (not counted). */
export interface Prompt {
  clientId: string;
  subject: string;
  requestId: string;
  now: number;
}

/**
 * Why `prompt` may not be opened, or undefined when it may — asked in the transaction that opens
 * it, after the request's own row was written. One client's requests for one person are serialised
 * first (PostgreSQL: a transaction-scoped advisory lock; SQLite has one writer at a time), so that
 * requests sent at once cannot each count the others as not yet open.
 */
export async function promptRefusal(trx: Transaction<Database>, prompt: Prompt, maxOpen: number): Promise<PromptRefusal | undefined> {
  await lockPrompts(trx, prompt);
  const open = await openRequests(trx, prompt);
  if (open >= maxOpen) return { reason: 'ciba_open_limit', open, limit: maxOpen };
  const until = quietUntil(await recentDenials(trx, prompt), prompt.now);
  return until === undefined ? undefined : { reason: 'ciba_recently_denied', denied: recentDenialsLimit, until };
}

/** The answer to a refused prompt: CIBA Core §13 access_denied (403). */
export function promptRefusalError(refusal: PromptRefusal): OAuthError {
  const description =
    refusal.reason === 'ciba_open_limit'
      ? `${refusal.open} requests of this client are already waiting for the person; ask again once they answered one`
      : 'the person denied several of this client’s requests just now; they are not asked again by it for a while';
  const error = new OAuthError('access_denied', description, { detail: refusal.reason });
  refusals.set(error, refusal);
  return error;
}

const refusals = new WeakMap<OAuthError, PromptRefusal>();

/** Records a refused prompt (`token.refused`), when `error` is one; never throws. */
export async function recordPromptRefusal(ctx: Context, error: unknown, prompt: Omit<Prompt, 'requestId' | 'now'>, requestId: string): Promise<void> {
  const refusal = error instanceof OAuthError ? refusals.get(error) : undefined;
  if (!refusal) return;
  const { reason, ...facts } = refusal;
  await recordRefusal(ctx, {
    type: 'token.refused',
    requestId,
    client: prompt.clientId,
    subject: prompt.subject,
    error: 'access_denied',
    reason,
    decided: true,
    details: { grant_type: cibaGrantType, endpoint: 'bc-authorize', ...facts },
  });
}

async function lockPrompts(trx: Transaction<Database>, prompt: Prompt): Promise<void> {
  if (!isPostgres(trx)) return;
  const name = JSON.stringify([prompt.clientId, prompt.subject]);
  await sql`select pg_advisory_xact_lock(hashtextextended('clearance.ciba-prompts:' || current_schema() || ':' || ${name}, 0))`.execute(trx);
}

/** The client's requests waiting for the person: pending, unexpired (opened within the longest expiry, for the subject index). */
async function openRequests(trx: Transaction<Database>, prompt: Prompt): Promise<number> {
  const row = await trx
    .selectFrom('approval_requests')
    .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
    .where('subject', '=', prompt.subject)
    .where('created_at', '>=', prompt.now - maxExpirySeconds * 1000)
    .where('kind', '=', 'ciba')
    .where('client_id', '=', prompt.clientId)
    .where('status', '=', 'pending')
    .where('expires_at', '>', prompt.now)
    .where('id', '<>', prompt.requestId)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** When the person's own denials of the client's requests still matter, oldest first (epoch ms). */
async function recentDenials(trx: Transaction<Database>, prompt: Prompt): Promise<number[]> {
  const since = prompt.now - recentDenialsWindowMs - quietAfterDenialsMs;
  const rows = await trx
    .selectFrom('approval_requests as r')
    .innerJoin('approval_decisions as d', (join) => join.onRef('d.request_id', '=', 'r.id').onRef('d.approver', '=', 'r.subject'))
    .select('d.at')
    .where('r.subject', '=', prompt.subject)
    // A request is decided before it expires: one denied since `since` was opened at most the longest expiry before.
    .where('r.created_at', '>=', since - maxExpirySeconds * 1000)
    .where('r.kind', '=', 'ciba')
    .where('r.client_id', '=', prompt.clientId)
    .where('d.role', '=', 'subject')
    .where('d.decision', '=', 'deny')
    .where('d.at', '>', since)
    .orderBy('d.at')
    .execute();
  return rows.map((row) => Number(row.at));
}

/**
 * The end of the quiet period the denials at `times` (ascending) impose, when it is still ahead of
 * `now`: `recentDenialsLimit` of them within `recentDenialsWindowMs`, the last less than
 * `quietAfterDenialsMs` ago. The latest such run decides (it ends last).
 */
export function quietUntil(times: readonly number[], now: number): number | undefined {
  for (let last = times.length - 1; last >= recentDenialsLimit - 1; last--) {
    const first = times[last - (recentDenialsLimit - 1)]!;
    if (times[last]! - first > recentDenialsWindowMs) continue;
    const until = times[last]! + quietAfterDenialsMs;
    return until > now ? until : undefined;
  }
  return undefined;
}
