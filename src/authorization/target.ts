import type { Client } from '../clients/store.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { selectTarget } from '../tokens/audience.ts';
import { parseAuthorizationDetails, type AuthorizationDetail } from './authorization-details.ts';
import type { AuthorizationParameters } from './parameters.ts';

/** What a request for a person's token asks to reach. */
export interface RequestedTarget {
  authorizationDetails: AuthorizationDetail[];
  /** The one resource server, when the request names one (by `resource` or its business scopes). */
  resource?: string;
  /** The business scopes granted there. */
  scopes: string[];
}

/**
 * The target of a request for a person's token — the authorization endpoint's (and PAR's) and the
 * backchannel authentication endpoint's alike:
 * 1. `authorization_details` (RFC 9396 §5): entries of registered types naming the entity model's
 *    instrument classes, else invalid_authorization_details;
 * 2. `resource` (RFC 8707 §2) and the business scopes select ONE resource server (DESIGN §4: one
 *    audience per token) that offers the scopes and allows them to the client, else invalid_target /
 *    invalid_scope;
 * 3. authorization_details without a resource (or scopes of one) are invalid_target.
 * A request with none of them names no resource server (`resource` undefined): the caller decides
 * whether that is enough (an OpenID Connect sign-in).
 */
export async function requestedTarget(
  ctx: Pick<Context, 'entities' | 'resourceServers' | 'config'>,
  params: AuthorizationParameters,
  client: Client,
  business: readonly string[],
): Promise<RequestedTarget> {
  const detailsParameter = params.one('authorization_details');
  const authorizationDetails =
    detailsParameter === undefined ? [] : parseAuthorizationDetails(detailsParameter, { instrumentClasses: (await ctx.entities.snapshot()).instrumentClasses, travelRuleThreshold: ctx.config.travelRuleThreshold });
  const resources = params.all('resource').map((r) => {
    if (typeof r !== 'string') throw new OAuthError('invalid_target', 'resource must be a string');
    return r;
  });
  if (business.length > 0 || resources.length > 0) {
    const target = await selectTarget(resources, business.length > 0 ? business.join(' ') : undefined, client, ctx.resourceServers);
    return { authorizationDetails, resource: target.resourceServer.identifier, scopes: target.scopes };
  }
  if (authorizationDetails.length > 0) throw new OAuthError('invalid_target', 'authorization_details need a resource (or scopes of one resource server)');
  return { authorizationDetails, scopes: [] };
}
