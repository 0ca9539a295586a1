import { isPostgres } from '../../audit/dialect.ts';
import type { Context } from '../../context.ts';
import { alertInsert } from '../../signals/alerts.ts';
import { acr, acrRank, type Acr } from '../acr.ts';
import { minimumAcrFor, roleMinimums, type RoleMinimums } from '../role-requirements.ts';
import type { PasskeyAttestationPolicy } from './attestation.ts';
import { passkeyAcr, passkeyFromRow, type Passkey } from './store.ts';

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

export type RemovalOutcome = { removed: true } | { removed: false; reason: 'not_found' } | { removed: false; reason: 'last_required_factor'; required: Acr };

/**
 * Removes one of the person's passkeys (`passkey.removed` and the `factor.removed` alert), unless their roles ask a
 * phishing-resistant level (apply's role minimums, src/identity/role-requirements.ts) and the passkeys left would reach less than
 * both that level and what the person's passkeys reach now: the last passkey of a person whose
 * role asks one, or the last hardware-attested one of a role that asks `:phrh`. Then nothing is
 * removed and `passkey.removal_refused` is recorded. (Adding a new passkey first, then removing
 * the old one, always works.) The person's row is locked while deciding (PostgreSQL; SQLite
 * transactions are serial), so two removals at once cannot each leave the other's passkey as
 * the last and both succeed.
 */
export async function removePasskey(
  ctx: ManageContext,
  input: { userId: string; passkeyId: string; requestId?: string; minimums?: RoleMinimums },
): Promise<RemovalOutcome> {
  if (!passkeyIdPattern.test(input.passkeyId)) return { removed: false, reason: 'not_found' };
  const policy = ctx.config.passkeyAttestation;
  // The minimums apply sets (cached per process, src/identity/role-requirements.ts).
  const minimums = input.minimums ?? (await roleMinimums(ctx));
  const base = { ...(input.requestId ? { requestId: input.requestId } : {}), actor: input.userId, subject: input.userId };
  return ctx.audit.recordWith(async (trx) => {
    const person = await trx
      .selectFrom('users')
      .select(['roles'])
      .where('id', '=', input.userId)
      .$if(isPostgres(trx), (qb) => qb.forUpdate())
      .executeTakeFirst();
    const passkeys = (await trx.selectFrom('passkeys').selectAll().where('user_id', '=', input.userId).execute()).map(passkeyFromRow);
    const target = passkeys.find((p) => p.id === input.passkeyId);
    if (!person || !target) return { value: { removed: false, reason: 'not_found' } as RemovalOutcome, events: [] };
    const required = minimumAcrFor(minimums, JSON.parse(person.roles) as string[]);
    const left = passkeys.filter((p) => p !== target);
    if (required && lowersBelow(required, passkeys, left, policy)) {
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
    await trx.deleteFrom('passkeys').where('id', '=', target.id).execute();
    await alertInsert(trx, ctx.clock, { type: 'factor.removed', subject: input.userId, data: { factor: 'passkey', credential: target.credentialId, passkey: target.id, user: input.userId } }).execute();
    return { value: { removed: true } as RemovalOutcome, events: [{ type: 'passkey.removed', ...base, details: { credential: target.credentialId, passkey: target.id } }] };
  });
}

/** The strongest level a person's passkeys reach (-1: none). */
function reach(passkeys: readonly Passkey[], policy: PasskeyAttestationPolicy | undefined): number {
  return Math.max(-1, ...passkeys.map((p) => acrRank(passkeyAcr(p, policy))));
}

/**
 * Whether going from `before` to `after` loses a level the role needs: what is left reaches less
 * than the requirement and less than before. Only phishing-resistant requirements concern
 * passkeys (a password and TOTP meet `:mfa`).
 */
function lowersBelow(required: Acr, before: readonly Passkey[], after: readonly Passkey[], policy: PasskeyAttestationPolicy | undefined): boolean {
  const need = acrRank(required);
  if (need < acrRank(acr.phishingResistant)) return false;
  const now = reach(after, policy);
  return now < need && now < reach(before, policy);
}
