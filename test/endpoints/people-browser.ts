/**
 * A person's browser for the page tests, over fastify inject: a cookie jar, GET and form POST, and
 * the walk through the real pages of an authorization request — /authorize, the sign-in page, the
 * second-factor page, consent, /authorize/resume — to the client's code and its tokens.
 */
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt, type JWTPayload } from 'jose';
import { pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { formBody } from './fixture.ts';

/** A browser's cookies: updated from Set-Cookie (Max-Age=0 deletes), sent as one Cookie header. */
export class Jar {
  readonly cookies = new Map<string, string>();
  constructor(cookie = '') {
    for (const part of cookie.split(/;\s*/).filter(Boolean)) this.set(part);
  }
  set(pair: string): void {
    const eq = pair.indexOf('=');
    this.cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  update(response: LightMyRequestResponse): void {
    for (const line of setCookies(response)) {
      const pair = line.split(';')[0]!;
      if (/Max-Age=0/i.test(line)) this.cookies.delete(pair.slice(0, pair.indexOf('=')));
      else this.set(pair);
    }
  }
  header(): string {
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
}

/** The Set-Cookie lines of a response. */
export function setCookies(response: LightMyRequestResponse): string[] {
  const header = response.headers['set-cookie'];
  return Array.isArray(header) ? header : header ? [String(header)] : [];
}

type Injector = Pick<CodeFlowFixture, 'inject'>;

export async function get(f: Injector, url: string, jar?: Jar): Promise<LightMyRequestResponse> {
  const response = await f.inject({ method: 'GET', url, headers: jar ? { cookie: jar.header() } : {} });
  jar?.update(response);
  return response;
}

export async function post(f: Injector, url: string, form: Record<string, string>, jar?: Jar, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  const response = await f.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(jar ? { cookie: jar.header() } : {}), ...headers },
    payload: new URLSearchParams(form).toString(),
  });
  jar?.update(response);
  return response;
}

/** The CSRF token of a page's form(s). */
export function csrfOf(body: string): string {
  const match = /name="csrf_token" value="([^"]+)"/.exec(body);
  assert.ok(match, 'the page has a CSRF token');
  return match[1]!;
}

/** The path of a 303's Location, relative to the issuer. */
export function locationPath(f: Pick<CodeFlowFixture, 'issuer'>, response: LightMyRequestResponse): string {
  assert.equal(response.statusCode, 303, response.body);
  const location = String(response.headers.location);
  return location.startsWith(f.issuer) ? location.slice(f.issuer.length) : location;
}

/** An authorization request of web-app in this browser, up to its interaction; the interaction id and the PKCE verifier. */
export async function startAuthorization(f: CodeFlowFixture, jar: Jar, query: Record<string, string> = {}): Promise<{ id: string; verifier: string }> {
  const challenge = pkce();
  const response = await get(f, `/authorize?${formBody(f.request('web-app', { code_challenge: challenge.challenge, ...query }))}`, jar);
  const path = locationPath(f, response);
  const match = /^\/interaction\/([^/?]+)$/.exec(path);
  assert.ok(match, `an interaction: ${path}`);
  return { id: match[1]!, verifier: challenge.verifier };
}

/** The password step on the sign-in page; its response. */
export async function submitPassword(f: CodeFlowFixture, jar: Jar, id: string, username: string, password: string): Promise<LightMyRequestResponse> {
  const page = await get(f, `/interaction/${id}`, jar);
  assert.equal(page.statusCode, 200, page.body);
  return post(f, `/interaction/${id}/login`, { csrf_token: csrfOf(page.body), username, password }, jar);
}

/** The second step: opens the second-factor page and submits `field` (code or recovery_code); its response. */
export async function submitSecondFactor(f: CodeFlowFixture, jar: Jar, id: string, fields: { code?: string; recovery_code?: string }): Promise<LightMyRequestResponse> {
  const page = await get(f, `/interaction/${id}/second-factor`, jar);
  assert.equal(page.statusCode, 200, `the second-factor page: ${page.statusCode} ${page.headers.location ?? ''}`);
  return post(f, `/interaction/${id}/second-factor`, { csrf_token: csrfOf(page.body), ...fields } as Record<string, string>, jar);
}

/**
 * From a signed-in 303 onwards: consent approved on the consent page, /authorize/resume, the code
 * redeemed; the ID token's and the access token's claims.
 */
export async function approveAndRedeem(f: CodeFlowFixture, jar: Jar, id: string, verifier: string, signedIn: LightMyRequestResponse): Promise<{ idToken: JWTPayload; accessToken: JWTPayload }> {
  let path = locationPath(f, signedIn);
  if (path === `/interaction/${id}`) {
    const consent = await get(f, path, jar);
    assert.equal(consent.statusCode, 200, consent.body);
    path = locationPath(f, await post(f, `/interaction/${id}/consent`, { csrf_token: csrfOf(consent.body), decision: 'approve' }, jar));
  }
  assert.equal(path, `/authorize/resume/${id}`);
  const callback = new URL(String((await get(f, path, jar)).headers.location));
  const code = callback.searchParams.get('code');
  assert.ok(code, `a code: ${callback.href}`);
  const redeemed = await f.redeem('web-app', code, verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { id_token: string; access_token: string };
  return { idToken: decodeJwt(body.id_token), accessToken: decodeJwt(body.access_token) };
}
