import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as oauth from 'oauth4webapi';
import { executionApi, m2mFixture } from './m2m-fixture.ts';

// oauth4webapi, a client nobody here wrote, against a listening Clearance.
const insecure = { [oauth.allowInsecureRequests]: true }; // the test issuer is http on loopback

async function discover(issuer: string): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer);
  const response = await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure });
  return oauth.processDiscoveryResponse(url, response);
}

test('oauth4webapi completes client credentials, introspection and revocation with private_key_jwt', async (t) => {
  const { server, jwtClient } = await m2mFixture(t);
  const as = await discover(server.issuer);
  const client: oauth.Client = { client_id: jwtClient.id };
  const auth = oauth.PrivateKeyJwt({ key: jwtClient.privateKey, kid: jwtClient.kid });

  const response = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams({ scope: 'order:cancel', resource: executionApi }), insecure);
  const tokens = await oauth.processClientCredentialsResponse(as, client, response);
  assert.equal(tokens.scope, 'order:cancel');
  assert.ok(tokens.expires_in && tokens.expires_in > 0 && tokens.expires_in <= 300);

  const introspection = await oauth.processIntrospectionResponse(
    as,
    client,
    await oauth.introspectionRequest(as, client, auth, tokens.access_token, insecure),
  );
  assert.equal(introspection.active, true);
  assert.equal(introspection.scope, 'order:cancel');

  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, tokens.access_token, insecure));
  const after = await oauth.processIntrospectionResponse(
    as,
    client,
    await oauth.introspectionRequest(as, client, auth, tokens.access_token, insecure),
  );
  assert.equal(after.active, false);
});

test('oauth4webapi completes client credentials and a signed (RFC 9701) introspection with client_secret_basic', async (t) => {
  const { server, secretClient } = await m2mFixture(t);
  const as = await discover(server.issuer);
  const client: oauth.Client = { client_id: secretClient.id, introspection_signed_response_alg: 'ES256' };
  const auth = oauth.ClientSecretBasic(secretClient.secret);

  const response = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams({ scope: 'position:view', resource: executionApi }), insecure);
  const tokens = await oauth.processClientCredentialsResponse(as, client, response);

  const signed = await oauth.introspectionRequest(as, client, auth, tokens.access_token, { ...insecure, requestJwtResponse: true });
  assert.equal(signed.headers.get('content-type'), 'application/token-introspection+jwt');
  const introspection = await oauth.processIntrospectionResponse(as, client, signed);
  assert.equal(introspection.active, true);
  assert.equal(introspection.client_id, secretClient.id);
});
