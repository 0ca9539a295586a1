/**
 * Shared setup for the authorization code flow tests: the protocol fixture (test/endpoints/fixture.ts:
 * resource servers, m2m clients, inject) plus people (real users and sessions from the people side,
 * src/identity), clients of the code flow, PKCE, and helpers that walk a browser through
 * /authorize, the interaction (through the contract functions, as the people side calls them) and
 * /authorize/resume.
 *
 *   const f = await codeFlowFixture(t);
 *   const { code } = await f.authorizeAndApprove({ client: 'web-app', scope: 'openid order:create' });
 *   const tokens = await f.redeem('web-app', code);
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import type { Authentication } from '../../src/authorization/contract.ts';
import { decideConsent, nextStep, recordAuthentication } from '../../src/authorization/interactions.ts';
import { startSession } from '../../src/identity/sessions.ts';
import { upsertUser } from '../../src/identity/users.ts';
import { formBody, ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import type { TestDialect } from '../helpers/storage.ts';

export const webRedirect = 'https://app.example.com/cb';
export const webRedirectWithQuery = 'https://app.example.com/cb?tenant=a';
export const webLogout = 'https://app.example.com/bye';
export const parRedirect = 'https://par.example.com/cb';
export const nativeRedirect = 'http://127.0.0.1/callback';

export interface Pkce {
  verifier: string;
  challenge: string;
}

/** A fresh RFC 7636 verifier (43 characters of base64url) and its S256 challenge. */
export function pkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface Person {
  userId: string;
  /** `clearance_session=...` (`__Host-`/`__Secure-` prefixed on https) for a Cookie header. */
  cookie: string;
  authentication: Authentication;
}

export interface AuthorizeResult {
  response: LightMyRequestResponse;
  /** Location of a 303, parsed. */
  location?: URL;
  /** Cookies to send back (the browser-binding cookie, when one was set), joined with the given ones. */
  cookie: string;
}

export interface CodeFlowFixture extends ProtocolFixture {
  /** The private key of `par-app` (private_key_jwt, kid par-1), also its request-object key. */
  parKey: CryptoKey;
  /** The private key of `signed-app` (kid signed-1): request objects at /authorize without PAR. */
  signedKey: CryptoKey;
  /** Creates a user (people side) and returns their id. */
  user(username: string): Promise<string>;
  /** A real session (people side's startSession) for a new or existing user. */
  signIn(username: string, options?: { acr?: string; amr?: string[] }): Promise<Person>;
  /** GET /authorize with these query parameters (client defaults to web-app with PKCE and redirect). */
  authorize(query: Record<string, string | string[]>, options?: { cookie?: string; method?: 'GET' | 'POST' }): Promise<AuthorizeResult>;
  /** The query parameters of a good request for `client`. */
  request(client: string, extra?: Record<string, string | string[] | undefined>): Record<string, string | string[]> & { pkce?: never };
  /** GET /authorize/resume/{id}. */
  resume(id: string, cookie: string): Promise<AuthorizeResult>;
  /**
   * The whole browser journey for a signed-in person: /authorize → (consent approved through the
   * contract) → resume → the code. Fails the test if no code comes back.
   */
  authorizeAndApprove(options: { client?: string; person?: Person; query?: Record<string, string | string[] | undefined>; pkce?: Pkce }): Promise<{ code: string; pkce: Pkce; person: Person; location: URL }>;
  /** POST /token with grant_type=authorization_code. */
  redeem(client: string, code: string, verifier: string, extra?: Record<string, string>): Promise<LightMyRequestResponse>;
  /** POST /token with grant_type=refresh_token. */
  refresh(client: string, refreshToken: string, extra?: Record<string, string>): Promise<LightMyRequestResponse>;
  /** Client authentication for a fixture client: Basic for secret clients, a fresh assertion for par-app, client_id for public ones. */
  clientAuth(client: string): Promise<{ auth?: string; form: Record<string, string> }>;
  /** A request object signed with par-app's key (or `key`), with sensible claims unless overridden. */
  requestObject(claims: Record<string, unknown>, options?: { client?: 'par-app' | 'signed-app'; key?: CryptoKey; alg?: string; typ?: string | null; kid?: string }): Promise<string>;
  /** POST /par for `client` with these parameters. */
  par(client: string, form: Record<string, string | string[]>): Promise<LightMyRequestResponse>;
  /** POST /introspect by the client itself. */
  introspect(client: string, token: string): Promise<Record<string, unknown>>;
}

export async function codeFlowFixture(
  t: Pick<TestContext, 'after'>,
  options: { env?: NodeJS.ProcessEnv; dialect?: TestDialect; /** testContext's: `off` for a test of sign-ins that is not about risk. */ risk?: 'on' | 'off' } = {},
): Promise<CodeFlowFixture> {
  const base = await protocolFixture(t, options);
  const { ctx } = base;
  const { privateKey: parKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const signed = await generateKeyPair('ES256', { extractable: true });
  await base.apply({
    clients: [
      {
        client_id: 'web-app',
        client_name: 'Trading Desk',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [webRedirect, webRedirectWithQuery],
        post_logout_redirect_uris: [webLogout],
        scope: 'openid offline_access order:create order:cancel position:view settlement:submit',
      },
      {
        client_id: 'native-app',
        kind: 'app',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [nativeRedirect, 'com.example.desk:/cb'],
        scope: 'openid order:create',
      },
      {
        client_id: 'par-app',
        kind: 'app',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'par-1', alg: 'ES256' }] },
        grant_types: ['authorization_code', 'refresh_token'],
        redirect_uris: [parRedirect],
        require_pushed_authorization_requests: true,
        scope: 'openid order:create',
      },
      {
        client_id: 'signed-app',
        kind: 'app',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [{ ...(await exportJWK(signed.publicKey)), kid: 'signed-1', alg: 'ES256' }] },
        grant_types: ['authorization_code'],
        redirect_uris: ['https://signed.example.com/cb'],
        scope: 'openid order:create',
      },
      {
        client_id: 'code-only',
        kind: 'app',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code'],
        redirect_uris: ['https://code-only.example.com/cb'],
        scope: 'openid order:create',
      },
    ],
  });

  const users = new Map<string, string>();

  const parse = (response: LightMyRequestResponse, cookie: string): AuthorizeResult => {
    const setCookie = ([] as string[]).concat((response.headers['set-cookie'] as string | string[] | undefined) ?? []);
    const cookies = [cookie, ...setCookie.map((c) => c.split(';')[0]!)].filter(Boolean).join('; ');
    const location = response.statusCode === 303 ? new URL(String(response.headers.location)) : undefined;
    return { response, cookie: cookies, ...(location ? { location } : {}) };
  };

  const f: CodeFlowFixture = {
    ...base,
    parKey,
    signedKey: signed.privateKey,
    async user(username) {
      const existing = users.get(username);
      if (existing) return existing;
      const { id } = await ctx.storage.db.transaction().execute((trx) =>
        upsertUser(trx, ctx.clock.now(), { username, name: `${username[0]!.toUpperCase()}${username.slice(1)} Trader`, email: `${username}@broker.example.com` }, { keep: true }),
      );
      users.set(username, id);
      return id;
    },
    async signIn(username, options = {}) {
      const userId = await f.user(username);
      const started = await startSession(ctx, { userId, acr: options.acr ?? 'urn:clearance:acr:pwd', amr: options.amr ?? ['pwd'], cookieHeader: undefined });
      return { userId, cookie: started.setCookie.split(';')[0]!, authentication: started.authentication };
    },
    request(client, extra = {}) {
      const redirects: Record<string, string> = {
        'native-app': nativeRedirect,
        'par-app': parRedirect,
        'code-only': 'https://code-only.example.com/cb',
        'signed-app': 'https://signed.example.com/cb',
      };
      const redirect = redirects[client] ?? webRedirect;
      const query: Record<string, string | string[]> = {
        client_id: client,
        response_type: 'code',
        redirect_uri: redirect,
        scope: 'openid order:create',
        state: 'st-123',
        nonce: 'n-456',
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
      };
      for (const [k, v] of Object.entries(extra)) {
        if (v === undefined) delete query[k];
        else query[k] = v;
      }
      return query;
    },
    async authorize(query, options = {}) {
      const cookie = options.cookie ?? '';
      const response =
        options.method === 'POST'
          ? await base.inject({
              method: 'POST',
              url: '/authorize',
              headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
              payload: formBody(query),
            })
          : await base.inject({ method: 'GET', url: `/authorize?${formBody(query)}`, headers: cookie ? { cookie } : {} });
      return parse(response, cookie);
    },
    async resume(id, cookie) {
      const response = await base.inject({ method: 'GET', url: `/authorize/resume/${id}`, headers: cookie ? { cookie } : {} });
      return parse(response, cookie);
    },
    async authorizeAndApprove(options) {
      const client = options.client ?? 'web-app';
      const person = options.person ?? (await f.signIn('alice'));
      const challenge = options.pkce ?? pkce();
      const query = f.request(client, { code_challenge: challenge.challenge, ...options.query });
      let result = await f.authorize(query, { cookie: person.cookie });
      assert.equal(result.response.statusCode, 303, result.response.body);
      if (result.location!.pathname.startsWith('/interaction/')) {
        const id = result.location!.pathname.split('/').pop()!;
        const step = await nextStep(ctx, id, person.authentication);
        if (step.step === 'login') await recordAuthentication(ctx, id, person.authentication);
        await decideConsent(ctx, id, person.authentication, true);
        result = await f.resume(id, result.cookie);
        assert.equal(result.response.statusCode, 303, result.response.body);
      }
      const location = result.location!;
      const code = location.searchParams.get('code');
      assert.ok(code, `a code: ${location.href}`);
      return { code, pkce: challenge, person, location };
    },
    async clientAuth(client): Promise<{ auth?: string; form: Record<string, string> }> {
      if (client === 'native-app') return { form: { client_id: client } };
      if (client === 'par-app') {
        const now = Math.floor(ctx.clock.now() / 1000);
        const assertion = await new SignJWT({ iss: 'par-app', sub: 'par-app', aud: base.issuer, iat: now, exp: now + 60, jti: randomBytes(12).toString('hex') })
          .setProtectedHeader({ alg: 'ES256', kid: 'par-1' })
          .sign(parKey);
        return { form: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion } };
      }
      return { auth: base.basic(client), form: {} };
    },
    async redeem(client, code, verifier, extra = {}) {
      const auth = await f.clientAuth(client);
      const redirect = String(f.request(client).redirect_uri);
      return base.token({
        ...(auth.auth ? { auth: auth.auth } : {}),
        form: { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: redirect, ...auth.form, ...extra },
      });
    },
    async refresh(client, refreshToken, extra = {}) {
      const auth = await f.clientAuth(client);
      return base.token({ ...(auth.auth ? { auth: auth.auth } : {}), form: { grant_type: 'refresh_token', refresh_token: refreshToken, ...auth.form, ...extra } });
    },
    async requestObject(claims, options = {}) {
      const now = Math.floor(ctx.clock.now() / 1000);
      const client = options.client ?? 'par-app';
      const payload = {
        iss: client,
        aud: base.issuer,
        nbf: now,
        iat: now,
        exp: now + 300,
        ...f.request(client),
        ...claims,
      };
      for (const [k, v] of Object.entries(payload)) if (v === undefined) delete (payload as Record<string, unknown>)[k];
      const header: Record<string, unknown> = { alg: options.alg ?? 'ES256', kid: options.kid ?? (client === 'par-app' ? 'par-1' : 'signed-1') };
      if (options.typ !== null) header.typ = options.typ ?? 'oauth-authz-req+jwt';
      return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(options.key ?? (client === 'par-app' ? parKey : signed.privateKey));
    },
    async par(client, form) {
      const auth = await f.clientAuth(client);
      return base.post('/par', { ...(auth.auth ? { auth: auth.auth } : {}), form: { ...auth.form, ...form } });
    },
    async introspect(client, token) {
      const auth = await f.clientAuth(client);
      const response = await base.post('/introspect', { ...(auth.auth ? { auth: auth.auth } : {}), form: { ...auth.form, token } });
      assert.equal(response.statusCode, 200, response.body);
      return response.json() as Record<string, unknown>;
    },
  };
  return f;
}

/** An RFC 9396 order the Order API understands. */
export const orderDetail = {
  type: 'order',
  instrument: { class: 'bond', symbol: 'UST 10Y' },
  side: 'buy',
  max_notional: { amount: '10000000', currency: 'USD' },
  venue: 'XNYS',
  account: 'ACC-7781',
};

/** The fixture's business audience (re-exported for the tests). */
export { ordersApi };
