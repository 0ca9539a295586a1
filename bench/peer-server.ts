/**
 * The peer of the `peer` scenario (bench/peer.ts): node-oidc-provider, the most used OpenID
 * Provider for Node, configured to answer the m2m-private-key-jwt request the way Clearance does —
 * client_credentials, private_key_jwt with ES256 (its replay check on the assertion's jti in its
 * in-memory adapter), a resource indicator, and an ES256 JWT access token. It keeps everything in
 * memory and writes no audit record: the comparison flatters it, which is the point.
 *
 * Run as its own process (`node bench/peer-server.ts`), so its CPU is measured as Clearance's is.
 * Environment: PEER_PORT, PEER_ISSUER, PEER_CLIENT (JSON: client_id, public JWK, resource, scope).
 */
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const issuer = process.env.PEER_ISSUER!;
const port = Number(process.env.PEER_PORT);
const client = JSON.parse(process.env.PEER_CLIENT!) as { client_id: string; jwk: Record<string, unknown>; resource: string; scope: string; ttl: number };
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: client.client_id,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      id_token_signed_response_alg: 'ES256', // its only signing key is ES256
      jwks: { keys: [client.jwk] },
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: client.scope,
    },
  ],
  jwks: { keys: [{ ...signing, kid: 'peer-1', alg: 'ES256', use: 'sig' }] },
  scopes: client.scope.split(' '),
  ttl: { ClientCredentials: client.ttl },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => client.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx: unknown, resource: string) => {
        if (resource !== client.resource) throw new Error(`unknown resource ${resource}`);
        return { scope: client.scope, audience: resource, accessTokenTTL: client.ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
      },
    },
  },
});

provider.listen(port, '127.0.0.1', () => process.send?.('ready'));
