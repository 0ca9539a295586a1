import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { rowsOf, type Flight } from '../storage/flight.ts';
import { deleteExpired } from '../storage/pruner.ts';
import { OAuthError } from '../oauth-error.ts';
import { handleDigest, randomHandle } from './digest.ts';
import type { AuthorizationRequest } from './request.ts';

/**
 * Pushed authorization requests (RFC 9126). A validated request is stored under the digest of a
 * fresh request_uri; /authorize later resolves it for the same client.
 *
 * Single use: a request_uri may be presented again while no authorization made from it has
 * completed (the person may reload the login page, FAPI 2.0 SP §5.3.2.2 / CS
 * `par-ensure-reused-request-uri-prior-to-auth-completion-succeeds`); the first completion (code
 * issued or error returned) consumes it with one conditional update, after which it is refused
 * (RFC 9126 §4: the request_uri MUST be one-time use, enforced at completion).
 */

/** RFC 9126 §2.2: the request_uri prefix. */
export const requestUriPrefix = 'urn:ietf:params:oauth:request_uri:';

/** Seconds a request_uri is valid (RFC 9126 §2.2 expires_in; short: it is a bearer handle). */
export const pushedRequestTtlSeconds = 60;

export interface PushedRequest {
  /** The handle, returned to the client once; only its digest is stored. */
  requestUri: string;
  expiresIn: number;
  /** Public id (for audit and interactions). */
  id: string;
}

/**
 * Stores a validated request; returns its request_uri. The stored request names its own id
 * (`pushedRequestId`), as /authorize's request does: an interaction can then be created straight
 * from the row (interactions.ts createInteractionFromRequestUri).
 */
export async function storePushedRequest(ctx: Context, request: AuthorizationRequest): Promise<PushedRequest> {
  const requestUri = `${requestUriPrefix}${randomHandle(32)}`;
  const now = ctx.clock.now();
  const id = randomUUID();
  await ctx.storage.db
    .insertInto('pushed_requests')
    .values({
      uri_hash: handleDigest(requestUri),
      id,
      client_id: request.clientId,
      request: JSON.stringify({ ...request, pushedRequestId: id } satisfies AuthorizationRequest),
      created_at: now,
      expires_at: now + pushedRequestTtlSeconds * 1000,
      consumed_at: null,
    })
    .execute();
  return { requestUri, expiresIn: pushedRequestTtlSeconds, id };
}

/** True when `requestUri` is shaped like one of ours (a prefix and a bounded length): only those are looked up. */
export function isOwnRequestUri(requestUri: string): boolean {
  return requestUri.startsWith(requestUriPrefix) && requestUri.length <= 200;
}

/**
 * The request a request_uri stands for, for `clientId`. Unknown, expired, consumed, or pushed by
 * another client → `invalid_request_uri` (RFC 9126 §4; all alike, so no oracle). With `flight`,
 * read with its other statements.
 */
export async function resolveRequestUri(ctx: Context, clientId: string, requestUri: string, flight?: Flight): Promise<{ id: string; request: AuthorizationRequest }> {
  const invalid = (detail: string) => new OAuthError('invalid_request_uri', 'the request_uri is invalid, expired or already used', { detail });
  if (!isOwnRequestUri(requestUri)) throw invalid('not one of our request_uris');
  const [row] = await rowsOf(
    ctx.storage.db.selectFrom('pushed_requests').select(['id', 'client_id', 'request', 'expires_at', 'consumed_at']).where('uri_hash', '=', handleDigest(requestUri)),
    flight,
  );
  if (!row) throw invalid('unknown request_uri');
  // RFC 9126 §4: the request_uri is bound to the client that pushed it.
  if (row.client_id !== clientId) throw invalid(`request_uri pushed by ${row.client_id}, presented by ${clientId}`);
  if (Number(row.expires_at) <= ctx.clock.now()) throw invalid('request_uri expired');
  if (row.consumed_at !== null) throw invalid('request_uri already used by a completed authorization');
  return { id: row.id, request: { ...(JSON.parse(row.request) as AuthorizationRequest), pushedRequestId: row.id } };
}

/**
 * Marks a pushed request used, when an authorization made from it completes. One conditional
 * update: of two authorizations racing to complete from one request_uri, exactly one gets true.
 * `db`: the transaction of the authorization response that completes it.
 */
export async function consumePushedRequest(ctx: Pick<Context, 'storage' | 'clock'>, id: string, db: Kysely<Database> = ctx.storage.db): Promise<boolean> {
  const result = await consumption(ctx, id, db).executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * `consumePushedRequest` in the transaction of a flight: unless it is this one that consumes the
 * pushed request, the whole transaction is refused (`request_uri_used`) and writes nothing — or,
 * with `{ required: false }` (an error response), goes on without it.
 */
export function consumePushedRequestIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, id: string, options: { required?: boolean } = {}): void {
  const update = consumption(ctx, id, ctx.storage.db);
  void (options.required === false ? flight.run(update) : flight.run(update, { rows: 1, otherwise: 'request_uri_used' }));
}

function consumption(ctx: Pick<Context, 'clock'>, id: string, db: Kysely<Database>) {
  return db.updateTable('pushed_requests').set({ consumed_at: ctx.clock.now() }).where('id', '=', id).where('consumed_at', 'is', null);
}

/** Deletes pushed requests that expired before `now` (ms). */
export async function prunePushedRequests(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  return deleteExpired(ctx.storage.db, { table: 'pushed_requests', key: 'uri_hash', expiresBy: 'expires_at' }, now);
}
