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
