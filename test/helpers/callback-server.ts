/** A stand-in for a client application's redirect endpoint: records every request it receives. */
import { createServer, type Server } from 'node:http';
import type { TestContext } from 'node:test';

export interface CallbackServer {
  /** e.g. http://127.0.0.1:40123/callback */
  redirectUri: string;
  /** Base URL, e.g. for post_logout_redirect_uri. */
  origin: string;
  /** Full URLs received, oldest first. */
  received: URL[];
}

export async function startCallbackServer(t: Pick<TestContext, 'after'>): Promise<CallbackServer> {
  const received: URL[] = [];
  const server: Server = createServer((request, response) => {
    received.push(new URL(request.url ?? '/', `http://${request.headers.host}`));
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end('<!doctype html><title>client app</title><p>back at the client</p>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const origin = `http://127.0.0.1:${port}`;
  return { redirectUri: `${origin}/callback`, origin, received };
}
