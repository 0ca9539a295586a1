import { acr, acrRank, type Acr } from '../identity/acr.ts';

/**
 * The console's roles (docs/console.md): what each may do there, as the admin API scopes the
 * console asks for on the person's behalf, and the least authentication each asks (AMENDMENTS:
 * phishing-resistant for `admin`, `approver` and `compliance`). A person's console token carries
 * the union of their roles' scopes and no other: the admin API then refuses whatever their roles
 * do not allow, whatever the page offers.
 */
export const consoleRoles = {
  admin: { scopes: ['admin:read', 'admin:write', 'audit:read', 'metrics:read'], minimumAcr: acr.phishingResistant, description: 'manage clients, people, partners, agents, mandates, policies and keys' },
  compliance: { scopes: ['admin:read', 'audit:read', 'audit:hold', 'reviews:close', 'screening:decide'], minimumAcr: acr.phishingResistant, description: 'read everything, export evidence, place legal holds, close reviews, decide screening matches' },
  approver: { scopes: ['approvals:decide'], minimumAcr: acr.phishingResistant, description: 'decide pending approvals' },
  auditor: { scopes: ['audit:read'], minimumAcr: acr.multiFactor, description: 'read the audit log' },
} as const satisfies Record<string, { scopes: readonly string[]; minimumAcr: Acr; description: string }>;

export type ConsoleRole = keyof typeof consoleRoles;

/** The console roles among a person's roles, in the table's order. */
export function consoleRolesOf(roles: readonly string[]): ConsoleRole[] {
  return (Object.keys(consoleRoles) as ConsoleRole[]).filter((role) => roles.includes(role));
}

/** The admin API scopes the console asks for a person holding `roles` (sorted, no repeats). */
export function consoleScopesOf(roles: readonly ConsoleRole[]): string[] {
  return [...new Set(roles.flatMap((role) => consoleRoles[role].scopes))].sort();
}

/** The strongest minimum among `roles`: the console is shown only at or above it. */
export function consoleMinimumAcr(roles: readonly ConsoleRole[]): Acr {
  let strongest: Acr = acr.password;
  for (const role of roles) if (acrRank(consoleRoles[role].minimumAcr) > acrRank(strongest)) strongest = consoleRoles[role].minimumAcr;
  return strongest;
}
