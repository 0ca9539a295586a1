import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import type { ClientMetadata } from '../metadata.ts';

type ClientKind = ClientMetadata['kind'];

/** Digest under which registration tokens are stored (256-bit random tokens: a fast hash suffices). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newRegistrationToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The authority a registration may have (RFC 7591 §5: metadata a registrant sends is self-asserted
 * and confers none). At registration it is the initial access token's, as the administrator issued
 * it; at an RFC 7592 update, the registration's own current values.
 */
export interface RegistrationAllowance {
  /** The firm (LEI) the client belongs to; absent: it belongs to none. */
  ownerLei?: string;
  /** Scopes the client may be allowed at most. */
  scopes: string[];
  /** Grant types the client may ask for at most. */
  grantTypes: string[];
  /** Kinds the client may be (service, agent, app). */
  kinds: ClientKind[];
}

/**
 * Grant types a token allows when the administrator names none: the client's own flows. Token
 * exchange and the JWT bearer grant act on tokens and assertions of others (resource servers'
 * `exchange_clients`, partners' profiles), so a token allows them only when it lists them.
 */
export const defaultRegistrationGrantTypes = ['authorization_code', 'client_credentials', 'refresh_token'] as const;

/** Kinds a token allows when the administrator names none: `service`, the default kind of a client. */
export const defaultRegistrationKinds: readonly ClientKind[] = ['service'];

/** An initial access token as `peek` finds it: what it allows and which administrator issued it. */
export interface UsableInitialAccessToken extends RegistrationAllowance {
  createdBy: string;
}

/** Initial access tokens (RFC 7591 §3): issued by an admin, consumed by registrations. */
export class InitialAccessTokens {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  /**
   * Issues a token carrying the administrator's allowance; only its digest is stored, the token
   * itself is returned once. Grant types and kinds default to `defaultRegistrationGrantTypes`
   * and `defaultRegistrationKinds`; without `ownerLei` its registrations belong to no firm.
   */
  async issue(options: {
    allowedScope: string;
    ownerLei?: string;
    grantTypes?: readonly string[];
    kinds?: readonly ClientKind[];
    uses: number;
    ttlSeconds: number;
    createdBy: string;
    now: number;
  }): Promise<string> {
    const token = newRegistrationToken();
    await this.#db
      .insertInto('initial_access_tokens')
      .values({
        token_hash: tokenDigest(token),
        allowed_scope: options.allowedScope,
        owner_lei: options.ownerLei ?? null,
        allowed_grant_types: (options.grantTypes ?? defaultRegistrationGrantTypes).join(' '),
        allowed_kinds: (options.kinds ?? defaultRegistrationKinds).join(' '),
        uses_left: options.uses,
        expires_at: options.now + options.ttlSeconds * 1000,
        created_at: options.now,
        created_by: options.createdBy,
      })
      .execute();
    return token;
  }

  /** What a usable token allows, without using it; undefined when unknown, expired or used up. */
  async peek(token: string, now: number): Promise<UsableInitialAccessToken | undefined> {
    const row = await this.#db
      .selectFrom('initial_access_tokens')
      .select(['allowed_scope', 'owner_lei', 'allowed_grant_types', 'allowed_kinds', 'created_by'])
      .where('token_hash', '=', tokenDigest(token))
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    if (!row) return undefined;
    const words = (text: string) => text.split(' ').filter(Boolean);
    return {
      ...(row.owner_lei ? { ownerLei: row.owner_lei } : {}),
      scopes: words(row.allowed_scope),
      grantTypes: words(row.allowed_grant_types),
      kinds: words(row.allowed_kinds) as ClientKind[],
      createdBy: row.created_by,
    };
  }

  /**
   * Uses a token once inside the registration's transaction: one conditional update, so parallel
   * registrations can never exceed its uses. False when it is no longer usable.
   */
  async consume(trx: Transaction<Database>, token: string, now: number): Promise<boolean> {
    const updated = await trx
      .updateTable('initial_access_tokens')
      .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
      .where('token_hash', '=', tokenDigest(token))
      .where('uses_left', '>', 0)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) === 1;
  }
}
