import type { LightMyRequestResponse } from 'fastify';
import type { CodeFlowFixture } from '../authorization/fixture.ts';

// A browser for tests that drive Clearance's pages through fastify's inject: it keeps the cookies
// the pages set and sends them back, as a browser does.

/** A browser: its cookies, and requests through the fastify app. */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly f: CodeFlowFixture;
  constructor(f: CodeFlowFixture, cookie = '') {
    this.f = f;
    for (const pair of cookie.split(/;\s*/).filter(Boolean)) this.cookies.set(pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1));
  }
  get cookie(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  async request(method: 'GET' | 'POST', url: string, form?: Record<string, string>, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const target = url.startsWith('http') ? new URL(url).pathname + new URL(url).search : url;
    const response = await this.f.inject({
      method,
      url: target,
      headers: { cookie: this.cookie, ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...headers },
      ...(form ? { payload: new URLSearchParams(form).toString() } : {}),
    });
    const setCookie = response.headers['set-cookie'];
    for (const line of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const pair = line.split(';')[0]!;
      const name = pair.slice(0, pair.indexOf('='));
      if (/Max-Age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(pair.indexOf('=') + 1));
    }
    return response;
  }
  get = (url: string) => this.request('GET', url);
  post = (url: string, form: Record<string, string>, headers?: Record<string, string>) => this.request('POST', url, form, headers);
}

/** The CSRF token of the first form of a page. */
export const csrfOf = (html: string) => /name="csrf_token" value="([^"]+)"/.exec(html)![1]!;
