/**
 * The roles whose holders can approve, administer, open or approve the recovery of others' access
 * (`help-desk`, `recovery-approver`) or hold emergency credentials (AMENDMENTS "Strong
 * authentication"). Losing a factor is their riskiest moment: a holder recovers only through the
 * independent-approval recovery flow (src/identity/recovery), never with
 * a self-service recovery code, so a stolen sheet of codes (plus a password) cannot reach them.
 * This list is the one place that says which roles those are.
 */
export const privilegedRoles = ['approver', 'admin', 'recovery-approver', 'help-desk', 'model-risk', 'break-glass-custodian'] as const;

export type PrivilegedRole = (typeof privilegedRoles)[number];

/** The privileged roles among a person's roles (empty: none). */
export function privilegedRolesOf(roles: readonly string[]): PrivilegedRole[] {
  return privilegedRoles.filter((role) => roles.includes(role));
}

/** Whether a person with these roles holds a privileged one (and so may not use recovery codes). */
export function holdsPrivilegedRole(roles: readonly string[]): boolean {
  return privilegedRolesOf(roles).length > 0;
}

/** The role that opens recoveries for others; never approves one (src/identity/recovery). */
export const helpDeskRole = 'help-desk';
/** The role that approves recoveries. */
export const recoveryApproverRole = 'recovery-approver';

/**
 * Why these roles cannot be one person's (undefined: they can). The help desk opens recoveries and
 * never approves one, and a request it opens needs an approver outside it (AMENDMENTS "Approvals
 * and recovery"): one person holding both would be both halves of a recovery. The approval refuses
 * a help-desk holder anyway (src/approvals/kinds/recovery.ts); this keeps the roles apart where
 * they are given — the admin API, apply and SCIM all write people through src/identity/users.ts.
 */
export function roleConflict(roles: readonly string[]): string | undefined {
  if (roles.includes(helpDeskRole) && roles.includes(recoveryApproverRole)) {
    return `${helpDeskRole} and ${recoveryApproverRole} are never held by one person: the help desk opens recoveries, and never approves one (docs/recovery.md)`;
  }
  return undefined;
}

/**
 * The roles a person is given only with a second person's approval through the admin API
 * (segregation of duties, docs/approvals.md `role_grant`): the privileged roles above, and
 * `compliance`, which decides screening matches, erasures and the release of legal holds. A PUT
 * or PATCH of /admin/users/{username} or a POST /admin/apply document that would add one to a
 * person is refused (src/apply/index.ts); a person holding `admin` asks at POST
 * /admin/users/{username}/role-grants and another approves. The CLI (the operator holding the
 * database) gives them as before. This list is the one place that says which roles those are.
 */
export const guardedRoles = [...privilegedRoles, 'compliance'] as const;

export type GuardedRole = (typeof guardedRoles)[number];

/** Whether giving this role needs a second person's approval through the admin API. */
export function isGuardedRole(role: string): role is GuardedRole {
  return (guardedRoles as readonly string[]).includes(role);
}

/**
 * The guarded roles a person with these roles holds (empty: none). Their password is never set
 * through the admin API (src/identity/users.ts `upsertUser`): whoever set it could sign in as them.
 */
export function guardedRolesHeld(roles: readonly string[]): GuardedRole[] {
  return guardedRoles.filter((role) => roles.includes(role));
}

/** The guarded roles in `after` that `before` does not hold (empty: the change adds none). */
export function guardedRolesAdded(before: readonly string[], after: readonly string[]): GuardedRole[] {
  return guardedRoles.filter((role) => after.includes(role) && !before.includes(role));
}

/** The role whose holders ask for, and approve, the grant of a guarded role (src/identity/role-grants.ts). */
export const roleGrantRole = 'admin';
