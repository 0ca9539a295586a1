import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { Insertable, Kysely, Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { Flight } from '../storage/flight.ts';
import { deleteExpired } from '../storage/pruner.ts';
import type { Database } from '../storage/schema.ts';
import { grantNamesMandate } from '../authorization/consent.ts';
import { handleDigest, randomHandle } from '../authorization/digest.ts';
import type { Confirmation } from './claims.ts';
import type { GrantedPayload } from './user-tokens.ts';
import type { PersonReadAhead } from '../risk/read-ahead.ts';
import { maxAccessTokenTtl } from '../resource-servers/definition.ts';
import { RevocationList } from './revocation.ts';

/**
 * Refresh tokens (RFC 6749 §6; DESIGN §4): opaque, 256 random bits, stored as a SHA-256 digest,
 * bound to the client and the grant. A rotation chain (one per code redemption) is a family; each
 * rotation marks the used token `rotated` with one conditional update and issues its child, so a
 * token is exchanged at most once and its later reuse is recognisable.
 *
 * Concurrency, the same on every dialect and node (issue 20 item 3). Of N concurrent uses of one
 * token exactly one rotates it: the conditional update active → rotated serialises them (PostgreSQL
 * makes the others wait for the winner's commit and then finds the row rotated; SQLite runs one
 * write transaction at a time). What the others get is the caller's rule (src/grants/refresh-token.ts):
 * - a retry (confidential clients): the winner's child itself, while it is unused. Each child carries
 *   its token value sealed under its parent's token value (`retry_seal`: AES-256-GCM with a key
 *   derived from the parent token, which the database holds only as a digest), so only a presenter
 *   of the parent can open it. Every concurrent duplicate and every later retry (a lost response,
 *   FAPI WG #456/#676) gets the same refresh token, no response carries a token that a sibling
 *   response has already replaced, and nothing is revoked. Reading the child is a conditional
 *   (no-op) update, so a retry and a concurrent use of the child serialise too: either the retry
 *   commits first (the child was unused when it was returned) or it finds the child used — a reuse;
 * - public clients: none (RFC 9700 §4.14.2): the token was used, so the grant is revoked.
 */

/**
 * Absolute lifetime of a family, from the code redemption, in seconds: a trading day and a half of
 * margin (12 h, the people side's longest session). Rotation does not extend it.
 */
export const refreshTokenTtlSeconds = 12 * 3600;

export type RefreshTokenState = 'active' | 'rotated' | 'superseded' | 'revoked';

/**
 * What a refresh token stands for: the grant's members (TokenBasis has what each means), carried
 * unchanged through rotation (RFC 6749 §6: same scope), and its binding.
 */
export interface RefreshPayload extends GrantedPayload {
  /**
   * The key or certificate a public client's refresh token is bound to (RFC 9449 §5, RFC 8705 §4):
   * every use must prove possession of it. Confidential clients' tokens are bound by client
   * authentication instead, and carry none.
   */
  cnf?: Confirmation;
}

export interface StoredRefreshToken {
  id: string;
  familyId: string;
  parentId: string | null;
  grantId: string;
  clientId: string;
  userId: string;
  payload: RefreshPayload;
  state: RefreshTokenState;
  /** Epoch ms; a person's cut-off (src/identity/lifecycle.ts) ends the tokens created before it. */
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  /** The kid that signed the tokens issued with it ('' none; null: written before migration 0057). */
  accessKid: string | null;
  /**
   * Whether its grant was in force for this token when the token was read: not revoked, and naming
   * the token's mandate if it has one (src/authorization/consent.ts grantNamesMandate).
   */
  grantActive: boolean;
}

/**
 * Issues the first refresh token of a family (at a code redemption). Returns the token once.
 * `db`: the transaction it belongs to (the redemption's), or that transaction's flight, to which
 * the insertion is added. `accessKid`: the kid that signed the tokens issued with it (`signedKid`),
 * so a compromised key's families are found (src/keys/compromise.ts). `familyId`: the family's id
 * when the caller chose it before signing the tokens issued with it, which name it
 * (`refresh_family`, newRefreshFamilyId); else a new one. It is the first token's id too.
 */
export async function issueRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  input: { grantId: string; clientId: string; userId: string; payload: RefreshPayload; accessKid?: string; familyId?: string },
  db: Kysely<Database> | Flight = ctx.storage.db,
): Promise<IssuedRefreshToken> {
  const token = randomHandle(32);
  const id = input.familyId ?? newRefreshFamilyId();
  const familyId = id;
  const now = ctx.clock.now();
  const expiresAt = now + refreshTokenTtlSeconds * 1000;
  const insert = (db instanceof Flight ? ctx.storage.db : db)
    .insertInto('refresh_tokens')
    .values({
      token_hash: handleDigest(token),
      id,
      family_id: familyId,
      parent_id: null,
      grant_id: input.grantId,
      client_id: input.clientId,
      user_id: input.userId,
      payload: JSON.stringify(input.payload),
      state: 'active',
      created_at: now,
      expires_at: expiresAt,
      used_at: null,
      retry_seal: null,
      access_kid: input.accessKid ?? null,
    });
  if (db instanceof Flight) void db.run(insert);
  else await insert.execute();
  return { token, id, familyId, expiresAt };
}

/** A new family's id (its first token's): chosen before the access token issued with it is signed, which names it. */
export function newRefreshFamilyId(): string {
  return randomUUID();
}

type Row = Awaited<ReturnType<ReturnType<typeof selectRow>['executeTakeFirst']>>;

/** A token and its grant's mandates when the grant is active, in one read (both tables are the authorization component's). */
function selectRow(ctx: Pick<Context, 'storage'>, column: 'token_hash' | 'id', value: string) {
  return ctx.storage.db
    .selectFrom('refresh_tokens')
    .leftJoin('grants', (join) => join.onRef('grants.id', '=', 'refresh_tokens.grant_id').on('grants.revoked_at', 'is', null))
    .selectAll('refresh_tokens')
    .select('grants.mandates as grant_mandates')
    .where(`refresh_tokens.${column}`, '=', value);
}

function toStored(row: NonNullable<Row>): StoredRefreshToken {
  const payload = JSON.parse(row.payload) as RefreshPayload;
  return {
    id: row.id,
    familyId: row.family_id,
    parentId: row.parent_id,
    grantId: row.grant_id,
    clientId: row.client_id,
    userId: row.user_id,
    payload,
    state: row.state as RefreshTokenState,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    usedAt: row.used_at === null ? null : Number(row.used_at),
    accessKid: row.access_kid,
    grantActive: grantNamesMandate(row.grant_mandates, payload.mandate),
  };
}

/**
 * The stored token for a presented refresh token, in any state; undefined when unknown. With
 * `ahead`, what the refresh grant reads about the token's person is read with the token, in one
 * flight (`ahead` adds its statements, selecting the person by the token's hash).
 */
export async function findRefreshToken(ctx: Pick<Context, 'storage'>, token: string, ahead?: PersonReadAhead): Promise<StoredRefreshToken | undefined> {
  if (token.length > 256) return undefined;
  const hash = handleDigest(token);
  if (!ahead) {
    const row = await selectRow(ctx, 'token_hash', hash).executeTakeFirst();
    return row && toStored(row);
  }
  const flight = ctx.storage.flight();
  const read = flight.run(selectRow(ctx, 'token_hash', hash));
  ahead(flight, ctx.storage.db.selectFrom('refresh_tokens').select('user_id').where('token_hash', '=', hash).$asScalar());
  await flight.send();
  const row = (await read).rows[0];
  return row && toStored(row);
}

/** A stored token by its id. */
export async function refreshTokenById(ctx: Pick<Context, 'storage'>, id: string): Promise<StoredRefreshToken | undefined> {
  const row = await selectRow(ctx, 'id', id).executeTakeFirst();
  return row && toStored(row);
}

/**
 * Rotates `parent` (`presented`: its token value, which seals the child for retries): in one
 * transaction, ONE conditional update (active → rotated) and, only when it won, the insertion of
 * the child. Of concurrent uses of one token, on any node, exactly one gets a child; the others see
 * the parent rotated with its child already in place. Undefined when lost.
 * `within`: the caller's transaction (the grant's, with the audit events), else one of its own.
 */
export async function rotateRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  parent: StoredRefreshToken,
  presented: string,
  within?: Transaction<Database>,
  accessKid?: string,
): Promise<IssuedRefreshToken | undefined> {
  const now = ctx.clock.now();
  return inTransaction(ctx, within, async (trx) => {
    const result = await rotation(trx, now, parent).executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return undefined;
    const child = childOf(now, parent, presented, accessKid);
    await trx.insertInto('refresh_tokens').values(child.row).execute();
    return child.issued;
  });
}

/**
 * `rotateRefreshToken` in the transaction of a flight (the grant's, with the audit events): the
 * same conditional update and the child's insertion, and unless the update rotates the token the
 * whole transaction is refused (`refresh_token_not_active`: used meanwhile, or expired) and
 * writes nothing. Returns the child, as it will be once committed. `accessKid`: as issueRefreshToken's.
 */
export function rotateRefreshTokenIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, parent: StoredRefreshToken, presented: string, accessKid?: string): IssuedRefreshToken {
  const now = ctx.clock.now();
  void flight.run(rotation(ctx.storage.db, now, parent), { rows: 1, otherwise: 'refresh_token_not_active' });
  const child = childOf(now, parent, presented, accessKid);
  void flight.run(ctx.storage.db.insertInto('refresh_tokens').values(child.row));
  return child.issued;
}

function rotation(db: Kysely<Database>, now: number, parent: StoredRefreshToken) {
  return (
    db
      .updateTable('refresh_tokens')
      // A used token's own seal is dropped: only an unused child is ever returned by a retry, and
      // without the seals of used tokens a copy of the database plus an old token of the family
      // cannot be walked down the chain to the live one.
      .set({ state: 'rotated', used_at: now, retry_seal: null })
      .where('id', '=', parent.id)
      .where('state', '=', 'active')
      .where('expires_at', '>', now)
  );
}

/**
 * A retry with the previous token (confidential clients), concurrent or later: the parent's child
 * that was never used (still active) is returned itself, opened from its seal with `presented`
 * (the parent's token value). Undefined when there is no such child (it was used: a reuse).
 * The child is read by a conditional no-op update, which holds its row until the caller's
 * transaction ends: a concurrent use of the child waits for this retry or makes it find none.
 * A child rotated before seals existed (migration 0012) is superseded and replaced instead.
 * `within`: the caller's transaction, else one of its own. `accessKid`: the kid that signed the
 * tokens this retry answers with, now the child's latest (as issueRefreshToken's).
 */
export async function retryRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  parent: StoredRefreshToken,
  presented: string,
  within?: Transaction<Database>,
  accessKid?: string,
): Promise<IssuedRefreshToken | undefined> {
  const now = ctx.clock.now();
  if (parent.expiresAt <= now) return undefined;
  return inTransaction(ctx, within, async (trx) => {
    const child = await trx
      .updateTable('refresh_tokens')
      .set(accessKid === undefined ? { state: 'active' } : { state: 'active', access_kid: accessKid })
      .where('parent_id', '=', parent.id)
      .where('state', '=', 'active')
      .returning(['id', 'retry_seal'])
      .executeTakeFirst();
    if (!child) return undefined;
    if (child.retry_seal === null) {
      await trx.updateTable('refresh_tokens').set({ state: 'superseded' }).where('id', '=', child.id).execute();
      const replacement = childOf(now, parent, presented, accessKid);
      await trx.insertInto('refresh_tokens').values(replacement.row).execute();
      return replacement.issued;
    }
    // Opens only with the parent's token value (the caller found the parent by its digest).
    const token = openSeal(child.retry_seal, presented, child.id);
    return token === undefined ? undefined : { token, id: child.id, familyId: parent.familyId, expiresAt: parent.expiresAt };
  });
}

function inTransaction<T>(ctx: Pick<Context, 'storage'>, within: Transaction<Database> | undefined, work: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  return within ? work(within) : ctx.storage.db.transaction().execute(work);
}

export interface IssuedRefreshToken {
  token: string;
  id: string;
  familyId: string;
  expiresAt: number;
}

/** The child of `parent` a rotation inserts: its row, and the token as the response carries it. */
function childOf(now: number, parent: StoredRefreshToken, presented: string, accessKid: string | undefined): { row: Insertable<Database['refresh_tokens']>; issued: IssuedRefreshToken } {
  const token = randomHandle(32);
  const id = randomUUID();
  return {
    row: {
      token_hash: handleDigest(token),
      id,
      family_id: parent.familyId,
      parent_id: parent.id,
      grant_id: parent.grantId,
      client_id: parent.clientId,
      user_id: parent.userId,
      payload: JSON.stringify(parent.payload),
      state: 'active',
      created_at: now,
      // Rotation never extends the family's absolute lifetime.
      expires_at: parent.expiresAt,
      used_at: null,
      retry_seal: seal(token, presented, id),
      access_kid: accessKid ?? null,
    },
    issued: { token, id, familyId: parent.familyId, expiresAt: parent.expiresAt },
  };
}

/**
 * The key that seals a child for retries: HMAC-SHA256 keyed with the parent's token value (256
 * random bits). The database stores SHA-256 of that value, which does not give this key.
 */
function sealKey(parentToken: string): Buffer {
  return createHmac('sha256', parentToken).update('clearance refresh-token retry seal v1').digest();
}

/** `token` sealed under `parentToken` (AES-256-GCM, the child's id as associated data): iv.ciphertext.tag, base64url. */
function seal(token: string, parentToken: string, childId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealKey(parentToken), iv);
  cipher.setAAD(Buffer.from(childId, 'utf8'));
  const sealed = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
  return [iv, sealed, cipher.getAuthTag()].map((part) => part.toString('base64url')).join('.');
}

/** The child's token value, or undefined when the seal does not open with `parentToken`. */
function openSeal(sealed: string, parentToken: string, childId: string): string | undefined {
  const [iv, data, tag] = sealed.split('.');
  if (iv === undefined || data === undefined || tag === undefined) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey(parentToken), Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(childId, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * Revokes every token of a family (RFC 7009 revocation of a refresh token) and, RFC 7009 §2.1
 * ("SHOULD also invalidate all access tokens based on the same authorization grant"), every access
 * token issued with it: the family goes on the revocation list, which liveness reads with the
 * token's jti in one statement (src/tokens/liveness.ts). Only this family: the grant's other
 * families (the client's other devices) keep their tokens. `db`: the caller's transaction, so the
 * two writes and its audit event commit together.
 */
export async function revokeFamily(db: Kysely<Database>, family: Pick<StoredRefreshToken, 'familyId' | 'expiresAt'>, nowMs: number, reason: string): Promise<void> {
  await db.updateTable('refresh_tokens').set({ state: 'revoked' }).where('family_id', '=', family.familyId).where('state', 'in', ['active', 'rotated', 'superseded']).execute();
  // Until the last of its access tokens has expired: none is issued once the family has (a rotation
  // or a retry needs an unexpired token), and none lives longer than the longest lifetime.
  await new RevocationList(db).revokeFamily(family.familyId, family.expiresAt + maxAccessTokenTtl * 1000, nowMs, reason);
}

/** Deletes tokens that expired before `now` (ms). */
export async function pruneRefreshTokens(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  // Six indexes per row: 256 rows a statement took about 12 ms on SQLite, 64 take about 3.
  return deleteExpired(ctx.storage.db, { table: 'refresh_tokens', key: 'token_hash', expiresBy: 'expires_at' }, now, { rowsPerStatement: 64 });
}
