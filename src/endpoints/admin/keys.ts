import { adminOperation } from '../../admin/authorize.ts';
import { AuditKeys } from '../../audit/audit-key.ts';
import type { Context } from '../../context.ts';
import { integerQuery, queryParams } from '../../http/api-operation.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { registerKeyRevocation } from './key-revocation.ts';

const day = 86_400_000;
/** The furthest ahead "expires soon" may look, and how many certificates one answer lists. */
const maxWithinDays = 366;
const maxListed = 200;

const isoOrNull = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/**
 * GET <issuer>/admin/keys?within_days=N (admin:read): the keys and certificates Clearance holds and
 * what expires soon — the token signing keys and their rotation state (docs/operations.md
 * "Signing keys"), the audit log's signing key, the private CA's authorities (docs/pki.md) and
 * its valid certificates that expire within N days (default 30), soonest first. Public facts
 * only: key ids, algorithms, subjects, serials and dates; never a key.
 * POST <issuer>/admin/keys/{kid}/revoke (admin:write): a compromised key's revocation (./key-revocation.ts).
 */
export const adminKeys: Endpoint = {
  register(app, ctx) {
    app.get<{ Querystring: { within_days?: string } }>(
      `${issuerPath(ctx.config.issuer)}/admin/keys`,
      adminOperation(ctx, 'admin:read', {
        tag: 'directory',
        summary: 'Signing keys, the audit key, the CA’s authorities and the certificates that expire soon',
        querystring: queryParams({ within_days: integerQuery(`how far ahead "expires soon" looks, in days (default 30, at most ${maxWithinDays})`) }),
      }),
      async (request) => {
        const within = request.query.within_days === undefined ? 30 : Number(request.query.within_days);
        if (within < 1 || within > maxWithinDays) throw new OAuthError('invalid_request', `within_days must be from 1 to ${maxWithinDays}`);
        return keyInventory(ctx, within);
      },
    );
    registerKeyRevocation(app, ctx);
  },
};

async function keyInventory(ctx: Context, withinDays: number) {
  const db = ctx.storage.db;
  const now = ctx.clock.now();
  const horizon = now + withinDays * day;
  const [signing, auditKey, authorities, expiring, valid] = await Promise.all([
    ctx.keys.list(),
    new AuditKeys(db, undefined, ctx.clock).currentPublicKey(),
    db.selectFrom('pki_authorities').select(['id', 'role', 'subject', 'not_before', 'not_after', 'status']).orderBy('created_at').execute(),
    db
      .selectFrom('pki_certificates')
      .select(['serial', 'profile', 'holder', 'subject', 'not_after'])
      .where('status', '=', 'valid')
      .where('not_after', '>', now)
      .where('not_after', '<=', horizon)
      .orderBy('not_after')
      .limit(maxListed + 1)
      .execute(),
    db.selectFrom('pki_certificates').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'valid').where('not_after', '>', now).executeTakeFirst(),
  ]);
  return {
    now: new Date(now).toISOString(),
    within_days: withinDays,
    signing_keys: signing.map((key) => ({
      kid: key.kid,
      alg: key.alg,
      state: key.state,
      created_at: isoOrNull(key.createdAt),
      activates_at: isoOrNull(key.activatesAt),
      superseded_at: isoOrNull(key.supersededAt),
      retirable_at: isoOrNull(key.retirableAt),
      retired_at: isoOrNull(key.retiredAt),
      compromised_at: isoOrNull(key.compromisedAt),
    })),
    audit_key: auditKey ? { key_id: auditKey.keyId, origin: auditKey.origin } : null,
    authorities: authorities.map((a) => ({
      id: a.id,
      role: a.role,
      subject: a.subject,
      status: a.status,
      not_before: isoOrNull(Number(a.not_before)),
      not_after: isoOrNull(Number(a.not_after)),
      expires_soon: a.status === 'active' && Number(a.not_after) <= horizon,
    })),
    certificates: {
      valid: Number(valid?.n ?? 0),
      expiring: expiring.slice(0, maxListed).map((c) => ({ serial: c.serial, profile: c.profile, holder: c.holder, subject: c.subject, not_after: isoOrNull(Number(c.not_after)) })),
      // More expire within the window than one answer lists.
      truncated: expiring.length > maxListed,
    },
  };
}
