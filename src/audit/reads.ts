import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
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

/**
 * Roles whose holders may read personal fields (docs/privacy.md "Who reads"): `compliance`, within
 * its legal entities' scope (src/audit/scope.ts) — investigating a trade or a sign-in needs the
 * person — and `auditor`, who checks those investigations on the whole log. Not `admin`: running
 * the system needs the facts, not who signed in from where (minimisation, AMENDMENTS "console and
 * operations"); nor a client's own token (a log shipper, a SIEM), which gets the events as stored.
 */
export const personalDataRoles: readonly string[] = ['compliance', 'auditor'];

/**
 * Whether the reader may have personal fields decrypted: a person's own token (not delegated) whose
 * active account holds one of `personalDataRoles`. Anything else may not (fail closed).
 */
export async function mayRevealPersonalData(ctx: Pick<Context, 'storage'>, reader: AccessTokenClaims): Promise<boolean> {
  if (reader.act !== undefined || reader.grant_id === undefined || reader.sub === undefined) return false;
  const person = await findUser(ctx, reader.sub);
  return person?.status === 'active' && person.roles.some((role) => personalDataRoles.includes(role));
}

/** What an `audit.read` (or `audit.exported`) adds when personal fields were revealed: how many events, whose (ids, at most 100). */
export function revealedDetails(revealed: number, subjects: ReadonlySet<string>): Record<string, unknown> {
  if (revealed === 0) return {};
  const whose = [...subjects].sort();
  return { personal_data_revealed: true, revealed_events: revealed, revealed_subjects: whose.slice(0, 100), ...(whose.length > 100 ? { revealed_subjects_more: whose.length - 100 } : {}) };
}
