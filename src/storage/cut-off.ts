import { sql, type RawBuilder } from 'kysely';

/**
 * A row's `tokens_valid_after` (a person's, a client's, a partner's, a resource server's cut-off:
 * every token issued until it is dead) moved to `now`, and never back: when the wall clock has
 * stepped back (an NTP step, a VM resumed) and `now` is not after the cut-off already set, it moves
 * one millisecond on instead. Set to an earlier `now`, the tokens issued between the two would
 * come back to life; and a cut-off that always moves lets a sign-in tell that one happened since it
 * read the row (src/identity/login.ts `accountAsRead`).
 */
export function cutOffAt(now: number): RawBuilder<number> {
  return sql<number>`case when tokens_valid_after >= ${now} then tokens_valid_after + 1 else ${now} end`;
}
