import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { findUser, listUsers } from '../identity/users.ts';
import type { Database } from '../storage/schema.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import type { StoredAuditEvent } from './events.ts';

/**
 * Whose events an audit:read token reads (AMENDMENTS, console and operations: "`compliance` reads
 * all events of its own legal entity's scope"). A client's own token (a log shipper, an auditor's
 * service) and a person holding `admin` or `auditor` read the whole log. Any other person — a
 * compliance officer — reads the scope of the legal entities of their desks:
 *
 * - events whose client is one of those entities' clients (`owner_lei`),
 * - events whose subject or actor is such a client, or a person with a desk of those entities,
 * - and every event of a transaction in which one of those took part: the firm's compliance
 *   answers "who authorised this trade" for the whole chain of a trade its firm was part of.
 *
 * A person in neither case whose desks name no legal entity reads nothing (refused).
 */
export type AuditScope = { kind: 'all' } | { kind: 'entities'; leis: ReadonlySet<string>; parties: ReadonlySet<string> };

/** Roles whose holders read the whole log. */
export const wholeLogRoles: readonly string[] = ['admin', 'auditor'];

export class AuditScopeError extends Error {}

export async function auditScopeOf(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, claims: AccessTokenClaims): Promise<AuditScope> {
  // A person's token is issued under their consent grant; a client's own token names no person.
  const person = claims.grant_id !== undefined && claims.sub !== undefined ? await findUser(ctx, claims.sub) : undefined;
  if (!person) return { kind: 'all' };
  if (person.roles.some((role) => wholeLogRoles.includes(role))) return { kind: 'all' };
  const snapshot = await ctx.entities.snapshot();
  const leis = new Set(person.desks.map((desk) => snapshot.desks.get(desk)?.lei).filter((lei): lei is string => lei !== undefined));
  if (leis.size === 0) throw new AuditScopeError('your role reads the events of your legal entity, and your account has no desk of any legal entity');
  const parties = new Set<string>();
  for (const client of await ctx.clients.list()) {
    const owner = (client.metadata as { owner_lei?: string }).owner_lei;
    if (owner && leis.has(owner)) parties.add(client.metadata.client_id);
  }
  for (const user of await listUsers(ctx)) {
    if (user.desks.some((desk) => leis.has(snapshot.desks.get(desk)?.lei ?? ''))) parties.add(user.id);
  }
  return { kind: 'entities', leis, parties };
}

/** Whether the event itself names one of the scope's parties (its client, subject or actor). */
function namesParty(scope: Extract<AuditScope, { kind: 'entities' }>, event: Pick<StoredAuditEvent, 'client' | 'subject' | 'actor'>): boolean {
  return [event.client, event.subject, event.actor].some((party) => party !== undefined && party !== null && scope.parties.has(party));
}

/**
 * The transactions among `txns` in which one of the scope's parties took part (one of their events
 * names a party as its client or subject: the columns the log indexes).
 */
async function txnsInScope(db: Kysely<Database>, scope: Extract<AuditScope, { kind: 'entities' }>, txns: readonly string[]): Promise<Set<string>> {
  const inScope = new Set<string>();
  const parties = [...scope.parties];
  if (txns.length === 0 || parties.length === 0) return inScope;
  for (let i = 0; i < txns.length; i += 500) {
    const rows = await db
      .selectFrom('audit_events')
      .select('txn')
      .distinct()
      .where('txn', 'in', txns.slice(i, i + 500))
      .where((eb) => eb.or([eb('client', 'in', parties), eb('subject', 'in', parties)]))
      .execute();
    for (const row of rows) if (row.txn !== null) inScope.add(row.txn);
  }
  return inScope;
}

/** The events among `events` the scope may read, in their order. */
export async function withinScope<T>(db: Kysely<Database>, scope: AuditScope, events: readonly T[], eventOf: (item: T) => StoredAuditEvent): Promise<T[]> {
  if (scope.kind === 'all') return [...events];
  const txns = [...new Set(events.map((e) => eventOf(e).txn).filter((t): t is string => typeof t === 'string'))];
  const trades = await txnsInScope(db, scope, txns);
  return events.filter((item) => {
    const event = eventOf(item);
    return namesParty(scope, event) || (typeof event.txn === 'string' && trades.has(event.txn));
  });
}

/** Whether a transaction is in the scope (a party of the scope took part in it). */
export async function txnInScope(db: Kysely<Database>, scope: AuditScope, txn: string): Promise<boolean> {
  return scope.kind === 'all' || (await txnsInScope(db, scope, [txn])).has(txn);
}

/** Whether a client or a subject is one of the scope's own parties. */
export function partyInScope(scope: AuditScope, party: string): boolean {
  return scope.kind === 'all' || scope.parties.has(party);
}
