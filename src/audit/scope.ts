import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { findUser, listUsers } from '../identity/users.ts';
import type { Database } from '../storage/schema.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import type { StoredAuditEvent } from './events.ts';
import { lookupKey, sealedUpTo } from './query.ts';
import { OAuthError } from '../oauth-error.ts';

/**
 * Whose events an audit:read token reads (AMENDMENTS, console and operations: "`compliance` reads
 * all events of its own legal entity's scope"). A client's own token (a log shipper, an auditor's
 * service: client credentials, no person, no delegation) and a person holding `admin` or `auditor`
 * read the whole log. Any other person — a compliance officer — reads the scope of the legal
 * entities of their desks:
 *
 * - events whose client, subject or actor is one of those entities' clients (`owner_lei`) or
 *   people (a desk of theirs),
 * - and every event of a transaction those entities took part in: one a client of theirs started
 *   (the `transactions` record), or in which a token was issued or exchanged for a client or person
 *   of theirs. Only these count: a refusal or a policy decision records whatever txn its caller
 *   sent, so naming another firm's txn there brings no one into that trade. The firm's compliance
 *   answers "who authorised this trade" for the whole chain of a trade its firm was part of.
 *
 * Anything else is refused (fail closed): a person whose desks name no legal entity, a delegated
 * token, a token whose person is gone, a token that is neither a person's nor a client's own.
 *
 * This is the scope of reading events as stored (personal fields as ciphertext). Revealing
 * personal fields, and erasing them, are narrower for every role, a whole-log reader included:
 * the legal entities of the person's own desks (entityScopeOf; src/audit/reads.ts revealScopeOf).
 */
export type AuditScope = { kind: 'all' } | { kind: 'entities'; leis: ReadonlySet<string>; parties: ReadonlySet<string> };

/** Roles whose holders read the whole log. */
export const wholeLogRoles: readonly string[] = ['admin', 'auditor'];

/** The events by which a party takes part in a transaction (besides starting it). */
const participationTypes = ['token.issued', 'token.exchanged'] as const;

export class AuditScopeError extends Error {}

export async function auditScopeOf(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, claims: AccessTokenClaims): Promise<AuditScope> {
  if (claims.act !== undefined) throw new AuditScopeError('a delegated token reads no audit events');
  if (claims.grant_id === undefined) {
    // A client's own token (client credentials): the client is the subject, or there is none.
    if (claims.sub === undefined || claims.sub === claims.client_id) return { kind: 'all' };
    throw new AuditScopeError('this token is neither a person’s own nor a client’s own');
  }
  const person = claims.sub !== undefined ? await findUser(ctx, claims.sub) : undefined;
  if (!person || person.status !== 'active') throw new AuditScopeError('the person this token was issued to is not active');
  if (person.roles.some((role) => wholeLogRoles.includes(role))) return { kind: 'all' };
  const scope = await entityScopeOf(ctx, person.desks);
  if (!scope) throw new AuditScopeError('your role reads the events of your legal entity, and your account has no desk of any legal entity');
  return scope;
}

/** The scope of the legal entities of some desks. */
export type EntityScope = Extract<AuditScope, { kind: 'entities' }>;

/**
 * The scope of the legal entities of `desks` (a person's): those entities' clients (`owner_lei`)
 * and people (a desk of theirs). Undefined when the desks name no legal entity. Whatever the
 * person's roles: revealing personal fields and erasing them are per legal entity for every role
 * (src/audit/reads.ts revealScopeOf, src/endpoints/admin/erasure.ts), a whole-log reader included.
 */
export async function entityScopeOf(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, desks: readonly string[]): Promise<EntityScope | undefined> {
  const snapshot = await ctx.entities.snapshot();
  const leis = new Set(desks.map((desk) => snapshot.desks.get(desk)?.lei).filter((lei): lei is string => lei !== undefined));
  if (leis.size === 0) return undefined;
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

/** The legal entities of a person's desks (none for a person of no firm). */
export async function leisOfDesks(ctx: Pick<Context, 'entities'>, desks: readonly string[]): Promise<Set<string>> {
  const snapshot = await ctx.entities.snapshot();
  return new Set(desks.map((desk) => snapshot.desks.get(desk)?.lei).filter((lei): lei is string => lei !== undefined));
}

/** The scope of an API caller's token, or 403 access_denied saying why it reads nothing. */
export async function readerScope(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, claims: AccessTokenClaims): Promise<AuditScope> {
  try {
    return await auditScopeOf(ctx, claims);
  } catch (error) {
    if (error instanceof AuditScopeError) throw new OAuthError('access_denied', error.message);
    throw error;
  }
}

/** Whether the event itself names one of the scope's parties (its client, subject or actor). */
function namesParty(scope: Extract<AuditScope, { kind: 'entities' }>, event: Pick<StoredAuditEvent, 'client' | 'subject' | 'actor'>): boolean {
  return [event.client, event.subject, event.actor].some((party) => party !== undefined && party !== null && scope.parties.has(party));
}

/**
 * The transactions among `txns` the scope's parties took part in: started by one of their clients,
 * or a token issued or exchanged for one of their clients or people under it. Found by key: the
 * `transactions` record, the audit log's lookup index for sealed events and the short unsealed
 * tail after the latest checkpoint (as src/audit/query.ts reads them) — never a scan of the log.
 */
async function txnsInScope(db: Kysely<Database>, scope: Extract<AuditScope, { kind: 'entities' }>, txns: readonly string[]): Promise<Set<string>> {
  const inScope = new Set<string>();
  if (txns.length === 0) return inScope;
  const tailFrom = await sealedUpTo(db);
  for (let i = 0; i < txns.length; i += 200) {
    const chunk = txns.slice(i, i + 200);
    const [started, sealed, tail] = await Promise.all([
      db.selectFrom('transactions').select(['txn', 'client_id']).where('txn', 'in', chunk).execute(),
      db
        .selectFrom('audit_events')
        .select(['txn', 'client', 'subject'])
        .where('seq', 'in', db.selectFrom('audit_index').select('seq').where('key', 'in', chunk.map((txn) => lookupKey('txn', txn))))
        .where('type', 'in', participationTypes)
        .execute(),
      db.selectFrom('audit_events').select(['txn', 'client', 'subject']).where('seq', '>', tailFrom).where('txn', 'in', chunk).where('type', 'in', participationTypes).execute(),
    ]);
    for (const row of started) if (scope.parties.has(row.client_id)) inScope.add(row.txn);
    for (const row of [...sealed, ...tail]) {
      if (row.txn !== null && ((row.client !== null && scope.parties.has(row.client)) || (row.subject !== null && scope.parties.has(row.subject)))) inScope.add(row.txn);
    }
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
