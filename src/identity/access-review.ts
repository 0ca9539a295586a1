import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { listUsers } from './users.ts';

/**
 * An access review of the people (docs/console.md "People"): what each may do and how they sign
 * in — roles, desks, status and lock, last sign-in, the factors they hold and their live sessions.
 * Minimised: the username identifies the person; no name, email or attribute is in it.
 */
export interface ReviewedPerson {
  id: string;
  username: string;
  roles: string[];
  desks: string[];
  status: string;
  locked_at: string | null;
  lock_reason: string | null;
  last_login_at: string | null;
  factors: { password: boolean; totp: boolean; passkeys: number; recovery_codes_left: number };
  /** Sessions neither ended nor past their idle or absolute timeout. */
  live_sessions: number;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Every person, with counts read in four grouped queries (not one per person). */
export async function accessReview(ctx: Pick<Context, 'storage'>, now: number): Promise<ReviewedPerson[]> {
  const db: Kysely<Database> = ctx.storage.db;
  const [people, totp, passkeys, codes, sessions] = await Promise.all([
    listUsers(ctx),
    db.selectFrom('totp_factors').select('user_id').where('confirmed_at', 'is not', null).execute(),
    db.selectFrom('passkeys').select((eb) => ['user_id', eb.fn.countAll<number>().as('n')]).groupBy('user_id').execute(),
    db.selectFrom('recovery_codes').select((eb) => ['user_id', eb.fn.countAll<number>().as('n')]).where('used_at', 'is', null).groupBy('user_id').execute(),
    db
      .selectFrom('sessions')
      .select(['user_id', 'last_seen_at', 'idle_timeout_ms'])
      .where('ended_at', 'is', null)
      .where('expires_at', '>', now)
      .execute(),
  ]);
  const withTotp = new Set(totp.map((row) => row.user_id));
  const count = (rows: { user_id: string; n: number | string | bigint }[]) => new Map(rows.map((row) => [row.user_id, Number(row.n)]));
  const passkeysOf = count(passkeys);
  const codesOf = count(codes);
  const live = new Map<string, number>();
  // The idle timeout is per session (as it was when the session began): checked here, not in SQL.
  for (const session of sessions) {
    if (Number(session.last_seen_at) + Number(session.idle_timeout_ms) > now) live.set(session.user_id, (live.get(session.user_id) ?? 0) + 1);
  }
  return people.map((person) => ({
    id: person.id,
    username: person.username,
    roles: person.roles,
    desks: person.desks,
    status: person.status,
    locked_at: iso(person.lockedAt),
    lock_reason: person.lockReason,
    last_login_at: iso(person.lastLoginAt),
    factors: { password: person.hasPassword, totp: withTotp.has(person.id), passkeys: passkeysOf.get(person.id) ?? 0, recovery_codes_left: codesOf.get(person.id) ?? 0 },
    live_sessions: live.get(person.id) ?? 0,
  }));
}
