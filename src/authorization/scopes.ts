/**
 * Scopes of an authorization request. OpenID Connect scopes (`openid`, `offline_access`) are not
 * business verbs: they are granted to the person's client, not to a resource server, and they
 * never appear in an access token for a business API. Business scopes (`order:create`) belong to
 * exactly one resource server (DESIGN §3, §4).
 */

/** OpenID Connect scopes Clearance understands (OIDC Core §3.1.2.1, §11). */
export const oidcScopes = ['openid', 'offline_access'] as const;
export type OidcScope = (typeof oidcScopes)[number];

export function isOidcScope(scope: string): scope is OidcScope {
  return (oidcScopes as readonly string[]).includes(scope);
}

/**
 * The audience of access tokens for the userinfo endpoint: `<issuer>/userinfo`. A token for a
 * business API is never accepted at userinfo, and a userinfo token is accepted nowhere else
 * (exactly one audience per token, DESIGN §4). Its only scope is `openid`.
 */
export function userinfoAudience(issuer: string): string {
  return `${issuer}/userinfo`;
}

/** Access token lifetime for the userinfo audience, in seconds. */
export const userinfoTokenTtl = 300;

const verbs: Record<string, string> = {
  create: 'Create',
  cancel: 'Cancel',
  amend: 'Amend',
  send: 'Send',
  propose: 'Propose',
  approve: 'Approve',
  submit: 'Submit',
  view: 'View',
  export: 'Export',
  read: 'Read',
};

const objects: Record<string, string> = {
  order: 'orders',
  rfq: 'requests for quote',
  allocation: 'allocations',
  settlement: 'settlement instructions',
  position: 'positions',
  report: 'reports',
  marketdata: 'market data',
  market: 'market data',
  trade: 'trades',
};

/**
 * The consent line for a business scope at a resource: `order:create` at "Order API" reads
 * "Create orders at Order API (order:create)". The scope stays visible, so what the person
 * approves and what the token says can be compared.
 */
export function describeScope(scope: string, resourceName: string): string {
  const [object = scope, verb = ''] = scope.split(':');
  const action = verbs[verb] ?? capitalize(verb.replace(/_/g, ' '));
  const what = objects[object] ?? object.replace(/_/g, ' ');
  return `${action} ${what} at ${resourceName} (${scope})`;
}

/** The consent line for an OpenID Connect scope. */
export function describeOidcScope(scope: OidcScope, clientName: string): string {
  return scope === 'openid'
    ? `Tell ${clientName} who you are (your user identifier) and when you signed in`
    : `Let ${clientName} keep this access after you sign out, until you revoke it or your access is ended everywhere (offline_access)`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
