import type { Context } from '../context.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { AuditGuardError } from './guard.ts';
import type { AuditScope } from './scope.ts';

/**
 * Puts a read of events on the record (`audit.read`): who read (the token's person, else its
 * client), what they asked (the query, the event id, the simulated version — never the events),
 * how many events they got, and the scope it was limited to (src/audit/scope.ts). The events hold
 * personal data: reading them is itself audited (AMENDMENTS, console and operations).
 */
export async function recordRead(ctx: Pick<Context, 'audit'>, reader: AccessTokenClaims, requestId: string, details: Record<string, unknown>, scope: AuditScope): Promise<void> {
  const event = { type: 'audit.read' as const, actor: reader.sub ?? reader.client_id, client: reader.client_id, requestId };
  const scoped = scope.kind === 'all' ? {} : { scope: [...scope.leis].sort() };
  try {
    await ctx.audit.record({ ...event, details: { ...details, ...scoped } });
  } catch (error) {
    if (!(error instanceof AuditGuardError)) throw error;
    // The query quoted something the log refuses to hold (a token-shaped value): the read is still recorded, without it.
    await ctx.audit.record({ ...event, details: { query: 'withheld: not auditable', events: details.events, ...scoped } });
  }
}

/**
 * Puts a read of people's records on the record (`people.reviewed`): who read, how many people (and
 * which, for one), through which API — names, emails, roles and sign-in means are personal data.
 */
export async function recordPeopleRead(ctx: Pick<Context, 'audit'>, reader: AccessTokenClaims, requestId: string, details: Record<string, unknown>, subject?: string): Promise<void> {
  await ctx.audit.record({ type: 'people.reviewed', actor: reader.sub ?? reader.client_id, client: reader.client_id, requestId, ...(subject ? { subject } : {}), details });
}
