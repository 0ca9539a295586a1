/** A stand-in for a client application's redirect endpoint (or a webhook receiver): records every request it receives. */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { TestContext } from 'node:test';

export interface CallbackServer {
  /** e.g. http://127.0.0.1:40123/callback */
  redirectUri: string;
  /** Base URL, e.g. for post_logout_redirect_uri. */
  origin: string;
  /** Full URLs received, oldest first. */
  received: URL[];
  /** Every request with its method, headers and body, oldest first. */
  requests: { method: string; url: URL; headers: IncomingHttpHeaders; body: string }[];
}

/** `status`: the status to answer the n-th request (0-based) with; default 200 for all. */
export async function startCallbackServer(t: Pick<TestContext, 'after'>, options: { status?: (n: number) => number } = {}): Promise<CallbackServer> {
  const received: URL[] = [];
  const requests: CallbackServer['requests'] = [];
  const server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', `http://${request.headers.host}`);
    received.push(url);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const n = requests.length;
      requests.push({ method: request.method ?? 'GET', url, headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
      response.writeHead(options.status?.(n) ?? 200, { 'content-type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><title>client app</title><p>back at the client</p>');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const origin = `http://127.0.0.1:${port}`;
  return { redirectUri: `${origin}/callback`, origin, received, requests };
}
