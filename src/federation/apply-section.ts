import type { Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { builtinResourceServers } from '../resource-servers/builtins.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import type { Database } from '../storage/schema.ts';
import type { Validator } from '../validation.ts';
import { readPartner, type Partner } from './definition.ts';

type List = <T>(key: string, read: (path: string, item: unknown) => T | undefined) => { item: T; at: number }[];
type Duplicates = (v: Validator, section: string, ids: [string, number][], field: string) => void;

/** What the rest of the document declares, for the cross-checks. */
export interface PartnerDocumentContext {
  resourceServers: readonly ResourceServer[];
  clientIds: readonly string[];
}

/**
 * Reads and cross-checks the `partners` section of an apply document (planApply's helper): ids and
 * issuers unique (in the document and against stored partners), every allowed audience one of our
 * resource servers (not Clearance's own APIs), every allowed scope accepted by one of those
 * audiences, every listed client known.
 */
export async function planPartners(
  ctx: Pick<Context, 'partners' | 'resourceServers' | 'clients' | 'config'>,
  v: Validator,
  list: List,
  duplicates: Duplicates,
  document: PartnerDocumentContext,
): Promise<{ item: Partner; at: number }[]> {
  const entries = list('partners', (p, x) => readPartner(v, p, x));
  duplicates(v, 'partners', entries.map((e) => [e.item.id, e.at]), 'id');
  duplicates(v, 'partners', entries.map((e) => [e.item.issuer, e.at]), 'issuer');
  if (entries.length === 0) return entries;
  const builtin = new Set(builtinResourceServers(ctx.config.issuer).map((r) => r.identifier));
  const servers = new Map<string, ResourceServer>();
  for (const server of await ctx.resourceServers.list()) servers.set(server.identifier, server);
  for (const server of document.resourceServers) servers.set(server.identifier, server);
  const stored = await ctx.partners.list();
  for (const { item, at } of entries) {
    const path = `partners[${at}]`;
    const holder = stored.find((p) => p.issuer === item.issuer && p.id !== item.id);
    // One issuer, one profile (a token's iss selects it). Moving an issuer to another id takes two
    // applies: the stored partner's issuer changes first.
    if (holder) v.fail(`${path}.issuer`, `is already the issuer of partner ${holder.id}`);
    item.allowed_audiences.forEach((audience, i) => {
      if (builtin.has(audience)) v.fail(`${path}.allowed_audiences[${i}]`, `${audience} is Clearance's own API; a partner's subjects may not be given tokens for it`);
      else if (!servers.has(audience)) v.fail(`${path}.allowed_audiences[${i}]`, `no resource server "${audience}"`);
    });
    const offered = new Set(item.allowed_audiences.flatMap((a) => (builtin.has(a) ? [] : (servers.get(a)?.scopes ?? []))));
    item.allowed_scopes.forEach((scope, i) => {
      if (!offered.has(scope)) v.fail(`${path}.allowed_scopes[${i}]`, `"${scope}" is not accepted by any of the allowed audiences`);
    });
    for (const [i, clientId] of (item.clients ?? []).entries()) {
      if (!document.clientIds.includes(clientId) && !(await ctx.clients.get(clientId))) v.fail(`${path}.clients[${i}]`, `no client "${clientId}"`);
    }
    for (const [i, clientId] of (item.chaining?.clients ?? []).entries()) {
      if (!document.clientIds.includes(clientId) && !(await ctx.clients.get(clientId))) v.fail(`${path}.chaining.clients[${i}]`, `no client "${clientId}"`);
    }
    // A token exchange names the partner's authorization server by its issuer or chaining audience:
    // each must select one partner.
    const others = [...entries.map((e) => e.item), ...stored].filter((p) => p.id !== item.id);
    if (item.chaining?.audience !== undefined) {
      const audience = item.chaining.audience;
      const other = others.find((p) => p.issuer === audience || p.chaining?.audience === audience);
      if (other) v.fail(`${path}.chaining.audience`, `also names partner ${other.id}`);
    }
    // And the other way round: this partner's issuer must not be another's chaining audience.
    const claimed = others.find((p) => p.chaining?.audience === item.issuer);
    if (claimed) v.fail(`${path}.issuer`, `is partner ${claimed.id}'s chaining audience`);
  }
  return entries;
}

/** Stores the `partners` entries inside the apply transaction; returns their changes. */
export async function executePartners(
  ctx: Pick<Context, 'partners'>,
  trx: Transaction<Database>,
  partners: readonly Partner[],
): Promise<{ kind: 'partner'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const changes: { kind: 'partner'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  for (const partner of partners) {
    changes.push({ kind: 'partner', id: partner.id, outcome: await ctx.partners.upsert(trx, partner) });
  }
  return changes;
}
