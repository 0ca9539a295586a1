import { sql } from 'kysely';
import type { Context } from '../../context.ts';
import type { Database } from '../../storage/schema.ts';
import type * as x509 from '../../pki/x509.ts';
import { normalizeUsername } from '../users.ts';
import { ruleValues } from './fields.ts';
import type { MappingRule, PersonCertificateAuthority } from './settings.ts';

export type Mapping = { ok: true; row: Database['users']; rule: MappingRule } | { ok: false; reason: 'unmapped' | 'ambiguous'; rule?: MappingRule };

/**
 * The person a certificate names, by its authority's mapping rules in order: the first rule whose
 * field the certificate has (after its domains) decides — its values are looked up as usernames
 * or, case-insensitively, as email addresses. Exactly one person must answer: none is `unmapped`,
 * several (two people sharing an email, or values naming different people) `ambiguous`. Whether
 * the person is active is the caller's to check.
 */
export async function mapToPerson(ctx: Pick<Context, 'storage'>, authority: PersonCertificateAuthority, certificate: x509.X509Certificate): Promise<Mapping> {
  for (const rule of authority.mapping) {
    const values = ruleValues(certificate, rule);
    if (values.length === 0) continue;
    const db = ctx.storage.db;
    const rows =
      rule.person === 'username'
        ? await db.selectFrom('users').selectAll().where('username', 'in', values.map((v) => normalizeUsername(v).slice(0, 256))).execute()
        : await db.selectFrom('users').selectAll().where(sql<string>`lower(email)`, 'in', values.map((v) => v.toLowerCase())).execute();
    const people = new Map(rows.map((row) => [row.id, row]));
    if (people.size === 0) return { ok: false, reason: 'unmapped', rule };
    if (people.size > 1) return { ok: false, reason: 'ambiguous', rule };
    return { ok: true, row: [...people.values()][0]!, rule };
  }
  return { ok: false, reason: 'unmapped' };
}
