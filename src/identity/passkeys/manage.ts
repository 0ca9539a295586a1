import { isPostgres } from '../../audit/dialect.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import type { Acr } from '../acr.ts';
import { removalLeavesBelowMinimum, removalLocksOut, signsInThroughUpstream } from '../factor-changes.ts';
import { signOutOthersIn } from '../factors/sign-out-others.ts';
import { minimumAcrFor, roleMinimums, type RoleMinimums } from '../role-requirements.ts';
import { passkeyFromRow } from './store.ts';

/** A person managing their own passkeys on the account page. */

type ManageContext = Pick<Context, 'storage' | 'clock' | 'audit' | 'config'>;

const passkeyIdPattern = /^[0-9a-f-]{36}$/;

/** Renames one of the person's passkeys (`passkey.renamed`); false when they hold none with this id. */
export async function renamePasskey(ctx: ManageContext, input: { userId: string; passkeyId: string; name: string; requestId?: string }): Promise<boolean> {
  if (!passkeyIdPattern.test(input.passkeyId)) return false;
  return ctx.audit.recordWith(async (trx) => {
    const row = await trx
      .updateTable('passkeys')
      .set({ name: input.name })
      .where('id', '=', input.passkeyId)
      .where('user_id', '=', input.userId)
      .returning(['credential_id'])
      .executeTakeFirst();
    if (!row) return { value: false, events: [] };
    return {
      value: true,
      events: [
        {
          type: 'passkey.renamed',
          ...(input.requestId ? { requestId: input.requestId } : {}),
          actor: input.userId,
          subject: input.userId,
          details: { credential: row.credential_id, passkey: input.passkeyId, name: input.name },
        },
      ],
    };
  });
}

export type RemovalOutcome =
  /** `setCookie`: the remover's session, continued under a new id (when `keepSession` was given and live). */
  | { removed: true; setCookie?: string }
  | { removed: false; reason: 'not_found' }
  | { removed: false; reason: 'last_required_factor'; required: Acr }
  /** The person has no password: nothing would be left to sign in with (removalLocksOut). */
  | { removed: false; reason: 'last_sign_in_factor' };

/**
 * Removes one of the person's passkeys (`passkey.removed` and the `factor.removed` alert), unless their roles ask more than a
 * password (apply's role minimums, src/identity/role-requirements.ts) and the factors left — their other passkeys, their
 * authenticator app with their password — would reach less than both that level and what they reach now
 * (removalLeavesBelowMinimum, src/identity/factor-changes.ts): the last passkey of a person whose
 * role asks one, the last hardware-attested one of a role that asks `:phrh`, or the only passkey
 * of a person without an authenticator whose role asks `:mfa`. Then nothing is
 * removed and `passkey.removal_refused` is recorded. Nor is the last passkey of a person who has
 * no password nor an upstream identity (`last_sign_in_factor`, removalLocksOut): nothing would be
 * left to sign them in. (Adding a new passkey first, then removing
 * the old one, always works.) The person's row is locked while deciding (PostgreSQL; SQLite
 * transactions are serial), as removing the authenticator locks it, so two removals at once
 * cannot each leave the other's factor as the last and both succeed.
 *
 * A removal signs the person out everywhere but in `keepSession` (the session removing it, which
 * goes on under a new id: `setCookie`), in its transaction (src/identity/factors/sign-out-others.ts):
 * a lost passkey's sessions, and every refresh and access token, end with it. `passkey.removed`
 * says what ended.
 */
export async function removePasskey(
  ctx: ManageContext,
  input: { userId: string; passkeyId: string; requestId?: string; minimums?: RoleMinimums; keepSession?: string },
): Promise<RemovalOutcome> {
  if (!passkeyIdPattern.test(input.passkeyId)) return { removed: false, reason: 'not_found' };
  const policy = ctx.config.passkeyAttestation;
  // The minimums apply sets (cached per process, src/identity/role-requirements.ts).
  const minimums = input.minimums ?? (await roleMinimums(ctx));
  const base = { ...(input.requestId ? { requestId: input.requestId } : {}), actor: input.userId, subject: input.userId };
  return ctx.audit.recordWith(async (trx) => {
    const person = await trx
      .selectFrom('users')
      .select(['roles', 'password_hash'])
      .where('id', '=', input.userId)
      .$if(isPostgres(trx), (qb) => qb.forUpdate())
      .executeTakeFirst();
    const passkeys = (await trx.selectFrom('passkeys').selectAll().where('user_id', '=', input.userId).execute()).map(passkeyFromRow);
    const target = passkeys.find((p) => p.id === input.passkeyId);
    if (!person || !target) return { value: { removed: false, reason: 'not_found' } as RemovalOutcome, events: [] };
    const required = minimumAcrFor(minimums, JSON.parse(person.roles) as string[]);
    const totp = (await trx.selectFrom('totp_factors').select('id').where('user_id', '=', input.userId).where('confirmed_at', 'is not', null).executeTakeFirst()) !== undefined;
    const password = person.password_hash !== null;
    // An upstream identity matters only to a person without a password (removalLocksOut).
    const others = { totp, password, upstream: !password && (await signsInThroughUpstream(trx, input.userId)) };
    const left = passkeys.filter((p) => p !== target);
    if (required && removalLeavesBelowMinimum(required, { passkeys, ...others }, { passkeys: left, ...others }, policy)) {
      return {
        value: { removed: false, reason: 'last_required_factor', required } as RemovalOutcome,
        events: [
          {
            type: 'passkey.removal_refused',
            ...base,
            decision: { allow: false, reasons: ['last_required_factor'] },
            details: { credential: target.credentialId, passkey: target.id, required_acr: required },
          },
        ],
      };
    }
    if (removalLocksOut({ passkeys, ...others }, { passkeys: left, ...others })) {
      return {
        value: { removed: false, reason: 'last_sign_in_factor' } as RemovalOutcome,
        events: [{ type: 'passkey.removal_refused', ...base, decision: { allow: false, reasons: ['last_sign_in_factor'] }, details: { credential: target.credentialId, passkey: target.id } }],
      };
    }
    await trx.deleteFrom('passkeys').where('id', '=', target.id).execute();
    const { ended, continued, events } = await signOutOthersIn(ctx, trx, input.userId, input.keepSession, input.requestId);
    await alertInsert(trx, ctx.clock, {
      type: 'factor.removed',
      subject: input.userId,
      data: { factor: 'passkey', credential: target.credentialId, passkey: target.id, user: input.userId, sessions_ended: ended.sessions_ended },
    }).execute();
    return {
      value: (continued ? { removed: true, setCookie: continued.setCookie } : { removed: true }) as RemovalOutcome,
      events: [{ type: 'passkey.removed', ...base, details: { credential: target.credentialId, passkey: target.id, ...ended } }, ...events],
    };
  });
}
