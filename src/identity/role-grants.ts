import type { Kysely, Transaction } from 'kysely';
import { openApprovalRequest, type ApprovalRequest } from '../approvals/requests.ts';
import { isPostgres } from '../audit/dialect.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { credentialsHeld } from '../lifecycle/credential-hold.ts';
import type { Database } from '../storage/schema.ts';
import { guardedRoles, isGuardedRole, roleConflict, roleGrantRole } from './roles.ts';
import type { PasswordSetter, User } from './users.ts';

/**
 * The grant of a guarded role with a second person's approval (segregation of duties,
 * docs/approvals.md `role_grant`). Through the admin API no write gives a person a guarded role
 * (src/identity/roles.ts `guardedRoles`; src/apply/index.ts `RoleGrantThroughApi`): a person
 * holding `admin` asks here, with a reason, and another person holding `admin` approves
 * (src/approvals/kinds/role-grant.ts) — never the one who asked, never the person receiving the
 * role (the one rule of src/approvals/requests.ts). Approving adds the role in the decision's
 * transaction (`user.role_granted`); a denial or expiry leaves the person as they were.
 *
 * The password step: whoever set a person's password through the admin API (`users.password_set_by`,
 * src/identity/users.ts) can sign in as them with it. That administrator neither asks for a guarded
 * role for the person (403, `set_password`) nor approves one (src/approvals/kinds/role-grant.ts),
 * and every approver is shown who set it and when. Through the admin API no write sets the password
 * of a person holding a guarded role or for whom a grant waits (`roleGrantWaiting`).
 */

/** How long a grant waits for its approval: a day, the approvals rule's longest. */
export const roleGrantTtlMs = 24 * 3600_000;

/** What the request stores (and every approver sees): never the person's username (personal data). */
export interface RoleGrantContent {
  role: string;
  reason: string;
  /** The id of the person who asked. */
  requested_by: string;
  /**
   * Who had set the person's password when the grant was asked (`users.password_set_by`: an
   * administrator's id, a client's id, `scim:<client>`; null for the operator), and when (RFC 3339);
   * both null when not known. Absent from requests opened before migration 0065. Not named
   * `password_…`: the content is in `approval.requested`, whose guard refuses a member named like
   * a secret (src/audit/guard.ts).
   */
  credential_set_by?: string | null;
  credential_set_at?: string | null;
}

/**
 * A grant the requester may not ask for (403 access_denied, recorded as `user.role_grant_refused`
 * with the reason): `set_password`, they set the person's password.
 */
export class RoleGrantRefused extends Error {
  readonly reason: 'set_password';
  constructor(message: string, reason: 'set_password') {
    super(message);
    this.reason = reason;
  }
}

/** Why a grant cannot be opened: the admin API answers each with its status. */
export class RoleGrantError extends Error {
  readonly status: 400 | 409;
  constructor(message: string, status: 400 | 409 = 400) {
    super(message);
    this.status = status;
  }
}

const reasonPattern = /^[^\p{Cc}]{1,500}$/u;

/**
 * Opens the grant of `role` to `subject`, asked by `requester` (an active person holding `admin`,
 * checked by the caller). Refused (RoleGrantError): a role that is not guarded (given with PUT or
 * PATCH as before), a person not active or whose credentials are on hold (a leaver), a role they
 * hold already, roles that cannot be one person's (`roleConflict`), a grant of the same role to
 * them already waiting, a missing reason. A requester who set the person's password
 * (`passwordSet.by`) is refused: RoleGrantRefused. The request carries who set it and when, for
 * the approver to see; in its transaction the person's row is read again (locked on PostgreSQL,
 * as a password write locks it) and must still say so.
 */
export async function openRoleGrant(
  ctx: Pick<Context, 'audit' | 'clock' | 'storage'>,
  input: { requester: User; subject: User; role: unknown; reason: unknown; requestId?: string },
): Promise<ApprovalRequest> {
  const { requester, subject, role } = input;
  if (typeof role !== 'string' || !isGuardedRole(role)) {
    throw new RoleGrantError(`role must be a role given with a second person's approval (${guardedRolesText}); any other role is given with PUT or PATCH /admin/users/${subject.username}`);
  }
  const reason = typeof input.reason === 'string' ? input.reason.trim() : '';
  if (!reasonPattern.test(reason)) throw new RoleGrantError('a grant needs its reason: 1 to 500 printable characters');
  if (subject.status !== 'active') throw new RoleGrantError(`${subject.username} is not active: a role is granted to an active person`);
  if (await credentialsHeld(ctx.storage.db, subject.id)) throw new RoleGrantError(`${subject.username} left and has not come back through an approved recovery: no role is granted while their credentials are on hold`);
  if (subject.roles.includes(role)) throw new RoleGrantError(`${subject.username} holds ${role} already`, 409);
  const conflict = roleConflict([...subject.roles, role]);
  if (conflict) throw new RoleGrantError(`${subject.username}: ${conflict}`);
  if (await pendingGrant(ctx, subject.id, role)) throw new RoleGrantError(`a grant of ${role} to ${subject.username} already waits for approval`, 409);
  // Whoever set the password can sign in as the person: the second person must be someone else's eyes.
  if (setPassword(subject.passwordSet, requester.id)) throw new RoleGrantRefused(setPasswordProblem(subject.username), 'set_password');
  const content: RoleGrantContent = {
    role,
    reason,
    requested_by: requester.id,
    credential_set_by: subject.passwordSet?.by ?? null,
    credential_set_at: subject.passwordSet ? new Date(subject.passwordSet.at).toISOString() : null,
  };
  return openApprovalRequest(
    ctx,
    {
      kind: 'role_grant',
      requester: requester.id,
      requesterType: 'user',
      // The person receiving the role: never their own approver (the independence rule).
      subject: subject.id,
      content: content as unknown as Record<string, unknown>,
      requiredApprovals: 1,
      subjectMustApprove: false,
      ttlMs: roleGrantTtlMs,
    },
    // A password written meanwhile (it locks the row too, and then sees this request waiting):
    // the approver would be shown a stale setter, and its setter might be the requester.
    async (trx) => {
      const row = await personRow(trx, subject.id);
      const now = row ? passwordSetterOfRow(row) : undefined;
      if (setPassword(now, requester.id)) throw new RoleGrantRefused(setPasswordProblem(subject.username), 'set_password');
      if (!row || now?.by !== subject.passwordSet?.by || now?.at !== subject.passwordSet?.at) {
        throw new RoleGrantError(`${subject.username}'s record changed while the grant was asked; ask again`, 409);
      }
      return [];
    },
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  );
}

/** Whether `who` set the password this record names. */
function setPassword(set: PasswordSetter | undefined, who: string): boolean {
  return set?.by === who;
}

function setPasswordProblem(username: string): string {
  return `you set ${username}'s password, so you could sign in as them: another administrator asks for their role, and a third approves it (docs/approvals.md)`;
}

type PersonRow = Pick<Database['users'], 'id' | 'status' | 'roles' | 'password_set_by' | 'password_set_at'>;

/**
 * The person's row as a decision about them must read it inside `trx`: on PostgreSQL locked
 * (FOR UPDATE) until the transaction ends, so a change committing meanwhile — an offboarding, a
 * password write (src/identity/users.ts `upsertUser` locks the row too) — is either seen here or
 * waits for this decision. SQLite runs one write transaction at a time.
 */
async function personRow(trx: Transaction<Database>, id: string): Promise<PersonRow | undefined> {
  const read = trx.selectFrom('users').select(['id', 'status', 'roles', 'password_set_by', 'password_set_at']).where('id', '=', id);
  return (isPostgres(trx) ? read.forUpdate() : read).executeTakeFirst();
}

function passwordSetterOfRow(row: Pick<PersonRow, 'password_set_by' | 'password_set_at'>): PasswordSetter | undefined {
  return row.password_set_at == null ? undefined : { by: row.password_set_by ?? null, at: Number(row.password_set_at) };
}

/**
 * Who set the person's password, read now (undefined: not known): the role_grant kind refuses
 * them as an approver (src/approvals/kinds/role-grant.ts).
 */
export async function passwordSetterOf(db: Kysely<Database>, userId: string): Promise<PasswordSetter | undefined> {
  const row = await db.selectFrom('users').select(['password_set_by', 'password_set_at']).where('id', '=', userId).executeTakeFirst();
  return row ? passwordSetterOfRow(row) : undefined;
}

const guardedRolesText = guardedRoles.join(', ');

/** Whether a grant of `role` to this person waits for approval now. */
async function pendingGrant(ctx: Pick<Context, 'clock' | 'storage'>, subjectId: string, role: string): Promise<boolean> {
  return (await waitingGrants(ctx.storage.db, subjectId, ctx.clock.now())).includes(role);
}

/**
 * A guarded role whose grant to this person waits for approval now (undefined: none): their
 * password is not set through the admin API meanwhile (src/identity/users.ts `upsertUser`).
 */
export async function roleGrantWaiting(db: Kysely<Database>, subjectId: string, now: number): Promise<string | undefined> {
  return (await waitingGrants(db, subjectId, now))[0];
}

async function waitingGrants(db: Kysely<Database>, subjectId: string, now: number): Promise<string[]> {
  const rows = await db
    .selectFrom('approval_requests')
    .select('content')
    .where('kind', '=', 'role_grant')
    .where('subject', '=', subjectId)
    .where('status', '=', 'pending')
    .where('expires_at', '>', now)
    .execute();
  return rows.map((row) => (JSON.parse(row.content) as RoleGrantContent).role);
}

/**
 * In the decision's transaction: an approved grant adds the role, after reading the person again —
 * still active, credentials not on hold, not holding it, and the resulting roles not refused by
 * `roleConflict`, their password set neither by the requester nor by an approver — and the
 * requester again (still an active person holding `admin`). Both rows are read locked on
 * PostgreSQL (`personRow`): an offboarding of either committing while this decision runs is seen,
 * or waits for it. Anything changed meanwhile: no role, `user.role_grant_refused` (the request
 * stays approved, and nothing was given). A denial changes nothing.
 */
export async function settleRoleGrant(ctx: Pick<Context, 'clock'>, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  if (outcome === 'denied') return [];
  const content = request.content as unknown as RoleGrantContent;
  const approvers = await trx.selectFrom('approval_decisions').select('approver').where('request_id', '=', request.id).where('decision', '=', 'approve').orderBy('at').execute();
  const approvedBy = approvers.map((a) => a.approver);
  const base = { txn: request.id, actor: approvedBy.at(-1) ?? request.requester, subject: request.subject };
  const details = { request_id: request.id, role: content.role, grantee: request.subject, requested_by: request.requester, approved_by: approvedBy, reason: content.reason };
  const refused = (why: string): AuditEvent[] => [{ ...base, type: 'user.role_grant_refused', decision: { allow: false, reasons: [why] }, details: { ...details, via: 'role_grant' } }];

  const person = await personRow(trx, request.subject);
  if (!person || person.status !== 'active') return refused('person_not_active');
  if (await credentialsHeld(trx, person.id)) return refused('credentials_held');
  const roles = JSON.parse(person.roles) as string[];
  if (roles.includes(content.role)) return refused('role_held');
  if (!isGuardedRole(content.role)) return refused('role_not_guarded');
  if (roleConflict([...roles, content.role])) return refused('role_conflict');
  const setter = passwordSetterOfRow(person);
  if (setPassword(setter, request.requester)) return refused('requester_set_password');
  if (approvedBy.some((approver) => setPassword(setter, approver))) return refused('approver_set_password');
  const requester = await personRow(trx, request.requester);
  if (!requester || requester.status !== 'active' || !(JSON.parse(requester.roles) as string[]).includes(roleGrantRole)) return refused('requester_not_admin');

  const now = ctx.clock.now();
  const updated = await trx
    .updateTable('users')
    // Sorted, as apply stores them (src/identity/users.ts upsertUser): a re-apply finds them unchanged.
    .set({ roles: JSON.stringify([...roles, content.role].sort()), updated_at: now })
    .where('id', '=', person.id)
    .where('roles', '=', person.roles)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== 1) return refused('person_changed');
  return [{ ...base, type: 'user.role_granted', decision: { allow: true, reasons: ['approved'] }, details }];
}

/**
 * Records a password refused through the admin API or SCIM (src/apply/index.ts `PasswordSetThroughApi`):
 * the person holds a guarded role (`guarded_role`) or a grant of one waits (`role_grant_waiting`).
 */
export async function recordPasswordSetRefusal(
  ctx: Pick<Context, 'audit'>,
  event: { actor: string | undefined; client: string; subject: string; role: string; reason: 'guarded_role' | 'role_grant_waiting'; via: 'users' | 'apply' | 'scim'; requestId?: string },
): Promise<void> {
  await ctx.audit.record({
    type: 'user.password_reset_refused',
    ...(event.actor !== undefined ? { actor: event.actor } : {}),
    client: event.client,
    subject: event.subject,
    ...(event.requestId !== undefined ? { requestId: event.requestId } : {}),
    decision: { allow: false, reasons: [event.reason] },
    details: { via: event.via, role: event.role },
  });
}

/**
 * Records a refused grant of a guarded role: a caller the role-grants endpoint does not accept, or
 * a write through the admin API that would have added one (`via`: users or apply).
 */
export async function recordRoleGrantRefusal(
  ctx: Pick<Context, 'audit'>,
  event: { actor: string | undefined; client: string; subject?: string; role?: string; reason: string; via: 'role_grant' | 'users' | 'apply'; requestId?: string; delegated?: boolean },
): Promise<void> {
  await ctx.audit.record({
    type: 'user.role_grant_refused',
    ...(event.actor !== undefined ? { actor: event.actor } : {}),
    client: event.client,
    ...(event.subject !== undefined ? { subject: event.subject } : {}),
    ...(event.requestId !== undefined ? { requestId: event.requestId } : {}),
    decision: { allow: false, reasons: [event.reason] },
    details: { via: event.via, ...(event.role !== undefined ? { role: event.role } : {}), ...(event.delegated ? { delegated: true } : {}) },
  });
}
