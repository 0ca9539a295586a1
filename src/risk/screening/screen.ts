import type { Context } from '../../context.ts';
import { listUsers, type User } from '../../identity/users.ts';
import type { ScreeningIndex, ScreeningSubject } from './matcher.ts';
import { recordScreeningHit, type ScreeningMatch, type ScreeningMoment } from './matches.ts';
import { dateOfBirthPattern } from './normalize.ts';

/**
 * When principals are screened (docs/risk.md "Sanctions and PEP screening"): people by their name
 * (`users[].name`) and date of birth (`attributes.date_of_birth`), legal entities by their legal
 * name and LEI —
 * - at apply time, every person and legal entity the document names (src/apply);
 * - at each sign-in, the person (src/identity/login.ts, src/identity/passkeys/login.ts): the
 *   list is an in-memory index, so a sign-in that matches nothing costs no round trip;
 * - when the list changes, everyone (`rescreenOnListChange`, run by the service pass);
 * - and the counterparties of authorization_details at issuance (../kyc/enforce.ts).
 * A hit freezes the principal pending compliance's decision (./matches.ts).
 */

type ScreeningDeps = Pick<Context, 'audit' | 'clock' | 'risk'>;

/** A person as screening sees them. */
export function personSubject(user: Pick<User, 'name' | 'attributes'>): ScreeningSubject {
  const dob = user.attributes.date_of_birth;
  return {
    type: 'person',
    ...(user.name ? { name: user.name } : {}),
    ...(typeof dob === 'string' && dateOfBirthPattern.test(dob) ? { dateOfBirth: dob } : {}),
  };
}

/** Screens one person; records (and freezes on) each new hit. Costs nothing but the index lookup when nothing matches. */
export async function screenPerson(ctx: ScreeningDeps, user: Pick<User, 'id' | 'name' | 'attributes'>, at: ScreeningMoment, index = ctx.risk.screening.index): Promise<ScreeningMatch[]> {
  if (!index) return [];
  return record(ctx, { type: 'User', id: user.id }, index, personSubject(user), at);
}

/** Screens one legal entity by its legal name and LEI. */
export async function screenLegalEntity(ctx: ScreeningDeps, entity: { lei: string; name: string }, at: ScreeningMoment, index = ctx.risk.screening.index): Promise<ScreeningMatch[]> {
  if (!index) return [];
  return record(ctx, { type: 'LegalEntity', id: entity.lei }, index, { type: 'entity', name: entity.name, lei: entity.lei }, at);
}

async function record(ctx: ScreeningDeps, principal: { type: 'User' | 'LegalEntity'; id: string }, index: ScreeningIndex, subject: ScreeningSubject, at: ScreeningMoment): Promise<ScreeningMatch[]> {
  const matches: ScreeningMatch[] = [];
  for (const hit of index.match(subject)) {
    const match = await recordScreeningHit(ctx, principal, hit, index.digest, at);
    if (match) matches.push(match);
  }
  return matches;
}

/** Screens every person and every legal entity against `index`; returns the new matches. */
export async function screenEveryone(ctx: Context, index: ScreeningIndex, at: ScreeningMoment = 'list_change'): Promise<ScreeningMatch[]> {
  const matches: ScreeningMatch[] = [];
  for (const user of await listUsers(ctx)) matches.push(...(await screenPerson(ctx, user, at, index)));
  for (const entity of (await ctx.entities.snapshot()).legalEntities.values()) matches.push(...(await screenLegalEntity(ctx, entity, at, index)));
  return matches;
}

/** How long a node may take to re-screen everyone before another takes over. */
export const rescreenLeaseMs = 15 * 60_000;

/**
 * The service pass's screening step: this node loads its list file again when it changed; then,
 * when nobody has screened everyone against the version it holds, the node that takes that
 * version's row (an insert, or a conditional update of a lease that ran out: one node at a time)
 * screens everyone and records when. Also what screens everyone the first time a list is
 * configured. A node still holding an older version (its file not yet replaced) does not screen
 * again against it. Returns whether this node screened everyone.
 */
export async function rescreenOnListChange(ctx: Context): Promise<boolean> {
  ctx.risk.screening.reload();
  const index = ctx.risk.screening.index;
  if (!index) return false;
  const db = ctx.storage.db;
  const row = await db.selectFrom('screening_lists').selectAll().where('digest', '=', index.digest).executeTakeFirst();
  if (row?.screened_at != null) return false;
  const now = ctx.clock.now();
  const claimed = row
    ? Number(
        (
          await db
            .updateTable('screening_lists')
            .set({ lease_until: now + rescreenLeaseMs })
            .where('digest', '=', index.digest)
            .where('screened_at', 'is', null)
            .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
            .executeTakeFirst()
        ).numUpdatedRows,
      ) === 1
    : (await db.insertInto('screening_lists').values({ digest: index.digest, screened_at: null, lease_until: now + rescreenLeaseMs }).onConflict((oc) => oc.column('digest').doNothing()).returning('digest').execute()).length === 1;
  if (!claimed) return false;
  await screenEveryone(ctx, index);
  await db.updateTable('screening_lists').set({ screened_at: ctx.clock.now(), lease_until: null }).where('digest', '=', index.digest).execute();
  return true;
}
