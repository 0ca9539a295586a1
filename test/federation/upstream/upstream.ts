/**
 * An upstream OpenID Provider for the identity-brokering tests: node-oidc-provider 9 (an
 * independent implementation), listening on loopback, with one confidential client — Clearance.
 * Its sign-in is done by the test: `nextSignIn` says who signs in and how (sub, claims, acr, amr),
 * and the provider's interaction page finishes with that person at once (login and consent).
 */
import { createServer, type Server } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface UpstreamPerson {
  sub: string;
  claims?: Record<string, unknown>;
  acr?: string;
  amr?: string[];
}

export interface TestUpstream {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Who the next sign-in at the upstream is. */
  nextSignIn: UpstreamPerson;
  /** How many sign-ins the upstream finished. */
  signIns: number;
  /** The upstream's signing key (a JWK with `d`) and its kid: tests mint logout tokens with it. */
  signingJwk: Record<string, unknown>;
  close(): Promise<void>;
}

export const upstreamAcr = { password: 'urn:fund-a:acr:pwd', mfa: 'urn:fund-a:acr:mfa', phr: 'urn:fund-a:acr:phr' };

export async function startUpstream(options: { redirectUri: string; pushedAuthorizationRequests?: boolean; clearance?: string; privateKeyJwt?: boolean }): Promise<TestUpstream> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const clientSecret = 'upstream-client-secret-0123456789abcdef';
  const accounts = new Map<string, UpstreamPerson>();
  const upstream: TestUpstream = {
    issuer,
    clientId: 'clearance',
    clientSecret,
    nextSignIn: { sub: 'pm-001' },
    signIns: 0,
    signingJwk: { ...signing, kid: 'upstream-1', alg: 'ES256' },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: upstream.clientId,
        ...(options.privateKeyJwt && options.clearance
          ? { token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256', jwks_uri: `${options.clearance}/broker/oidc/jwks` }
          : { client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' }),
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        id_token_signed_response_alg: 'ES256',
        // Logout across the federation (docs/identity-brokering.md "Logout"): Clearance's endpoints.
        ...(options.clearance
          ? {
              post_logout_redirect_uris: [`${options.clearance}/broker/oidc/logged-out`],
              backchannel_logout_uri: `${options.clearance}/broker/oidc/backchannel-logout`,
              backchannel_logout_session_required: true,
            }
          : {}),
      },
    ],
    jwks: { keys: [{ ...signing, kid: 'upstream-1', alg: 'ES256', use: 'sig' }] },
    acrValues: Object.values(upstreamAcr),
    // acr and amr with openid: node-oidc-provider puts a claim in the ID token only when a granted scope names it.
    claims: { openid: ['sub', 'acr', 'amr'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
    scopes: ['openid', 'email', 'profile'],
    cookies: { keys: ['upstream-test-cookie-key-0123456789'] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      pushedAuthorizationRequests: { enabled: options.pushedAuthorizationRequests ?? true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    // Its outgoing requests (back-channel logout to Clearance) go to loopback, which its SSRF
    // protection refuses: the test lets them through without its dispatcher.
    fetch: (url: string, init: RequestInit & { dispatcher?: unknown }) => globalThis.fetch(url, { ...init, dispatcher: undefined } as RequestInit),
    findAccount: (_ctx: unknown, sub: string) => {
      const person = accounts.get(sub);
      if (!person) return undefined;
      return { accountId: sub, claims: () => ({ sub, ...person.claims }) };
    },
  });
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const match = /^\/interaction\/([^/?]+)/.exec(req.url ?? '');
    if (!match) return callback(req, res);
    // The upstream's "sign-in": the person the test named, at once.
    void (async () => {
      try {
        const details = await provider.interactionDetails(req, res);
        const person = upstream.nextSignIn;
        accounts.set(person.sub, person);
        const grant = new provider.Grant({ accountId: person.sub, clientId: String(details.params.client_id) });
        grant.addOIDCScope(String(details.params.scope));
        const grantId = await grant.save();
        upstream.signIns++;
        await provider.interactionFinished(
          req,
          res,
          { login: { accountId: person.sub, ...(person.acr ? { acr: person.acr } : {}), ...(person.amr ? { amr: person.amr } : {}) }, consent: { grantId } },
          { mergeWithLastSubmission: false },
        );
      } catch (error) {
        res.statusCode = 500;
        res.end(String(error));
      }
    })();
  });
  return upstream;
}
