import type { Context } from '../context.ts';
import type { ResourceServer } from './definition.ts';

/** Scopes of Clearance's own admin API. */
export const adminScopes = ['admin:read', 'admin:write', 'audit:read'] as const;

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
  ];
}

/** Creates or refreshes the built-in resource servers (on every start; a no-op when current). */
export async function seedBuiltins(ctx: Context): Promise<void> {
  await ctx.storage.db.transaction().execute(async (trx) => {
    for (const server of builtinResourceServers(ctx.config.issuer)) await ctx.resourceServers.upsert(trx, server);
  });
}
