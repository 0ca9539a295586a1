/**
 * A stand-in for a partner firm's own identity provider, to try identity brokering on one machine
 * (docs/identity-brokering.md): node-oidc-provider (a devDependency) as "Fund A"'s OpenID Provider
 * on http://127.0.0.1:8500, with Clearance registered as its client. Its sign-in page asks only for
 * the person's email and signs them in at once "with two factors" (acr
 * https://login.fund-a.example/acr/mfa, amr pwd otp mfa) — it is a stand-in, not an identity provider.
 *
 *   npm run example:upstream                                 # this, in one terminal
 *   npx clearance apply -f examples/people.yaml              # desk-app (secret printed once)
 *   npx clearance apply -f examples/identity-providers.yaml  # Fund A and its upstream
 *   npm run example:login -- <desk-app secret>               # open the URL, "Sign in through your organisation": pm@fund-a.example
 *
 * Environment: CLEARANCE_ISSUER (default http://localhost:9000), UPSTREAM_PORT (default 8500).
 */
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const clearance = process.env.CLEARANCE_ISSUER ?? 'http://localhost:9000';
const port = Number(process.env.UPSTREAM_PORT ?? 8500);
const issuer = `http://127.0.0.1:${port}`;
const mfa = 'https://login.fund-a.example/acr/mfa';
const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'clearance',
      // The same value as examples/identity-providers.yaml: a stand-in's secret, for this machine only.
      client_secret: 'example-fund-a-secret-for-clearance',
      redirect_uris: [`${clearance}/broker/oidc/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [{ ...signing, kid: 'fund-a-1', alg: 'ES256', use: 'sig' }] },
  acrValues: [mfa],
  claims: { openid: ['sub', 'acr', 'amr'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false }, pushedAuthorizationRequests: { enabled: true } },
  interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
  findAccount: (_ctx: unknown, sub: string) => ({
    accountId: sub,
    claims: () => ({ sub, email: sub, email_verified: true, name: sub.split('@')[0], preferred_username: sub.split('@')[0] }),
  }),
});

const callback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url ?? '');
  if (!match) return callback(req, res);
  void (async () => {
    try {
      const details = await provider.interactionDetails(req, res);
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(`<!doctype html><html lang="en"><title>Fund A sign-in</title><h1>Fund A</h1>
<form method="post" action="/interaction/${details.uid}/login"><label>Your email <input name="email" type="email" required value="pm@fund-a.example"></label>
<button>Sign in (password and authenticator)</button></form>`);
        return;
      }
      const body = await new Promise<string>((resolve) => {
        let text = '';
        req.on('data', (chunk) => (text += chunk));
        req.on('end', () => resolve(text));
      });
      const email = new URLSearchParams(body).get('email')?.trim().toLowerCase() || 'pm@fund-a.example';
      const grant = new provider.Grant({ accountId: email, clientId: String(details.params.client_id) });
      grant.addOIDCScope(String(details.params.scope));
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId: email, acr: mfa, amr: ['pwd', 'otp', 'mfa'] }, consent: { grantId } }, { mergeWithLastSubmission: false });
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end(`Fund A could not continue: ${(error as Error).message}\n`);
    }
  })();
});
server.listen(port, '127.0.0.1', () => console.log(`Fund A's identity provider (a stand-in) at ${issuer}; Clearance at ${clearance}`));
