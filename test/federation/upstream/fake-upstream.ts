/**
 * A small, deliberately faulty OpenID Provider for the identity-brokering tests: node:http and
 * jose on loopback, one confidential client (Clearance, client_secret_basic), the code flow with
 * PKCE (S256), no PAR, no userinfo (the person's claims are in the ID token). node-oidc-provider
 * (./upstream.ts) cannot be made to answer wrongly; this one answers wrongly the way `mode` says.
 *
 * It checks what Clearance sends it as a real provider would (the client's credentials, the
 * redirect URI, the code used once, the PKCE verifier against the challenge) and records anything
 * wrong in `problems`: a test asserts that stays empty, so a refusal it sees is Clearance refusing
 * the fake's bad answer, not the fake refusing Clearance.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** What the fake gets wrong: `good` nothing. */
export type FakeMode =
  | 'good'
  /** The ID token is signed by a key that is not in the JWKS, under the published key's kid. */
  | 'foreign_key'
  /** The ID token is signed by a key that is not in the JWKS, under a kid the JWKS does not have. */
  | 'unknown_kid'
  /** The person signed in at the upstream two minutes ago (its session, not this request): auth_time says so. */
  | 'earlier_sign_in'
  /** The ID token has no auth_time (OIDC Core §3.1.2.1 asks one whenever max_age was sent). */
  | 'no_auth_time'
  /** The authorization is refused with an error_description shaped like a JWT (which the audit log never records). */
  | 'token_shaped_error'
  /** The ID token's sub is shaped like a JWT. */
  | 'token_shaped_sub'
  /** The ID token is unsigned: `alg: none`, no signature. */
  | 'alg_none'
  /** The ID token is for another client. */
  | 'wrong_audience'
  /** The ID token carries a nonce other than the one in the authorization request. */
  | 'wrong_nonce'
  /** The ID token expired ten minutes ago (issued twenty minutes ago). */
  | 'expired'
  /** The ID token's iat is 20 s ahead (the upstream's clock runs a little fast): within the skew allowed. */
  | 'issued_in_future'
  /** The ID token's iat is an hour ahead (and its exp five minutes after that): far beyond any skew. */
  | 'issued_far_in_future'
  /** The ID token's iss is not the issuer the upstream's metadata declares. */
  | 'wrong_issuer'
  /** The ID token's at_hash is not the access token's. */
  | 'wrong_at_hash'
  /** The authorization response names another issuer (RFC 9207: a mix-up). */
  | 'mixed_up_issuer'
  /** The authorization response has no iss, though the metadata says it is sent (RFC 9207 §2.4). */
  | 'missing_response_iss'
  /** The authorization response is error=access_denied. */
  | 'access_denied'
  /** The token endpoint answers 400 invalid_grant. */
  | 'invalid_grant';

export interface FakePerson {
  sub: string;
  claims: Record<string, unknown>;
}

export interface FakeUpstream {
  issuer: string;
  clientId: string;
  clientSecret: string;
  mode: FakeMode;
  /** Who signs in at the fake. */
  person: FakePerson;
  /** What the fake found wrong in Clearance's requests (a test expects none). */
  problems: string[];
  /** Authorization requests and token requests received. */
  authorizations: number;
  tokenRequests: number;
  /** The query of the last authorization request it received. */
  lastAuthorization?: URLSearchParams;
  /** The ID tokens the token endpoint issued, as sent. */
  idTokens: string[];
  close(): Promise<void>;
}

/** Another issuer, for the mix-up. */
export const otherIssuer = 'https://other-idp.example';

const kid = 'fake-1';

const b64u = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/** OIDC Core §3.1.3.6: the left half of the access token's SHA-256 (ES256), base64url. */
export function atHash(accessToken: string): string {
  const digest = createHash('sha256').update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

export async function startFakeUpstream(options: { redirectUri: string }): Promise<FakeUpstream> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const signing = await generateKeyPair('ES256', { extractable: true });
  const rogue = await generateKeyPair('ES256', { extractable: true });
  const published: JWK = { ...(await exportJWK(signing.publicKey)), kid, alg: 'ES256', use: 'sig' };
  const codes = new Map<string, { nonce: string | undefined; codeChallenge: string; redirectUri: string }>();

  const upstream: FakeUpstream = {
    issuer,
    clientId: 'clearance',
    clientSecret: 'fake-upstream-client-secret-0123456789',
    mode: 'good',
    person: { sub: 'fake-001', claims: {} },
    problems: [],
    authorizations: 0,
    tokenRequests: 0,
    idTokens: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const metadata = {
    issuer,
    authorization_endpoint: `${issuer}/authorize`,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    authorization_response_iss_parameter_supported: true,
    id_token_signing_alg_values_supported: ['ES256'],
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic'],
    scopes_supported: ['openid', 'profile', 'email'],
    grant_types_supported: ['authorization_code'],
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const refuse = (res: ServerResponse, problem: string) => {
    upstream.problems.push(problem);
    json(res, 400, { error: 'invalid_request', error_description: problem });
  };

  function authorize(url: URL, res: ServerResponse) {
    upstream.authorizations++;
    const q = url.searchParams;
    upstream.lastAuthorization = q;
    const redirectUri = q.get('redirect_uri');
    if (q.get('client_id') !== upstream.clientId) return refuse(res, `authorize: client_id ${q.get('client_id')}`);
    if (redirectUri !== options.redirectUri) return refuse(res, `authorize: redirect_uri ${redirectUri}`);
    if (q.get('response_type') !== 'code') return refuse(res, `authorize: response_type ${q.get('response_type')}`);
    if (!(q.get('scope') ?? '').split(' ').includes('openid')) return refuse(res, `authorize: scope ${q.get('scope')}`);
    const codeChallenge = q.get('code_challenge');
    if (q.get('code_challenge_method') !== 'S256' || !codeChallenge) return refuse(res, 'authorize: no S256 code_challenge');
    const state = q.get('state');
    if (!state) return refuse(res, 'authorize: no state');
    const back = new URL(redirectUri);
    if (upstream.mode === 'access_denied' || upstream.mode === 'token_shaped_error') {
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', upstream.mode === 'token_shaped_error' ? 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' : 'The person declined the sign-in');
    } else {
      const code = randomBytes(24).toString('base64url');
      codes.set(code, { nonce: q.get('nonce') ?? undefined, codeChallenge, redirectUri });
      back.searchParams.set('code', code);
    }
    back.searchParams.set('state', state);
    if (upstream.mode !== 'missing_response_iss') back.searchParams.set('iss', upstream.mode === 'mixed_up_issuer' ? otherIssuer : issuer);
    res.writeHead(303, { location: back.href, 'cache-control': 'no-store' });
    res.end();
  }

  async function token(req: IncomingMessage, res: ServerResponse) {
    upstream.tokenRequests++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    // RFC 6749 §2.3.1: client_secret_basic, each part form-urlencoded.
    const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.authorization ?? '');
    const decoded = basic ? Buffer.from(basic[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    if (!basic || colon < 0 || formDecode(decoded.slice(0, colon)) !== upstream.clientId || formDecode(decoded.slice(colon + 1)) !== upstream.clientSecret) {
      upstream.problems.push('token: wrong client authentication');
      return json(res, 401, { error: 'invalid_client' });
    }
    if (body.get('grant_type') !== 'authorization_code') return refuse(res, `token: grant_type ${body.get('grant_type')}`);
    const code = body.get('code') ?? '';
    const issued = codes.get(code);
    codes.delete(code);
    if (!issued) return refuse(res, 'token: unknown or used code');
    if (body.get('redirect_uri') !== issued.redirectUri) return refuse(res, `token: redirect_uri ${body.get('redirect_uri')}`);
    const verifier = body.get('code_verifier') ?? '';
    if (createHash('sha256').update(verifier, 'ascii').digest('base64url') !== issued.codeChallenge) return refuse(res, 'token: the code_verifier does not match the code_challenge');
    if (upstream.mode === 'invalid_grant') return json(res, 400, { error: 'invalid_grant', error_description: 'The authorization code has expired' });

    const accessToken = randomBytes(32).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const mode = upstream.mode;
    const issuedAts: Partial<Record<FakeMode, number>> = { expired: now - 20 * 60, issued_in_future: now + 20, issued_far_in_future: now + 60 * 60 };
    const issuedAt = issuedAts[mode] ?? now;
    const claims: Record<string, unknown> = {
      ...upstream.person.claims,
      iss: mode === 'wrong_issuer' ? otherIssuer : issuer,
      sub: mode === 'token_shaped_sub' ? 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' : upstream.person.sub,
      aud: mode === 'wrong_audience' ? 'some-other-client' : upstream.clientId,
      iat: issuedAt,
      exp: mode === 'expired' ? now - 10 * 60 : issuedAt + 5 * 60,
      ...(mode === 'no_auth_time' ? {} : { auth_time: mode === 'earlier_sign_in' ? now - 120 : Math.min(issuedAt, now) }),
      ...(issued.nonce !== undefined ? { nonce: mode === 'wrong_nonce' ? randomBytes(32).toString('base64url') : issued.nonce } : {}),
      at_hash: mode === 'wrong_at_hash' ? atHash(`${accessToken}-not-this-one`) : atHash(accessToken),
    };
    let idToken: string;
    if (mode === 'alg_none') {
      idToken = `${b64u(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64u(JSON.stringify(claims))}.`;
    } else {
      const key: CryptoKey = mode === 'foreign_key' || mode === 'unknown_kid' ? rogue.privateKey : signing.privateKey;
      idToken = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: mode === 'unknown_kid' ? 'fake-rogue' : kid }).sign(key);
    }
    upstream.idTokens.push(idToken);
    json(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 300, id_token: idToken, scope: 'openid profile email' });
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer);
    void (async () => {
      try {
        if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') return json(res, 200, metadata);
        if (req.method === 'GET' && url.pathname === '/jwks') return json(res, 200, { keys: [published] });
        if (req.method === 'GET' && url.pathname === '/authorize') return authorize(url, res);
        if (req.method === 'POST' && url.pathname === '/token') return await token(req, res);
        upstream.problems.push(`unexpected request ${req.method} ${url.pathname}`);
        json(res, 404, { error: 'not_found' });
      } catch (error) {
        upstream.problems.push(`fake upstream failed: ${String(error)}`);
        if (!res.headersSent) json(res, 500, { error: 'server_error' });
        else res.end();
      }
    })();
  });
  return upstream;
}
