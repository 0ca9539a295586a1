import type { Expression, Kysely, Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { revokeGrantIn } from '../authorization/consent.ts';
import { forgetSignInsOf } from '../authorization/interactions.ts';
import { deleteFactorsOf } from './factors/enrolment.ts';
import { endPendingSignInsOf } from './factors/pending.ts';
import { endSessionsOfStatement } from './sessions.ts';
import type { Context } from '../context.ts';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { cutOffAt } from '../storage/cut-off.ts';

/**
 * The person rule of token liveness and the lifecycle steps that end a person's tokens
 * (RFC 9700 §4.14.2: a refresh token is revoked when the person's authorization ends, and the
 * access tokens issued under it stop being accepted at once).
 *
 * A person's tokens work only while the person exists, may hold tokens, and the token was issued
 * after the person's cut-off (`users.tokens_valid_after`):
 * - an administrator's lock (`status: locked`), `status: disabled` and deletion end every token by
 *   status, and also set the cut-off, so unlocking later does not bring the old tokens back;
 * - a password reset and "sign out everywhere" set the cut-off only: the person stays active and a
 *   new login gets new, live tokens;
 * - the automatic lockout after consecutive failed passwords (src/identity/login.ts) is NOT a
 *   compromise: anyone who knows a username can cause it, so it stops password logins only and
 *   leaves the person's tokens working (otherwise it would let an outsider cut a person off from
 *   every application). An administrator who believes the account is compromised locks it (or
 *   signs the person out everywhere) and that ends the tokens.
 * Each of those steps, in one transaction with its status change: sets the cut-off, revokes the
 * person's refresh tokens (the refresh grant then answers invalid_grant), discards their unredeemed
 * authorization codes, forgets their sign-ins in pending interactions, ends their browser sessions, and (deletion only) revokes their consent
 * grants; one audit event names what was ended.
 *
 * A write that takes a role away from a person who may hold tokens (`roles_removed`: the admin API's
 * PUT and PATCH, apply; src/identity/users.ts `upsertUser`) ends their tokens as "sign out
 * everywhere" does, and says which roles went: the scopes of the tokens they hold were decided for
 * the roles they held (an administrator's `admin:write`), and a token or refresh token issued before
 * must not outlive the decision to take that away. The person stays active; a new sign-in gets
 * tokens decided on the roles they hold now. A write that only adds or keeps roles ends nothing.
 *
 * A risk suspension of a person on a suspected compromise (`suspended`: src/risk/anomalies/store.ts
 * `suspendIn`, in the evaluation's transaction) ends their tokens as "sign out everywhere" does;
 * reinstating them later brings none back: they sign in again.
 */

/** What a person's status allows, as stored. */
interface Standing {
  status: Database['users']['status'];
  lock_reason: Database['users']['lock_reason'];
  tokens_valid_after: number | string | bigint | null;
}

/** The steps that end a person's tokens, as their audit event types name them. */
export type LifecycleAction = 'locked' | 'disabled' | 'password_reset' | 'signed_out_everywhere' | 'deleted' | 'recovery' | 'offboarded' | 'roles_removed' | 'suspended';

const eventTypes = {
  locked: 'user.locked',
  disabled: 'user.disabled',
  password_reset: 'user.password_reset',
  signed_out_everywhere: 'user.signed_out_everywhere',
  deleted: 'user.deleted',
  // An approved recovery of a lost authenticator (src/identity/recovery): the person stays active.
  recovery: 'recovery.access_ended',
  // A leaver (src/lifecycle/leaver.ts): disabled, and their consent grants revoked as on deletion.
  offboarded: 'user.offboarded',
  // A write that takes a role away (src/identity/users.ts upsertUser): "sign out everywhere", for that reason.
  roles_removed: 'user.signed_out_everywhere',
  // A risk suspension on a suspected compromise (src/risk/anomalies/store.ts suspendIn): "sign out
  // everywhere", for that reason; sign-in and new tokens stay refused until reinstated.
  suspended: 'user.signed_out_everywhere',
} as const satisfies Record<LifecycleAction, AuditEvent['type']>;

/**
 * Whether a person in this standing may hold working tokens at all (the cut-off aside): active, or
 * locked only by the automatic lockout after failed logins (an administrator's lock ends them).
 */
export function mayHoldTokens(status: string, lockReason: string | null): boolean {
  return status === 'active' || (status === 'locked' && lockReason === 'failed_logins');
}

/**
 * The person rule of token liveness: whether a token of person `userId` issued at `issuedAtMs`
 * (epoch ms) may still work. One read by primary key. Fails closed: an unknown person (deleted)
 * has no live tokens. A token's `iat` has a resolution of a second, so a token issued in the same
 * second as the cut-off counts as issued before it (dead).
 */
export async function isPersonTokenLive(db: Kysely<Database>, userId: string, issuedAtMs: number): Promise<boolean> {
  if (userId.length > 64) return false;
  const row = await db.selectFrom('users').select(['status', 'lock_reason', 'tokens_valid_after']).where('id', '=', userId).executeTakeFirst();
  return liveUnder(row, issuedAtMs);
}

/** What the person rule of token liveness reads of a person. */
export type PersonStanding = Pick<Database['users'], 'status' | 'lock_reason' | 'tokens_valid_after'>;

/** The person rule of token liveness (`isPersonTokenLive`) on a standing already read; undefined (no such person) fails closed. */
export function liveUnder(standing: PersonStanding | undefined, issuedAtMs: number): boolean {
  if (!standing || !mayHoldTokens(standing.status, standing.lock_reason)) return false;
  return standing.tokens_valid_after === null || issuedAtMs > Number(standing.tokens_valid_after);
}

/**
 * The standing of the person `personId` names (a one-row subquery: the flight also reads what
 * names them, a refresh token by its hash), read as a statement of `flight`: the token's rules then
 * cost no round trip of their own. Settles once the flight has landed; undefined for no person.
 */
export function personStandingIn(flight: Flight, db: Kysely<Database>, personId: Expression<string | null>): Promise<PersonStanding | undefined> {
  const standing = flight.run(db.selectFrom('users').select(['status', 'lock_reason', 'tokens_valid_after']).where('id', '=', personId)).then((read) => read.rows[0]);
  // A caller refused before it asks for the standing (an unknown token) must not leave a failed read unhandled.
  standing.catch(() => undefined);
  return standing;
}

/** What one lifecycle step ended. */
export interface EndedAccess {
  refreshTokensRevoked: number;
  sessionsEnded: number;
  codesDiscarded: number;
  grantsRevoked: number;
}

/**
 * Sets the person's cut-off to `now` and nothing else, inside the caller's transaction: every
 * access token issued until now stops working, while sessions, consent grants and refresh tokens
 * stay. For a KYC freeze (src/risk/kyc/changes.ts): the person may still sign in to their account
 * pages, and no token is issued to them while the freeze lasts (src/risk/kyc/enforce.ts).
 */
export async function cutOffPersonTokens(trx: Transaction<Database>, userId: string, now: number): Promise<void> {
  await trx.updateTable('users').set({ tokens_valid_after: cutOffAt(now) }).where('id', '=', userId).execute();
}

/**
 * Ends everything person `userId` holds, inside the caller's transaction (the one that changes
 * their status, password or row): sets the cut-off to `now`, revokes their refresh tokens, discards
 * their unredeemed codes, ends their sessions; for `deleted` and `offboarded`, also revokes their consent grants
 * (whose `consent.revoked` events are returned to record in the same transaction).
 */
export async function endPersonAccess(
  trx: Transaction<Database>,
  now: number,
  userId: string,
  action: LifecycleAction,
  actor: string,
): Promise<{ ended: EndedAccess; events: AuditEvent[] }> {
  await trx.updateTable('users').set({ tokens_valid_after: cutOffAt(now) }).where('id', '=', userId).execute();
  // Through the grants (indexed by user_id), whose refresh tokens are indexed by grant_id.
  const ofPerson = trx.selectFrom('grants').select('id').where('user_id', '=', userId);
  const revoked = await trx.updateTable('refresh_tokens').set({ state: 'revoked' }).where('grant_id', 'in', ofPerson).where('state', '=', 'active').where('expires_at', '>', now).executeTakeFirst();
  // Expired, used and replaced tokens of the same families too (not counted): presenting one later
  // is "revoked", not a reuse that would revoke the consent grant.
  await trx.updateTable('refresh_tokens').set({ state: 'revoked' }).where('grant_id', 'in', ofPerson).where('state', 'in', ['active', 'rotated', 'superseded']).execute();
  const events: AuditEvent[] = [];
  if (action === 'deleted' || action === 'offboarded') {
    const grants = await trx.selectFrom('grants').select('id').where('user_id', '=', userId).where('revoked_at', 'is', null).execute();
    for (const { id } of grants) {
      const event = await revokeGrantIn(trx, now, id, { actor, reason: action === 'deleted' ? 'person deleted' : 'person offboarded' });
      if (event) events.push(event);
    }
  }
  // A sign-in made before, waiting in an interaction (on the consent page), must not yield a code;
  // nor one waiting for its second factor (src/identity/factors/pending.ts).
  await forgetSignInsOf(trx, userId);
  await endPendingSignInsOf(trx, userId, now);
  const codes = await trx.deleteFrom('authorization_codes').where('user_id', '=', userId).where('redeemed_at', 'is', null).executeTakeFirst();
  const sessions = await endSessionsOfStatement(trx, userId, now, action === 'password_reset' ? 'password_changed' : action).executeTakeFirst();
  return {
    ended: {
      refreshTokensRevoked: Number(revoked.numUpdatedRows),
      sessionsEnded: Number(sessions.numUpdatedRows),
      codesDiscarded: Number(codes.numDeletedRows),
      grantsRevoked: events.length,
    },
    events,
  };
}

/**
 * The roles `before` holds that `after` does not (empty: the write takes none away), in `before`'s
 * order. A write that takes one away ends the person's tokens (`roles_removed`).
 */
export function rolesRemoved(before: readonly string[], after: readonly string[]): string[] {
  return before.filter((role) => !after.includes(role));
}

/**
 * The one audit event of a lifecycle step, naming what it ended (and, for a write that also took
 * roles away, which: `roles_removed`).
 */
export function lifecycleEvent(
  action: LifecycleAction,
  userId: string,
  actor: string,
  ended: EndedAccess,
  extra: { requestId?: string; via?: string; rolesRemoved?: readonly string[] } = {},
): AuditEvent {
  return {
    type: eventTypes[action],
    ...(extra.requestId ? { requestId: extra.requestId } : {}),
    actor,
    subject: userId,
    decision: { allow: false, reasons: [action === 'locked' ? 'admin' : action] },
    details: {
      ...(extra.via ? { via: extra.via } : {}),
      ...(extra.rolesRemoved && extra.rolesRemoved.length > 0 ? { roles_removed: [...extra.rolesRemoved] } : {}),
      refresh_tokens_revoked: ended.refreshTokensRevoked,
      sessions_ended: ended.sessionsEnded,
      codes_discarded: ended.codesDiscarded,
      ...(action === 'deleted' || action === 'offboarded' ? { grants_revoked: ended.grantsRevoked } : {}),
    },
  };
}

type LifecycleContext = Pick<Context, 'storage' | 'clock' | 'audit'>;

/**
 * "Sign out everywhere" by an administrator: the person stays active, every session, refresh
 * token and access token they hold ends now (`user.signed_out_everywhere`). False for an unknown
 * username (matched exactly, as the admin API addresses people).
 */
export async function signOutEverywhere(ctx: LifecycleContext, username: string, by: { actor: string; requestId?: string }): Promise<boolean> {
  return ctx.audit.recordWith(async (trx) => {
    const user = await trx.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
    if (!user) return { value: false, events: [] };
    const { ended, events } = await endPersonAccess(trx, ctx.clock.now(), user.id, 'signed_out_everywhere', by.actor);
    return { value: true, events: [...events, lifecycleEvent('signed_out_everywhere', user.id, by.actor, ended, { ...by, via: 'admin-api' })] };
  });
}

/**
 * Deletes a person: their row goes (so every token naming them is dead: the person rule fails
 * closed) with their passkeys, upstream links and credential hold, their consent grants are
 * revoked, refresh tokens, codes and sessions ended, in one transaction with `user.deleted` (which
 * names them by id only). False for an unknown username.
 */
export async function deleteUser(ctx: LifecycleContext, username: string, by: { actor: string; requestId?: string }): Promise<boolean> {
  return ctx.audit.recordWith(async (trx) => {
    const user = await trx.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
    if (!user) return { value: false, events: [] };
    const { ended, events } = await endPersonAccess(trx, ctx.clock.now(), user.id, 'deleted', by.actor);
    await deleteFactorsOf(trx, user.id);
    // Their passkeys go with them: a credential must never sign in a person who no longer exists.
    const passkeys = await trx.deleteFrom('passkeys').where('user_id', '=', user.id).executeTakeFirst();
    // Their upstream identities too: a link to nobody would refuse that identity for good, and
    // keep personal data (the upstream subject) of a person who is gone.
    await trx.deleteFrom('user_links').where('user_id', '=', user.id).execute();
    // And a leaver's credential hold (src/lifecycle/credential-hold.ts): it holds nobody now, and
    // says when a person who is gone was offboarded.
    await trx.deleteFrom('credential_holds').where('user_id', '=', user.id).execute();
    await trx.deleteFrom('users').where('id', '=', user.id).execute();
    const event = lifecycleEvent('deleted', user.id, by.actor, ended, { ...by, via: 'admin-api' });
    event.details = { ...event.details, passkeys_removed: Number(passkeys.numDeletedRows) };
    return { value: true, events: [...events, event] };
  });
}
