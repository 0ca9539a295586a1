import { createHmac } from 'node:crypto';
import { generateAuthenticationOptions, type PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Context } from '../../context.ts';
import { rowsOf } from '../../storage/flight.ts';
import { normalizeUsername } from '../users.ts';
import { challengeBytes, issueChallenge } from './challenges.ts';
import { relyingParty } from './relying-party.ts';

/** How long the browser waits for the person (WebAuthn L3 §5.4.4 timeout), in ms. */
export const ceremonyTimeoutMs = 120_000;

type OptionsContext = Pick<Context, 'storage' | 'clock' | 'config' | 'identity'>;

/**
 * The request options of a sign-in with a passkey during the interaction `binding`
 * (navigator.credentials.get, WebAuthn L3 §5.5), with a new challenge bound to it. User
 * verification is required.
 *
 * - Without a username: no allowCredentials, so the browser offers the person's discoverable
 *   passkeys for Clearance (username-less sign-in); the challenge is for whoever answers.
 * - With a username: allowCredentials lists that person's passkeys, and the challenge is bound
 *   to the person, so only their passkeys can answer it.
 *
 * No account enumeration: for a username nobody holds — or one whose person has no passkey, or is
 * not active — the answer has the same shape: decoy credential ids (`decoyCredentials`), and a
 * challenge that no passkey can answer. The decoys are an HMAC of the username under a key derived
 * from the master key, so asking twice gives the same answer, as it does for a real person, and
 * every node gives the same one. Both paths make the same one read (the person's passkeys, by
 * username, in one statement) and the same one write (the challenge).
 */
export async function authenticationOptions(ctx: OptionsContext, request: { binding: string; username?: string }): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const rp = relyingParty(ctx.config.issuer);
  const username = request.username === undefined ? undefined : normalizeUsername(request.username).slice(0, 256);
  if (!username) {
    const challenge = await issueChallenge(ctx, { purpose: 'login_discoverable', binding: request.binding, userId: null });
    return generateAuthenticationOptions({ rpID: rp.id, challenge: challengeBytes(challenge), timeout: ceremonyTimeoutMs, userVerification: 'required' });
  }
  const rows = await rowsOf(
    ctx.storage.db
      .selectFrom('users')
      .innerJoin('passkeys', 'passkeys.user_id', 'users.id')
      .select(['users.id as user_id', 'passkeys.credential_id', 'passkeys.transports'])
      .where('users.username', '=', username)
      .where('users.status', '=', 'active')
      .orderBy('passkeys.created_at')
      .orderBy('passkeys.id'),
  );
  const userId = rows[0]?.user_id ?? null;
  const allowCredentials =
    rows.length > 0 ? rows.map((row) => ({ id: row.credential_id, transports: JSON.parse(row.transports) as string[] })) : decoyCredentials(ctx.identity.passkeyDecoyKey, username);
  const challenge = await issueChallenge(ctx, { purpose: 'login', binding: request.binding, userId });
  return generateAuthenticationOptions({ rpID: rp.id, challenge: challengeBytes(challenge), timeout: ceremonyTimeoutMs, userVerification: 'required', allowCredentials });
}

/**
 * One or two credential ids of 16 bytes (as platform passkeys' are), with the transports of a
 * platform passkey, derived from the username: what a person with passkeys would be offered,
 * always the same for the same username. No authenticator holds them, so the browser finds none.
 */
export function decoyCredentials(key: Buffer, username: string): { id: string; transports: string[] }[] {
  const seed = createHmac('sha256', key).update(`passkey-decoy\n${username}`).digest();
  const count = 1 + (seed[0]! & 1);
  return Array.from({ length: count }, (_, i) => ({
    id: createHmac('sha256', key).update(`passkey-decoy-id\n${username}\n${i}`).digest().subarray(0, 16).toString('base64url'),
    transports: ['hybrid', 'internal'],
  }));
}
