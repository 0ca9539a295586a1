import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isLoopbackHost } from '../jose/loopback.ts';
import { classifyAddress } from './address.ts';

/** A resolved address of a host name. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address it has (injectable: tests resolve names to chosen addresses). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

export interface FetchRules {
  /** The partner profile's `allow_private_network`: private, loopback and link-local addresses, and http to loopback. */
  allowPrivateNetwork: boolean;
  /**
   * http to any host, under the same address rules: for OCSP responders and CRL distribution
   * points, which are http by custom and whose answers are signed (RFC 5280 §4.2.1.13, RFC 6960
   * Appendix A.1). Absent: https only.
   */
  allowHttp?: boolean;
  /** What allows the private network, for the refusal's message (default: the partner profile's `allow_private_network`). */
  privateNetworkSetting?: string;
  /** Whole request, DNS included; default 5000 ms. */
  timeoutMs?: number;
  /** Largest response body; default 256 KiB. */
  maxBytes?: number;
  resolve?: Resolver;
}

/** How a remote JSON document is fetched; `fetchJson` by default, a fake in tests. */
export type JsonFetcher = (url: string, rules: FetchRules) => Promise<unknown>;

export const defaultFetchTimeoutMs = 5000;
export const defaultMaxResponseBytes = 256 * 1024;

/** A refused or failed fetch; the message says which rule or what failed, for operators. */
export class FetchError extends Error {
  override name = 'FetchError';
}

/**
 * A fetch the rules refuse before anything is sent (the URL, or an address the host resolves to):
 * a standing configuration, not a passing failure — callers that tolerate an unreachable peer
 * (revocation's soft fail) must not tolerate this.
 */
export class FetchRefused extends FetchError {}

/**
 * Fetches a JSON document from a partner's URL (its jwks_uri or metadata) under the SSRF rules of
 * docs/federation.md: https only (http only to a loopback host when the profile allows the
 * private network); the host resolved here and every one of its addresses checked, then the
 * connection made to the checked address (no second lookup, so DNS rebinding cannot swap it);
 * no redirects; no credentials in the URL; a time limit and a size limit; a JSON body.
 */
export async function fetchJson(url: string, rules: FetchRules): Promise<unknown> {
  const timeoutMs = rules.timeoutMs ?? defaultFetchTimeoutMs;
  const deadline = AbortSignal.timeout(timeoutMs);
  const target = checkUrl(url, rules);
  const address = await withDeadline(pickAddress(target, rules), deadline, timeoutMs);
  const body = await get(target, address, rules.maxBytes ?? defaultMaxResponseBytes, deadline, timeoutMs);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new FetchError(`${url} did not return JSON`);
  }
}

/** The URL rules of every remote request (https; http only to loopback with the private network allowed, or to any host with `allowHttp`; no credentials). */
export function checkUrl(url: string, rules: FetchRules): URL {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new FetchRefused(`${url} is not an absolute URL`);
  }
  if (target.username || target.password) throw new FetchRefused(`${url} carries credentials, which are never sent`);
  if (target.protocol === 'http:') {
    if (rules.allowHttp) return target;
    if (!isLoopbackHost(target.hostname)) throw new FetchRefused(`${url} is not https (http is allowed only to a loopback host)`);
    if (!rules.allowPrivateNetwork) throw new FetchRefused(`${url} is not https (http to a loopback host needs allow_private_network)`);
  } else if (target.protocol !== 'https:') {
    throw new FetchRefused(`${url} is not https`);
  }
  return target;
}

/** Resolves the host and checks every address; resolves the one to connect to. */
export async function pickAddress(target: URL, rules: FetchRules): Promise<ResolvedAddress> {
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  const literal = isIP(host);
  let addresses: ResolvedAddress[];
  if (literal) {
    addresses = [{ address: host, family: literal === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await (rules.resolve ?? systemResolver)(host);
    } catch (error) {
      throw new FetchError(`cannot resolve ${host}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (addresses.length === 0) throw new FetchError(`cannot resolve ${host}: no addresses`);
  }
  // Every address is checked, not only the one used: a name with one public and one private
  // address is refused, since which one a client picks is not ours to rely on.
  for (const { address } of addresses) {
    const { category, label } = classifyAddress(address);
    const named = literal ? address : `${host} resolves to ${address}`;
    if (category === 'never') throw new FetchRefused(`${named}, a ${label} address, which is never fetched`);
    if (category === 'private' && !rules.allowPrivateNetwork) {
      throw new FetchRefused(`${named}, a ${label} address; ${rules.privateNetworkSetting ?? 'the partner profile'} does not allow the private network (allow_private_network)`);
    }
  }
  return addresses[0]!;
}

async function get(target: URL, address: ResolvedAddress, maxBytes: number, deadline: AbortSignal, timeoutMs: number): Promise<Buffer> {
  const options = pinnedOptions(target, address, deadline, { method: 'GET', headers: { accept: 'application/json, application/jwk-set+json', 'accept-encoding': 'identity', 'user-agent': 'clearance' } });
  const { body } = await send(target, options, undefined, { maxBytes, deadline, timeoutMs }, (response) => {
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400) {
      const to = response.headers.location ? ` to ${response.headers.location}` : '';
      return new FetchError(`${target.href} answered ${status}, a redirect${to}; redirects are not followed`);
    }
    if (status !== 200) return new FetchError(`${target.href} answered HTTP ${status}`);
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) return new FetchError(`${target.href} sent ${declared} bytes (limit ${maxBytes})`);
    return undefined;
  });
  return body;
}

/**
 * Sends one request over a pinned connection and reads its answer: at most `maxBytes` of body, all
 * of it (a connection closed before the end fails), within the deadline. `refuse`: a response the
 * caller will not read (its status, its declared size) → that error, the body left unread.
 */
function send(
  target: URL,
  options: RequestOptions,
  body: Buffer | undefined,
  limits: { maxBytes: number; deadline: AbortSignal; timeoutMs: number },
  refuse?: (response: IncomingMessage) => FetchError | undefined,
): Promise<{ response: IncomingMessage; body: Buffer }> {
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => reject(limits.deadline.aborted ? new FetchError(`${target.href} did not answer within ${limits.timeoutMs} ms`) : error);
    const req = request(options, (response: IncomingMessage) => {
      const refused = refuse?.(response);
      if (refused) {
        response.destroy();
        return reject(refused);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.maxBytes) {
          response.destroy();
          reject(new FetchError(`${target.href} sent more than ${limits.maxBytes} bytes`));
        } else {
          chunks.push(chunk);
        }
      });
      response.on('end', () => resolve({ response, body: Buffer.concat(chunks) }));
      response.on('error', fail);
      response.on('close', () => {
        if (!response.complete) fail(new FetchError(`${target.href} closed the connection before the end of its response`));
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => fail(new FetchError(`cannot fetch ${target.href}: ${error.code ?? error.message}`)));
    req.end(body);
  });
}

/**
 * The request options that connect to `address` — the one checked — whatever the name resolves to
 * by now, with no pooled socket (a pooled one could outlive the address check that allowed it).
 */
function pinnedOptions(target: URL, address: ResolvedAddress, deadline: AbortSignal, request: { method: string; headers: Record<string, string> }): RequestOptions & { servername?: string } {
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if (options.all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [address]);
    else callback(null, address.address, address.family);
  };
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  return {
    method: request.method,
    host,
    port: target.port || (target.protocol === 'https:' ? 443 : 80),
    path: `${target.pathname}${target.search}`,
    headers: request.headers,
    lookup: pinned,
    agent: false,
    signal: deadline,
    ...(target.protocol === 'https:' && !isIP(host) ? { servername: host } : {}),
  };
}

async function withDeadline<T>(work: Promise<T>, deadline: AbortSignal, timeoutMs: number): Promise<T> {
  if (deadline.aborted) throw new FetchError(`timed out after ${timeoutMs} ms`);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new FetchError(`timed out after ${timeoutMs} ms (resolving the host name)`));
    deadline.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    deadline.removeEventListener('abort', onAbort!);
  }
}

/** A response of `pinnedRequest`: any status (a redirect is returned, never followed). */
export interface PinnedResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Any HTTP request to a partner's or upstream's URL under the same SSRF rules as `fetchJson`: the
 * URL rules, every address of the host checked, the connection made to the checked address (no
 * second lookup: DNS rebinding cannot swap it), no pooled socket, a time limit and a size limit.
 * openid-client's requests to an upstream identity provider (token, userinfo, PAR, JWKS) go through
 * it (src/federation/upstream/oidc.ts).
 */
export async function pinnedRequest(url: string, init: { method: string; headers: Record<string, string>; body?: Buffer }, rules: FetchRules): Promise<PinnedResponse> {
  const timeoutMs = rules.timeoutMs ?? defaultFetchTimeoutMs;
  const maxBytes = rules.maxBytes ?? defaultMaxResponseBytes;
  const deadline = AbortSignal.timeout(timeoutMs);
  const target = checkUrl(url, rules);
  const address = await withDeadline(pickAddress(target, rules), deadline, timeoutMs);
  const options = pinnedOptions(target, address, deadline, {
    method: init.method,
    headers: { 'accept-encoding': 'identity', 'user-agent': 'clearance', ...init.headers, ...(init.body ? { 'content-length': String(init.body.length) } : {}) },
  });
  const { response, body } = await send(target, options, init.body, { maxBytes, deadline, timeoutMs });
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  return { status: response.statusCode ?? 0, headers, body };
}
