import type { Context } from '../../context.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';

/**
 * A person's second factors: what the sign-in asks for after a correct password. A person with
 * one is never signed in by a password alone (src/identity/login.ts): the password step opens a
 * pending sign-in (pending.ts) and the second step (second-step.ts) completes it.
 *
 * Today: a confirmed TOTP authenticator (totp.ts), with its recovery codes (recovery-codes.ts)
 * standing in for it. Another kind of second factor adds its kind here and its rows to the reads.
 */
export type SecondFactorKind = 'totp';

export interface SecondFactor {
  kind: SecondFactorKind;
  /** The credential id (audit events name it). */
  id: string;
}

type FactorContext = Pick<Context, 'storage'>;

/** The second factors of the account `username` names (normalized), read with `flight`'s statements when given. */
export async function secondFactorsByUsername(ctx: FactorContext, username: string, flight?: Flight): Promise<SecondFactor[]> {
  const rows = await rowsOf(
    ctx.storage.db
      .selectFrom('totp_factors')
      .innerJoin('users', 'users.id', 'totp_factors.user_id')
      .select('totp_factors.id')
      .where('users.username', '=', username)
      .where('totp_factors.confirmed_at', 'is not', null),
    flight,
  );
  return rows.map((row) => ({ kind: 'totp', id: row.id }));
}

/** The second factors of a person. */
export async function secondFactorsOf(ctx: FactorContext, userId: string, flight?: Flight): Promise<SecondFactor[]> {
  const rows = await rowsOf(ctx.storage.db.selectFrom('totp_factors').select('id').where('user_id', '=', userId).where('confirmed_at', 'is not', null), flight);
  return rows.map((row) => ({ kind: 'totp', id: row.id }));
}
