import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { FetchError, checkUrl, defaultFetchTimeoutMs, pickAddress, type FetchRules } from '../federation/fetch.ts';

/** What an endpoint answered: its status, and the start of its body (at most 4 KiB, UTF-8; the rest is read up to a small limit and dropped). */
export interface PostOutcome {
  status: number;
  body: string;
}

/**
 * POSTs a body to a webhook under the SSRF rules of partner fetches (src/federation/fetch.ts,
 * docs/federation.md): the URL checked (https; http only to loopback with the private network
 * allowed), the host resolved once and every address checked, the connection pinned to the checked
 * address, no redirects followed (a 3xx is an answer, not a success), no pooled socket, a time
 * limit. Resolves with the status whatever it is; rejects with FetchError when refused or
 * unreachable.
 */
export async function postForStatus(url: string, body: string, headers: Record<string, string>, rules: FetchRules): Promise<PostOutcome> {
  const timeoutMs = rules.timeoutMs ?? defaultFetchTimeoutMs;
  const deadline = AbortSignal.timeout(timeoutMs);
  const target = checkUrl(url, rules);
  const address = await Promise.race([
    pickAddress(target, rules),
    new Promise<never>((_, reject) => deadline.addEventListener('abort', () => reject(new FetchError(`timed out after ${timeoutMs} ms (resolving the host name)`)), { once: true })),
  ]);
  const pinned: LookupFunction = (_hostname, options, callback) => {
    if (options.all) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [address]);
    else callback(null, address.address, address.family);
  };
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  const payload = Buffer.from(body, 'utf8');
  const options: RequestOptions & { servername?: string } = {
    method: 'POST',
    host,
    port: target.port || (target.protocol === 'https:' ? 443 : 80),
    path: `${target.pathname}${target.search}`,
    headers: { ...headers, 'content-length': String(payload.length), 'user-agent': 'clearance' },
    lookup: pinned,
    agent: false,
    signal: deadline,
    ...(target.protocol === 'https:' && !isIP(host) ? { servername: host } : {}),
  };
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<PostOutcome>((resolve, reject) => {
    const fail = (error: Error) => reject(deadline.aborted ? new FetchError(`${target.href} did not answer within ${timeoutMs} ms`) : error);
    const req = send(options, (response) => {
      let size = 0;
      const kept: Buffer[] = [];
      response.on('data', (chunk: Buffer) => {
        if (size < 4096) kept.push(chunk.subarray(0, 4096 - size));
        size += chunk.length;
        if (size > 64 * 1024) response.destroy();
      });
      const answered = () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(kept).toString('utf8') });
      response.on('end', answered);
      response.on('close', answered);
      response.on('error', fail);
    });
    req.on('error', (error: NodeJS.ErrnoException) => fail(new FetchError(`cannot reach ${target.href}: ${error.code ?? error.message}`)));
    req.end(payload);
  });
}
