import type { Context } from '../context.ts';
import type { ResourceServer } from './definition.ts';

/**
 * Scopes of Clearance's own admin API. `recovery:request`: open a recovery of a person's lost
 * authenticator (POST /admin/users/{username}/recovery), only with a help-desk person's token
 * (src/endpoints/admin/recovery.ts) — narrower than admin:write, which a help-desk app need not hold.
 * `approvals:decide`: list and decide the requests a second person approves
 * (src/endpoints/admin/approvals.ts), with a PERSON's token only — never a client's.
 * `audit:hold`: place legal holds on the audit log and ask for their two-person release
 * (src/endpoints/admin/holds.ts); reading them is `audit:read`.
 * `metrics:read`: GET /metrics (src/endpoints/metrics), for a Prometheus scraper's client — it
 * opens nothing else.
 */
export const adminScopes = ['admin:read', 'admin:write', 'audit:read', 'audit:hold', 'recovery:request', 'approvals:decide', 'metrics:read'] as const;

/**
 * The admin scopes a service's own token can use (`clearance init`'s client): all but those only a
 * person's token uses (`recovery:request`, `approvals:decide`).
 */
export const serviceAdminScopes: readonly string[] = adminScopes.filter((scope) => scope !== 'approvals:decide' && scope !== 'recovery:request');

/** The scope a policy enforcement point needs to ask the AuthZEN access evaluation API (src/endpoints/access). */
export const accessEvaluateScope = 'access:evaluate';

/** The audience of Clearance's policy decision API (a Bearer token for it carries access:evaluate). */
export function accessAudience(issuer: string): string {
  return `${issuer}/access`;
}

/** The scope a Shared Signals receiver needs to manage its streams and poll them (src/endpoints/ssf). */
export const ssfManageScope = 'ssf:manage';

/** The audience of Clearance's Shared Signals stream management API (docs/signals.md). */
export function ssfAudience(issuer: string): string {
  return `${issuer}/ssf`;
}

/** The resource servers Clearance itself provides; their identifiers are reserved. */
export function builtinResourceServers(issuer: string): ResourceServer[] {
  return [
    {
      identifier: `${issuer}/admin`,
      name: 'Clearance administration',
      scopes: [...adminScopes],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    {
      identifier: accessAudience(issuer),
      name: 'Clearance policy decisions (AuthZEN)',
      scopes: [accessEvaluateScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
    {
      identifier: ssfAudience(issuer),
      name: 'Clearance Shared Signals streams',
      scopes: [ssfManageScope],
      access_token_ttl: 300,
      require_sender_constraint: false,
    },
  ];
}

/** Whether `identifier` names one of Clearance's own built-in resource servers (the admin API, the AuthZEN API, the Shared Signals API). */
export function isBuiltinResourceServer(issuer: string, identifier: string): boolean {
  return builtinResourceServers(issuer).some((server) => server.identifier === identifier);
}

/** Creates or refreshes the built-in resource servers (on every start; a no-op when current). */
export async function seedBuiltins(ctx: Context): Promise<void> {
  await ctx.storage.db.transaction().execute(async (trx) => {
    for (const server of builtinResourceServers(ctx.config.issuer)) await ctx.resourceServers.upsert(trx, server);
  });
}
