import type { Context } from '../../context.ts';
import { readAccessToken } from '../../tokens/reference-tokens.ts';
import { isTokenLive } from '../../tokens/liveness.ts';
import { recordRefusal } from '../../audit/refusals.ts';
import { isTxn } from '../../transactions/txn.ts';
import { introspectorOutsideRegion, tokenRegion } from '../../federation/regions.ts';
import { claimsForHolder } from '../../identity/pairwise.ts';
import type { ReferenceClaims } from '../../tokens/reference-tokens.ts';

export type IntrospectionAnswer = { active: false } | ({ active: true; token_type: string } & Record<string, unknown>);

const inactive: IntrospectionAnswer = { active: false };

/**
 * Decides what `callerId` may learn about `token` (RFC 7662 §2.2). Every reason for refusing
 * looks the same to the caller, so introspection is no oracle for other clients' tokens. A JWT of
 * ours and a reference token's handle (src/tokens/reference-tokens.ts) are read by one function and
 * then answered alike: the same caller rule, the same liveness rule, the same claims.
 */
export async function introspect(ctx: Context, callerId: string, token: string, requestId?: string): Promise<IntrospectionAnswer> {
  // RFC 7662 §2.2: unknown, expired or not ours — for a JWT and a handle alike — is `active: false`.
  const verified = await readAccessToken(ctx, token);
  if (!verified.ok) return inactive;
  const claims = verified.claims;
  const access = await mayInspect(ctx, callerId, claims.client_id, claims.aud);
  // A refusal is on the record (docs/audit.md "Refusals"), by jti; the answer stays `active: false`,
  // as for any other reason.
  const refused = async (reason: string, details: Record<string, unknown>): Promise<IntrospectionAnswer> => {
    if (requestId !== undefined) {
      await recordRefusal(ctx, {
        type: 'introspection.refused',
        requestId,
        client: callerId,
        subject: claims.sub,
        ...(isTxn(claims.txn) ? { txn: claims.txn } : {}),
        error: 'not_introspector',
        reason,
        details: { jti: claims.jti, audience: claims.aud, ...details },
      });
    }
    return inactive;
  };
  // A client outside the token's audience asked.
  if (access === false) return refused('outside_audience', {});
  // Per region (src/federation/regions.ts, RFC 7662 §2.2): a resource server's client outside the
  // token's region learns nothing of it, even when listed — on the record, answered alike.
  if (access === 'introspector') {
    const region = await tokenRegion(ctx, claims.aud);
    const other = await introspectorOutsideRegion(ctx, callerId, region);
    if (other !== undefined) return refused('other_region', { region: region!, caller_region: other });
  }
  // Revoked, its consent grant revoked, or its mandate version no longer in force: inactive.
  if (!(await isTokenLive(ctx, claims))) return inactive;
  // OIDC Core §8.1: a pairwise client introspecting its own token learns the subject it was told,
  // never the local one (its resource servers, as introspectors, get the local subject).
  const answered = access === 'holder' ? await holderView(ctx, claims) : claims;
  if (answered === undefined) return inactive;
  return {
    active: true,
    ...answered,
    // RFC 9449 §6.2 / RFC 8705 §3.2: DPoP-bound tokens are of type DPoP; others, Bearer.
    token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
  };
}

/**
 * The claims the holder is told (src/identity/pairwise.ts `claimsForHolder`); undefined — answered
 * `active: false` — when its registration is gone or unusable: a pairwise client's view is never
 * the local subject as a fallback (fail closed).
 */
async function holderView(ctx: Context, claims: ReferenceClaims): Promise<ReferenceClaims | undefined> {
  const client = await ctx.clients.get(claims.client_id);
  if (!client) return undefined;
  try {
    return claimsForHolder(ctx, client.metadata, claims);
  } catch {
    return undefined;
  }
}

/**
 * A caller may inspect tokens issued to itself (`holder`), and tokens for audiences that list it as
 * introspector (`introspector`: a resource server's client, held to the token's region too).
 */
async function mayInspect(ctx: Context, callerId: string, tokenClientId: string, audience: string): Promise<'holder' | 'introspector' | false> {
  if (callerId === tokenClientId) return 'holder';
  const server = await ctx.resourceServers.get(audience);
  return server?.introspection_clients?.includes(callerId) ? 'introspector' : false;
}
