import type { Transaction } from 'kysely';
import { openApprovalRequest, type ApprovalRequest } from '../approvals/requests.ts';
import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { credentialsHeld } from '../lifecycle/credential-hold.ts';
import type { Database } from '../storage/schema.ts';
import { guardedRoles, isGuardedRole, roleConflict, roleGrantRole } from './roles.ts';
import type { User } from './users.ts';

/**
 * The grant of a guarded role with a second person's approval (segregation of duties,
 * docs/approvals.md `role_grant`). Through the admin API no write gives a person a guarded role
 * (src/identity/roles.ts `guardedRoles`; src/apply/index.ts `RoleGrantThroughApi`): a person
 * holding `admin` asks here, with a reason, and another person holding `admin` approves
 * (src/approvals/kinds/role-grant.ts) — never the one who asked, never the person receiving the
 * role (the one rule of src/approvals/requests.ts). Approving adds the role in the decision's
 * transaction (`user.role_granted`); a denial or expiry leaves the person as they were.
 */

/** How long a grant waits for its approval: a day, the approvals rule's longest. */
export const roleGrantTtlMs = 24 * 3600_000;

/** What the request stores (and every approver sees): never the person's username (personal data). */
export interface RoleGrantContent {
  role: string;
  reason: string;
  /** The id of the person who asked. */
  requested_by: string;
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
 * them already waiting, a missing reason.
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
  const content: RoleGrantContent = { role, reason, requested_by: requester.id };
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
    undefined,
    input.requestId !== undefined ? { requestId: input.requestId } : {},
  );
}

const guardedRolesText = guardedRoles.join(', ');

/** Whether a grant of `role` to this person waits for approval now. */
async function pendingGrant(ctx: Pick<Context, 'clock' | 'storage'>, subjectId: string, role: string): Promise<boolean> {
  const rows = await ctx.storage.db
    .selectFrom('approval_requests')
    .select('content')
    .where('kind', '=', 'role_grant')
    .where('subject', '=', subjectId)
    .where('status', '=', 'pending')
    .where('expires_at', '>', ctx.clock.now())
    .execute();
  return rows.some((row) => (JSON.parse(row.content) as RoleGrantContent).role === role);
}

/**
 * In the decision's transaction: an approved grant adds the role, after reading the person again —
 * still active, credentials not on hold, not holding it, and the resulting roles not refused by
 * `roleConflict` — and the requester again (still an active person holding `admin`). Anything
 * changed meanwhile: no role, `user.role_grant_refused` (the request stays approved, and nothing
 * was given). A denial changes nothing.
 */
export async function settleRoleGrant(ctx: Pick<Context, 'clock'>, trx: Transaction<Database>, request: ApprovalRequest, outcome: 'approved' | 'denied'): Promise<AuditEvent[]> {
  if (outcome === 'denied') return [];
  const content = request.content as unknown as RoleGrantContent;
  const approvers = await trx.selectFrom('approval_decisions').select('approver').where('request_id', '=', request.id).where('decision', '=', 'approve').orderBy('at').execute();
  const approvedBy = approvers.map((a) => a.approver);
  const base = { txn: request.id, actor: approvedBy.at(-1) ?? request.requester, subject: request.subject };
  const details = { request_id: request.id, role: content.role, grantee: request.subject, requested_by: request.requester, approved_by: approvedBy, reason: content.reason };
  const refused = (why: string): AuditEvent[] => [{ ...base, type: 'user.role_grant_refused', decision: { allow: false, reasons: [why] }, details: { ...details, via: 'role_grant' } }];

  const person = await trx.selectFrom('users').select(['id', 'status', 'roles']).where('id', '=', request.subject).executeTakeFirst();
  if (!person || person.status !== 'active') return refused('person_not_active');
  if (await credentialsHeld(trx, person.id)) return refused('credentials_held');
  const roles = JSON.parse(person.roles) as string[];
  if (roles.includes(content.role)) return refused('role_held');
  if (!isGuardedRole(content.role)) return refused('role_not_guarded');
  if (roleConflict([...roles, content.role])) return refused('role_conflict');
  const requester = await trx.selectFrom('users').select(['status', 'roles']).where('id', '=', request.requester).executeTakeFirst();
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
