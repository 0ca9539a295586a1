import type { LightMyRequestResponse } from 'fastify';
import type { CodeFlowFixture } from '../authorization/fixture.ts';
import { Jar, get, post } from '../endpoints/people-browser.ts';

// A browser for tests that drive Clearance's pages through fastify's inject, as an object: the
// cookie jar and the requests of test/endpoints/people-browser.ts, bound to one fixture and jar.

export { csrfOf } from '../endpoints/people-browser.ts';

/** A browser: its cookies, and requests through the fastify app. */
export class Browser {
  readonly jar: Jar;
  readonly f: CodeFlowFixture;
  constructor(f: CodeFlowFixture, cookie = '') {
    this.f = f;
    this.jar = new Jar(cookie);
  }
  get cookies(): Map<string, string> {
    return this.jar.cookies;
  }
  get cookie(): string {
    return this.jar.header();
  }
  get = (url: string): Promise<LightMyRequestResponse> => get(this.f, relative(url), this.jar);
  post = (url: string, form: Record<string, string>, headers?: Record<string, string>): Promise<LightMyRequestResponse> => post(this.f, relative(url), form, this.jar, headers);
}

/** A page URL as fastify's inject takes it: the path and query of an absolute one. */
function relative(url: string): string {
  if (!url.startsWith('http')) return url;
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
}
