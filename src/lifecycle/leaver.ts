import type { Transaction } from 'kysely';
import { flagAgentsOwnedByIn } from '../agents/flags.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { deleteFactorsOf } from '../identity/factors/enrolment.ts';
import { endPersonAccess, lifecycleEvent } from '../identity/lifecycle.ts';
import { normalizeUsername } from '../identity/users.ts';
import { isoTime } from '../mandates/instant.ts';
import { markForReassignmentIn, revokeMandatesGrantedToIn } from '../mandates/store.ts';
import { alertInsert } from '../signals/alerts.ts';
import type { Database } from '../storage/schema.ts';
import { holdCredentialsIn } from './credential-hold.ts';

/**
 * The leaver (issue 23, docs/lifecycle.md "Joiners, movers, leavers"): one transaction that ends
 * everything a person who left holds, and says so in one `user.offboarded` event.
 *
 * 1. the person is `disabled` (an administrator's state: no sign-in, no working token) and
 *    `offboarded_at` is set, so making them active again is a deliberate joiner step;
 * 2. their tokens end as on any disable (src/identity/lifecycle.ts `endPersonAccess`, action
 *    `offboarded`): the cut-off, refresh tokens, unredeemed codes, pending sign-ins, sessions — and
 *    their consent grants are revoked (each its `consent.revoked`);
 * 3. their credentials go: their password with their factors — TOTP, recovery codes, passkeys (a
 *    leaver never signs in with them again) — and the credentials are put on hold
 *    (./credential-hold.ts): nothing signs the person in, and no administrator gives them a
 *    password, until an approved recovery — so re-activating them (a rehire) brings back the same
 *    `sub` holding nothing, and a second, independent person stands between any administrator and
 *    that identity;
 * 4. mandates granted TO them are revoked (each its `mandate.revoked`);
 * 5. mandates they granted (signed for the grantor: `granted_by`) are marked for reassignment: in
 *    force only until the deadline, then they stop (the mandate liveness rule, src/mandates), and a
 *    `mandate.reassignment_required` alert goes out — the firm's authority does not vanish
 *    with the signatory, but it must be re-papered by someone still there;
 * 6. agents whose model they own (validated) are flagged, not disabled, with an `agent.owner_left`
 *    alert: an algorithm in production is not stopped by HR, but it needs a new owner.
 * The event names the person by id only and lists what ended by id and count (the log is
 * permanent; usernames are personal data).
 */

/** Who asked, and how. */
export interface OffboardOptions {
  /** Who asked: 'cli:alice', an admin client_id, 'scim:<client_id>', 'apply-prune'. */
  actor: string;
  via: 'cli' | 'admin-api' | 'scim' | 'apply-prune';
  reason?: string;
  /** Epoch ms until which mandates the person granted stay in force for reassignment; default: now + `config.offboardReassignmentDays`. */
  reassignmentDeadline?: number;
  /** Extra fields for the audit event's details (e.g. the apply document digest). */
  details?: Record<string, unknown>;
  /** The request that asked, for the audit events. */
  requestId?: string;
}

/** What an offboarding ended, by id and count. */
export interface OffboardEnded {
  sessions: number;
  refreshTokens: number;
  codes: number;
  /** Consent grants revoked (ids). */
  consentGrants: string[];
  factors: { totp: number; recoveryCodes: number; passkeys: number };
  /** Whether the person had a password, now revoked (their credentials are on hold either way). */
  password: boolean;
  /** Mandates granted to the person, revoked (ids). */
  mandatesRevoked: string[];
  /** Mandates the person granted, in force only until `deadline` (epoch ms). */
  mandatesForReassignment: { mandates: { id: string; v: number }[]; deadline: number };
  /** Agents whose model the person owned, flagged (ids). */
  agentsFlagged: string[];
}

export interface Offboarded {
  userId: string;
  username: string;
  ended: OffboardEnded;
  /** The `user.offboarded` event. */
  event: AuditEvent;
  /** Every event of the offboarding, `event` last (`consent.revoked`, `mandate.revoked` first): record them all in the same transaction. */
  events: AuditEvent[];
}

type Deps = Pick<Context, 'config' | 'clock'>;

const day = 86_400_000;

/**
 * Offboards person `userId` inside the caller's transaction and returns the events to record in it
 * (`events`; `event` is the `user.offboarded` among them). An unknown or already offboarded person:
 * undefined (nothing to end).
 */
export async function offboardPersonIn(ctx: Deps, trx: Transaction<Database>, now: number, userId: string, options: OffboardOptions): Promise<Offboarded | undefined> {
  if (userId.length > 64) return undefined;
  const person = await trx.selectFrom('users').select(['id', 'username', 'status', 'offboarded_at', 'password_hash']).where('id', '=', userId).executeTakeFirst();
  if (!person || (person.offboarded_at !== null && person.offboarded_at !== undefined)) return undefined;
  const deadline = options.reassignmentDeadline ?? now + ctx.config.offboardReassignmentDays * day;
  const actor = { actor: options.actor, ...(options.requestId ? { requestId: options.requestId } : {}) };

  // 1. Disabled and marked as offboarded; locked_at keeps when the account first stopped being active.
  await trx
    .updateTable('users')
    .set({ status: 'disabled', lock_reason: 'admin', offboarded_at: now, password_hash: null, updated_at: now, ...(person.status === 'active' ? { locked_at: now } : {}) })
    .where('id', '=', userId)
    .execute();
  // 2. Tokens, sessions, codes, consent grants.
  const access = await endPersonAccess(trx, now, userId, 'offboarded', options.actor);
  const events: AuditEvent[] = access.events.map((e) => (options.requestId ? { ...e, requestId: options.requestId } : e));
  // 3. The password went above; the factors (counted first: deleteFactorsOf says nothing of what
  // it removed); the hold, which only an approved recovery lifts.
  const count = async (table: 'totp_factors' | 'recovery_codes' | 'passkeys') =>
    Number((await trx.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).where('user_id', '=', userId).executeTakeFirstOrThrow()).n);
  const factors = { totp: await count('totp_factors'), recoveryCodes: await count('recovery_codes'), passkeys: await count('passkeys') };
  await deleteFactorsOf(trx, userId);
  await trx.deleteFrom('passkeys').where('user_id', '=', userId).execute();
  await holdCredentialsIn(trx, userId, now);
  // 4. Mandates granted to them.
  const mandatesRevoked = await revokeMandatesGrantedToIn(trx, now, userId, { reason: 'grantee offboarded' }, actor, events);
  // 5. Mandates they granted: until the deadline.
  const marked = await markForReassignmentIn(trx, now, userId, deadline);
  if (marked.length > 0) {
    await alertInsert(trx, ctx.clock, {
      type: 'mandate.reassignment_required',
      subject: userId,
      data: { user_id: userId, mandates: marked, reassign_by: isoTime(deadline), why: 'the person who granted them was offboarded' },
    }).execute();
  }
  // 6. Agents whose model they own.
  const agentsFlagged = await flagAgentsOwnedByIn(trx, now, userId, 'owner_offboarded');
  if (agentsFlagged.length > 0) {
    await alertInsert(trx, ctx.clock, { type: 'agent.owner_left', subject: userId, data: { user_id: userId, agents: agentsFlagged, flag: 'owner_offboarded' } }).execute();
  }

  const ended: OffboardEnded = {
    sessions: access.ended.sessionsEnded,
    refreshTokens: access.ended.refreshTokensRevoked,
    codes: access.ended.codesDiscarded,
    consentGrants: access.events.flatMap((e) => (e.type === 'consent.revoked' ? [String(e.details?.grant_id)] : [])).sort(),
    factors,
    password: person.password_hash !== null,
    mandatesRevoked,
    mandatesForReassignment: { mandates: marked, deadline },
    agentsFlagged,
  };
  const event = lifecycleEvent('offboarded', userId, options.actor, access.ended, { via: options.via, ...(options.requestId ? { requestId: options.requestId } : {}) });
  event.details = {
    ...options.details,
    ...event.details,
    ...(options.reason !== undefined ? { reason: options.reason } : {}),
    consent_grants_revoked: ended.consentGrants,
    // Counts only; `totp` is a name the audit guard keeps for secrets, so the authenticator app is `totp_factors`.
    factors_removed: { totp_factors: factors.totp, recovery_codes: factors.recoveryCodes, passkeys: factors.passkeys },
    // The password went too (a name the audit guard keeps for secrets, so said by the hold): back only through an approved recovery.
    credentials_held: true,
    mandates_revoked: mandatesRevoked,
    mandates_for_reassignment: marked,
    reassign_by: isoTime(deadline),
    agents_flagged: agentsFlagged,
  };
  return { userId, username: person.username, ended, event, events: [...events, event] };
}

/**
 * Offboards the person with this username (as stored: lowercase) in its own transaction, with its
 * events. Undefined for an unknown or already offboarded person.
 */
export async function offboardPerson(ctx: Pick<Context, 'config' | 'clock' | 'audit'>, username: string, options: OffboardOptions): Promise<Offboarded | undefined> {
  return ctx.audit.recordWith(async (trx) => {
    const person = await trx.selectFrom('users').select('id').where('username', '=', normalizeUsername(username)).executeTakeFirst();
    const done = person && (await offboardPersonIn(ctx, trx, ctx.clock.now(), person.id, options));
    return { value: done, events: done?.events ?? [] };
  });
}

/** What an offboarding ended, as the admin API and the CLI show it (ids and counts, ISO 8601 times). */
export function offboardedView(done: Offboarded): Record<string, unknown> {
  const e = done.ended;
  return {
    user_id: done.userId,
    username: done.username,
    status: 'disabled',
    ended: {
      sessions: e.sessions,
      refresh_tokens: e.refreshTokens,
      codes: e.codes,
      consent_grants: e.consentGrants,
      factors: { totp: e.factors.totp, recovery_codes: e.factors.recoveryCodes, passkeys: e.factors.passkeys },
      password_revoked: e.password,
      // Back only through an approved recovery (docs/recovery.md): re-activating them brings back no credential.
      credentials_held: true,
      mandates_revoked: e.mandatesRevoked,
      mandates_for_reassignment: { mandates: e.mandatesForReassignment.mandates, reassign_by: isoTime(e.mandatesForReassignment.deadline) },
      agents_flagged: e.agentsFlagged,
    },
  };
}
