import type { Authentication } from '../authorization/contract.ts';
import type { Context } from '../context.ts';
import { acr, acrRank, acrSatisfies, amr, type Acr } from './acr.ts';
import { totpFactorOf } from './factors/totp.ts';
import { listPasskeys, passkeyAcr } from './passkeys/store.ts';

/**
 * Who may change a person's sign-in factors from a session (the account page): the one rule for
 * passkeys, the authenticator app and recovery codes.
 *
 * 1. The session must have been made with the person's **strongest factor** (levelToChangeFactors):
 *    whoever has only a weaker one — the password, phished, or a session from before the person's
 *    passkey — could otherwise add a factor of their own (a passkey, an authenticator) and from
 *    then on sign in at its level, or lock the person's own sign-in behind it.
 * 2. A session made with a **recovery code** (its `amr` names `urn:clearance:amr:recovery-code`)
 *    changes nothing: not the passkeys (a password and one stolen recovery code would otherwise
 *    reach a phishing-resistant level), not new recovery codes, and — since issue 15 — not the
 *    authenticator either: a password and a recovery code (a sheet of codes is one theft away)
 *    must not replace the person's authenticator with the thief's. The session signs the person
 *    in to their applications; to replace what they lost they open a recovery request from
 *    /account (src/identity/recovery), which a second, independent person approves.
 */

/** What a change touches. */
export type ChangedFactor = 'passkeys' | 'authenticator' | 'recovery_codes';

/** Why a session may not make a change. */
export type FactorChangeRefusal =
  /** The session is below the level of the person's strongest factor (`level`). */
  | { reason: 'weaker_than_strongest'; level: Acr }
  /** The session was made with a recovery code, which changes no factor (rule 2). */
  | { reason: 'recovery_code' };

/**
 * The level a session must have reached to change the person's factors: the strongest their
 * factors reach today — a passkey's (`:phr`, `:phrh`) when they have one, `:mfa` with a confirmed
 * authenticator app, else a password. An authenticator not yet confirmed does not count (it
 * signs nobody in). A person with no factor is at the password level, so whoever signs them in
 * may enrol one: an offboarded person (factors removed) is therefore never signed in on a
 * password an administrator chose — their credentials stay on hold until an approved recovery
 * (src/lifecycle/credential-hold.ts).
 */
export async function levelToChangeFactors(ctx: Pick<Context, 'storage' | 'config'>, userId: string): Promise<Acr> {
  // One round trip: the passkeys and the authenticator, read together.
  const flight = ctx.storage.flight();
  const passkeys = listPasskeys(ctx, userId, flight);
  const totp = totpFactorOf(ctx, userId, flight);
  await flight.send();
  const strongest = Math.max(-1, ...(await passkeys).map((p) => acrRank(passkeyAcr(p, ctx.config.passkeyAttestation))));
  if (strongest >= 0) return strongest === acrRank(acr.phishingResistantHardware) ? acr.phishingResistantHardware : acr.phishingResistant;
  return (await totp)?.confirmedAt != null ? acr.multiFactor : acr.password;
}

/** Whether a recovery code stood in for the second factor of this session's sign-in. */
export function madeWithRecoveryCode(session: Pick<Authentication, 'amr'>): boolean {
  return session.amr.includes(amr.recoveryCode);
}

/**
 * Why `session` may not change `factor` of a person whose factors need `level`
 * (levelToChangeFactors), or undefined when it may.
 */
export function factorChangeRefusal(session: Pick<Authentication, 'acr' | 'amr'>, level: Acr, _factor: ChangedFactor): FactorChangeRefusal | undefined {
  if (!acrSatisfies(session.acr, level)) return { reason: 'weaker_than_strongest', level };
  if (madeWithRecoveryCode(session)) return { reason: 'recovery_code' };
  return undefined;
}
