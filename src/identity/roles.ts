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
