/**
 * The example app: a relying party built on openid-client v6 that signs a person in to Clearance
 * with PAR + PKCE, then shows what it received. Run it against a started server:
 *
 *   npx clearance apply -f examples/people.yaml       # prints desk-app's client_secret once
 *   npm run example:login -- <client_secret>
 *
 * It prints a URL to open in your browser, receives the callback on http://127.0.0.1:8400, redeems
 * the code, and prints the ID token's claims, the access token's claims and a refreshed token.
 * With `--order AMOUNT` it asks to place one buy order in a UK gilt up to AMOUNT pounds (RFC 9396
 * authorization_details for the Order API): under the example policies, above 1 million the
 * consent page asks the person to approve exactly that order with a passkey (README).
 * Environment: CLEARANCE_ISSUER (default http://localhost:9000); ACR_VALUES, the authentication
 * level to ask for (e.g. urn:clearance:acr:phr: the sign-in page asks for a passkey); IDP_HINT,
 * an upstream identity provider to sign in through at once (examples/identity-providers.yaml).
 */
import { createServer } from 'node:http';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';

const issuer = process.env.CLEARANCE_ISSUER ?? 'http://localhost:9000';
const secret = process.argv[2] ?? process.env.CLIENT_SECRET;
const orderAt = process.argv.indexOf('--order');
const orderAmount = orderAt > 0 ? process.argv[orderAt + 1] : undefined;
if (!secret || secret.startsWith('--') || (orderAt > 0 && !/^\d{1,15}$/.test(orderAmount ?? ''))) {
  console.error('usage: npm run example:login -- <client_secret of desk-app> [--order AMOUNT]');
  process.exit(2);
}
// One order the person approves on the consent page (RFC 9396 authorization_details).
const order = orderAmount && {
  type: 'order',
  instrument: { class: 'rates', symbol: 'UKT 4.25 2032' },
  side: 'buy',
  max_notional: { amount: orderAmount, currency: 'GBP' },
  venue: 'XEXD',
  account: 'GB-RATES-001',
};
const redirectUri = 'http://127.0.0.1:8400/callback';
const options = issuer.startsWith('http:') ? { execute: [client.allowInsecureRequests] } : undefined;
const config = await client.discovery(new URL(issuer), 'desk-app', undefined, client.ClientSecretBasic(secret), options);

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const acrValues = process.env.ACR_VALUES;
const url = await client.buildAuthorizationUrlWithPAR(config, {
  redirect_uri: redirectUri,
  scope: 'openid order:create',
  ...(order ? { resource: 'https://orders.broker.example/api', authorization_details: JSON.stringify([order]) } : {}),
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
  ...(acrValues ? { acr_values: acrValues } : {}),
  // Straight to a partner firm's own identity provider (docs/identity-brokering.md), e.g. IDP_HINT=fund-a.
  ...(process.env.IDP_HINT ? { idp_hint: process.env.IDP_HINT } : {}),
});

const callback = await new Promise<URL>((resolve) => {
  const server = createServer((request, response) => {
    const received = new URL(request.url ?? '/', 'http://127.0.0.1:8400');
    if (received.pathname !== '/callback') {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('Signed in. You can close this window.\n');
    server.close();
    resolve(received);
  });
  server.listen(8400, '127.0.0.1', () => console.log(`Open this URL in your browser and sign in (alice / correct-horse-battery-42):\n\n  ${url.href}\n`));
});

const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
console.log('ID token claims:', tokens.claims());
console.log('access token claims:', decodeJwt(tokens.access_token));
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
console.log('refreshed: a new access token expiring in', refreshed.expires_in, 's, and a rotated refresh token');
