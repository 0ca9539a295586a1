/**
 * A browser without a screen for protocol tests and benchmarks: a cookie jar and manual
 * redirects over fetch. (Browser tests use real Chromium: see browser.ts.)
 */
import assert from 'node:assert/strict';

export class HttpBrowser {
  readonly #cookies = new Map<string, string>();

  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const cookie = [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const response = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), ...(cookie ? { cookie } : {}) } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (/max-age=0/i.test(line) || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
    return response;
  }

  /** Stores a cookie as a Set-Cookie header would (`name=value; attributes…`): a session made elsewhere. */
  setCookie(header: string): void {
    const [pair] = header.split(';');
    const eq = pair!.indexOf('=');
    this.#cookies.set(pair!.slice(0, eq), pair!.slice(eq + 1));
  }

  /** Follows 303s from `url` until a response that is not a redirect to this server; returns it and the last URL. */
  async follow(url: string | URL, issuer: string, init: RequestInit = {}): Promise<{ response: Response; url: URL }> {
    let current = new URL(url);
    let response = await this.fetch(current, init);
    while (response.status === 303 || response.status === 302) {
      current = new URL(response.headers.get('location')!, current);
      if (!current.href.startsWith(issuer)) return { response, url: current };
      response = await this.fetch(current);
    }
    return { response, url: current };
  }
}


/** The CSRF token of a Clearance form page. */
export function csrfOf(html: string): string {
  const match = /name="csrf_token" value="([^"]+)"/.exec(html);
  assert.ok(match, 'the page has a CSRF token');
  return match[1]!;
}

/**
 * Signs in on Clearance's sign-in page (password) and approves on its consent page, starting from
 * an authorization URL; returns the client's callback URL (the 303 away from the issuer).
 */
export async function signInAndApprove(browser: HttpBrowser, issuer: string, authorizationUrl: URL, person: { username: string; password: string }): Promise<URL> {
  let { response, url } = await browser.follow(authorizationUrl, issuer);
  assert.equal(response.status, 200, `the sign-in page: ${url.href}`);
  const form = (fields: Record<string, string>) => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  const loginPage = await response.text();
  ({ response, url } = await browser.follow(`${url.href}/login`, issuer, form({ csrf_token: csrfOf(loginPage), ...person })));
  assert.equal(response.status, 200, `the consent page: ${url.href}`);
  const consentPage = await response.text();
  ({ response, url } = await browser.follow(`${url.href}/consent`, issuer, form({ csrf_token: csrfOf(consentPage), decision: 'approve' })));
  assert.equal(response.status, 303);
  return url;
}
