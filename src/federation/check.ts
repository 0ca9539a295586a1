import type { Context } from '../context.ts';
import { isLoopbackHost } from '../jose/loopback.ts';
import { builtinResourceServers } from '../resource-servers/builtins.ts';
import type { Partner } from './definition.ts';
import { fetchJson, type JsonFetcher } from './fetch.ts';
import { readKeySet, type PartnerKey } from './keys.ts';

/** One line of `clearance partner check`: `note` lines report without failing the check. */
export interface CheckLine {
  status: 'pass' | 'fail' | 'skip' | 'note';
  rule: string;
  detail: string;
}

/**
 * Checks a partner's profile against the world (for `clearance partner check`): the issuer is well
 * formed; the partner's metadata, when it publishes any, names the same issuer (reported, not
 * required); its keys are reachable, public and usable; every allowed algorithm has a key of its
 * type; every allowed audience is one of our resource servers and accepts one of the allowed
 * scopes; every listed client (and chaining client) exists.
 */
export async function checkPartnerProfile(
  ctx: Pick<Context, 'resourceServers' | 'clients' | 'config'>,
  partner: Partner,
  options: { fetch?: JsonFetcher } = {},
): Promise<CheckLine[]> {
  const fetch = options.fetch ?? fetchJson;
  const rules = { allowPrivateNetwork: partner.allow_private_network };
  const lines: CheckLine[] = [];
  const line = (status: CheckLine['status'], rule: string, detail: string) => lines.push({ status, rule, detail });

  line(...issuerWellFormed(partner));

  const metadata = await fetchMetadata(partner, fetch);
  if ('error' in metadata) {
    line('note', 'metadata', `none found (${metadata.error}); not required`);
  } else {
    const issuer = metadata.document.issuer;
    if (issuer === partner.issuer) line('pass', 'metadata issuer', `${metadata.url} names issuer ${partner.issuer}`);
    else line('fail', 'metadata issuer', `${metadata.url} names issuer ${JSON.stringify(issuer)}, not ${partner.issuer}`);
    const published = metadata.document.jwks_uri;
    if (typeof published === 'string') {
      if (!partner.jwks_uri) line('note', 'metadata jwks_uri', `the partner publishes ${published}; the profile uses its inline jwks`);
      else if (published !== partner.jwks_uri) line('note', 'metadata jwks_uri', `the partner publishes ${published}; the profile uses ${partner.jwks_uri}`);
      else line('pass', 'metadata jwks_uri', `the profile's jwks_uri is the one the partner publishes`);
    }
  }

  let keys: PartnerKey[] | undefined;
  let document: unknown = partner.jwks;
  if (partner.jwks_uri) {
    try {
      document = await fetch(partner.jwks_uri, rules);
      line('pass', 'keys reachable', `fetched ${partner.jwks_uri}`);
    } catch (error) {
      line('fail', 'keys reachable', (error as Error).message);
      document = undefined;
    }
  } else {
    line('pass', 'keys reachable', `inline jwks (${partner.jwks?.keys.length ?? 0} key(s))`);
  }
  if (document !== undefined) {
    const read = readKeySet(document);
    if ('error' in read) {
      line('fail', 'keys public', `the key set ${read.error}`);
    } else {
      line('pass', 'keys public', `${read.keys.length + read.skipped.length} key(s), no private members`);
      for (const skipped of read.skipped) line('note', 'keys usable', `${skipped}; left out`);
      if (read.keys.length === 0) line('fail', 'keys usable', 'no key can verify signatures');
      else line('pass', 'keys usable', read.keys.map((k) => `${k.kid ?? '(no kid)'} ${k.type}`).join(', '));
      keys = read.keys;
    }
  }

  for (const alg of partner.algorithms) {
    if (!keys) {
      line('skip', `algorithm ${alg}`, 'needs the keys');
      continue;
    }
    const matching = keys.filter((k) => k.algorithms.includes(alg));
    if (matching.length) line('pass', `algorithm ${alg}`, `${matching.length} key(s) of its type`);
    else line('fail', `algorithm ${alg}`, `no key verifies ${alg} (keys: ${keys.map((k) => k.type).join(', ') || 'none'})`);
  }

  const builtin = new Set(builtinResourceServers(ctx.config.issuer).map((r) => r.identifier));
  const servers = new Map((await ctx.resourceServers.list()).map((r) => [r.identifier, r]));
  for (const audience of partner.allowed_audiences) {
    if (builtin.has(audience)) line('fail', 'allowed audience', `${audience} is Clearance's own API`);
    else if (servers.has(audience)) line('pass', 'allowed audience', `${audience} exists`);
    else line('fail', 'allowed audience', `no resource server ${audience}`);
  }
  for (const scope of partner.allowed_scopes) {
    const by = partner.allowed_audiences.filter((a) => !builtin.has(a) && servers.get(a)?.scopes.includes(scope));
    if (by.length) line('pass', 'allowed scope', `${scope} (accepted by ${by.join(', ')})`);
    else line('fail', 'allowed scope', `${scope} is accepted by none of the allowed audiences`);
  }
  if (!partner.clients) {
    line('pass', 'clients', 'any authenticated client may present this partner\'s tokens');
  } else {
    for (const clientId of partner.clients) {
      if (await ctx.clients.get(clientId)) line('pass', 'client', `${clientId} exists`);
      else line('fail', 'client', `no client ${clientId}`);
    }
  }
  // Identity chaining (src/federation/chaining.ts): the clients that may obtain grants for the partner.
  for (const clientId of partner.chaining?.clients ?? []) {
    if (await ctx.clients.get(clientId)) line('pass', 'chaining client', `${clientId} exists`);
    else line('fail', 'chaining client', `no client ${clientId}`);
  }
  line('pass', 'max assertion lifetime', `${partner.max_assertion_lifetime} s`);
  line('pass', 'ID tokens', partner.accept_id_tokens ? 'accepted as subject tokens' : 'refused');
  return lines;
}

function issuerWellFormed(partner: Partner): [CheckLine['status'], string, string] {
  const rule = 'issuer well-formed';
  let url: URL;
  try {
    url = new URL(partner.issuer);
  } catch {
    return ['fail', rule, `${partner.issuer} is not an absolute URL`];
  }
  if (url.search || url.hash) return ['fail', rule, `${partner.issuer} has a query or fragment (RFC 8414 §2)`];
  if (url.protocol === 'https:') return ['pass', rule, partner.issuer];
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname) && partner.allow_private_network) {
    return ['pass', rule, `${partner.issuer} (http to a loopback host: allow_private_network)`];
  }
  return ['fail', rule, `${partner.issuer} is not https`];
}

/**
 * The partner's metadata: OpenID Provider metadata at `{issuer}/.well-known/openid-configuration`
 * (OIDC Discovery §4), else RFC 8414 §3 metadata at `/.well-known/oauth-authorization-server{path}`.
 */
export async function fetchMetadata(partner: Partner, fetch: JsonFetcher): Promise<{ url: string; document: Record<string, unknown> } | { error: string }> {
  let issuer: URL;
  try {
    issuer = new URL(partner.issuer);
  } catch {
    return { error: 'the issuer is not a URL' };
  }
  const path = issuer.pathname === '/' ? '' : issuer.pathname.replace(/\/$/, '');
  const urls = [
    `${partner.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
    `${issuer.origin}/.well-known/oauth-authorization-server${path}`,
  ];
  const errors: string[] = [];
  for (const url of urls) {
    try {
      const document = await fetch(url, { allowPrivateNetwork: partner.allow_private_network });
      if (typeof document === 'object' && document !== null && !Array.isArray(document)) return { url, document: document as Record<string, unknown> };
      errors.push(`${url} is not a JSON object`);
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  return { error: errors.join('; ') };
}
