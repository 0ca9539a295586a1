import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import { handleDigest, randomHandle } from '../authorization/digest.ts';
import type { OidcScope } from '../authorization/scopes.ts';
import type { Confirmation } from './claims.ts';

/**
 * Refresh tokens (RFC 6749 §6; DESIGN §4): opaque, 256 random bits, stored as a SHA-256 digest,
 * bound to the client and the grant. A rotation chain (one per code redemption) is a family; each
 * rotation marks the used token `rotated` with one conditional update and issues its child, so a
 * token is exchanged at most once and its later reuse is recognisable.
 */

/**
 * Absolute lifetime of a family, from the code redemption, in seconds: a trading day and a half of
 * margin (12 h, the people side's longest session). Rotation does not extend it.
 */
export const refreshTokenTtlSeconds = 12 * 3600;

export type RefreshTokenState = 'active' | 'rotated' | 'superseded' | 'revoked';

/** What a refresh token stands for; carried unchanged through rotation (RFC 6749 §6: same scope). */
export interface RefreshPayload {
  resource?: string;
  scopes: string[];
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  authTime: number;
  acr: string;
  amr: string[];
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
  expiresAt: number;
  usedAt: number | null;
  /** Whether its grant was active (not revoked) when the token was read. */
  grantActive: boolean;
}

/**
 * Issues the first refresh token of a family (at a code redemption). Returns the token once.
 * `db`: the transaction it belongs to (the redemption's).
 */
export async function issueRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  input: { grantId: string; clientId: string; userId: string; payload: RefreshPayload },
  db: Kysely<Database> = ctx.storage.db,
): Promise<IssuedRefreshToken> {
  const token = randomHandle(32);
  const id = randomUUID();
  const familyId = id;
  const now = ctx.clock.now();
  const expiresAt = now + refreshTokenTtlSeconds * 1000;
  await db
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
    })
    .execute();
  return { token, id, familyId, expiresAt };
}

type Row = Awaited<ReturnType<typeof selectRow>>;

/** A token and whether its grant is active, in one read (both tables are the authorization component's). */
function selectRow(ctx: Pick<Context, 'storage'>, column: 'token_hash' | 'id', value: string) {
  return ctx.storage.db
    .selectFrom('refresh_tokens')
    .leftJoin('grants', (join) => join.onRef('grants.id', '=', 'refresh_tokens.grant_id').on('grants.revoked_at', 'is', null))
    .selectAll('refresh_tokens')
    .select('grants.id as active_grant_id')
    .where(`refresh_tokens.${column}`, '=', value)
    .executeTakeFirst();
}

function toStored(row: NonNullable<Row>): StoredRefreshToken {
  return {
    id: row.id,
    familyId: row.family_id,
    parentId: row.parent_id,
    grantId: row.grant_id,
    clientId: row.client_id,
    userId: row.user_id,
    payload: JSON.parse(row.payload) as RefreshPayload,
    state: row.state as RefreshTokenState,
    expiresAt: Number(row.expires_at),
    usedAt: row.used_at === null ? null : Number(row.used_at),
    grantActive: row.active_grant_id !== null,
  };
}

/** The stored token for a presented refresh token, in any state; undefined when unknown. */
export async function findRefreshToken(ctx: Pick<Context, 'storage'>, token: string): Promise<StoredRefreshToken | undefined> {
  if (token.length > 256) return undefined;
  const row = await selectRow(ctx, 'token_hash', handleDigest(token));
  return row && toStored(row);
}

/** A stored token by its id. */
export async function refreshTokenById(ctx: Pick<Context, 'storage'>, id: string): Promise<StoredRefreshToken | undefined> {
  const row = await selectRow(ctx, 'id', id);
  return row && toStored(row);
}

/**
 * Rotates `parent`: in one transaction, ONE conditional update (active → rotated) and, only when it
 * won, the insertion of the child. Of concurrent uses of one token, on any node, exactly one gets a
 * child; the others see the parent rotated with its child already in place. Undefined when lost.
 * `within`: the caller's transaction (the grant's, with the audit events), else one of its own.
 */
export async function rotateRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  parent: StoredRefreshToken,
  within?: Transaction<Database>,
): Promise<IssuedRefreshToken | undefined> {
  const now = ctx.clock.now();
  return inTransaction(ctx, within, async (trx) => {
    const result = await trx
      .updateTable('refresh_tokens')
      .set({ state: 'rotated', used_at: now })
      .where('id', '=', parent.id)
      .where('state', '=', 'active')
      .where('expires_at', '>', now)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return undefined;
    return insertChild(trx, now, parent);
  });
}

/**
 * A retry with the previous token (confidential clients): in one transaction, the parent's child
 * that was never used (still active) is marked superseded by one conditional update, and a new
 * child issued in its place. Undefined when there is no such child (it was used: a reuse).
 * `within`: the caller's transaction, else one of its own.
 */
export async function retryRefreshToken(
  ctx: Pick<Context, 'storage' | 'clock'>,
  parent: StoredRefreshToken,
  within?: Transaction<Database>,
): Promise<IssuedRefreshToken | undefined> {
  const now = ctx.clock.now();
  if (parent.expiresAt <= now) return undefined;
  return inTransaction(ctx, within, async (trx) => {
    const child = await trx.selectFrom('refresh_tokens').select('id').where('parent_id', '=', parent.id).where('state', '=', 'active').executeTakeFirst();
    if (!child) return undefined;
    const result = await trx
      .updateTable('refresh_tokens')
      .set({ state: 'superseded' })
      .where('id', '=', child.id)
      .where('state', '=', 'active')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return undefined;
    return insertChild(trx, now, parent);
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

async function insertChild(trx: Transaction<Database>, now: number, parent: StoredRefreshToken): Promise<IssuedRefreshToken> {
  const token = randomHandle(32);
  const id = randomUUID();
  await trx
    .insertInto('refresh_tokens')
    .values({
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
    })
    .execute();
  return { token, id, familyId: parent.familyId, expiresAt: parent.expiresAt };
}

/** Revokes every token of a family (RFC 7009 revocation of a refresh token). */
export async function revokeFamily(ctx: Pick<Context, 'storage'>, familyId: string): Promise<void> {
  await ctx.storage.db.updateTable('refresh_tokens').set({ state: 'revoked' }).where('family_id', '=', familyId).where('state', 'in', ['active', 'rotated', 'superseded']).execute();
}

/** Deletes tokens that expired before `now` (ms). */
export async function pruneRefreshTokens(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  const result = await ctx.storage.db.deleteFrom('refresh_tokens').where('expires_at', '<', now).executeTakeFirst();
  return Number(result.numDeletedRows);
}
