import { sql, type Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';

/**
 * When each source account first (and last) used each destination, by its address-book key
 * (migration 0054_transfer_totals): the history behind the risk holds on a destination's first
 * use (./enforce.ts). It lives in the database, shared by every node (AMENDMENTS: "first use"
 * history in the database, with a documented retention): a use is recorded when a transfer to it
 * passes enforcement, and taken back when that issuance is refused after all. Retention: 400 days
 * after the last use (`pruneDestinationUses`); a destination unused for that long is new again.
 * The rows hold an account id, a destination key (an account, IBAN or chain address) and two times.
 *
 * A destination removed from the book and added again is new again too: its uses from before the
 * removal do not count (`since`, the removal's time: ./address-book.ts `removedAt`), so its first
 * use after the new cool-down is held as any new destination's is.
 */
export interface TransferUseTables {
  transfer_destination_uses: {
    account: string;
    destination_key: string;
    first_used_at: number;
    last_used_at: number;
  };
}

export const destinationUseRetentionDays = 400;
const retentionMs = destinationUseRetentionDays * 86_400_000;

/** The earliest last use that still counts at `now`: within the retention, and after the destination's latest removal (`since`). */
function countsFrom(now: number, since: number | undefined): number {
  return Math.max(now - retentionMs, since === undefined ? -Infinity : since + 1);
}

/** Whether `account` used `key` within the retention (and, given `since`, after it: the destination's latest removal). */
export async function usedBefore(db: Kysely<Database>, account: string, key: string, now: number, since?: number): Promise<boolean> {
  const row = await db
    .selectFrom('transfer_destination_uses')
    .select('account')
    .where('account', '=', account)
    .where('destination_key', '=', key)
    .where('last_used_at', '>=', countsFrom(now, since))
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Records a use; returns whether it was the first (so that a refusal after it can take it back
 * with `forgetFirstUse`) — the first too when the uses stored no longer count (`usedBefore`: out of
 * the retention, or before the destination's latest removal `since`): they are replaced by this one.
 */
export async function recordUse(db: Kysely<Database>, account: string, key: string, now: number, since?: number): Promise<boolean> {
  const inserted = await db
    .insertInto('transfer_destination_uses')
    .values({ account, destination_key: key, first_used_at: now, last_used_at: now })
    .onConflict((oc) => oc.columns(['account', 'destination_key']).doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) > 0) return true;
  // One statement for a use seen before (the common case on the token path): the last use moves
  // on, and the first too when the stored uses no longer count. A first use at this very
  // millisecond by another request reads as first here too: both then ask the hold (stricter).
  const from = countsFrom(now, since);
  const renewed = await db
    .updateTable('transfer_destination_uses')
    .set({ first_used_at: sql<number>`case when last_used_at < ${from} then ${now} else first_used_at end`, last_used_at: now })
    .where('account', '=', account)
    .where('destination_key', '=', key)
    .returning('first_used_at')
    .executeTakeFirst();
  return renewed !== undefined && Number(renewed.first_used_at) === now;
}

/** Takes back a first use recorded at `at` (its issuance was refused after enforcement). */
export async function forgetFirstUse(db: Kysely<Database>, account: string, key: string, at: number): Promise<void> {
  await db.deleteFrom('transfer_destination_uses').where('account', '=', account).where('destination_key', '=', key).where('first_used_at', '=', at).execute();
}

/** Deletes the uses last made before the retention; returns how many. */
export async function pruneDestinationUses(db: Kysely<Database>, now: number): Promise<number> {
  const result = await db.deleteFrom('transfer_destination_uses').where('last_used_at', '<', now - retentionMs).executeTakeFirst();
  return Number(result.numDeletedRows);
}
