import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as oauth from 'oauth4webapi';
import { startTestServer } from '../helpers/server.ts';

// Identity chaining across two real Clearance servers (draft-ietf-oauth-identity-chaining), driven
// by oauth4webapi, a client nobody here wrote: each server fetches the other's keys from its
// jwks_uri over HTTP, as partners do.
const insecure = { [oauth.allowInsecureRequests]: true }; // the test issuers are http on loopback
const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const jwtBearer = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const aApi = 'https://orders.a.example.com/api';
const bApi = 'https://settlement.b.example.com/api';

async function discover(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer);
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure }));
}

test('oauth4webapi obtains a JWT authorization grant from A and an access token for it from B', async (t) => {
  const a = await startTestServer({ t });
  const b = await startTestServer({ t });
  await a.apply({
    // B's authorization server as A's decision point decides a grant for it (docs/federation.md).
    resource_servers: [
      { identifier: aApi, scopes: ['order:create'] },
      { identifier: b.issuer, scopes: ['order:create'] },
    ],
    clients: [{ client_id: 'a-backend', kind: 'service', grant_types: ['client_credentials', exchange], scope: 'order:create' }],
    partners: [
      {
        id: 'domain-b',
        issuer: b.issuer,
        jwks_uri: `${b.issuer}/jwks`,
        allow_private_network: true,
        algorithms: ['ES256'],
        allowed_audiences: [],
        allowed_scopes: [],
        chaining: { clients: ['a-backend'], scopes: ['order:create'] },
      },
    ],
  });
  await b.apply({
    resource_servers: [{ identifier: bApi, scopes: ['order:create'] }],
    clients: [{ client_id: 'a-backend-at-b', kind: 'service', grant_types: [jwtBearer], scope: 'order:create' }],
    partners: [
      {
        id: 'domain-a',
        issuer: a.issuer,
        jwks_uri: `${a.issuer}/jwks`,
        allow_private_network: true,
        algorithms: ['ES256'],
        allowed_audiences: [bApi],
        allowed_scopes: ['order:create'],
        clients: ['a-backend-at-b'],
      },
    ],
  });

  const asA = await discover(a.issuer);
  const clientA: oauth.Client = { client_id: 'a-backend' };
  const authA = oauth.ClientSecretBasic(a.secrets['a-backend']!);
  const own = await oauth.processClientCredentialsResponse(asA, clientA, await oauth.clientCredentialsGrantRequest(asA, clientA, authA, new URLSearchParams({ resource: aApi }), insecure));

  // (B) of the draft's flow: RFC 8693 at A, B's issuer as the audience.
  const exchanged = await oauth.genericTokenEndpointRequest(
    asA,
    clientA,
    authA,
    exchange,
    new URLSearchParams({
      subject_token: own.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      audience: b.issuer,
    }),
    insecure,
  );
  // token_type N_A (RFC 8693 §2.2.1): the client is told to expect it.
  const grant = await oauth.processGenericTokenEndpointResponse(asA, clientA, exchanged, { recognizedTokenTypes: { n_a: () => {} } });
  assert.equal(grant.issued_token_type, 'urn:ietf:params:oauth:token-type:jwt');

  // (D) RFC 7523 at B.
  const asB = await discover(b.issuer);
  const clientB: oauth.Client = { client_id: 'a-backend-at-b' };
  const authB = oauth.ClientSecretBasic(b.secrets['a-backend-at-b']!);
  const issued = await oauth.processGenericTokenEndpointResponse(
    asB,
    clientB,
    await oauth.genericTokenEndpointRequest(asB, clientB, authB, jwtBearer, new URLSearchParams({ assertion: grant.access_token, resource: bApi }), insecure),
  );
  assert.equal(issued.token_type, 'bearer');

  // (F) B's resource server validates it as an RFC 9068 token of B's, fetching B's keys.
  const claims = await oauth.validateJwtAccessToken(asB, new Request(bApi, { headers: { authorization: `Bearer ${issued.access_token}` } }), bApi, insecure);
  assert.equal(claims.iss, b.issuer);
  assert.equal(claims.sub, 'a-backend', 'a client credentials chain: the client is the subject');
  assert.equal(claims.origin_iss, a.issuer);
  assert.deepEqual(claims.act, { sub: 'a-backend-at-b', act: { sub: 'a-backend', iss: a.issuer } });
  assert.equal(typeof claims.txn, 'string');

  // The grant is used once.
  const replay = await oauth.genericTokenEndpointRequest(asB, clientB, authB, jwtBearer, new URLSearchParams({ assertion: grant.access_token, resource: bApi }), insecure);
  await assert.rejects(oauth.processGenericTokenEndpointResponse(asB, clientB, replay), (error: unknown) => error instanceof oauth.ResponseBodyError && error.error === 'invalid_grant');
});
