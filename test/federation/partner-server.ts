import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

/**
 * A partner's authorization server on 127.0.0.1 (a real HTTP server): its metadata at
 * `/.well-known/openid-configuration` and its keys at `/jwks`, both changeable while it runs, or
 * `down` (every request answered 503). Counts the requests.
 */
export interface PartnerServer {
  issuer: string;
  jwksUri: string;
  keys: Record<string, unknown>[];
  /** The issuer the metadata names (default: the server's own). */
  metadataIssuer: string;
  down: boolean;
  requests: string[];
}

export async function servePartner(t: Pick<TestContext, 'after'>): Promise<PartnerServer> {
  const server = createServer((request, response) => {
    state.requests.push(request.url ?? '');
    response.setHeader('content-type', 'application/json');
    if (state.down) {
      response.statusCode = 503;
      response.end('{}');
    } else if (request.url === '/.well-known/openid-configuration') {
      response.end(JSON.stringify({ issuer: state.metadataIssuer, jwks_uri: state.jwksUri, token_endpoint: `${state.issuer}/token` }));
    } else if (request.url === '/jwks') {
      response.end(JSON.stringify({ keys: state.keys }));
    } else {
      response.statusCode = 404;
      response.end('{}');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const state: PartnerServer = { issuer, jwksUri: `${issuer}/jwks`, keys: [], metadataIssuer: issuer, down: false, requests: [] };
  return state;
}
