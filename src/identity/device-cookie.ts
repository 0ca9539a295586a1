import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from '../context.ts';
import { cookieValues, serializeCookie } from './cookies.ts';
import { cookieName, cookieScope } from './sessions.ts';
import { authenticationKey } from '../keys/master-key.ts';

/**
 * The device cookie: how the risk engine recognises a browser a person signed in from before
 * (`new_device`, src/risk/signals/new-device.ts). It holds a random device id of 128 bits and
 * HMAC-SHA256 of that id under a key derived from the master key — nothing about the person: the
 * same browser has one id whoever signs in with it, and which accounts used it is the server's to
 * remember (`risk_sightings`). The MAC makes it unforgeable: a value that does not verify (edited,
 * made up, made with another server's key) is ignored, as if the browser had no cookie — a new
 * device. It is given after a successful sign-in to a browser that presented none that verified,
 * and lives 400 days (the longest Max-Age browsers keep, RFC 6265bis §5.6.2), HttpOnly, Secure
 * (but on a development http issuer, like every Clearance cookie), SameSite=Lax, on the issuer's
 * path, under a prefixed name on https (sessions.ts cookieName): a bare cookie planted from a
 * sibling subdomain or an http page would let someone make their own browser a known device of
 * the person who next signs in with the planted one. `__Host-` (an issuer at the root) refuses
 * both; `__Secure-` (an issuer with a path) refuses an http page's, not a sibling https subdomain's. It proves nothing by itself:
 * it is one signal among others, never a factor.
 */
export const deviceCookieName = 'clearance_device';

/** The name the browser holds the device cookie under for `issuer` (prefixed on https). */
export function deviceCookieNameFor(issuer: string): string {
  return cookieName(deviceCookieName, cookieScope(issuer));
}

/** 400 days: the upper bound browsers apply to Max-Age (RFC 6265bis §5.6.2). */
export const deviceCookieMaxAgeSeconds = 400 * 24 * 3600;

const valuePattern = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/**
 * The HMAC key of device cookies: HKDF-SHA-256 of the master key that seals now, with a label of
 * its own (never the key itself). It authenticates, so it rotates with the master key
 * (src/keys/master-key.ts authenticationKey): after a rewrap begins, every browser is a new device once.
 */
export function deviceCookieKey(masterKey: Buffer): Buffer {
  return authenticationKey(masterKey, 'clearance device-cookie v1');
}

/** A new device id: 128 random bits, base64url. */
export function newDeviceId(): string {
  return randomBytes(16).toString('base64url');
}

function macOf(key: Buffer, id: string): Buffer {
  return createHmac('sha256', key).update(`device\n${id}`).digest();
}

/**
 * The device id of the request's device cookie when it verifies (MAC compared in constant time);
 * undefined when there is none, when none verifies, or when several verify with different ids
 * (which one is this browser is unclear: a new device).
 */
export function presentedDeviceId(key: Buffer, cookieHeader: string | undefined, issuer: string): string | undefined {
  const ids = new Set<string>();
  for (const value of cookieValues(cookieHeader, deviceCookieNameFor(issuer)).slice(0, 4)) {
    const match = valuePattern.exec(value);
    if (!match) continue;
    // Compared as text: base64url has spare bits in its last character, so two texts decode alike.
    const given = Buffer.from(match[2]!, 'latin1');
    const expected = Buffer.from(macOf(key, match[1]!).toString('base64url'), 'latin1');
    if (given.length === expected.length && timingSafeEqual(given, expected)) ids.add(match[1]!);
  }
  return ids.size === 1 ? [...ids][0] : undefined;
}

/** The Set-Cookie value that gives the browser the device cookie of `id`. */
export function deviceCookie(ctx: Pick<Context, 'config' | 'identity'>, id: string): string {
  const value = `${id}.${macOf(ctx.identity.deviceCookieKey, id).toString('base64url')}`;
  return serializeCookie(deviceCookieNameFor(ctx.config.issuer), value, { ...cookieScope(ctx.config.issuer), sameSite: 'Lax', maxAge: deviceCookieMaxAgeSeconds });
}
