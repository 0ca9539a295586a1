import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
import { crossesRegion, regionSubject } from '../identity/pairwise.ts';
import { tokenExchangeGrantType } from '../tokens/token-types.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';

/**
 * Regions of tokens and of the resource servers that ask about them (docs/privacy.md "Regions").
 *
 * A token's region is the region of its audience: the resource server's declared `region`, else
 * this instance's (CLEARANCE_REGION); none when neither is declared (a single-region deployment).
 * A resource server's introspecting client belongs to the regions of the resource servers that
 * name it in `introspection_clients`.
 */

/** The region a token for `audience` is meant for (undefined: no region is declared). */
export async function tokenRegion(ctx: Pick<Context, 'config' | 'resourceServers'>, audience: string): Promise<string | undefined> {
  const server = await ctx.resourceServers.get(audience);
  return regionOf(ctx, server);
}

/** A resource server's region: its own, else the instance's. */
export function regionOf(ctx: Pick<Context, 'config'>, server: Pick<ResourceServer, 'region'> | undefined): string | undefined {
  return server?.region ?? ctx.config.region;
}

/**
 * RFC 7662 §2.2 ("the authorization server MUST determine whether or not the token can be used at
 * the protected resource"; a resource server must not learn about tokens not meant for it), per
 * region: a client that introspects for resource servers is answered about a token only when every
 * resource server naming it is in the token's region. A client that introspects for resource servers
 * of two regions is answered for neither: each region's resource server has a client of its own.
 * Resolves the first other region found, or undefined when the caller may be answered.
 */
export async function introspectorOutsideRegion(ctx: Pick<Context, 'config' | 'resourceServers'>, callerId: string, region: string | undefined): Promise<string | undefined> {
  if (region === undefined) return undefined;
  for (const server of await ctx.resourceServers.list()) {
    if (!server.introspection_clients?.includes(callerId)) continue;
    const other = regionOf(ctx, server);
    if (other !== undefined && other !== region) return other;
  }
  return undefined;
}

/** The legal entities of a person of this region: their desks' firms (as data residency reads them). */
export async function personLeis(ctx: Pick<Context, 'storage' | 'entities'>, userId: string): Promise<string[]> {
  const user = await findUser(ctx, userId);
  if (!user) return [];
  const snapshot = await ctx.entities.snapshot();
  return [...new Set(user.desks.flatMap((desk) => snapshot.desks.get(desk)?.lei ?? []))].sort();
}

/**
 * An `act` chain (RFC 8693 §4.1) of ours as it may cross to `region` (docs/privacy.md "Regions":
 * only client ids cross). Every actor of ours — an entry without `iss` — whose `sub` is not a
 * registered client is a person (a person's token presented as `actor_token`, at this hop or an
 * earlier one) and is replaced by their pseudonym in that region, as the token's own `sub` is; an
 * id that is no registered client any more is replaced too (fail closed: nothing crosses as it is
 * that cannot be vouched for as a client's). A partner's actor (`iss` set) is the partner's
 * identifier, not this region's data, and is kept. The home region's own `token.exchanged` keeps
 * the chain as it was (`act_chain`).
 */
export async function actInRegion(ctx: Pick<Context, 'clients' | 'identity'>, region: string, act: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { act: nested, ...entry } = act;
  if (entry.iss === undefined && typeof entry.sub === 'string' && !(await ctx.clients.get(entry.sub))) entry.sub = regionSubject(ctx, region, entry.sub);
  if (typeof nested === 'object' && nested !== null) entry.act = await actInRegion(ctx, region, nested as Record<string, unknown>);
  return entry;
}

/**
 * docs/privacy.md "Regions": a token about a person goes to a resource server of another region
 * only through token exchange, which names them there by their pseudonym (step 11a of
 * src/grants/token-exchange.ts). Any other grant — the code flow, refresh, CIBA, the device flow,
 * jwt-bearer for a linked person — would put the person's local id (`sub`, or `origin_person`) in
 * a token for that region. RFC 8707 §2: a resource the client may not have a token for is
 * `invalid_target`. Resolves the reason to refuse with, or undefined when the issuance may go on.
 */
export function personTokenLeavesRegion(ctx: Pick<Context, 'config'>, issuance: { subject: { type: string }; grantType: string }, server: Pick<ResourceServer, 'identifier' | 'region'>): string | undefined {
  if (issuance.subject.type !== 'User' || issuance.grantType === tokenExchangeGrantType) return undefined;
  if (!crossesRegion(ctx.config.region, server.region)) return undefined;
  return `${server.identifier} is in region ${server.region}, not this instance's (${ctx.config.region}): a person's token reaches another region only through token exchange, as their pseudonym there`;
}
