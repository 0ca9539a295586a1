import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { GuardError } from 'clearance/guard';
import { dpopProof, type DpopKey } from '../helpers/dpop.ts';
import type { Pem } from '../helpers/pki.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

// A listening Clearance with two resource servers and a client_secret_basic client, from which
// the guard tests get real tokens: bearer, DPoP-bound (a proof at the token endpoint) and
// certificate-bound (the certificate arrives in a trusted proxy's header, RFC 9440, so no TLS
// listener is needed).

export const ordersApi = 'https://orders.example.com/api';
export const settlementApi = 'https://settlement.example.com/api';
export const clientId = 'order-router';

export interface GuardFixture {
  server: TestServer;
  issuer: string;
  secret: string;
  /** A client_credentials token for `resource` with `scope`, bound to `dpop`'s key or `certificate` when given. */
  token(options?: { scope?: string; resource?: string; dpop?: DpopKey; certificate?: Pem }): Promise<{ access_token: string; token_type: string }>;
  /** Signs claims with the server's current key (a real Clearance signature), header typ at+jwt unless given. */
  sign(claims: Record<string, unknown>, header?: { typ: string } & Record<string, unknown>): Promise<string>;
  /** RFC 9068 claims of a valid token for the orders API, to vary in `sign`. */
  claims(extra?: Record<string, unknown>): Record<string, unknown>;
}

export async function guardFixture(t: { after(fn: () => unknown): void }, env: NodeJS.ProcessEnv = {}): Promise<GuardFixture> {
  const server = await startTestServer({ t, env: { CLEARANCE_CLIENT_CERT_HEADER: 'client-cert', CLEARANCE_TRUSTED_PROXIES: '127.0.0.1', ...env } });
  await server.apply({
    resource_servers: [
      { identifier: ordersApi, scopes: ['order:create', 'order:cancel', 'position:view'] },
      { identifier: settlementApi, scopes: ['settlement:submit'] },
    ],
    clients: [
      {
        client_id: clientId,
        kind: 'service',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        scope: 'order:create position:view settlement:submit',
      },
    ],
  });
  const secret = server.secrets[clientId]!;
  const issuer = server.issuer;
  return {
    server,
    issuer,
    secret,
    async token(options = {}) {
      const headers: Record<string, string> = {
        authorization: `Basic ${Buffer.from(`${clientId}:${encodeURIComponent(secret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      };
      if (options.dpop) headers.dpop = dpopProof(options.dpop, { htm: 'POST', htu: `${issuer}/token` });
      if (options.certificate) headers['client-cert'] = `:${new X509Certificate(options.certificate.cert).raw.toString('base64')}:`;
      const response = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers,
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: options.scope ?? 'order:create', resource: options.resource ?? ordersApi }).toString(),
      });
      const body = (await response.json()) as { access_token: string; token_type: string };
      assert.equal(response.status, 200, JSON.stringify(body));
      return body;
    },
    sign: (claims, header = { typ: 'at+jwt' }) => server.running.ctx.keys.signJwt(header, claims),
    claims(extra = {}) {
      const now = Math.floor(Date.now() / 1000);
      return { iss: issuer, sub: clientId, aud: ordersApi, exp: now + 300, iat: now, jti: crypto.randomUUID(), client_id: clientId, scope: 'order:create', ...extra };
    },
  };
}

/** Asserts a promise rejects with a GuardError of this status and code; returns it. */
export async function refused(promise: Promise<unknown>, status: number, error: string, message?: string): Promise<GuardError> {
  try {
    await promise;
  } catch (caught) {
    assert.ok(caught instanceof GuardError, `${message ?? ''}: ${String(caught)}`);
    assert.equal(caught.status, status, `${message ?? ''}: ${caught.error} ${caught.detail ?? ''}`);
    assert.equal(caught.error, error, `${message ?? ''}: ${caught.detail ?? ''}`);
    return caught;
  }
  assert.fail(`${message ?? 'the request'} was accepted`);
}
