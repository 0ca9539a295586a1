import type { Context } from '../context.ts';
import { findUser } from '../identity/users.ts';
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
