/**
 * Second-factor helpers for the people-side tests: an authenticator enrolled and confirmed the way
 * the account page does it, and the code an authenticator app would show at a given time.
 */
import assert from 'node:assert/strict';
import { generate } from 'otplib';
import type { ManualClock } from '../../../src/clock.ts';
import type { Context } from '../../../src/context.ts';
import { confirmTotpEnrolment } from '../../../src/identity/factors/enrolment.ts';
import { beginTotpEnrolment, pendingTotpEnrolment, totpPeriodSeconds } from '../../../src/identity/factors/totp.ts';
import { findUserByUsername } from '../../../src/identity/users.ts';

/** The code an authenticator app with `secret` shows at `ms` (epoch milliseconds). */
export function codeAt(secret: string, ms: number): Promise<string> {
  return generate({ secret, epoch: Math.floor(ms / 1000), period: totpPeriodSeconds });
}

/** The session id an enrolment outside the pages is begun and confirmed from (a pending one is bound to it). */
export const enrollingSession = 'the-enrolling-session-id';

export interface Enrolled {
  userId: string;
  factorId: string;
  /** The base32 secret the enrolment page showed. */
  secret: string;
  /** The ten recovery codes shown at confirmation (empty for a privileged person). */
  recoveryCodes: string[];
}

/**
 * Enrols and confirms an authenticator for `username` at the context's clock, then moves the clock
 * to the next time step, so the confirming code's step is over (a sign-in needs a fresh code).
 */
export async function enrolTotp(f: { ctx: Context; clock: ManualClock }, username: string): Promise<Enrolled> {
  const { ctx, clock } = f;
  const user = (await findUserByUsername(ctx, username))!;
  const begun = await beginTotpEnrolment(ctx, user.id, enrollingSession);
  assert.ok(begun.ok);
  const pending = (await pendingTotpEnrolment(ctx, user.id, user.username, enrollingSession))!;
  const confirmed = await confirmTotpEnrolment(ctx, user, enrollingSession, await codeAt(pending.secret, ctx.clock.now()), { sourceAddress: '198.51.100.7' });
  assert.ok(confirmed.ok, 'the first code confirms the authenticator');
  clock.advance(totpPeriodSeconds * 1000);
  return { userId: user.id, factorId: begun.id, secret: pending.secret, recoveryCodes: confirmed.recoveryCodes ?? [] };
}
