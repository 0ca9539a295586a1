import { randomUUID } from 'node:crypto';
import { adminAudience } from '../../src/admin/authorize.ts';
import { acr } from '../../src/identity/acr.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import type { ProtocolFixture } from '../endpoints/fixture.ts';

export interface AdminPersonTokenOptions {
  /** The level the sign-in reached; phishing-resistant unless told. */
  acr?: string;
  /** How long ago the person signed in, in seconds (the console renews tokens silently: a new token, the old sign-in). */
  signedInSecondsAgo?: number;
  /** Extra claims, e.g. an `act` (a delegate's token). */
  extra?: Record<string, unknown>;
}

/**
 * A person's admin-API token under a consent grant of theirs to `trading-ui` (as
 * test/admin/intrusion.test.ts mints one): issued now, for five minutes, with `admin:read admin:write`, its `auth_time` as old
 * as asked.
 */
export async function adminPersonToken(f: ProtocolFixture, username: string, options: AdminPersonTokenOptions = {}): Promise<string> {
  const userId = (await findUserByUsername(f.ctx, username))!.id;
  const now = f.clock.now();
  // One consent grant per person and client: the person's first token makes it, the next ones reuse it.
  const existing = await f.ctx.storage.db.selectFrom('grants').select('id').where('user_id', '=', userId).where('client_id', '=', 'trading-ui').executeTakeFirst();
  const grantId = existing?.id ?? randomUUID();
  if (!existing) {
    await f.ctx.storage.db
      .insertInto('grants')
      .values({ id: grantId, user_id: userId, client_id: 'trading-ui', resources: JSON.stringify({ [adminAudience(f.issuer)]: ['admin:read', 'admin:write'] }), oidc_scopes: '[]', authorization_details: '[]', created_at: now, updated_at: now, revoked_at: null, revoked_by: null, revoke_reason: null })
      .execute();
  }
  const iat = Math.floor(now / 1000);
  const level = options.acr ?? acr.phishingResistant;
  return mintAccessToken(f.ctx.keys, {
    iss: f.issuer,
    aud: adminAudience(f.issuer),
    iat,
    exp: iat + 300,
    jti: newJti(),
    client_id: 'trading-ui',
    scope: 'admin:read admin:write',
    sub: userId,
    grant_id: grantId,
    acr: level,
    auth_time: iat - (options.signedInSecondsAgo ?? 0),
    amr: level === acr.phishingResistant ? ['hwk', 'user'] : ['pwd', 'otp'],
    ...options.extra,
  });
}
