import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';

/** Who holds a lease, and until when (ms). */
export interface LeaseHolder {
  holder: string;
  acquiredAt: number;
  expiresAt: number;
}

/**
 * Takes the lease `name` for `holder` until `now + ttlMs`, when it is free (never taken, or
 * expired) or already `holder`'s. One conditional upsert (`insert … on conflict do update … where`),
 * the same text on SQLite and PostgreSQL: of several nodes asking at once, exactly one row is
 * written, so exactly one node gets `true`. Times are the caller's clock; nodes whose clocks
 * disagree by less than the lease's length still never hold it together.
 */
export async function acquireLease(db: Kysely<Database>, name: string, holder: string, now: number, ttlMs: number): Promise<boolean> {
  const result = await db
    .insertInto('lifecycle_leases')
    .values({ name, holder, acquired_at: now, expires_at: now + ttlMs })
    .onConflict((oc) =>
      oc
        .column('name')
        .doUpdateSet((eb) => ({ holder: eb.ref('excluded.holder'), acquired_at: eb.ref('excluded.acquired_at'), expires_at: eb.ref('excluded.expires_at') }))
        .where((eb) => eb.or([eb('lifecycle_leases.expires_at', '<=', now), eb('lifecycle_leases.holder', '=', holder)])),
    )
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}

/** Gives the lease up at once (`now`), if `holder` still holds it; the next node may take it. */
export async function releaseLease(db: Kysely<Database>, name: string, holder: string, now: number): Promise<void> {
  await db.updateTable('lifecycle_leases').set({ expires_at: now }).where('name', '=', name).where('holder', '=', holder).execute();
}

/** The lease's last holder, if it was ever taken (an expired lease shows who ran the step last). */
export async function leaseHolder(db: Kysely<Database>, name: string): Promise<LeaseHolder | undefined> {
  const row = await db.selectFrom('lifecycle_leases').selectAll().where('name', '=', name).executeTakeFirst();
  return row && { holder: row.holder, acquiredAt: Number(row.acquired_at), expiresAt: Number(row.expires_at) };
}
