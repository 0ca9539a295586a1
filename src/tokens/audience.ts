import type { Client } from '../clients/store.ts';
import { OAuthError } from '../oauth-error.ts';
import type { ResourceServer } from '../resource-servers/definition.ts';
import type { ResourceServerStore } from '../resource-servers/store.ts';

export interface Target {
  resourceServer: ResourceServer;
  scopes: string[];
}

/**
 * Chooses the one audience of a token and the scopes granted for it (RFC 8707, RFC 6749 §3.3).
 * - `resource` names the audience; at most one, since every token has exactly one (DESIGN §4).
 * - Without it, the requested scopes must all belong to exactly one resource server.
 * - Requested scopes must be offered by that server and allowed to the client; without `scope`,
 *   the client's allowed scopes that the server offers are granted.
 */
export async function selectTarget(
  resources: string[],
  requestedScope: string | undefined,
  client: Client,
  servers: ResourceServerStore,
): Promise<Target> {
  const allowed = new Set(client.metadata.scope?.split(' ') ?? []);
  const requested = requestedScope === undefined ? undefined : requestedScope.split(' ');
  if (requested?.some((s) => s === '')) throw new OAuthError('invalid_scope', 'scope is malformed');

  let server: ResourceServer | undefined;
  if (resources.length > 1) {
    throw new OAuthError('invalid_target', 'request one resource per token; each token has exactly one audience');
  }
  if (resources.length === 1) {
    const resource = resources[0]!;
    // RFC 8707 §2: an absolute URI without a fragment.
    if (!isAbsoluteUriWithoutFragment(resource)) throw new OAuthError('invalid_target', 'resource must be an absolute URI without a fragment');
    server = await servers.get(resource);
    if (!server) throw new OAuthError('invalid_target', 'resource is not a known resource server');
  } else {
    if (!requested) throw new OAuthError('invalid_target', 'resource is required when no scope is requested');
    const candidates = (await servers.list()).filter((s) => requested.every((scope) => s.scopes.includes(scope)));
    if (candidates.length !== 1) {
      throw new OAuthError(
        candidates.length === 0 ? 'invalid_scope' : 'invalid_target',
        candidates.length === 0 ? 'no single resource server offers all requested scopes' : 'resource is required: the scopes are offered by several resource servers',
      );
    }
    server = candidates[0]!;
  }

  const scopes = requested ?? server.scopes.filter((s) => allowed.has(s));
  for (const scope of scopes) {
    if (!server.scopes.includes(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not offered by the resource`);
    if (!allowed.has(scope)) throw new OAuthError('invalid_scope', `scope ${scope} is not allowed for this client`);
  }
  if (scopes.length === 0) throw new OAuthError('invalid_scope', 'the client is allowed no scope at this resource');
  return { resourceServer: server, scopes: [...new Set(scopes)] };
}

function isAbsoluteUriWithoutFragment(value: string): boolean {
  if (value.includes('#')) return false;
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}
