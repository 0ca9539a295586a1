import { usernamePattern } from '../../identity/users.ts';
import { createHash, randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { isUniqueViolation } from '../../storage/faults.ts';
import type { Database } from '../../storage/schema.ts';
import type { IdentityProvider } from './definition.ts';
import type { UpstreamIdentity } from './oidc.ts';

/**
 * Which local person an upstream identity is (docs/identity-brokering.md "Linking"):
 * - linked by (upstream issuer, subject) — never by email alone;
 * - the first sign-in of an unknown identity provisions a person just in time: their name and
 *   email from the mapped claims, their desks from the provider's declaration (the upstream asserts
 *   nothing that carries authority), no password, no roles; `user.provisioned`;
 * - a local person with the same email is never taken over: the sign-in is refused
 *   (`email_taken`) until an administrator links the identity to that person
 *   (`clearance users link`, `user.linked`) or the upstream identity gets its own address;
 * - later sign-ins update the mapped name and email.
 */

export type LinkOutcome =
  | { ok: true; user: Database['users']; provisioned: boolean }
  | { ok: false; reason: 'email_taken' | 'username_taken' | 'account_not_active'; userId?: string };

type LinkContext = Pick<Context, 'storage' | 'clock' | 'audit'>;

/** The mapped name and email of an upstream identity (strings only, bounded). */
export function mappedClaims(provider: IdentityProvider, identity: UpstreamIdentity): { name: string | null; email: string | null; username: string | null } {
  const text = (claim: string | undefined, max: number) => {
    const value = claim === undefined ? undefined : identity.claims[claim];
    return typeof value === 'string' && value.trim() !== '' ? value.trim().slice(0, max) : null;
  };
  const email = text(provider.claims.email, 254);
  return { name: text(provider.claims.name, 200), email: email && /^[^\s@]+@[^\s@]+$/.test(email) ? email.toLowerCase() : null, username: text(provider.claims.username, 100) };
}

/** The person an upstream identity is, provisioning one at the identity's first sign-in. */
export async function linkedPerson(ctx: LinkContext, provider: IdentityProvider, identity: UpstreamIdentity): Promise<LinkOutcome> {
  const mapped = mappedClaims(provider, identity);
  for (let attempt = 0; attempt < 2; attempt++) {
    const existing = await ctx.storage.db
      .selectFrom('user_links')
      .innerJoin('users', 'users.id', 'user_links.user_id')
      .selectAll('users')
      .select('user_links.linked_by')
      .where('user_links.issuer', '=', identity.issuer)
      .where('user_links.subject', '=', identity.subject)
      .executeTakeFirst();
    if (existing) {
      const { linked_by: linkedBy, ...user } = existing;
      return await signInLinked(ctx, user, linkedBy, identity, mapped);
    }
    try {
      const provisioned = await provision(ctx, provider, identity, mapped);
      // The email or username may be taken by this very identity: a first sign-in at the same
      // moment provisioned it after the link was read. Read the link again before refusing.
      if (provisioned.ok || attempt > 0) return provisioned;
    } catch (error) {
      // Two first sign-ins of one identity at once: the other one's link won; read it.
      if (!isUniqueViolation(error)) throw error;
    }
  }
  return { ok: false, reason: 'username_taken' };
}

/**
 * A later sign-in of a linked identity. Only a person the upstream provisioned takes its name and
 * email from it — a local person an administrator or their own sign-in linked keeps theirs — and
 * never an email another person here has (that would make their address this person's).
 */
async function signInLinked(ctx: LinkContext, user: Database['users'], linkedBy: string, identity: UpstreamIdentity, mapped: ReturnType<typeof mappedClaims>): Promise<LinkOutcome> {
  if (user.status !== 'active') return { ok: false, reason: 'account_not_active', userId: user.id };
  const now = ctx.clock.now();
  const provisioned = linkedBy === 'provisioned';
  const name = provisioned ? (mapped.name ?? user.name) : user.name;
  let email = provisioned ? (mapped.email ?? user.email) : user.email;
  if (email !== null && email !== user.email && (await emailHolder(ctx, email, user.id))) email = user.email;
  const changed = name !== user.name || email !== user.email;
  await ctx.storage.db.transaction().execute(async (trx) => {
    if (changed) await trx.updateTable('users').set({ name, email, updated_at: now }).where('id', '=', user.id).execute();
    await trx.updateTable('user_links').set({ last_login_at: now }).where('issuer', '=', identity.issuer).where('subject', '=', identity.subject).execute();
  });
  return { ok: true, user: { ...user, name, email, ...(changed ? { updated_at: now } : {}) }, provisioned: false };
}

async function provision(ctx: LinkContext, provider: IdentityProvider, identity: UpstreamIdentity, mapped: ReturnType<typeof mappedClaims>): Promise<LinkOutcome> {
  const db = ctx.storage.db;
  if (mapped.email !== null) {
    const holder = await emailHolder(ctx, mapped.email);
    if (holder) return { ok: false, reason: 'email_taken', userId: holder };
  }
  const username = await freeUsername(ctx, provider, identity, mapped);
  if (!username) return { ok: false, reason: 'username_taken' };
  const now = ctx.clock.now();
  const row: Database['users'] = {
    id: randomUUID(),
    username,
    password_hash: null,
    name: mapped.name,
    email: mapped.email,
    desks: JSON.stringify(provider.desks),
    roles: '[]',
    attributes: '{}',
    status: 'active',
    failed_logins: 0,
    locked_at: null,
    lock_reason: null,
    tokens_valid_after: null,
    last_login_at: null,
    last_failed_login_at: null,
    last_lockout_at: null,
    created_at: now,
    updated_at: now,
  };
  const event: AuditEvent = {
    type: 'user.provisioned',
    actor: row.id,
    subject: row.id,
    details: { provider: provider.id, issuer: identity.issuer, upstream_subject: identity.subject, legal_entity: provider.legal_entity, desks: provider.desks },
  };
  await ctx.audit.recordWith(async (trx) => {
    await trx.insertInto('users').values(row).execute();
    await trx
      .insertInto('user_links')
      .values({ issuer: identity.issuer, subject: identity.subject, user_id: row.id, provider_id: provider.id, linked_by: 'provisioned', created_at: now, last_login_at: now })
      .execute();
    return { value: undefined, events: [event] };
  });
  return { ok: true, user: row, provisioned: true };
}

/** Who else here has this email, in any case (`except`: the person themselves). */
async function emailHolder(ctx: LinkContext, email: string, except?: string): Promise<string | undefined> {
  let query = ctx.storage.db.selectFrom('users').select('id').where(sql<string>`lower(email)`, '=', email.toLowerCase());
  if (except !== undefined) query = query.where('id', '!=', except);
  return (await query.executeTakeFirst())?.id;
}


/**
 * A username for a provisioned person: `<provider>.<their upstream username>` when the mapping
 * names one that fits, else `<provider>.<the first 16 characters of the subject's SHA-256>`. The
 * username is a handle only (people sign in through the upstream); a taken one is never reused.
 */
async function freeUsername(ctx: LinkContext, provider: IdentityProvider, identity: UpstreamIdentity, mapped: ReturnType<typeof mappedClaims>): Promise<string | undefined> {
  const readable = mapped.username?.toLowerCase().replace(/[^a-z0-9._@+-]/g, '');
  const hashed = createHash('sha256').update(`${identity.issuer}\n${identity.subject}`).digest('hex').slice(0, 16);
  for (const candidate of [readable ? `${provider.id}.${readable}` : undefined, `${provider.id}.${hashed}`]) {
    if (!candidate || !usernamePattern.test(candidate)) continue;
    const taken = await ctx.storage.db.selectFrom('users').select('id').where('username', '=', candidate).executeTakeFirst();
    if (!taken) return candidate;
  }
  return undefined;
}

/** An upstream identity that no longer signs a person in: which, who had linked it and when. */
export interface EndedLink {
  provider: string;
  issuer: string;
  upstream_subject: string;
  linked_by: string;
  linked_at: number;
}

/**
 * Ends every upstream link of a person in `trx` (an approved recovery, src/identity/recovery/approval.ts):
 * each of their upstream identities signs in as nobody from then on — its next sign-in finds no
 * link, so it is asked to link anew (`email_taken`) or provisions someone new, never them.
 */
export async function endLinksOf(trx: Transaction<Database>, userId: string): Promise<EndedLink[]> {
  const ended = await trx.deleteFrom('user_links').where('user_id', '=', userId).returning(['provider_id', 'issuer', 'subject', 'linked_by', 'created_at']).execute();
  return ended
    .map((l) => ({ provider: l.provider_id, issuer: l.issuer, upstream_subject: l.subject, linked_by: l.linked_by, linked_at: Number(l.created_at) }))
    .sort((a, b) => a.linked_at - b.linked_at || a.upstream_subject.localeCompare(b.upstream_subject));
}

/** The upstream identities linked to a person. */
export async function linksOf(ctx: Pick<Context, 'storage'>, userId: string): Promise<Database['user_links'][]> {
  return ctx.storage.db.selectFrom('user_links').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
}

/**
 * An administrator links an upstream identity to an existing person (the way past `email_taken`):
 * audited as `user.linked`. Refused when the identity is already linked to someone.
 */
export async function linkIdentity(
  ctx: LinkContext,
  link: { userId: string; provider: IdentityProvider; subject: string; actor: string },
): Promise<{ ok: true } | { ok: false; reason: 'unknown_user' | 'already_linked' }> {
  const user = await ctx.storage.db.selectFrom('users').select('id').where('id', '=', link.userId).executeTakeFirst();
  if (!user) return { ok: false, reason: 'unknown_user' };
  const now = ctx.clock.now();
  try {
    await ctx.audit.recordWith(async (trx) => {
      await trx
        .insertInto('user_links')
        .values({ issuer: link.provider.issuer, subject: link.subject, user_id: link.userId, provider_id: link.provider.id, linked_by: 'admin', created_at: now, last_login_at: null })
        .execute();
      return {
        value: undefined,
        events: [{ type: 'user.linked', actor: link.actor, subject: link.userId, details: { provider: link.provider.id, issuer: link.provider.issuer, upstream_subject: link.subject } }],
      };
    });
  } catch (error) {
    if (isUniqueViolation(error)) return { ok: false, reason: 'already_linked' };
    throw error;
  }
  return { ok: true };
}
