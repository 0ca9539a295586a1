/**
 * The few cookies Clearance sets, parsed and serialized by hand (RFC 6265). Values Clearance
 * writes are base64url, so they never need quoting or escaping.
 */

/**
 * Every value of the cookie `name` in a Cookie header, in the order sent. There can be several:
 * a cookie with a more specific Path, or one set by a sibling domain, arrives beside ours
 * (RFC 6265 §5.4 orders them by path length, then age), so callers decide what several mean.
 */
export function cookieValues(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const values: string[] = [];
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    values.push(value);
  }
  return values;
}

export interface CookieOptions {
  path: string;
  /** Omitted only for a development issuer on http (browsers drop Secure cookies on http). */
  secure: boolean;
  sameSite: 'Strict' | 'Lax';
  /** Seconds; absent = a browser-session cookie; 0 deletes it. */
  maxAge?: number;
}

const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 6265 §4.1.1 cookie-name (RFC 7230 token)
const valuePattern = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$/; // RFC 6265 §4.1.1 cookie-octet

/** A Set-Cookie value, always HttpOnly. */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  if (!tokenPattern.test(name)) throw new TypeError(`invalid cookie name ${name}`);
  if (!valuePattern.test(value)) throw new TypeError('invalid cookie value');
  if (!/^\/[\x21-\x3a\x3c-\x7e]*$/.test(options.path)) throw new TypeError('invalid cookie path');
  const parts = [`${name}=${value}`, `Path=${options.path}`, 'HttpOnly', `SameSite=${options.sameSite}`];
  if (options.secure) parts.push('Secure');
  if (options.maxAge !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(options.maxAge))}`);
  return parts.join('; ');
}
