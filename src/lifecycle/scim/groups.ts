import type { Context } from '../../context.ts';
import { badRequest, notFound, ScimError } from './errors.ts';
import { applyPatch } from './patch.ts';
import { groupSchema, groupSchemaDefinition, type SchemaDefinition } from './schemas.ts';
import { checkIfMatch, listPeople, setDeskMembership, type ScimActor } from './store.ts';
import { recordMoves, type PersonMove } from '../mover.ts';
import { personOutOfReach, reaches, reachesDesk, ScimRefusal, type ScimReach } from './reach.ts';
import { entityTag, type ScimPerson } from './users.ts';

/**
 * Groups are desks (docs/lifecycle.md "SCIM 2.0"): each desk declared under a legal entity in apply
 * is a Group whose id is the desk id, whose displayName is the desk's name, and whose members are
 * the people on it. Desks themselves are declared by apply (they belong to a legal entity, carry
 * product classes and a time zone): SCIM reads them and changes who is on them — PUT and PATCH of
 * `members` — but neither creates nor deletes them. Roles are not Groups: they confer authority
 * and stay with apply and the admin API.
 */
export const groupSchemas: readonly SchemaDefinition[] = [groupSchemaDefinition];

export interface Desk {
  id: string;
  name: string;
}

/** The declared desks of the caller's legal entities (every desk for a caller of every firm), ordered by id. */
export async function listDesks(ctx: Pick<Context, 'entities'>, reach: ScimReach): Promise<Desk[]> {
  const snapshot = await ctx.entities.snapshot();
  return [...snapshot.desks]
    .filter(([id]) => reachesDesk(reach, id))
    .map(([id, { desk }]) => ({ id, name: desk.name ?? id }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** A desk as a SCIM Group, its members the people (SCIM sees) on it. */
export function groupResource(desk: Desk, people: readonly ScimPerson[], base: string): Record<string, unknown> {
  const members = people
    .filter((p) => p.user.desks.includes(desk.id))
    .map((p) => ({ value: p.user.id, $ref: `${base}/Users/${p.user.id}`, display: p.user.username, type: 'User' }));
  const resource = { schemas: [groupSchema], id: desk.id, displayName: desk.name, members };
  const meta = { resourceType: 'Group', location: `${base}/Groups/${encodeURIComponent(desk.id)}` };
  return { ...resource, meta: { ...meta, version: entityTag({ ...resource, meta }) } };
}

/** The member ids a Group body (a PUT, or a PATCH's result) lists; 400 for a malformed list. */
function memberIds(body: Record<string, unknown>): Set<string> {
  const members = Object.entries(body).find(([k]) => k.toLowerCase() === 'members')?.[1] ?? [];
  if (!Array.isArray(members)) throw badRequest('invalidSyntax', 'members must be an array');
  const ids = new Set<string>();
  for (const member of members) {
    const value = typeof member === 'object' && member !== null ? (member as Record<string, unknown>).value : undefined;
    if (typeof value !== 'string') throw badRequest('invalidValue', 'each member needs a value: a User id');
    ids.add(value);
  }
  return ids;
}

/**
 * Sets the members of a desk (PUT: the body's members; PATCH: the members after the patch), in one
 * transaction: the people added get the desk, the people removed lose it, each through the write
 * step of every change of a person. Only among the people the caller reaches: another firm's
 * person on the desk is neither shown nor removed. 404 for a desk of another firm (as for none);
 * 400 invalidValue for a member that is no User the caller sees; 412 for a stale If-Match.
 */
export async function changeMembers(ctx: Context, deskId: string, change: { kind: 'replace' | 'patch'; body: unknown; ifMatch?: string }, actor: ScimActor, base: string): Promise<void> {
  const desk = (await listDesks(ctx, { kind: 'all' })).find((d) => d.id === deskId);
  if (!desk) throw notFound('Group');
  // Another firm's desk is answered as one that does not exist; the refusal is on the record.
  if (!reachesDesk(actor.reach, desk.id)) throw new ScimRefusal(404, 'no such Group', { reason: 'not_of_legal_entity', group: desk.id });
  const moves: PersonMove[] = [];
  await ctx.audit.recordWith(async (trx) => {
    moves.length = 0;
    const everyone = await listPeople(trx, { kind: 'all' });
    const people = everyone.filter((p) => reaches(actor.reach, p.user));
    const current = groupResource(desk, people, base);
    checkIfMatch(change.ifMatch, (current.meta as { version: string }).version);
    let body: Record<string, unknown>;
    if (change.kind === 'patch') body = applyPatch(current, change.body, groupSchemas);
    else {
      if (typeof change.body !== 'object' || change.body === null || Array.isArray(change.body)) throw badRequest('invalidSyntax', 'the body must be a Group resource');
      body = change.body as Record<string, unknown>;
      const schemas = body.schemas;
      if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === groupSchema.toLowerCase())) throw badRequest('invalidSyntax', `schemas must include ${groupSchema}`);
      for (const key of Object.keys(body)) if (!['schemas', 'id', 'externalid', 'displayname', 'members', 'meta'].includes(key.toLowerCase())) throw badRequest('invalidSyntax', `unknown attribute: ${key.slice(0, 200)}`);
    }
    const wanted = memberIds(body);
    const byId = new Map(people.map((p) => [p.user.id, p.user]));
    for (const id of wanted) {
      if (byId.has(id)) continue;
      // Another firm's person is no User this caller sees: the same answer, and on the record.
      const other = everyone.find((p) => p.user.id === id);
      const unknown = badRequest('invalidValue', `no User ${id.slice(0, 64)}`);
      throw other ? personOutOfReach(actor.reach, other.user, unknown) : unknown;
    }
    const now = ctx.clock.now();
    const added = [...wanted].filter((id) => !byId.get(id)!.desks.includes(desk.id)).map((id) => byId.get(id)!);
    const removed = people.filter((p) => p.user.desks.includes(desk.id) && !wanted.has(p.user.id)).map((p) => p.user);
    const changes = [...added.map((person) => ({ person, on: true })), ...removed.map((person) => ({ person, on: false }))];
    const events = await setDeskMembership(trx, now, changes, desk.id, actor, moves);
    return { value: undefined, events };
  });
  // Joining or leaving a desk is a move (src/lifecycle/mover.ts): decided again once committed.
  await recordMoves(ctx, moves, { actor: `scim:${actor.client}`, via: 'scim', ...(actor.requestId ? { requestId: actor.requestId } : {}) });
}

/** RFC 7644 §3.3 / §3.6 for Groups: desks are declared by apply, so SCIM neither creates nor deletes them. */
export function desksAreDeclared(): ScimError {
  return new ScimError(405, 'Groups are desks, declared under their legal entity by apply (docs/apply.md); SCIM changes their members only', undefined, { allow: 'GET, PUT, PATCH' });
}
