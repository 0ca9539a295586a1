import { generateKeyPair, exportJWK, type CryptoKey } from 'jose';
import type { TestContext } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

export const executionApi = 'https://execution.example.com/api';

export interface M2mFixture {
  server: TestServer;
  /** A private_key_jwt client's private key (ES256) and kid. */
  jwtClient: { id: string; privateKey: CryptoKey; kid: string };
  /** A client_secret_basic client and its generated secret. */
  secretClient: { id: string; secret: string };
}

/** A listening server with one resource server, a private_key_jwt client and a secret client. */
export async function m2mFixture(t: Pick<TestContext, 'after'>): Promise<M2mFixture> {
  const server = await startTestServer({ t });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = 'oms-2026-11';
  await server.apply({
    resource_servers: [{ identifier: executionApi, scopes: ['order:create', 'order:cancel', 'position:view'] }],
    clients: [
      {
        client_id: 'oms-service',
        kind: 'service',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256' }] },
        grant_types: ['client_credentials'],
        scope: 'order:create order:cancel',
      },
      {
        client_id: 'risk-service',
        kind: 'service',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        scope: 'position:view',
      },
    ],
  });
  return {
    server,
    jwtClient: { id: 'oms-service', privateKey, kid },
    secretClient: { id: 'risk-service', secret: server.secrets['risk-service']! },
  };
}
