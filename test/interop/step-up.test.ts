import assert from 'node:assert/strict';
import { test } from 'node:test';
import fastify from 'fastify';
import * as client from 'openid-client';
import { createGuard } from 'clearance/guard';
import { clearanceGuard } from 'clearance/guard/fastify';
import { acr } from '../../src/identity/acr.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { decidePassword, upsertUser } from '../../src/identity/users.ts';
import { HttpBrowser, signInAndApprove } from '../helpers/http-browser.ts';
import { startTestServer } from '../helpers/server.ts';

// RFC 9470 step-up end to end with a relying party nobody here wrote: openid-client signs a person
// in with a password, calls a resource server behind the guard whose route asks a passkey, reads
// the guard's insufficient_user_authentication challenge, and authorizes again with the challenge's
// acr_values. Clearance sends the password session to sign in again; the person comes back at the
// phishing-resistant level (a session started at that level stands in for the passkey ceremony,
// which the browser tests drive), and the new tokens pass the route.

const insecure = { execute: [client.allowInsecureRequests] };
const ordersApi = 'https://orders.example.com/api';
const redirectUri = 'http://127.0.0.1/cb';
const password = 'correct horse battery staple';

test('openid-client answers the guard’s RFC 9470 challenge by authorizing again with its acr_values', async (t) => {
  const server = await startTestServer({ t });
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'] }],
    clients: [
      {
        client_id: 'desk-app',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [redirectUri],
        scope: 'openid order:create',
      },
    ],
  });
  const ctx = server.running.ctx;
  const entry = { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com', password };
  const decision = await decidePassword(ctx.storage.db, entry);
  const { id: aliceId } = await ctx.storage.db.transaction().execute((trx) => upsertUser(trx, ctx.clock.now(), entry, decision));

  // The order API: placing an order needs a phishing-resistant sign-in within the last 10 minutes.
  const api = fastify();
  t.after(() => api.close());
  await api.register(clearanceGuard, { guard: createGuard({ issuer: server.issuer, audience: ordersApi, jwksUri: `${server.issuer}/jwks` }) });
  api.post('/api/orders', { config: { clearance: { scopes: ['order:create'], acr: acr.phishingResistant, maxAge: 600 } } }, async (request) => ({ placed_by: request.access!.subject, acr: request.access!.acr }));
  const apiUrl = new URL('/api/orders', await api.listen({ host: '127.0.0.1', port: 0 }));

  const config = await client.discovery(new URL(server.issuer), 'desk-app', undefined, client.ClientSecretBasic(server.secrets['desk-app']!), insecure);
  assert.deepEqual(config.serverMetadata().acr_values_supported, [acr.password, acr.multiFactor, acr.phishingResistant, acr.phishingResistantHardware]);
  const authorize = async (extra: Record<string, string> = {}) => {
    const verifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid order:create',
      resource: ordersApi,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      nonce,
      ...extra,
    });
    return { url, verifier, nonce };
  };

  // 1. A password sign-in: the tokens say urn:clearance:acr:pwd.
  const browser = new HttpBrowser();
  const first = await authorize();
  const callback = await signInAndApprove(browser, server.issuer, first.url, { username: 'alice', password });
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: first.verifier, expectedNonce: first.nonce });
  assert.equal(tokens.claims()!.acr, acr.password);

  // 2. The order API challenges: openid-client surfaces the parsed WWW-Authenticate challenge.
  const order = JSON.stringify({ instrument: 'EURUSD', side: 'buy', quantity: 1_000_000 });
  const json = new Headers({ 'content-type': 'application/json' });
  const challenge = await client.fetchProtectedResource(config, tokens.access_token, apiUrl, 'POST', order, json).then(
    () => assert.fail('the order API let a password-only token through'),
    (error: unknown) => {
      assert.ok(error instanceof client.WWWAuthenticateChallengeError, String(error));
      assert.equal(error.status, 401);
      return error.cause[0]!;
    },
  );
  assert.equal(challenge.scheme, 'bearer');
  assert.equal(challenge.parameters.error, 'insufficient_user_authentication');
  assert.equal(challenge.parameters.acr_values, acr.phishingResistant);
  assert.equal(challenge.parameters.max_age, '600');

  // 3. openid-client authorizes again with what the challenge asks. The password session is sent
  //    to sign in again, at the level asked.
  const second = await authorize({ acr_values: challenge.parameters.acr_values!, max_age: challenge.parameters.max_age! });
  const { response: signInPage, url: interaction } = await browser.follow(second.url, server.issuer);
  assert.equal(signInPage.status, 200);
  assert.match(interaction.pathname, /^\/interaction\//);
  // The page names the person, how they signed in, and what the application asks.
  assert.match(await signInPage.text(), /You are signed in as <strong>alice<\/strong> with your password\. desk-app asks for a passkey to continue\./);

  // 4. The person signs in with a passkey (a session at that level stands in for the ceremony).
  const strong = await startSession(ctx, { userId: aliceId, acr: acr.phishingResistant, amr: ['hwk', 'user', 'mfa'], cookieHeader: undefined });
  browser.setCookie(strong.setCookie);
  const { response: back, url: stepped } = await browser.follow(interaction, server.issuer);
  assert.equal(back.status, 303, 'back to the client with the code');
  const steppedUp = await client.authorizationCodeGrant(config, stepped, { pkceCodeVerifier: second.verifier, expectedNonce: second.nonce, maxAge: 600 });
  assert.equal(steppedUp.claims()!.acr, acr.phishingResistant);
  assert.deepEqual(steppedUp.claims()!.amr, ['hwk', 'user', 'mfa']);

  // 5. The new token passes the route.
  const placed = await client.fetchProtectedResource(config, steppedUp.access_token, apiUrl, 'POST', order, json);
  assert.equal(placed.status, 200);
  assert.deepEqual(await placed.json(), { placed_by: aliceId, acr: acr.phishingResistant });

  // The step-up is in the audit log: asked by the client's acr_values, met with the passkey.
  const events = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'in', ['step_up.requested', 'step_up.completed']).orderBy('seq').execute();
  const [requested, completed] = events.map((r) => JSON.parse(r.event) as { type: string; details: Record<string, unknown> });
  assert.deepEqual(requested!.details.trigger, ['acr_values']);
  assert.equal(completed!.details.outcome, 'met');
  assert.deepEqual(completed!.details.factor_used, ['hwk', 'user', 'mfa']);
});
