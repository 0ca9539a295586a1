import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Context } from '../context.ts';
import { Flight } from '../storage/flight.ts';
import { deleteExpired } from '../storage/pruner.ts';
import type { Database } from '../storage/schema.ts';
import type { AuthorizationDetail } from './authorization-details.ts';
import { grantNamesMandate } from './consent.ts';
import { handleDigest, randomHandle } from './digest.ts';
import type { OidcScope } from './scopes.ts';
import type { SignalHit } from '../risk/assessment.ts';
import type { PersonReadAhead } from '../risk/read-ahead.ts';
import type { UpstreamAssurance } from './contract.ts';

/**
 * Authorization codes (RFC 6749 §4.1.2): 256 random bits, stored as a SHA-256 digest, valid 60 s,
 * bound to the client, the redirect_uri, the PKCE challenge and the grant. Redeemed at most once,
 * by one conditional update (DESIGN §7 "atomic single use").
 */

/** RFC 6749 §4.1.2: a maximum lifetime of 10 minutes is RECOMMENDED; FAPI 2.0 SP §5.3.2.1-14: at most 60 s. */
export const codeTtlSeconds = 60;

/** What a code stands for: everything the token endpoint needs to issue its tokens. */
export interface CodePayload {
  resource?: string;
  scopes: string[];
  oidcScopes: OidcScope[];
  authorizationDetails: AuthorizationDetail[];
  nonce?: string;
  /** OIDC Core §2: when the person authenticated (epoch seconds), the acr and the methods. */
  authTime: number;
  acr: string;
  amr: string[];
  sessionId: string;
  /** RFC 9449 §10: the JWK thumbprint the code is bound to (PAR's DPoP proof or `dpop_jkt`). */
  dpopJkt?: string;
  /** The mandate id the person asked to act under. */
  mandate?: string;
  /** The trade's txn the authorization request started: its tokens carry it. */
  txn?: string;
  /** The step-up this code concluded (src/authorization/step-up.ts): its token.issued names it. */
  stepUpId?: string;
  /**
   * The person's passkey approval of the order and settlement_instruction entries (src/approvals):
   * its id, and the digest its tokens carry as `authorization_details_digest`.
   */
  approval?: { id: string; digest: string };
  /** The risk signals that fired when the person signed in (Authentication.loginRisk): carried into the issuance. */
  loginRisk?: SignalHit[];
  /** The managed device of the sign-in (Authentication.deviceId): its tokens name it. */
  deviceId?: string;
  /** The upstream that signed the person in (Authentication.assurance): its tokens name it as their source of assurance. */
  assurance?: UpstreamAssurance;
}

export interface StoredCode {
  id: string;
  clientId: string;
  grantId: string;
  userId: string;
  redirectUri: string;
  codeChallenge: string;
  payload: CodePayload;
  expiresAt: number;
  redeemedAt: number | null;
  /**
   * Whether its grant was in force for this code when the code was read: not revoked, and naming
   * the code's mandate if it has one (consent.ts grantNamesMandate).
   */
  grantActive: boolean;
}

/**
 * Issues a code; returns the code (given to the client once) and its public id. `db`: the
 * transaction it belongs to, or the flight of the authorization response's transaction (with its
 * audit event), to which the insertion is added.
 */
export async function issueCode(
  ctx: Pick<Context, 'storage' | 'clock'>,
  binding: { clientId: string; grantId: string; userId: string; redirectUri: string; codeChallenge: string; payload: CodePayload },
  db: Kysely<Database> | Flight = ctx.storage.db,
): Promise<{ code: string; id: string }> {
  const code = randomHandle(32);
  const id = randomUUID();
  const now = ctx.clock.now();
  const insert = (db instanceof Flight ? ctx.storage.db : db)
    .insertInto('authorization_codes')
    .values({
      code_hash: handleDigest(code),
      id,
      client_id: binding.clientId,
      grant_id: binding.grantId,
      user_id: binding.userId,
      redirect_uri: binding.redirectUri,
      code_challenge: binding.codeChallenge,
      payload: JSON.stringify(binding.payload),
      created_at: now,
      expires_at: now + codeTtlSeconds * 1000,
      redeemed_at: null,
    });
  if (db instanceof Flight) void db.run(insert);
  else await insert.execute();
  return { code, id };
}

/**
 * The stored code for a presented code, redeemed or not, with whether its grant is still in force
 * for it (one read: both tables are this component's); undefined when unknown.
 */
export async function findCode(ctx: Pick<Context, 'storage'>, code: string, ahead?: PersonReadAhead): Promise<StoredCode | undefined> {
  if (code.length > 256) return undefined;
  const db = ctx.storage.db;
  const hash = handleDigest(code);
  const query = db
    .selectFrom('authorization_codes')
    .leftJoin('grants', (join) => join.onRef('grants.id', '=', 'authorization_codes.grant_id').on('grants.revoked_at', 'is', null))
    .selectAll('authorization_codes')
    .select('grants.mandates as grant_mandates')
    .where('authorization_codes.code_hash', '=', hash);
  let row;
  if (ahead) {
    // What the issuance will read about the code's person travels with the code (one round trip).
    const flight = ctx.storage.flight();
    const read = flight.run(query);
    ahead(flight, db.selectFrom('authorization_codes').select('user_id').where('code_hash', '=', hash).$asScalar());
    await flight.send();
    row = (await read).rows[0];
  } else {
    row = await query.executeTakeFirst();
  }
  if (!row) return undefined;
  const payload = JSON.parse(row.payload) as CodePayload;
  return {
    id: row.id,
    clientId: row.client_id,
    grantId: row.grant_id,
    userId: row.user_id,
    redirectUri: row.redirect_uri,
    codeChallenge: row.code_challenge,
    payload,
    expiresAt: Number(row.expires_at),
    redeemedAt: row.redeemed_at === null ? null : Number(row.redeemed_at),
    grantActive: grantNamesMandate(row.grant_mandates, payload.mandate),
  };
}

/**
 * Redeems a code: ONE conditional UPDATE (unredeemed and unexpired → redeemed). Of any number of
 * concurrent redemptions, on any number of nodes, exactly one gets true. `db`: the transaction
 * the redemption belongs to (the grant's, with the tokens it issues and their audit events).
 */
export async function redeemCode(ctx: Pick<Context, 'storage' | 'clock'>, id: string, db: Kysely<Database> = ctx.storage.db): Promise<boolean> {
  const result = await redemption(ctx, id, db).executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * `redeemCode` in the transaction of a flight (the grant's, with the tokens it issues and their
 * audit events): the same one conditional UPDATE, and unless it redeems the code, the whole
 * transaction is refused (`code_not_redeemable`: redeemed meanwhile, or expired) and writes nothing.
 */
export function redeemCodeIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, id: string): void {
  void flight.run(redemption(ctx, id, ctx.storage.db), { rows: 1, otherwise: 'code_not_redeemable' });
}

function redemption(ctx: Pick<Context, 'clock'>, id: string, db: Kysely<Database>) {
  const now = ctx.clock.now();
  return db.updateTable('authorization_codes').set({ redeemed_at: now }).where('id', '=', id).where('redeemed_at', 'is', null).where('expires_at', '>', now);
}

/** Deletes codes that expired more than a day before `now` (ms); redeemed ones are kept that long to detect reuse. */
export async function pruneCodes(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  return deleteExpired(ctx.storage.db, { table: 'authorization_codes', key: 'code_hash', expiresBy: 'expires_at' }, now - 24 * 3600_000);
}
