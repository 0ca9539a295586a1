import type { Context } from '../context.ts';
import { isTokenLive } from './liveness.ts';
import { authenticateResourceRequest, challenge, type ResourceAccess, type ResourceRequest } from './resource-access.ts';

/** One of Clearance's own protected resources: the audience its tokens name and the scope it needs. */
export interface ProtectedResource {
  /** The one audience a token must name (DESIGN §4), e.g. `<issuer>/admin`. */
  audience: string;
  /** The scope the request needs; without it the answer is 403 insufficient_scope. */
  scope: string;
  /** What the resource is called in error descriptions ("the admin API"). */
  name: string;
}

/**
 * The one check every protected resource of ours (userinfo, the admin API, the AuthZEN API, and
 * whatever comes later) makes of an access token. The rules, in order:
 * 1. the request carries a token of ours, unexpired, presented with its binding: the DPoP scheme
 *    and a proof of its key, or its client certificate (src/tokens/resource-access.ts);
 * 2. the token is for this resource: its one audience (RFC 9068 §4: the resource MUST check `aud`);
 * 3. the token is live (src/tokens/liveness.ts): not revoked (RFC 7009), its consent grant still
 *    active, its mandate version in force, its person still allowed to act — the same rule as
 *    introspection (RFC 7662 §2.2), so no resource of ours accepts a token introspection calls dead;
 * 4. the token carries the resource's scope (RFC 6750 §3.1 insufficient_scope).
 * Errors are RFC 6750 §3 / RFC 9449 §7.1 answers with a WWW-Authenticate challenge in the scheme
 * the client used.
 */
export async function authorizeProtectedRequest(
  ctx: Pick<Context, 'keys' | 'config' | 'clock' | 'dpop' | 'referenceTokens' | 'storage' | 'audit' | 'clients' | 'resourceServers' | 'partners' | 'agents'>,
  request: ResourceRequest,
  resource: ProtectedResource,
): Promise<ResourceAccess> {
  const access = await authenticateResourceRequest(ctx, request);
  await admitToResource(ctx, access, resource);
  return access;
}

/**
 * Rules 2–4 of authorizeProtectedRequest, for a token already authenticated (rule 1): a resource
 * that puts its refusals on the record needs to know whose token it refuses
 * (src/endpoints/evidence-counterparty).
 */
export async function admitToResource(
  ctx: Pick<Context, 'clock' | 'storage' | 'audit' | 'clients' | 'resourceServers' | 'partners' | 'agents'>,
  access: Pick<ResourceAccess, 'claims' | 'scheme'>,
  resource: ProtectedResource,
): Promise<void> {
  const { claims, scheme } = access;
  if (claims.aud !== resource.audience) throw challenge(scheme, 'invalid_token', `the access token is not for ${resource.name}`);
  if (!(await isTokenLive(ctx, claims))) {
    throw challenge(scheme, 'invalid_token', 'the access token is no longer active', { detail: 'revoked, or its grant, mandate or person is no longer in force' });
  }
  if (!claims.scope?.split(' ').includes(resource.scope)) {
    throw challenge(scheme, 'insufficient_scope', `the ${resource.scope} scope is required`, { scope: resource.scope });
  }
}
