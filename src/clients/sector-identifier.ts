import type { Context } from '../context.ts';
import { FetchError, fetchJson, type JsonFetcher } from '../federation/fetch.ts';
import type { ClientMetadata } from './metadata.ts';

/** A sector identifier document is a short list of URIs: a small limit, a short wait (registration waits for it). */
const rules = { timeoutMs: 3000, maxBytes: 64 * 1024 } as const;

/**
 * OIDC Dynamic Client Registration §5: a client's `sector_identifier_uri` is fetched when it is
 * registered, and must be a JSON array containing every one of its redirect_uris ("The values
 * registered in redirect_uris MUST be included in the elements of the array"), so a client cannot
 * claim another party's sector and learn the pairwise subjects it sees. Fetched with the SSRF rules
 * of clients' jwks_uri (src/federation/fetch.ts: https; every address of the host checked and the
 * connection pinned to it; no redirects; a time and size limit; private and loopback addresses only
 * with CLEARANCE_CLIENT_JWKS_ALLOW_PRIVATE_NETWORK). Resolves a sentence for the registrant when the
 * document does not qualify (to follow the member's name), undefined when it does (or when there is none to fetch).
 */
export async function checkSectorIdentifier(
  ctx: Pick<Context, 'config'>,
  metadata: Pick<ClientMetadata, 'sector_identifier_uri' | 'redirect_uris'>,
  fetcher: JsonFetcher = fetchJson,
): Promise<string | undefined> {
  const uri = metadata.sector_identifier_uri;
  if (uri === undefined) return undefined;
  let document: unknown;
  try {
    document = await fetcher(uri, { allowPrivateNetwork: ctx.config.clientJwksAllowPrivateNetwork, ...rules });
  } catch (error) {
    // The fetch rule or failure is the registrant's to fix; nothing else of the error is echoed.
    const reason = error instanceof FetchError ? error.message : 'it could not be fetched';
    return `could not be used: ${reason}`;
  }
  if (!Array.isArray(document) || !document.every((entry) => typeof entry === 'string')) {
    return 'must return a JSON array of URIs (OIDC Registration §5)';
  }
  const listed = new Set(document as string[]);
  const missing = (metadata.redirect_uris ?? []).filter((u) => !listed.has(u));
  if (missing.length > 0) {
    return `does not list redirect_uri ${missing[0]!.slice(0, 200)} (OIDC Registration §5: it must list every one)`;
  }
  return undefined;
}
