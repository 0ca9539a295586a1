import { areAgentsLive } from '../agents/authority.ts';
import { isActivationInForce } from '../approvals/break-glass/activations.ts';
import { isGrantActive } from '../authorization/consent.ts';
import type { Context } from '../context.ts';
import { isPersonTokenLive } from '../identity/lifecycle.ts';
import { isMandateActive } from '../mandates/coverage.ts';
import type { AccessTokenClaims } from './claims.ts';
import { RevocationList } from './revocation.ts';

/**
 * Whether a verified access token of ours is still live: not revoked (RFC 7009), nor the refresh
 * family it was issued with (`refresh_family`: RFC 7009 §2.1, revoking a refresh token invalidates
 * the access tokens of the same authorization — here, its family), its consent grant
 * still active, its person still allowed to hold tokens and the token issued after the person's
 * cut-off (src/identity/lifecycle.ts: a lock or disable by an administrator, deletion, a password
 * reset or "sign out everywhere" end a person's tokens at once, RFC 9700 §4.14.2), and the mandate
 * version it names still in force (revoked, superseded or expired → dead at once), and a
 * break-glass token's activation still in force (ended or past its end → dead at once, whatever the
 * token's own `exp`; a `break_glass` token naming no activation is dead), and its client and its
 * audience still in service and the token issued after their cut-off (apply's prune disables a
 * client or resource server and ends its tokens at once: src/lifecycle/prune.ts). Introspection,
 * token exchange and every protected resource of ours (src/tokens/protected-resource.ts) ask this.
 */
export async function isTokenLive(ctx: Pick<Context, 'storage' | 'clock' | 'audit' | 'clients' | 'resourceServers' | 'partners' | 'agents'>, claims: AccessTokenClaims): Promise<boolean> {
  // The client and audience rule first: it reads only in-memory registries, so a token already
  // dead by it costs no round trip.
  if (!(await isInService(ctx, claims))) return false;
  // The token's jti and its refresh family in one statement (src/tokens/revocation.ts); a token of
  // ours naming a family is a string one, anything else fails closed.
  const family = claims.refresh_family;
  if (family !== undefined && typeof family !== 'string') return false;
  if (await new RevocationList(ctx.storage.db).isRevoked(claims.jti, family)) return false;
  if (claims.grant_id !== undefined && !(await isGrantActive(ctx.storage.db, claims.grant_id))) return false;
  // A person's token is one issued under their consent grant (`grant_id`; exchanged tokens keep it):
  // its `sub` is the person's id. One read by primary key.
  if (claims.grant_id !== undefined && !(await isPersonTokenLive(ctx.storage.db, claims.sub, claims.iat * 1000))) return false;
  // A partner subject decided as the local person its identity is linked to (`origin_person`,
  // src/federation/subject.ts): the same rule, for that person — a lock, a disable, a back-channel
  // logout or "sign out everywhere" ends these tokens too.
  if (claims.origin_person !== undefined && !(await isPersonTokenLive(ctx.storage.db, claims.origin_person, claims.iat * 1000))) return false;
  if (claims.mandate !== undefined && !(await isMandateActive(ctx, claims.mandate, new Date(ctx.clock.now())))) return false;
  if (claims.break_glass !== undefined || claims.break_glass_activation !== undefined) {
    if (typeof claims.break_glass_activation !== 'string' || !(await isActivationInForce(ctx.storage.db, claims.break_glass_activation, ctx.clock.now()))) return false;
  }
  return true;
}

/**
 * Whether what the token stands on is in service (apply's prune disables, src/lifecycle/prune.ts):
 * its client and audience, each with the token issued after its cut-off; the partner it came from
 * (`origin_iss`); the agent it was issued to, or exchanged from at any hop, and its model version
 * (src/agents/authority.ts). A client or audience Clearance does not store (Clearance's own
 * built-in audiences, a client deleted outright by RFC 7592) is left to the other rules. Every read
 * here is of an in-memory registry: no round trip.
 */
async function isInService(ctx: Pick<Context, 'clients' | 'resourceServers' | 'partners' | 'agents'>, claims: AccessTokenClaims): Promise<boolean> {
  const issuedAt = claims.iat * 1000;
  const client = await ctx.clients.get(claims.client_id);
  if (client && cutOff(client.disabledAt !== null, client.tokensValidAfter, issuedAt)) return false;
  const audience = await ctx.resourceServers.getStored(claims.aud);
  if (audience && cutOff(audience.disabledAt !== null, audience.tokensValidAfter, issuedAt)) return false;
  const originIssuer = (claims as { origin_iss?: unknown }).origin_iss;
  const partner = typeof originIssuer === 'string' ? await ctx.partners.issuerCutoff(originIssuer) : undefined;
  if (partner && cutOff(partner.disabled, partner.tokensValidAfter, issuedAt)) return false;
  if ((claims.agent !== undefined || claims.agents !== undefined) && !(await areAgentsLive(ctx, claims, issuedAt))) return false;
  return true;
}

/**
 * Whether a token issued at `issuedAtMs` is cut off by what it stands on: that is disabled, or the
 * token was issued at or before its cut-off (`iat` has a resolution of a second, so a token of the
 * cut-off's own second counts as before it).
 */
function cutOff(disabled: boolean, tokensValidAfter: number | null, issuedAtMs: number): boolean {
  return disabled || (tokensValidAfter !== null && issuedAtMs <= tokensValidAfter);
}
