import { sql, type Kysely, type Transaction } from 'kysely';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { handleDigest, randomHandle } from '../authorization/digest.ts';
import type { OidcScope } from '../authorization/scopes.ts';
import { open, seal, sealedKeyIdOf } from '../keys/sealed-box.ts';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { derivedKey } from '../keys/master-key.ts';

/**
 * The CIBA kind's own state (migration 0022, docs/approvals.md "CIBA"), beside its approval
 * request: how the client learns the outcome (poll or ping), the polling rule, and what the token
 * will carry. The auth_req_id is a bearer credential (CIBA §7.3): 256 random bits, given to the
 * client once, stored only as its SHA-256 and never logged.
 */

export type CibaMode = 'poll' | 'ping';

/** What the token of an approved request carries: fixed when the request is made, shown to its approvers. */
export interface CibaPayload {
  /** The business audience (RFC 8707), when the request named scopes of one or a resource. */
  resource?: string;
  /** Business scopes at `resource`. */
  scopes: string[];
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  /** The act chain of a login_hint_token (RFC 8693 §4.1), carried into the token. */
  act?: Record<string, unknown>;
  /** The client's acr_values (CIBA §7.1), what the subject's approval was asked to reach. */
  acrValues: string[];
}

export interface CibaRequest {
  idHash: string;
  /** The approval request (src/approvals/requests.ts): the `txn` of its events and token. */
  requestId: string;
  clientId: string;
  mode: CibaMode;
  notificationEndpoint?: string;
  /** Sealed; `openNotificationToken` opens it. */
  sealedNotificationToken?: string;
  /** Ping mode: the auth_req_id sealed, for the ping (§10.2); `openAuthReqId` opens it. */
  sealedAuthReqId?: string;
  /** Seconds. */
  interval: number;
  lastPolledAt?: number;
  payload: CibaPayload;
  grantId?: string;
  createdAt: number;
  expiresAt: number;
  consumedAt?: number;
}

/** The polling interval first given (CIBA §7.3: clients default to 5 s), and what slow_down adds (§11). */
export const defaultIntervalSeconds = 5;
export const slowDownSeconds = 5;
/** The longest an interval grows to by slow_down: a client is never told to wait longer than this. */
export const maxIntervalSeconds = 60;

/** A new auth_req_id: 256 random bits, base64url (§7.3: at least 128 bits of entropy). */
export function newAuthReqId(): string {
  return randomHandle(32);
}

/** How an auth_req_id is found: its SHA-256 (a copy of the table holds nothing a client could send). */
export function authReqIdHash(authReqId: string): string {
  return handleDigest(authReqId);
}

/**
 * The key notification tokens were sealed with before they were sealed with the master key itself
 * (so that a master key rotation re-seals them too, src/keys/rewrap.ts): opens values sealed then
 * (sealed-box.ts v1), for requests still open across the upgrade.
 */
export function notificationKey(masterKey: Buffer): Buffer {
  return derivedKey(masterKey, 'clearance ciba-notification-token v1');
}

/** Opens a sealed CIBA value: with the master key, or a value sealed before under `notificationKey`. */
export function openCibaSealed(masterKey: Buffer, sealed: string, associatedData: string): Buffer {
  return open(sealedKeyIdOf(sealed) === undefined ? notificationKey(masterKey) : masterKey, sealed, associatedData);
}

/** What binds a sealed notification token to its row (the approval request id). */
export const notificationTokenBinding = (requestId: string) => `ciba:${requestId}`;
/** What binds a sealed auth_req_id to its row: another associated data than the notification token's. */
export const authReqIdBinding = (requestId: string) => `ciba-auth-req-id:${requestId}`;

/** Seals a client_notification_token to its row with the master key. */
export function sealNotificationToken(masterKey: Buffer, token: string, requestId: string): string {
  return seal(masterKey, Buffer.from(token, 'utf8'), notificationTokenBinding(requestId));
}

export function openNotificationToken(masterKey: Buffer, request: Pick<CibaRequest, 'sealedNotificationToken' | 'requestId'>): string | undefined {
  if (request.sealedNotificationToken === undefined) return undefined;
  return openCibaSealed(masterKey, request.sealedNotificationToken, notificationTokenBinding(request.requestId)).toString('utf8');
}

/** Seals a ping-mode auth_req_id to its row with the master key. */
export function sealAuthReqId(masterKey: Buffer, authReqId: string, requestId: string): string {
  return seal(masterKey, Buffer.from(authReqId, 'utf8'), authReqIdBinding(requestId));
}

export function openAuthReqId(masterKey: Buffer, request: Pick<CibaRequest, 'sealedAuthReqId' | 'requestId'>): string | undefined {
  if (request.sealedAuthReqId === undefined) return undefined;
  return openCibaSealed(masterKey, request.sealedAuthReqId, authReqIdBinding(request.requestId)).toString('utf8');
}

/** Writes a new request's row, in the transaction that opens its approval request. */
export async function insertCibaRequest(trx: Transaction<Database>, request: CibaRequest): Promise<void> {
  await trx
    .insertInto('ciba_requests')
    .values({
      id_hash: request.idHash,
      request_id: request.requestId,
      client_id: request.clientId,
      mode: request.mode,
      notification_endpoint: request.notificationEndpoint ?? null,
      notification_token: request.sealedNotificationToken ?? null,
      sealed_auth_req_id: request.sealedAuthReqId ?? null,
      interval_seconds: request.interval,
      last_polled_at: null,
      payload: JSON.stringify(request.payload),
      grant_id: null,
      created_at: request.createdAt,
      expires_at: request.expiresAt,
      consumed_at: null,
    })
    .execute();
}

type Db = Kysely<Database> | Transaction<Database>;

/** The request an auth_req_id names, or undefined. */
export async function findCibaRequest(db: Db, authReqId: string): Promise<CibaRequest | undefined> {
  // A value far longer than any auth_req_id is no auth_req_id (and never reaches the hash).
  if (authReqId.length > 512) return undefined;
  const row = await db.selectFrom('ciba_requests').selectAll().where('id_hash', '=', authReqIdHash(authReqId)).executeTakeFirst();
  return row && fromRow(row);
}

/** The CIBA row of an approval request, or undefined. */
export async function cibaRequestOf(db: Db, requestId: string): Promise<CibaRequest | undefined> {
  const row = await db.selectFrom('ciba_requests').selectAll().where('request_id', '=', requestId).executeTakeFirst();
  return row && fromRow(row);
}

/**
 * One poll of a pending request (CIBA §7.3, §11): allowed when `interval` seconds passed since the
 * last one (or there was none), and then recorded — one conditional update, so two polls at once
 * cannot both pass. Otherwise slow_down: the interval grows by 5 s "for this and all subsequent
 * requests" (§11, RFC 8628 §3.5), up to a bound, and the clock of the interval starts again.
 */
export async function recordPoll(db: Kysely<Database>, idHash: string, now: number): Promise<{ ok: true } | { ok: false; interval: number }> {
  const passed = await db
    .updateTable('ciba_requests')
    .set({ last_polled_at: now })
    .where('id_hash', '=', idHash)
    .where((eb) => eb.or([eb('last_polled_at', 'is', null), eb(eb('last_polled_at', '+', eb(eb.ref('interval_seconds'), '*', 1000)), '<=', now)]))
    .executeTakeFirst();
  if (Number(passed.numUpdatedRows) === 1) return { ok: true };
  await db
    .updateTable('ciba_requests')
    .set({
      interval_seconds: sql<number>`case when interval_seconds + ${slowDownSeconds} > ${maxIntervalSeconds} then ${maxIntervalSeconds} else interval_seconds + ${slowDownSeconds} end`,
      last_polled_at: now,
    })
    .where('id_hash', '=', idHash)
    .execute();
  const row = await db.selectFrom('ciba_requests').select('interval_seconds').where('id_hash', '=', idHash).executeTakeFirst();
  return { ok: false, interval: Number(row?.interval_seconds ?? maxIntervalSeconds) };
}

/**
 * The redemption's half of single use, in the issuance flight: the row is consumed by ONE
 * conditional update, refused as `otherwise` when it was consumed meanwhile.
 */
export function consumeCibaRequestIn(flight: Flight, db: Kysely<Database>, idHash: string, now: number, otherwise: string): void {
  void flight.run(db.updateTable('ciba_requests').set({ consumed_at: now }).where('id_hash', '=', idHash).where('consumed_at', 'is', null), { rows: 1, otherwise });
}

/** Names the consent grant the subject's approval extended, in the transaction of that approval. */
export async function setCibaGrant(trx: Transaction<Database>, requestId: string, grantId: string): Promise<void> {
  await trx.updateTable('ciba_requests').set({ grant_id: grantId }).where('request_id', '=', requestId).execute();
}

/** Deletes rows that expired more than a day before `now` (ms). */
export async function pruneCibaRequests(db: Kysely<Database>, now: number): Promise<number> {
  const result = await db.deleteFrom('ciba_requests').where('expires_at', '<', now - 24 * 3600_000).executeTakeFirst();
  return Number(result.numDeletedRows);
}

function fromRow(row: Database['ciba_requests']): CibaRequest {
  return {
    idHash: row.id_hash,
    requestId: row.request_id,
    clientId: row.client_id,
    mode: row.mode as CibaMode,
    ...(row.notification_endpoint !== null ? { notificationEndpoint: row.notification_endpoint } : {}),
    ...(row.notification_token !== null ? { sealedNotificationToken: row.notification_token } : {}),
    ...(row.sealed_auth_req_id !== null ? { sealedAuthReqId: row.sealed_auth_req_id } : {}),
    interval: Number(row.interval_seconds),
    ...(row.last_polled_at !== null ? { lastPolledAt: Number(row.last_polled_at) } : {}),
    payload: JSON.parse(row.payload) as CibaPayload,
    ...(row.grant_id !== null ? { grantId: row.grant_id } : {}),
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    ...(row.consumed_at !== null ? { consumedAt: Number(row.consumed_at) } : {}),
  };
}
