import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import type { AccessTokenClaims } from '../tokens/claims.ts';
import { AuditGuardError } from './guard.ts';
import { AuditScopeError, entityScopeOf, type AuditScope, type EntityScope } from './scope.ts';

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
 * Roles whose holders may read personal fields (docs/privacy.md "Who reads"): `compliance` —
 * investigating a trade or a sign-in needs the person — and `auditor`, who checks those
 * investigations; both only for the events of their own legal entities (issue 24 item 4: "a firm's
 * auditor reads its own firm's events only"), although an auditor reads the whole log's events
 * as stored. Not `admin`: running the system needs the facts, not who signed in from where
 * (minimisation, AMENDMENTS "console and operations"); nor a client's own token (a log shipper,
 * a SIEM), which gets the events as stored.
 */
export const personalDataRoles: readonly string[] = ['compliance', 'auditor'];

/**
 * Whose personal fields the reader may have decrypted: the scope of the legal entities of their own
 * desks (src/audit/scope.ts entityScopeOf), for a person's own token (not delegated) whose active
 * account holds one of `personalDataRoles` — whatever else they read. A reveal outside it is
 * withheld (personalViews). Throws AuditScopeError (the API answers 403) for anyone else, and for a
 * person whose desks name no legal entity: their personal data is no one's to reveal (fail closed).
 */
export async function revealScopeOf(ctx: Pick<Context, 'storage' | 'entities' | 'clients'>, reader: AccessTokenClaims): Promise<EntityScope> {
  const refused = 'your role does not read personal data: it reads the events with their personal fields withheld (docs/privacy.md)';
  if (reader.act !== undefined || reader.grant_id === undefined || reader.sub === undefined) throw new AuditScopeError(refused);
  const person = await findUser(ctx, reader.sub);
  if (person?.status !== 'active' || !person.roles.some((role) => personalDataRoles.includes(role))) throw new AuditScopeError(refused);
  const scope = await entityScopeOf(ctx, person.desks);
  if (!scope) throw new AuditScopeError("your role reveals the personal data of your legal entity's events, and your account has no desk of any legal entity: it reads the events with their personal fields withheld");
  return scope;
}

/** What an `audit.read` (or `audit.exported`) adds when personal fields were revealed: how many events, whose (ids, at most 100). */
export function revealedDetails(revealed: number, subjects: ReadonlySet<string>): Record<string, unknown> {
  if (revealed === 0) return {};
  const whose = [...subjects].sort();
  return { personal_data_revealed: true, revealed_events: revealed, revealed_subjects: whose.slice(0, 100), ...(whose.length > 100 ? { revealed_subjects_more: whose.length - 100 } : {}) };
}

/**
 * How many people of the directory an answer names, each once: `named.ids` are candidate user ids
 * (an approval's subject may be a key or an account instead), `named.usernames` usernames (a
 * break-glass account's custodians). The `people` of a `people.reviewed` whose answer names them
 * by id or username rather than as records read one by one.
 */
export async function countPeople(ctx: Pick<Context, 'storage'>, named: { ids?: Iterable<string>; usernames?: Iterable<string> }): Promise<number> {
  // A user id is at most 64 characters (findUser): a longer candidate is no one.
  const ids = [...new Set(named.ids ?? [])].filter((id) => id.length <= 64);
  const usernames = [...new Set(named.usernames ?? [])];
  const people = new Set<string>();
  // In chunks: a long list stays well under either dialect's limit of bound parameters.
  for (let i = 0; i < Math.max(ids.length, usernames.length); i += peopleChunk) {
    const someIds = ids.slice(i, i + peopleChunk);
    const someUsernames = usernames.slice(i, i + peopleChunk);
    const rows = await ctx.storage.db
      .selectFrom('users')
      .select('id')
      .where((eb) => eb.or([...(someIds.length > 0 ? [eb('id', 'in', someIds)] : []), ...(someUsernames.length > 0 ? [eb('username', 'in', someUsernames)] : [])]))
      .execute();
    for (const row of rows) people.add(row.id);
  }
  return people.size;
}

const peopleChunk = 500;
