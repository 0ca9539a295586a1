import { randomBytes } from 'node:crypto';
import type { Context } from '../context.ts';
import { cookieValues, serializeCookie } from '../identity/cookies.ts';
import { cookieName, cookieScope } from '../identity/sessions.ts';
import { open, seal, SealedBoxError } from '../keys/sealed-box.ts';
import type { ConsoleRole } from './roles.ts';

/**
 * The console's two cookies, each sealed with a key derived from the master key (AES-256-GCM,
 * src/keys/sealed-box.ts; the key: src/endpoints/console/index.ts)
 * so that every node reads them and nobody can read or forge them: the sign-in in progress (state,
 * PKCE verifier, nonce; ten minutes) and the signed-in console (the person's admin API token and
 * who they are, until the token expires). HttpOnly, SameSite=Lax (the authorization response is a
 * top-level redirect back), Secure on https, path /console under the issuer, named with the
 * `__Secure-` prefix on https (src/identity/sessions.ts cookieName: `__Host-` needs Path=/), so
 * that no plain-http page of the host can plant one.
 */
export interface ConsoleSignIn {
  state: string;
  verifier: string;
  nonce: string;
  /** `identify`: who is signing in (openid only); `authorize`: the token with their roles' scopes. */
  phase: 'identify' | 'authorize';
  /** The console page to return to (a path under /console). */
  returnTo: string;
  /** In the `authorize` step: the person the `identify` step found (the same must sign in). */
  userId?: string;
  expiresAt: number;
}

export interface ConsoleSession {
  accessToken: string;
  expiresAt: number;
  userId: string;
  username: string;
  roles: ConsoleRole[];
  scopes: string[];
  acr: string;
  /** Binds the console's forms to this session (CSRF): a random value, compared in constant time. */
  csrf: string;
}

const signInCookie = 'clearance_console_signin';
const sessionCookie = 'clearance_console';
const signInTtlMs = 10 * 60_000;

function cookiePath(ctx: Pick<Context, 'config'>) {
  const scope = cookieScope(ctx.config.issuer);
  return { ...scope, path: `${scope.path === '/' ? '' : scope.path}/console`, sameSite: 'Lax' as const };
}

/** The name the browser holds cookie `base` under (prefixed on https); sealed under `base` either way. */
function nameOf(ctx: Pick<Context, 'config'>, base: string): string {
  return cookieName(base, cookiePath(ctx));
}

function read<T extends { expiresAt: number }>(ctx: Pick<Context, 'clock' | 'config'>, masterKey: Buffer, header: string | undefined, base: string): T | undefined {
  // Several values (a cookie of another path beside ours): none is trusted over the other.
  const values = cookieValues(header, nameOf(ctx, base));
  if (values.length !== 1) return undefined;
  try {
    const value = JSON.parse(open(masterKey, values[0]!, `console:${base}`).toString('utf8')) as T;
    return value.expiresAt > ctx.clock.now() ? value : undefined;
  } catch (error) {
    if (error instanceof SealedBoxError || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

function write(ctx: Pick<Context, 'config' | 'clock'>, masterKey: Buffer, base: string, value: { expiresAt: number }): string {
  const sealed = seal(masterKey, Buffer.from(JSON.stringify(value), 'utf8'), `console:${base}`);
  return serializeCookie(nameOf(ctx, base), sealed, { ...cookiePath(ctx), maxAge: Math.max(1, Math.floor((value.expiresAt - ctx.clock.now()) / 1000)) });
}

function clear(ctx: Pick<Context, 'config'>, base: string): string {
  return serializeCookie(nameOf(ctx, base), '', { ...cookiePath(ctx), maxAge: 0 });
}

export function newSignIn(ctx: Pick<Context, 'clock'>, phase: ConsoleSignIn['phase'], returnTo: string): ConsoleSignIn {
  const random = () => randomBytes(32).toString('base64url');
  return { state: random(), verifier: random(), nonce: random(), phase, returnTo, expiresAt: ctx.clock.now() + signInTtlMs };
}

export const consoleCookies = {
  readSignIn: (ctx: Pick<Context, 'clock' | 'config'>, masterKey: Buffer, header: string | undefined) => read<ConsoleSignIn>(ctx, masterKey, header, signInCookie),
  writeSignIn: (ctx: Pick<Context, 'config' | 'clock'>, masterKey: Buffer, value: ConsoleSignIn) => write(ctx, masterKey, signInCookie, value),
  clearSignIn: (ctx: Pick<Context, 'config'>) => clear(ctx, signInCookie),
  readSession: (ctx: Pick<Context, 'clock' | 'config'>, masterKey: Buffer, header: string | undefined) => read<ConsoleSession>(ctx, masterKey, header, sessionCookie),
  writeSession: (ctx: Pick<Context, 'config' | 'clock'>, masterKey: Buffer, value: ConsoleSession) => write(ctx, masterKey, sessionCookie, value),
  clearSession: (ctx: Pick<Context, 'config'>) => clear(ctx, sessionCookie),
};
