import type { Transaction } from 'kysely';
import { isPostgres } from '../../audit/dialect.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { refusedFor } from '../../storage/flight.ts';
import type { Database } from '../../storage/schema.ts';
import type { Acr } from '../acr.ts';
import { removalLeavesBelowMinimum } from '../factor-changes.ts';
import { passkeyFromRow } from '../passkeys/store.ts';
import { minimumAcrFor, roleMinimums, type RoleMinimums } from '../role-requirements.ts';
import { privilegedRolesOf, type PrivilegedRole } from '../roles.ts';
import type { User } from '../users.ts';
import { recoveryCodeCount, recoveryCodesOf, replaceRecoveryCodes } from './recovery-codes.ts';
import { signOutOthersIn } from './sign-out-others.ts';
import { checkTotpCode, openPendingTotpSecret, recordTotpStep, sealConfirmedTotpSecret, totpFactorOf, totpRowOf, type TotpFactor } from './totp.ts';

/**
 * A person managing their own second factors from /account (src/endpoints/account): confirming
 * an authenticator they are enrolling, removing it, regenerating recovery codes. Each change is one
 * transaction with its audit event (factor type and credential id, never the secret or a code).
 * Beginning an enrolment is totp.ts's beginTotpEnrolment.
 */

type FactorContext = Pick<Context, 'storage' | 'clock' | 'identity' | 'audit' | 'config'>;

/** Who acts, for the audit event. */
export interface FactorChange {
  sourceAddress: string;
  requestId?: string;
  /** The session making the change: a removal signs the person out everywhere but there (removeTotp). */
  session?: string;
}

/** The person's factors as their account page shows them. */
export interface AccountFactors {
  /** Their authenticator, confirmed or still pending confirmation. */
  totp: TotpFactor | undefined;
  /** Unused recovery codes. */
  recoveryCodesLeft: number;
  /** The privileged roles they hold: recovery codes are not for them (src/identity/roles.ts). */
  privilegedRoles: PrivilegedRole[];
}

export async function accountFactors(ctx: Pick<Context, 'storage'>, user: User): Promise<AccountFactors> {
  const flight = ctx.storage.flight();
  const totp = totpFactorOf(ctx, user.id, flight);
  const codes = recoveryCodesOf(ctx, user.id, flight);
  await flight.send();
  return { totp: await totp, recoveryCodesLeft: (await codes).filter((code) => code.usedAt === null).length, privilegedRoles: privilegedRolesOf(user.roles) };
}

function event(type: AuditEvent['type'], user: User, change: FactorChange, details: Record<string, unknown>, allow = true, reasons: string[] = []): AuditEvent {
  return {
    type,
    ...(change.requestId ? { requestId: change.requestId } : {}),
    actor: user.id,
    subject: user.id,
    ...(reasons.length > 0 || !allow ? { decision: { allow, reasons } } : {}),
    details: { ...details, source_address: change.sourceAddress },
  };
}

export type ConfirmOutcome =
  | { ok: true; factor: TotpFactor; /** Shown once; absent for a person holding a privileged role. */ recoveryCodes?: string[] }
  | { ok: false; reason: 'not_pending' | 'wrong_code' };

/**
 * Confirms the person's pending authenticator with a first code from it, from the session that
 * began the enrolment (`sessionId`; from any other it is `not_pending`): the authenticator becomes
 * usable to sign in, the code's time step counts as used (it cannot sign in afterwards), and —
 * unless the person holds a privileged role — ten new recovery codes replace any old ones. One
 * transaction with `user.factor_enrolled` (and `user.recovery_codes_generated`) and the
 * `factor.added` alert. A wrong code
 * changes nothing (`user.factor_failed`, stage enrolment; not a failed login: the person is
 * already signed in).
 */
export async function confirmTotpEnrolment(ctx: FactorContext, user: User, sessionId: string, code: string, change: FactorChange): Promise<ConfirmOutcome> {
  const row = await totpRowOf(ctx, user.id);
  if (!row || row.confirmed_at !== null) return { ok: false, reason: 'not_pending' };
  const keys = ctx.identity.factorKeys;
  const secret = openPendingTotpSecret(keys, row, sessionId);
  if (secret === undefined) return { ok: false, reason: 'not_pending' };
  const now = ctx.clock.now();
  const check = await checkTotpCode(secret, code, now, null);
  if (!check.valid) {
    await ctx.audit.record(event('user.factor_failed', user, change, { factor: 'totp', credential: row.id, stage: 'enrolment' }, false, [check.reason]));
    return { ok: false, reason: 'wrong_code' };
  }
  const flight = ctx.storage.flight();
  void flight.run(recordTotpStep(ctx, row.id, check.step, now, { resealed: sealConfirmedTotpSecret(keys, row, secret) }), { rows: 1, otherwise: 'not_pending' });
  // A factor added: the person is alerted (src/signals/alerts.ts), in the transaction that confirms it.
  void flight.run(alertInsert(ctx.storage.db, ctx.clock, { type: 'factor.added', subject: user.id, data: { factor: 'totp', credential: row.id, user: user.id, source_address: change.sourceAddress } }));
  const events = [event('user.factor_enrolled', user, change, { factor: 'totp', credential: row.id })];
  const privileged = privilegedRolesOf(user.roles);
  const recoveryCodes = privileged.length === 0 ? replaceRecoveryCodes(ctx, flight, user.id, now) : undefined;
  if (recoveryCodes) events.push(event('user.recovery_codes_generated', user, change, { factor: 'recovery_code', count: recoveryCodes.length, with: row.id }));
  try {
    await ctx.audit.commit(flight, events);
  } catch (error) {
    // Confirmed (or replaced) by another request meanwhile.
    if (refusedFor(error, 'not_pending')) return { ok: false, reason: 'not_pending' };
    throw error;
  }
  const factor: TotpFactor = { id: row.id, userId: user.id, createdAt: Number(row.created_at), confirmedAt: now, lastUsedAt: now };
  return { ok: true, factor, ...(recoveryCodes ? { recoveryCodes } : {}) };
}

export type TotpRemoval =
  /** `setCookie`: the remover's session, continued under a new id (a confirmed authenticator removed from `change.session`). */
  | { removed: true; setCookie?: string }
  | { removed: false; reason: 'not_found' }
  | { removed: false; reason: 'last_required_factor'; required: Acr };

/**
 * Removes the person's authenticator (confirmed or pending) and their recovery codes, in one
 * transaction with `user.factor_removed` and the `factor.removed` alert; `not_found` when they
 * have none. A confirmed one stays when the person's roles ask more than a password and their
 * other factors (their passkeys) would reach less than both that level and what they reach now
 * (removalLeavesBelowMinimum, src/identity/factor-changes.ts): the authenticator that is the only
 * factor meeting a two-step minimum — else the person's password alone would then enrol the next
 * one. `last_required_factor` then, with `user.factor_removal_refused`. The person's row is locked
 * while deciding (PostgreSQL), as a passkey's removal locks it: two removals at once cannot each
 * leave the other's factor as the last. (An authenticator signs nobody in without the password, so
 * removing it never leaves a person nothing to sign in with: no `last_sign_in_factor` here.)
 *
 * Removing a confirmed one signs the person out everywhere but in `change.session`, which goes on
 * under a new id (`setCookie`), in the same transaction (src/identity/factors/sign-out-others.ts):
 * a lost phone's sessions end with it. `user.factor_removed` says what ended. An unconfirmed one
 * signed nobody in, and ends nothing.
 */
export async function removeTotp(ctx: FactorContext, user: User, change: FactorChange, minimums?: RoleMinimums): Promise<TotpRemoval> {
  // The minimums apply sets (cached per process, src/identity/role-requirements.ts).
  const roleLevels = minimums ?? (await roleMinimums(ctx));
  return ctx.audit.recordWith(async (trx) => {
    const person = await trx
      .selectFrom('users')
      .select(['roles', 'password_hash'])
      .where('id', '=', user.id)
      .$if(isPostgres(trx), (qb) => qb.forUpdate())
      .executeTakeFirst();
    const factor = await trx.selectFrom('totp_factors').select(['id', 'confirmed_at']).where('user_id', '=', user.id).executeTakeFirst();
    if (!person || !factor) return { value: { removed: false, reason: 'not_found' } as TotpRemoval, events: [] };
    // The roles of the locked row: a role given meanwhile counts.
    const required = minimumAcrFor(roleLevels, JSON.parse(person.roles) as string[]);
    if (required && factor.confirmed_at !== null) {
      const passkeys = (await trx.selectFrom('passkeys').selectAll().where('user_id', '=', user.id).execute()).map(passkeyFromRow);
      const password = person.password_hash !== null;
      if (removalLeavesBelowMinimum(required, { passkeys, totp: true, password }, { passkeys, totp: false, password }, ctx.config.passkeyAttestation)) {
        return {
          value: { removed: false, reason: 'last_required_factor', required } as TotpRemoval,
          events: [event('user.factor_removal_refused', user, change, { factor: 'totp', credential: factor.id, required_acr: required }, false, ['last_required_factor'])],
        };
      }
    }
    await trx.deleteFrom('totp_factors').where('id', '=', factor.id).execute();
    const codes = await trx.deleteFrom('recovery_codes').where('user_id', '=', user.id).executeTakeFirst();
    const signedOut = factor.confirmed_at !== null ? await signOutOthersIn(ctx, trx, user.id, change.session, change.requestId) : undefined;
    const ended = signedOut ? { sessions_ended: signedOut.ended.sessions_ended } : {};
    await alertInsert(trx, ctx.clock, { type: 'factor.removed', subject: user.id, data: { factor: 'totp', credential: factor.id, user: user.id, recovery_codes_removed: Number(codes.numDeletedRows), ...ended } }).execute();
    return {
      value: (signedOut?.continued ? { removed: true, setCookie: signedOut.continued.setCookie } : { removed: true }) as TotpRemoval,
      events: [
        event('user.factor_removed', user, change, {
          factor: 'totp',
          credential: factor.id,
          was_confirmed: factor.confirmed_at !== null,
          recovery_codes_removed: Number(codes.numDeletedRows),
          ...signedOut?.ended,
        }),
        ...(signedOut?.events ?? []),
      ],
    };
  });
}

export type RegenerateOutcome = { ok: true; recoveryCodes: string[] } | { ok: false; reason: 'privileged_role' | 'no_authenticator' };

/**
 * Ten new recovery codes for the person, the old ones void in the same transaction
 * (`user.recovery_codes_generated`). Refused for a person holding a privileged role, and for one
 * without a confirmed authenticator (codes stand in for it).
 */
export async function regenerateRecoveryCodes(ctx: FactorContext, user: User, change: FactorChange): Promise<RegenerateOutcome> {
  if (privilegedRolesOf(user.roles).length > 0) return { ok: false, reason: 'privileged_role' };
  const row = await totpRowOf(ctx, user.id);
  if (!row || row.confirmed_at === null) return { ok: false, reason: 'no_authenticator' };
  const flight = ctx.storage.flight();
  const now = ctx.clock.now();
  // Only while the authenticator they stand in for is still there.
  void flight.run(ctx.storage.db.updateTable('totp_factors').set({ id: row.id }).where('id', '=', row.id).where('confirmed_at', 'is not', null), { rows: 1, otherwise: 'no_authenticator' });
  const recoveryCodes = replaceRecoveryCodes(ctx, flight, user.id, now);
  try {
    await ctx.audit.commit(flight, [event('user.recovery_codes_generated', user, change, { factor: 'recovery_code', count: recoveryCodeCount, with: row.id, replaced: true })]);
  } catch (error) {
    if (refusedFor(error, 'no_authenticator')) return { ok: false, reason: 'no_authenticator' };
    throw error;
  }
  return { ok: true, recoveryCodes };
}

/** Deletes everything of a person's factors, with the person (src/identity/lifecycle.ts deleteUser). */
export async function deleteFactorsOf(trx: Transaction<Database>, userId: string): Promise<void> {
  await trx.deleteFrom('totp_factors').where('user_id', '=', userId).execute();
  await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
  await trx.deleteFrom('account_notices').where('user_id', '=', userId).execute();
  await trx.deleteFrom('pending_sign_ins').where('user_id', '=', userId).execute();
}
