import type { Context } from '../../context.ts';
import { findUser, type User, type UserEntry } from '../../identity/users.ts';
import type { AccessTokenClaims } from '../../tokens/claims.ts';
import { badRequest, notFound, ScimError } from './errors.ts';
import { institutionSchema } from './schemas.ts';

/**
 * Whose people a SCIM caller provisions: by legal entity, as the address books scope their
 * readers (src/endpoints/admin/transfer-destinations.ts `bookScope`). One Clearance may serve
 * several firms; a firm's HR system sees and changes the people of its firm and no one else's.
 *
 * - A client's own token (client credentials): the client's legal entity (`owner_lei`). A client
 *   of no legal entity reaches every person only when CLEARANCE_SCIM_GLOBAL_CLIENTS names it (a
 *   single-firm deployment's HR system, deliberately configured); otherwise no one (403).
 * - A person's own token: an `admin` reaches everyone (the admin API is theirs anyway); anyone
 *   else the legal entities of their desks; a person of no legal entity no one (403).
 * - A delegated token, or one that is neither a person's nor a client's own: no one (403).
 *
 * A person's legal entities are their `attributes.lei` (the institution extension's
 * `legalEntity`) and the legal entities of their desks (each desk belongs to one firm). A caller
 * reaches a person when the person has at least one and every one is the caller's: a person of no
 * firm, or of two firms one of which is another's, is out of every firm's reach.
 */
export type ScimReach = { kind: 'all' } | { kind: 'entities'; leis: ReadonlySet<string>; deskLeis: ReadonlyMap<string, string> };

/** Why a SCIM write was refused, for its `scim.refused` event. */
export interface RefusalRecord {
  reason: 'not_of_legal_entity' | 'no_legal_entity';
  /** The person the write named, when it named one. */
  subject?: string;
  /** The desk (Group) the write named. */
  group?: string;
  /** The legal entities involved that are not the caller's. */
  legalEntities?: string[];
}

/**
 * A refusal of a SCIM write on the caller's legal entities: answered like any ScimError (a 404 for
 * a person or desk out of reach reads exactly as one that does not exist) and put on the record by
 * `refusalsOnRecord`.
 */
export class ScimRefusal extends ScimError {
  readonly record: RefusalRecord;

  constructor(status: number, detail: string, record: RefusalRecord, scimType?: ConstructorParameters<typeof ScimError>[2]) {
    super(status, detail, scimType);
    this.name = 'ScimRefusal';
    this.record = record;
  }
}

/** The caller's reach, or 403 saying why it reaches no one. */
export async function scimReachOf(ctx: Pick<Context, 'clients' | 'entities' | 'storage' | 'config'>, claims: AccessTokenClaims): Promise<ScimReach> {
  const nobody = (detail: string) => new ScimRefusal(403, detail, { reason: 'no_legal_entity' });
  if (claims.act !== undefined) throw nobody('a delegated token provisions no one');
  if (claims.grant_id === undefined) {
    // A client's own token: the client is the subject, or there is none.
    if (claims.sub !== undefined && claims.sub !== claims.client_id) throw nobody('this token is neither a person’s own nor a client’s own');
    const owner = (await ctx.clients.get(claims.client_id))?.metadata.owner_lei;
    if (owner === undefined) {
      // Fail closed: only a deliberate configuration gives a client of no firm every firm's people.
      if (ctx.config.scimGlobalClients.includes(claims.client_id)) return { kind: 'all' };
      throw nobody(`client ${claims.client_id} belongs to no legal entity (owner_lei), so it provisions no one; give it the owner_lei of its firm (docs/lifecycle.md "SCIM 2.0")`);
    }
    return { kind: 'entities', leis: new Set([owner]), deskLeis: await deskLeisOf(ctx) };
  }
  // A person's own token.
  const person = claims.sub !== undefined ? await findUser(ctx, claims.sub) : undefined;
  if (!person || person.status !== 'active') throw nobody('the person this token was issued to is not active');
  if (person.roles.includes('admin')) return { kind: 'all' };
  // One read of the desks' firms: the person's reach and the people it is judged against use the same.
  const deskLeis = await deskLeisOf(ctx);
  const leis = new Set(person.desks.map((desk) => deskLeis.get(desk)).filter((lei): lei is string => lei !== undefined));
  if (leis.size === 0) throw nobody('you provision the people of your legal entity, and your account has no desk of any legal entity');
  return { kind: 'entities', leis, deskLeis };
}

/** Desk id → the legal entity it belongs to. */
async function deskLeisOf(ctx: Pick<Context, 'entities'>): Promise<Map<string, string>> {
  const snapshot = await ctx.entities.snapshot();
  return new Map([...snapshot.desks].map(([id, { lei }]) => [id, lei]));
}

/** A person's legal entities: their `attributes.lei` and their desks' firms, sorted. */
export function legalEntitiesOf(person: Pick<User, 'attributes' | 'desks'>, deskLeis: ReadonlyMap<string, string>): string[] {
  const leis = new Set<string>();
  if (typeof person.attributes.lei === 'string' && person.attributes.lei !== '') leis.add(person.attributes.lei);
  for (const desk of person.desks) {
    const lei = deskLeis.get(desk);
    if (lei !== undefined) leis.add(lei);
  }
  return [...leis].sort();
}

/** Whether the caller reaches the person: every legal entity of theirs is the caller's, and they have one. */
export function reaches(reach: ScimReach, person: Pick<User, 'attributes' | 'desks'>): boolean {
  if (reach.kind === 'all') return true;
  const leis = legalEntitiesOf(person, reach.deskLeis);
  return leis.length > 0 && leis.every((lei) => reach.leis.has(lei));
}

/** Whether the caller reaches the desk: it belongs to one of the caller's legal entities. */
export function reachesDesk(reach: ScimReach, desk: string): boolean {
  if (reach.kind === 'all') return true;
  const lei = reach.deskLeis.get(desk);
  return lei !== undefined && reach.leis.has(lei);
}

/**
 * The person as a write asks them to be, within the caller's reach. A person the write names no
 * legal entity for (no `legalEntity`, no desk of a firm) is of the caller's own, when it has
 * exactly one (RFC 7644 §3.3: the service provider assigns what the client leaves out); 400
 * invalidValue when it has several. A legal entity or desk of another firm is refused with 403:
 * RFC 7644 §3.12 "403 Forbidden: Operation is not permitted based on the supplied
 * authorization" — the value is well formed and another firm's client could write it; what this
 * caller lacks is the authority (a 400 would say the value itself is wrong, and Table 9 gives
 * scimType to 400 and 409 answers only).
 */
export function entryWithinReach(reach: ScimReach, entry: UserEntry, subject: string | undefined): UserEntry {
  if (reach.kind === 'all') return entry;
  const person = { attributes: entry.attributes ?? {}, desks: entry.desks ?? [] };
  const leis = legalEntitiesOf(person, reach.deskLeis);
  if (leis.length === 0) {
    if (reach.leis.size !== 1) throw badRequest('invalidValue', `${institutionSchema}:legalEntity is required: name one of your legal entities (${[...reach.leis].sort().join(', ')})`);
    return { ...entry, attributes: { ...person.attributes, lei: [...reach.leis][0]! } };
  }
  const outside = leis.filter((lei) => !reach.leis.has(lei));
  if (outside.length > 0) {
    throw new ScimRefusal(403, `the person would be of legal entity ${outside.join(', ')}, which is not this client's: a firm's provisioning system provisions only its own firm's people`, {
      reason: 'not_of_legal_entity',
      ...(subject !== undefined ? { subject } : {}),
      legalEntities: outside,
    });
  }
  return entry;
}

/**
 * The caller's refusal of a person it does not reach, answered as the caller would be answered for
 * a person who does not exist (their existence is not revealed): 404 by default; `unknown` for
 * another answer (a Group member that is no User: 400 invalidValue).
 */
export function personOutOfReach(reach: ScimReach, person: Pick<User, 'id' | 'attributes' | 'desks'>, unknown: ScimError = notFound('User')): ScimRefusal {
  const outside = reach.kind === 'all' ? [] : legalEntitiesOf(person, reach.deskLeis).filter((lei) => !reach.leis.has(lei));
  return new ScimRefusal(unknown.status, unknown.message, { reason: 'not_of_legal_entity', subject: person.id, legalEntities: outside }, unknown.scimType);
}

/** Who asks and what, for a `scim.refused` event. */
export interface RefusedWrite {
  client: string;
  /** The token's person, else its client. */
  actor: string;
  requestId: string;
  /** create, replace, patch or delete, of a User or a Group. */
  operation: 'create' | 'replace' | 'patch' | 'delete';
  resource: 'User' | 'Group';
}

/**
 * Runs a SCIM write; a ScimRefusal it throws is put on the record as `scim.refused` (who, what,
 * why, the legal entities outside the caller's) before it is answered, as the address books
 * record a removal refused for another entity.
 */
export async function refusalsOnRecord<T>(ctx: Pick<Context, 'audit'>, write: RefusedWrite, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ScimRefusal) {
      const { record } = error;
      await ctx.audit.record({
        type: 'scim.refused',
        actor: write.actor,
        client: write.client,
        requestId: write.requestId,
        ...(record.subject !== undefined ? { subject: record.subject } : {}),
        decision: { allow: false, reasons: [record.reason] },
        details: {
          reason: record.reason,
          operation: write.operation,
          resource: write.resource,
          status: error.status,
          ...(record.group !== undefined ? { group: record.group } : {}),
          ...(record.legalEntities !== undefined ? { legal_entities: record.legalEntities } : {}),
        },
      });
    }
    throw error;
  }
}
