import type { Kysely, Transaction } from 'kysely';
import { isPostgres } from '../../audit/dialect.ts';
import { isUniqueViolation } from '../../storage/faults.ts';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { PasswordSetThroughApi } from '../../apply/index.ts';
import { recordPasswordSetRefusal } from '../../identity/role-grants.ts';
import { decidePassword, normalizeUsername, upsertUser, userFromRow, type User, type UserEntry } from '../../identity/users.ts';
import { screenPerson } from '../../risk/screening/screen.ts';
import type { Database } from '../../storage/schema.ts';
import { offboardPersonIn } from '../leaver.ts';
import { credentialsHeld, heldCredentialsProblem } from '../credential-hold.ts';
import { recordMoves, type PersonMove } from '../mover.ts';
import { badRequest, notFound, ScimError } from './errors.ts';
import { applyPatch } from './patch.ts';
import { entryWithinReach, personOutOfReach, reaches, type ScimReach } from './reach.ts';
import { entityTag, isActive, readUserWrite, userResource, userSchemas, type ScimPerson, type UserWrite } from './users.ts';

/**
 * SCIM's reads and writes of people. Writes go through apply's own rules and transaction step
 * (readUserEntry, decidePassword, upsertUser: src/identity/users.ts), with the lifecycle events a
 * change makes, a `config.applied` event (`via: scim`) naming the person by id, and — for
 * `active: false` — the leaver operation (src/lifecycle/leaver.ts) in the same transaction, whose
 * one `user.offboarded` event lists everything it ended.
 */

type Db = Kysely<Database>;

/** Who asks: for the audit events, and whose people they reach (./reach.ts). */
export interface ScimActor {
  /** The token's client (the provisioning system). */
  client: string;
  requestId: string;
  /** The legal entities whose people the caller sees and changes. */
  reach: ScimReach;
}

/** What narrows a read of people before the filter decides (from the filter's required equalities). */
export interface PeopleQuery {
  id?: string;
  userName?: string;
  externalId?: string;
}

/**
 * The people SCIM sees (everyone not deleted through SCIM) within the caller's reach, narrowed by
 * `query`, ordered by username. `reach: 'all'` only for a step that decides reach itself.
 */
export async function listPeople(db: Db, reach: ScimReach, query: PeopleQuery = {}): Promise<ScimPerson[]> {
  return (await selectPeople(db, query)).filter((p) => reaches(reach, p.user));
}

function peopleQuery(db: Db, query: PeopleQuery) {
  let select = db
    .selectFrom('users')
    .leftJoin('scim_users', 'scim_users.user_id', 'users.id')
    .selectAll('users')
    .select(['scim_users.external_id', 'scim_users.hidden_at', 'scim_users.provisioned_at'])
    .where('scim_users.hidden_at', 'is', null);
  if (query.id !== undefined) select = select.where('users.id', '=', query.id);
  if (query.userName !== undefined) select = select.where('users.username', '=', normalizeUsername(query.userName));
  if (query.externalId !== undefined) select = select.where('scim_users.external_id', '=', query.externalId);
  return select.orderBy('users.username');
}

type PersonRow = Awaited<ReturnType<ReturnType<typeof peopleQuery>['execute']>>[number];

function personOf({ external_id, hidden_at: _hidden, provisioned_at, ...row }: PersonRow): ScimPerson {
  return { user: userFromRow(row), externalId: external_id, provisioned: provisioned_at !== null };
}

async function selectPeople(db: Db, query: PeopleQuery): Promise<ScimPerson[]> {
  return (await peopleQuery(db, query).execute()).map(personOf);
}

/** The person with this SCIM id, unless deleted through SCIM or out of the caller's reach. */
export async function findPerson(db: Db, reach: ScimReach, id: string): Promise<ScimPerson | undefined> {
  if (id.length > 64) return undefined;
  return (await listPeople(db, reach, { id }))[0];
}

/**
 * The person with this SCIM id (unless deleted through SCIM), whatever the caller's reach, read
 * for a change in `trx`: locked on PostgreSQL (FOR UPDATE OF users), so that what the change
 * keeps of them — roles, attributes SCIM does not manage, desks — is what is there when it
 * writes. Unlocked, a role an administrator gave them after this read and before the write would
 * be written back as it was (READ COMMITTED); SQLite has one writer, so nothing slips between.
 */
async function personForChange(trx: Transaction<Database>, id: string): Promise<ScimPerson | undefined> {
  if (id.length > 64) return undefined;
  const select = peopleQuery(trx, { id });
  const row = await (isPostgres(trx) ? select.forUpdate('users') : select).executeTakeFirst();
  return row && personOf(row);
}

/**
 * RFC 7644 §3.14 / RFC 9110 §13.1.1: an If-Match that names none of the resource's current tags
 * (weak comparison: the tags are weak) fails the request with 412; `*` matches any resource.
 */
export function checkIfMatch(ifMatch: string | undefined, current: string): void {
  if (ifMatch === undefined) return;
  const tags = ifMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
  if (tags.includes('*') || tags.includes(current.replace(/^W\//, ''))) return;
  throw new ScimError(412, 'the resource changed since that version (If-Match does not match its ETag)');
}

/** What a User write is: a new person, a replacement, or a patch of `id`. */
export type UserChange = { kind: 'create'; body: unknown } | { kind: 'replace' | 'patch'; id: string; body: unknown; ifMatch?: string };

/**
 * RFC 7644 §3.3: "If the service provider determines that the creation of the requested resource
 * conflicts with existing resources (e.g., a "User" resource with a duplicate "userName"), the
 * service provider MUST return HTTP status code 409 (Conflict) with a "scimType" error code of
 * "uniqueness"". A userName is unique across every legal entity Clearance serves (it is the login
 * name), so the name may be another firm's person's: the answer is one and the same whoever holds
 * it — of the caller's firm or another's, in SCIM's view or deleted through it, found before the
 * write or only as it writes — and names neither them nor their firm. That the name is taken is
 * all it says, and all a global namespace cannot help saying (docs/lifecycle.md "SCIM 2.0").
 */
export function userNameTaken(): ScimError {
  return new ScimError(409, 'userName is taken: a userName is unique across every legal entity this service provider serves; choose another', 'uniqueness');
}

/**
 * Creates, replaces or patches a person in one transaction; answers the person's id and whether
 * anything changed. 409 uniqueness for a userName someone already has (`userNameTaken`), 404 for a
 * person SCIM does not see, 412 for a stale If-Match, 400 for what the rules refuse.
 */
export async function writeUser(ctx: Context, change: UserChange, actor: ScimActor, base: string): Promise<{ id: string; created: boolean }> {
  const deskNames = await deskNamesOf(ctx);
  const result = await passwordRefusalOnRecord(ctx, actor, () => takenAsItWrites(change, () => ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    let current: ScimPerson | undefined;
    let write: UserWrite;
    if (change.kind === 'create') {
      write = readUserWrite(change.body, undefined);
      const taken = await trx.selectFrom('users').select('id').where('username', '=', write.entry.username).executeTakeFirst();
      if (taken) throw userNameTaken();
    } else {
      current = await personForChange(trx, change.id);
      if (!current) throw notFound('User');
      // Another firm's person is answered as one that does not exist; the refusal is on the record.
      if (!reaches(actor.reach, current.user)) throw personOutOfReach(actor.reach, current.user);
      const resource = userResource(current, base, deskNames);
      checkIfMatch(change.ifMatch, (resource.meta as { version: string }).version);
      const body = change.kind === 'patch' ? applyPatch(resource, change.body, userSchemas) : change.body;
      write = readUserWrite(body, current.user);
      // The username is the person's login name and their key in apply documents: it does not change.
      if (write.entry.username !== current.user.username) throw badRequest('mutability', 'userName cannot change in Clearance (it is the login name); create a new User instead');
    }
    // The person stays of the caller's legal entities (none named: its own; another's: 403).
    write = { ...write, entry: entryWithinReach(actor.reach, write.entry, current?.user.id) };
    // A password set through SCIM is hashed here, inside the transaction: rare, and it must be
    // decided against the row this transaction sees.
    // SCIM sets the password only of people it provisioned: a person apply or the admin API
    // manages (an administrator, an approver) is not taken over by whoever holds scim:write.
    if (write.entry.password !== undefined && current !== undefined && !current.provisioned) {
      throw badRequest('mutability', 'password: this person was not provisioned through SCIM; their password is set through the admin API');
    }
    // `active: true` never lifts an administrator's lock (a compromise response), nor re-activates
    // someone SCIM did not provision (offboarded by the CLI, the admin API or apply's prune): a
    // routine profile sync must not undo a security decision.
    if (current !== undefined && write.entry.status === 'active' && !isActive(current.user)) {
      if (current.user.status === 'locked') throw badRequest('mutability', 'active: the person is locked by an administrator; unlock them through the admin API');
      if (!current.provisioned) throw badRequest('mutability', 'active: this person was not provisioned through SCIM; re-activate them through the admin API');
    }
    // A leaver's credentials are on hold until an approved recovery (../credential-hold.ts): `active:
    // true` re-activates them holding nothing; a password with it (or later) is refused.
    if (write.entry.password !== undefined && current !== undefined && (await credentialsHeld(trx, current.user.id))) {
      throw badRequest('mutability', `password: ${heldCredentialsProblem(current.user.username)}`);
    }
    const password = await decidePassword(trx, write.entry);
    const upserted = await upsertUser(trx, now, write.entry, password, { actor: actor.client, via: 'scim' });
    // A create writes a new person or nothing: upsertUser writes by username, and a person of that
    // name committed since the check above (another firm's, on PostgreSQL's READ COMMITTED) would
    // otherwise be taken over. Thrown, the transaction rolls back what it wrote to them.
    if (change.kind === 'create' && upserted.outcome !== 'created') throw userNameTaken();
    const events: AuditEvent[] = [...upserted.events];
    const externalChanged = await storeExternalId(trx, upserted.id, write.externalId, current?.externalId, now);
    if (upserted.outcome !== 'unchanged' || externalChanged) {
      events.push({ type: 'config.applied', actor: actor.client, client: actor.client, requestId: actor.requestId, subject: upserted.id, details: { via: 'scim', changes: [{ kind: 'user', id: upserted.id, outcome: upserted.outcome === 'unchanged' ? 'updated' : upserted.outcome }] } });
    }
    if (write.leaver && change.kind !== 'create') {
      const offboarded = await offboardPersonIn(ctx, trx, now, upserted.id, { actor: `scim:${actor.client}`, via: 'scim', requestId: actor.requestId });
      if (offboarded) events.push(...offboarded.events);
    }
    return { value: { id: upserted.id, created: upserted.outcome === 'created', changed: upserted.outcome !== 'unchanged', entry: write.entry, moved: upserted.moved }, events };
  })));
  // Sanctions/PEP screening, as apply screens the people it writes (src/risk/screening).
  if (result.changed) await screenPerson(ctx, { id: result.id, name: result.entry.name ?? null, attributes: result.entry.attributes ?? {} }, 'admin');
  // A desk change is a move (src/lifecycle/mover.ts): decided again once the write has committed.
  if (result.moved) await recordMoves(ctx, [result.moved], { actor: `scim:${actor.client}`, via: 'scim', ...(actor.requestId ? { requestId: actor.requestId } : {}) });
  return { id: result.id, created: result.created };
}

/**
 * A password SCIM may not set (src/identity/users.ts `upsertUser`, judged on the row the write
 * locks): the person holds a guarded role, or a grant of one waits. Whoever holds the HR system's
 * client could otherwise sign in as an approver or an administrator and enrol a passkey; their
 * credentials are reset through a recovery, by two people (docs/recovery.md). Recorded as
 * `user.password_reset_refused` (via scim), answered 400 mutability like SCIM's other password
 * refusals; nothing of the write lands.
 */
async function passwordRefusalOnRecord<T>(ctx: Context, actor: ScimActor, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (!(error instanceof PasswordSetThroughApi)) throw error;
    await recordPasswordSetRefusal(ctx, { actor: actor.client, client: actor.client, subject: error.userId, role: error.role, reason: error.reason, via: 'scim', ...(actor.requestId ? { requestId: actor.requestId } : {}) });
    throw badRequest('mutability', `password: ${error.reason === 'guarded_role' ? `this person holds ${error.role}` : `a grant of ${error.role} to this person waits for approval`}: their password is not set through SCIM; their credentials are reset through a recovery (docs/recovery.md)`);
  }
}

/**
 * A create that finds its userName taken only as it writes — another write of that name committed
 * since the create looked (PostgreSQL): the unique index refuses its insert, or upsertUser's read
 * finds the other person and judges a password against them (their role). Either is the same 409
 * as a name found taken before (`userNameTaken`), never a 500, and says nothing of that person.
 */
async function takenAsItWrites<T>(change: UserChange, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    if (change.kind === 'create' && (isUniqueViolation(error) || error instanceof PasswordSetThroughApi)) throw userNameTaken();
    throw error;
  }
}

/** Writes the person's externalId; whether it changed. */
async function storeExternalId(trx: Transaction<Database>, userId: string, externalId: string | null, before: string | null | undefined, now: number): Promise<boolean> {
  if (before === undefined) {
    await trx.insertInto('scim_users').values({ user_id: userId, external_id: externalId, hidden_at: null, provisioned_at: now, updated_at: now }).onConflict((c) => c.column('user_id').doUpdateSet({ external_id: externalId, hidden_at: null, updated_at: now })).execute();
    return externalId !== null;
  }
  if (before === externalId) return false;
  await trx.insertInto('scim_users').values({ user_id: userId, external_id: externalId, hidden_at: null, updated_at: now }).onConflict((c) => c.column('user_id').doUpdateSet({ external_id: externalId, updated_at: now })).execute();
  return true;
}

/**
 * RFC 7644 §3.6 DELETE, as a regulated firm deletes a person: the leaver operation (every
 * session, token, consent and mandate ends; one `user.offboarded` event), then the person is out
 * of SCIM's view (404 from then on) while Clearance keeps them and their history. Deleting them
 * for good stays with the admin API or apply.
 */
export async function deleteUser(ctx: Context, id: string, ifMatch: string | undefined, actor: ScimActor, base: string): Promise<void> {
  const deskNames = await deskNamesOf(ctx);
  await ctx.audit.recordWith(async (trx) => {
    const now = ctx.clock.now();
    const current = await personForChange(trx, id);
    if (!current) throw notFound('User');
    if (!reaches(actor.reach, current.user)) throw personOutOfReach(actor.reach, current.user);
    checkIfMatch(ifMatch, (userResource(current, base, deskNames).meta as { version: string }).version);
    const offboarded = await offboardPersonIn(ctx, trx, now, id, { actor: `scim:${actor.client}`, via: 'scim', reason: 'deleted through SCIM', requestId: actor.requestId });
    await trx.insertInto('scim_users').values({ user_id: id, external_id: current.externalId, hidden_at: now, updated_at: now }).onConflict((c) => c.column('user_id').doUpdateSet({ hidden_at: now, updated_at: now })).execute();
    const events: AuditEvent[] = offboarded ? [...offboarded.events] : [];
    events.push({ type: 'config.applied', actor: actor.client, client: actor.client, requestId: actor.requestId, subject: id, details: { via: 'scim', changes: [{ kind: 'user', id, outcome: 'hidden' }] } });
    return { value: undefined, events };
  });
}

/** Desk id → its name (or id), for Group displays. */
export async function deskNamesOf(ctx: Pick<Context, 'entities'>): Promise<Map<string, string>> {
  const snapshot = await ctx.entities.snapshot();
  return new Map([...snapshot.desks].map(([id, { desk }]) => [id, desk.name ?? id]));
}

/** A person a Group change moves on (`on`) or off a desk. */
export interface DeskMove {
  person: User;
  on: boolean;
}

/**
 * Moves people on or off a desk, each through the same step as any write of a person (upsertUser:
 * their whole entry as stored, with the desks changed), in the caller's transaction. Each person
 * is read again, locked (`personForChange`), and their entry is made from that row: the list the
 * Group's members were worked out from is no basis for what else the write keeps (their roles).
 * They are locked in the order of their ids, never the request's: two changes naming the same
 * people in opposite orders (a PATCH adding Alice then Bob, another Bob then Alice, or one adding
 * whom the other removes) would each hold one row and wait for the other's — a deadlock on
 * PostgreSQL, one of them failed. In one order, the second waits for the first, then runs.
 */
export async function setDeskMembership(trx: Transaction<Database>, now: number, changes: readonly DeskMove[], desk: string, actor: ScimActor, moves: PersonMove[]): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  for (const { person: listed, on } of inLockOrder(changes)) {
    const person = await personForChange(trx, listed.id);
    if (!person) throw new ScimError(409, `User ${listed.id} changed while the Group was being changed; retry`);
    const user = person.user;
    // Read again: still a person this caller reaches (another write may have moved them since the list).
    if (!reaches(actor.reach, user)) throw personOutOfReach(actor.reach, user);
    const desks = on ? [...new Set([...user.desks, desk])] : user.desks.filter((d) => d !== desk);
    const stored: UserEntry = { username: user.username, ...(user.name !== null ? { name: user.name } : {}), ...(user.email !== null ? { email: user.email } : {}), desks, roles: user.roles, attributes: user.attributes };
    const entry = entryWithinReach(actor.reach, stored, user.id);
    const upserted = await upsertUser(trx, now, entry, { keep: true }, { actor: actor.client, via: 'scim' });
    events.push(...upserted.events);
    if (upserted.moved) moves.push(upserted.moved);
    if (upserted.outcome !== 'unchanged') {
      events.push({ type: 'config.applied', actor: actor.client, client: actor.client, requestId: actor.requestId, subject: user.id, details: { via: 'scim', changes: [{ kind: 'user', id: user.id, outcome: 'updated' }], desk, member: on } });
    }
  }
  return events;
}

/** The changes in the order their people are locked: by id (a total order every change shares). */
export function inLockOrder(changes: readonly DeskMove[]): DeskMove[] {
  return [...changes].sort((a, b) => (a.person.id < b.person.id ? -1 : a.person.id > b.person.id ? 1 : 0));
}

export { entityTag };
