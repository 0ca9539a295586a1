import type { Kysely } from 'kysely';
import type { Database } from '../storage/schema.ts';
import { withinSpan } from '../clock.ts';

/** The write actions of the admin API and CLI, per administrator (migration 0028_risk_login). Times are epoch ms. */
export interface AdminActionTables {
  risk_admin_actions: {
    /** The administrator (src/risk/intrusion.ts AdminAction.admin). */
    admin_id: string;
    /** What the action changed, e.g. `PUT /admin/users/:username`, `apply`, `policy.activate`. */
    action: string;
    at: number;
  };
}

/** Actions are kept this long: far longer than any burst window, short enough to stay a small table. */
export const adminActionRetentionMs = 24 * 3600_000;
const pruneEveryMs = 10 * 60_000;

/** How many write actions `adminId` made since `since` (epoch ms), on every node. */
export async function countAdminActions(db: Kysely<Database>, adminId: string, since: number): Promise<number> {
  const row = await db
    .selectFrom('risk_admin_actions')
    .select((eb) => eb.fn.countAll<number | string | bigint>().as('n'))
    .where('admin_id', '=', adminId)
    .where('at', '>=', since)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

const lastPrune = new WeakMap<object, number>();

/** Records one write action; forgets those older than a day, at most every 10 minutes per process. */
export async function recordAdminAction(db: Kysely<Database>, action: { adminId: string; action: string; at: number }): Promise<void> {
  await db.insertInto('risk_admin_actions').values({ admin_id: action.adminId, action: action.action.slice(0, 200), at: action.at }).execute();
  const last = lastPrune.get(db) ?? -Infinity;
  if (withinSpan(action.at, last, pruneEveryMs)) return;
  lastPrune.set(db, action.at);
  await db.deleteFrom('risk_admin_actions').where('at', '<', action.at - adminActionRetentionMs).execute();
}
