import type { Context } from '../context.ts';
import { rowsOf } from '../storage/flight.ts';
import { acr, acrRank, acrSatisfies, type Acr } from './acr.ts';
import { passkeyAcr, passkeyFromRow } from './passkeys/store.ts';

/**
 * The ways a known person can sign in, and the level each reaches (docs/authentication.md): what
 * the sign-in page offers once the person has authenticated — never before, so what a page shows
 * to someone who only typed a username says nothing about the account (no enumeration).
 */
export interface SignInMethods {
  username: string;
  /** The strongest level their passkeys reach (`:phr`, or `:phrh` for an approved hardware key); undefined: none. */
  passkey: Acr | undefined;
  /** A confirmed authenticator app: their password and its code reach `:mfa`. */
  totp: boolean;
  /** They have a password (an account made without one signs in with a passkey only). */
  password: boolean;
}

/** The sign-in methods of person `userId` (one round trip); undefined when they no longer exist. */
export async function signInMethodsOf(ctx: Pick<Context, 'storage' | 'config'>, userId: string): Promise<SignInMethods | undefined> {
  const flight = ctx.storage.flight();
  const db = ctx.storage.db;
  const user = rowsOf(db.selectFrom('users').select(['username', 'password_hash']).where('id', '=', userId), flight);
  const passkeys = rowsOf(db.selectFrom('passkeys').selectAll().where('user_id', '=', userId), flight);
  const totp = rowsOf(db.selectFrom('totp_factors').select('id').where('user_id', '=', userId).where('confirmed_at', 'is not', null), flight);
  await flight.send();
  const [[row], keys, apps] = await Promise.all([user, passkeys, totp]);
  if (!row) return undefined;
  const best = Math.max(-1, ...keys.map((key) => acrRank(passkeyAcr(passkeyFromRow(key), ctx.config.passkeyAttestation))));
  return { username: row.username, passkey: best < 0 ? undefined : best === acrRank(acr.phishingResistantHardware) ? acr.phishingResistantHardware : acr.phishingResistant, totp: apps.length > 0, password: row.password_hash !== null };
}

/** Which of a person's methods reach `level`: their passkey; their password (with their authenticator's code when they have one). */
export function methodsReaching(methods: SignInMethods, level: Acr): { passkey: boolean; password: boolean } {
  const passwordReaches = methods.password && acrSatisfies(methods.totp ? acr.multiFactor : acr.password, level);
  return { passkey: methods.passkey !== undefined && acrSatisfies(methods.passkey, level), password: passwordReaches };
}
