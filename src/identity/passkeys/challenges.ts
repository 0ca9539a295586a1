import { createHash, randomBytes } from 'node:crypto';
import type { Context } from '../../context.ts';
import { rowsOf, type Flight } from '../../storage/flight.ts';
import { withinSpan } from '../../clock.ts';

/**
 * WebAuthn challenges (WebAuthn L3 §13.4.3: random, at least 16 bytes, used once). Each is 32
 * random bytes made by the server for one ceremony, bound to what started it — the interaction (a
 * sign-in: the interaction is itself bound to its browser) or the session (the account page) —
 * and to the person it is for when known. Only its SHA-256 is stored; consuming it deletes its
 * row in one conditional statement, so a challenge is answered at most once: a replayed
 * assertion or registration finds nothing. It lives five minutes.
 */
export type CeremonyPurpose = 'register' | 'login' | 'login_discoverable';

export const challengeTtlMs = 5 * 60_000;

/** A challenge as consumed: whom it was for (null: username-less, or a name nobody holds). */
export interface ConsumedChallenge {
  purpose: CeremonyPurpose;
  userId: string | null;
}

type ChallengeContext = Pick<Context, 'storage' | 'clock'>;

const challengePattern = /^[A-Za-z0-9_-]{43}$/;

function challengeId(challenge: string): string {
  return createHash('sha256').update(challenge, 'utf8').digest('base64url');
}

/**
 * The bytes of a challenge, for the library's option builders: given a string they would encode
 * its UTF-8 bytes, and the browser would then answer with another base64url text than ours.
 */
export function challengeBytes(challenge: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(challenge, 'base64url'));
}

/** A new challenge (base64url) for a ceremony, stored hashed. */
export async function issueChallenge(ctx: ChallengeContext, ceremony: { purpose: CeremonyPurpose; binding: string; userId: string | null }): Promise<string> {
  const challenge = randomBytes(32).toString('base64url');
  const now = ctx.clock.now();
  const flight = ctx.storage.flight();
  void flight.run(
    ctx.storage.db.insertInto('passkey_challenges').values({
      id: challengeId(challenge),
      purpose: ceremony.purpose,
      binding: ceremony.binding,
      user_id: ceremony.userId,
      expires_at: now + challengeTtlMs,
    }),
  );
  maybePrune(ctx, now, flight);
  await flight.commit();
  return challenge;
}

/**
 * Consumes a challenge of one of `purposes` bound to `binding`: deletes its row and says whom it
 * was for; undefined when there is none (never issued, another ceremony's or binding's, used
 * already) or it expired. With `flight`, the statement goes with the flight's others (a sign-in
 * consumes its challenge while reading the passkey and the person): the promise settles once the
 * caller has sent it.
 */
export async function consumeChallenge(
  ctx: ChallengeContext,
  challenge: string,
  expected: { purposes: readonly CeremonyPurpose[]; binding: string },
  flight?: Flight,
): Promise<ConsumedChallenge | undefined> {
  if (!challengePattern.test(challenge)) return undefined;
  const now = ctx.clock.now();
  const rows = await rowsOf(
    ctx.storage.db
      .deleteFrom('passkey_challenges')
      .where('id', '=', challengeId(challenge))
      .where('purpose', 'in', [...expected.purposes])
      .where('binding', '=', expected.binding)
      .returning(['purpose', 'user_id', 'expires_at']),
    flight,
  );
  const row = rows[0];
  if (!row || Number(row.expires_at) <= now) return undefined;
  return { purpose: row.purpose as CeremonyPurpose, userId: row.user_id };
}

const pruneEveryMs = 10 * 60_000;
const lastPrune = new WeakMap<object, number>();

/** Adds the deletion of expired challenges (never answered) to `flight`; at most once per 10 minutes per process. */
function maybePrune(ctx: ChallengeContext, now: number, flight: Flight): void {
  const last = lastPrune.get(ctx.storage) ?? -Infinity;
  if (withinSpan(now, last, pruneEveryMs)) return;
  lastPrune.set(ctx.storage, now);
  void flight.run(ctx.storage.db.deleteFrom('passkey_challenges').where('expires_at', '<', now));
}
