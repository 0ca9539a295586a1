import { randomUUID } from 'node:crypto';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { AuditEvent } from '../audit/events.ts';
import { isPostgres } from '../audit/dialect.ts';
import type { Context } from '../context.ts';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { describeAuthorizationDetails, type AuthorizationDetail } from './authorization-details.ts';
import type { AuthorizationRequest } from './request.ts';
import { describeOidcScope, describeScope, type OidcScope } from './scopes.ts';
import { isUniqueViolation } from '../storage/faults.ts';

/**
 * The consent store: what a person allowed a client (DESIGN §3 "consent"), one active grant per
 * person and client, extended by each approval. Codes, refresh tokens and access tokens name the
 * grant they came from (`grant_id`); revoking the grant makes its refresh tokens fail and its
 * access tokens inactive at introspection at once.
 */
export interface ConsentGrant {
  id: string;
  userId: string;
  clientId: string;
  /** Granted business scopes per resource identifier. */
  resources: Record<string, string[]>;
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  /**
   * The mandates (ids) the person consented to let the client act under: a request naming any
   * other shows the consent page (`grantCovers`), and a code or refresh token under a mandate
   * is honoured only while its grant names it (`grantNamesMandate`).
   */
  mandates: string[];
  createdAt: number;
  updatedAt: number;
  revokedAt: number | null;
  revokedBy: string | null;
  revokeReason: string | null;
}

type Row = Selectable<Database['grants']>;

/**
 * The grant's columns, prefixed `g_`, for a read that left-joins `grants` to another table of this
 * component (`grantFromJoined` makes the ConsentGrant of such a row).
 */
export const joinedGrantColumns = [
  'grants.id as g_id',
  'grants.user_id as g_user_id',
  'grants.client_id as g_client_id',
  'grants.resources as g_resources',
  'grants.oidc_scopes as g_oidc_scopes',
  'grants.authorization_details as g_authorization_details',
  'grants.mandates as g_mandates',
  'grants.created_at as g_created_at',
  'grants.updated_at as g_updated_at',
  'grants.revoked_at as g_revoked_at',
  'grants.revoked_by as g_revoked_by',
  'grants.revoke_reason as g_revoke_reason',
] as const;

type Joined = { [K in keyof Row as `g_${K & string}`]: Row[K] | null };

/** The grant of a row read with `joinedGrantColumns`; undefined when the join found none. */
export function grantFromJoined(row: Joined): ConsentGrant | undefined {
  if (row.g_id === null) return undefined;
  return toGrant({
    id: row.g_id,
    user_id: row.g_user_id!,
    client_id: row.g_client_id!,
    resources: row.g_resources!,
    oidc_scopes: row.g_oidc_scopes!,
    authorization_details: row.g_authorization_details!,
    mandates: row.g_mandates!,
    created_at: row.g_created_at!,
    updated_at: row.g_updated_at!,
    revoked_at: row.g_revoked_at,
    revoked_by: row.g_revoked_by,
    revoke_reason: row.g_revoke_reason,
  });
}

/** The grant of a `grants` row read by another file of this component. */
export function grantFromRow(row: Row): ConsentGrant {
  return toGrant(row);
}

function toGrant(row: Row): ConsentGrant {
  return {
    id: row.id,
    userId: row.user_id,
    clientId: row.client_id,
    resources: JSON.parse(row.resources) as Record<string, string[]>,
    oidcScopes: JSON.parse(row.oidc_scopes) as OidcScope[],
    authorizationDetails: JSON.parse(row.authorization_details) as AuthorizationDetail[],
    mandates: JSON.parse(row.mandates) as string[],
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    revokedAt: row.revoked_at === null ? null : Number(row.revoked_at),
    revokedBy: row.revoked_by,
    revokeReason: row.revoke_reason,
  };
}

/** A grant by id, revoked or not. */
export async function getGrant(ctx: Pick<Context, 'storage'>, id: string): Promise<ConsentGrant | undefined> {
  if (id.length > 64) return undefined;
  const row = await ctx.storage.db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toGrant(row);
}

/** True when the grant exists and is not revoked (introspection, refresh, userinfo ask this). */
export async function isGrantActive(db: Kysely<Database>, id: string): Promise<boolean> {
  if (id.length > 64) return false;
  const row = await db.selectFrom('grants').select('id').where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
  return row !== undefined;
}

/** The active grant of a person to a client, if any. */
export async function findActiveGrant(ctx: Pick<Context, 'storage'>, userId: string, clientId: string): Promise<ConsentGrant | undefined> {
  const row = await ctx.storage.db
    .selectFrom('grants')
    .selectAll()
    .where('user_id', '=', userId)
    .where('client_id', '=', clientId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return row && toGrant(row);
}

/**
 * Grants, newest first, for the admin API (revoked ones too) and a person's account page
 * (`active: true`: only those not revoked).
 */
export async function listGrants(ctx: Pick<Context, 'storage'>, filter: { userId?: string; clientId?: string; active?: boolean; limit?: number }): Promise<ConsentGrant[]> {
  let query = ctx.storage.db.selectFrom('grants').selectAll().orderBy('updated_at', 'desc').limit(Math.min(filter.limit ?? 100, 1000));
  if (filter.userId !== undefined) query = query.where('user_id', '=', filter.userId);
  if (filter.clientId !== undefined) query = query.where('client_id', '=', filter.clientId);
  if (filter.active) query = query.where('revoked_at', 'is', null);
  return (await query.execute()).map(toGrant);
}

/**
 * True when `grant` already covers the request, so no consent page is needed: every business scope
 * at its resource, every OpenID scope, and the mandate the request names. A request with
 * authorization_details always needs the person's explicit consent: they describe one transaction
 * (an order up to a notional), not a standing permission.
 */
export function grantCovers(grant: ConsentGrant | undefined, request: AuthorizationRequest): boolean {
  if (!grant || grant.revokedAt !== null) return false;
  if (request.authorizationDetails.length > 0) return false;
  // Acting under a firm's mandate is more than the scopes: the person consents to each mandate.
  if (request.mandate !== undefined && !grant.mandates.includes(request.mandate)) return false;
  if (request.resource !== undefined) {
    const granted = grant.resources[request.resource] ?? [];
    if (!request.scopes.every((s) => granted.includes(s))) return false;
  }
  return request.oidcScopes.every((s) => grant.oidcScopes.includes(s));
}

/**
 * True when a code or refresh token under `mandate` may still be honoured by its grant: the grant
 * names the mandate (or the token names none). `mandatesJson`: the grant's `mandates` column, as
 * read with the code or token (null: no active grant). Grants only grow, so this fails only for a
 * token issued under a mandate without the person's consent (before migration 0014).
 */
export function grantNamesMandate(mandatesJson: string | null, mandate: string | undefined): boolean {
  if (mandatesJson === null) return false;
  return mandate === undefined || (JSON.parse(mandatesJson) as string[]).includes(mandate);
}

/** What an approval adds to a grant: the parts of an authorization request (or of a CIBA request, src/ciba) a grant keeps. */
export type GrantExtension = Pick<AuthorizationRequest, 'clientId' | 'resource' | 'scopes' | 'oidcScopes' | 'authorizationDetails' | 'mandate'>;

/**
 * Records a person's approval: extends their active grant to the client with the request's scopes,
 * authorization_details and mandate, or creates one. One active grant per person and client is enforced by
 * a unique index; a concurrent creation is retried as an extension. Resolves the grant.
 */
export async function approveRequest(ctx: Pick<Context, 'storage' | 'clock'>, userId: string, request: AuthorizationRequest): Promise<ConsentGrant> {
  return retryingConcurrentGrant(() => ctx.storage.db.transaction().execute((trx) => approveRequestIn(trx, ctx.clock.now(), userId, request)));
}

/**
 * `approveRequest` inside the caller's transaction (the consent decision's, with the interaction
 * and the audit event). A concurrent creation of the person's grant fails it with a unique
 * violation: run the whole transaction again through `retryingConcurrentGrant`.
 */
export async function approveRequestIn(trx: Transaction<Database>, now: number, userId: string, request: GrantExtension): Promise<ConsentGrant> {
  const row = await trx
    .selectFrom('grants')
    .selectAll()
    .where('user_id', '=', userId)
    .where('client_id', '=', request.clientId)
    .where('revoked_at', 'is', null)
    // PostgreSQL: lock the row, so concurrent approvals extend it one after the other instead
    // of the last one overwriting the others' scopes. SQLite transactions are serial already.
    .$if(isPostgres(trx), (qb) => qb.forUpdate())
    .executeTakeFirst();
  const current = row ? toGrant(row) : undefined;
  const grant = approved(current, now, userId, request);
  if (current) await extension(trx, grant).where('id', '=', current.id).execute();
  else await trx.insertInto('grants').values(grantRow(grant)).execute();
  return grant;
}

/**
 * `approveRequestIn` for the flight of the consent decision's transaction, from `current`: the
 * person's active grant to the client as the request read it (null: none). Optimistic: the
 * extension is conditional on that grant being unchanged and still active, and unless it is, the
 * whole transaction is refused (`grant_changed`); a grant created meanwhile makes the creation fail
 * with a unique violation. Either way nothing is written, and the caller decides again with
 * `approveRequestIn`, which locks the row. Returns the grant as it will be once committed.
 */
export function approveRequestInFlight(flight: Flight, db: Kysely<Database>, now: number, userId: string, request: AuthorizationRequest, current: ConsentGrant | null): ConsentGrant {
  const grant = approved(current ?? undefined, now, userId, request);
  if (!current) {
    void flight.run(db.insertInto('grants').values(grantRow(grant)));
    return grant;
  }
  void flight.run(
    extension(db, grant)
      .where('id', '=', current.id)
      .where('revoked_at', 'is', null)
      // Unchanged since it was read: every column an approval extends, as it was written (JSON text).
      .where('updated_at', '=', current.updatedAt)
      .where('resources', '=', JSON.stringify(current.resources))
      .where('oidc_scopes', '=', JSON.stringify(current.oidcScopes))
      .where('authorization_details', '=', JSON.stringify(current.authorizationDetails))
      .where('mandates', '=', JSON.stringify(current.mandates)),
    { rows: 1, otherwise: 'grant_changed' },
  );
  return grant;
}

/** The grant an approval of `request` makes of `current` (or a new one): every set it extends, merged. */
function approved(current: ConsentGrant | undefined, now: number, userId: string, request: GrantExtension): ConsentGrant {
  const resources = { ...(current?.resources ?? {}) };
  if (request.resource !== undefined) {
    resources[request.resource] = union(resources[request.resource] ?? [], request.scopes);
  }
  const oidcScopes = union(current?.oidcScopes ?? [], request.oidcScopes) as OidcScope[];
  const details = [...(current?.authorizationDetails ?? [])];
  for (const detail of request.authorizationDetails) {
    if (!details.some((d) => JSON.stringify(d) === JSON.stringify(detail))) details.push(detail);
  }
  const mandates = union(current?.mandates ?? [], request.mandate !== undefined ? [request.mandate] : []);
  if (current) return { ...current, resources, oidcScopes, authorizationDetails: details, mandates, updatedAt: now };
  return {
    id: randomUUID(),
    userId,
    clientId: request.clientId,
    resources,
    oidcScopes,
    authorizationDetails: details,
    mandates,
    createdAt: now,
    updatedAt: now,
    revokedAt: null,
    revokedBy: null,
    revokeReason: null,
  };
}

function extension(db: Kysely<Database>, grant: ConsentGrant) {
  return db.updateTable('grants').set({
    resources: JSON.stringify(grant.resources),
    oidc_scopes: JSON.stringify(grant.oidcScopes),
    authorization_details: JSON.stringify(grant.authorizationDetails),
    mandates: JSON.stringify(grant.mandates),
    updated_at: grant.updatedAt,
  });
}

function grantRow(grant: ConsentGrant): Row {
  return {
    id: grant.id,
    user_id: grant.userId,
    client_id: grant.clientId,
    resources: JSON.stringify(grant.resources),
    oidc_scopes: JSON.stringify(grant.oidcScopes),
    authorization_details: JSON.stringify(grant.authorizationDetails),
    mandates: JSON.stringify(grant.mandates),
    created_at: grant.createdAt,
    updated_at: grant.updatedAt,
    revoked_at: null,
    revoked_by: null,
    revoke_reason: null,
  };
}

/**
 * Runs a transaction that approves a request (`approveRequestIn`) again when another request
 * created the person's grant meanwhile (the unique index refused the second one): the next
 * attempt extends that grant. At most three attempts.
 */
export async function retryingConcurrentGrant<T>(transaction: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await transaction();
    } catch (error) {
      if (attempt < 2 && isUniqueViolation(error)) continue;
      throw error;
    }
  }
}

/**
 * Revokes a grant: from now on its refresh tokens fail and its access tokens are inactive at
 * introspection and userinfo. One conditional update; false when it was unknown or already revoked.
 * Records `consent.revoked` in the same transaction.
 */
export async function revokeGrant(
  ctx: Pick<Context, 'clock' | 'audit'>,
  id: string,
  by: { actor: string; reason: string; requestId?: string },
): Promise<boolean> {
  return ctx.audit.recordWith(async (trx) => {
    const event = await revokeGrantIn(trx, ctx.clock.now(), id, by);
    return { value: event !== undefined, events: event ? [event] : [] };
  });
}

/**
 * `revokeGrant` inside the caller's transaction (reuse detection revokes and records its own
 * event with it). Returns the `consent.revoked` event to record in that transaction, or
 * undefined when the grant was unknown or already revoked (nothing changed).
 */
export async function revokeGrantIn(
  trx: Transaction<Database>,
  now: number,
  id: string,
  by: { actor: string; reason: string; requestId?: string },
): Promise<AuditEvent | undefined> {
  const revoked = await trx
    .updateTable('grants')
    .set({ revoked_at: now, revoked_by: by.actor, revoke_reason: by.reason })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .returning(['user_id', 'client_id'])
    .executeTakeFirst();
  if (!revoked) return undefined;
  // Refresh tokens would fail anyway (they check the grant); marking them keeps the table honest.
  await trx.updateTable('refresh_tokens').set({ state: 'revoked' }).where('grant_id', '=', id).where('state', '=', 'active').execute();
  return {
    type: 'consent.revoked',
    ...(by.requestId ? { requestId: by.requestId } : {}),
    actor: by.actor,
    subject: revoked.user_id,
    client: revoked.client_id,
    details: { grant_id: id, reason: by.reason },
  };
}

/** A grant as the admin API and account pages show it. */
export function grantView(grant: ConsentGrant): Record<string, unknown> {
  return {
    id: grant.id,
    user_id: grant.userId,
    client_id: grant.clientId,
    resources: grant.resources,
    oidc_scopes: grant.oidcScopes,
    authorization_details: grant.authorizationDetails,
    mandates: grant.mandates,
    created_at: new Date(grant.createdAt).toISOString(),
    updated_at: new Date(grant.updatedAt).toISOString(),
    revoked_at: grant.revokedAt === null ? null : new Date(grant.revokedAt).toISOString(),
    revoked_by: grant.revokedBy,
    revoke_reason: grant.revokeReason,
  };
}

/** A grant in the words of the consent page that created it (contract.ts ConsentRequest). */
export interface GrantDescription {
  clientName: string;
  /** The names of the resource servers the grant covers (the identifier when a server has no name). */
  services: string[];
  /** One sentence per OpenID scope, per business scope and per authorization_details entry. */
  lines: string[];
}

/**
 * Describes a grant as the consent page words a request (steps.ts consentRequest): the client's
 * registered name, then the OpenID scopes, each resource's scopes under the resource's name, and
 * the authorization_details through their types' `describe`. A client or resource server removed
 * since is named by its identifier.
 */
export async function describeGrant(ctx: Pick<Context, 'clients' | 'resourceServers'>, grant: ConsentGrant): Promise<GrantDescription> {
  const clientName = (await ctx.clients.get(grant.clientId))?.metadata.client_name ?? grant.clientId;
  const lines = grant.oidcScopes.map((scope) => describeOidcScope(scope, clientName));
  const services: string[] = [];
  for (const [identifier, scopes] of Object.entries(grant.resources)) {
    if (scopes.length === 0) continue;
    const name = (await ctx.resourceServers.get(identifier))?.name || identifier;
    services.push(name);
    for (const scope of scopes) lines.push(describeScope(scope, name));
  }
  lines.push(...describeAuthorizationDetails(grant.authorizationDetails));
  for (const mandate of grant.mandates) lines.push(mandateLine(mandate));
  return { clientName, services, lines };
}

/** The consent page's sentence for acting under a mandate (steps.ts consentRequest, describeGrant). */
export function mandateLine(mandate: string): string {
  return `Act under mandate ${mandate}, within its scopes and limits`;
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}
