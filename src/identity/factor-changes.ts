import type { Transaction } from 'kysely';
import type { Authentication } from '../authorization/contract.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { acr, acrRank, acrSatisfies, amr, type Acr } from './acr.ts';
import { totpFactorOf } from './factors/totp.ts';
import type { PasskeyAttestationPolicy } from './passkeys/attestation.ts';
import { listPasskeys, passkeyAcr, type Passkey } from './passkeys/store.ts';

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
 * 3. A session made **through an upstream identity provider** (identity brokering: its `amr`
 *    names `urn:clearance:amr:upstream`) changes nothing of a person who has a factor of their
 *    own, whatever level the upstream's declaration trusts it for: it was not made with their
 *    strongest factor but by another organisation's sign-in, which is never a step-up either
 *    (docs/identity-brokering.md). Otherwise whoever passes the upstream's sign-in — a phished
 *    corporate password and code, or the upstream itself — adds a passkey of their own and from
 *    then on signs in above what the upstream is trusted for. A person with no factor of their
 *    own adds their first from it, as from any sign-in of theirs.
 * 4. The sign-in must be **fresh**: made within `factorChangeMaxAgeSeconds` (its `auth_time`). A
 *    session lives up to 12 hours (src/identity/sessions.ts); its cookie, taken from the browser
 *    meanwhile, must not add a factor that outlives it (and signs in as the person from then on)
 *    or remove theirs.
 * 5. A session made with a **smart card** (a person certificate, src/identity/certificates: its
 *    `amr` names `sc`) changes nothing of a person who has a factor of their own, though it
 *    reaches `:phrh`, the level of any of their factors. A certificate is not one of the person's
 *    factors: a certificate authority issues it, the authority's mapping rules (an email or UPN it
 *    writes) name the person, and the authority revokes it; the person neither sees nor removes it
 *    on /account. A passkey it added would outlive the card's revocation — the organisation's way
 *    to end a lost card's access — and whoever holds a stolen card and its PIN would keep signing
 *    in. As for rule 3, a person with no factor of their own adds their first from it. (A software
 *    certificate signs in at `:pwd`: rule 1 already decides.)
 */

/** What a change touches. */
export type ChangedFactor = 'passkeys' | 'authenticator' | 'recovery_codes';

/** Why a session may not make a change. */
export type FactorChangeRefusal =
  /** The session is below the level of the person's strongest factor (`level`). */
  | { reason: 'weaker_than_strongest'; level: Acr }
  /** The session was made with a recovery code, which changes no factor (rule 2). */
  | { reason: 'recovery_code' }
  /** The session was made through an upstream identity provider, and the person has factors of their own (`level`, rule 3). */
  | { reason: 'upstream'; level: Acr }
  /** The session's sign-in is older than `factorChangeMaxAgeSeconds` (rule 4): sign in again at `level`. */
  | { reason: 'stale'; level: Acr }
  /** The session was made with a smart card, and the person has factors of their own (`level`, rule 5). */
  | { reason: 'certificate'; level: Acr };

/** How long after its sign-in a session may change factors (rule 4), in seconds. */
export const factorChangeMaxAgeSeconds = 15 * 60;

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

/** Whether an upstream identity provider made this session's sign-in (src/federation/upstream/assurance.ts: every such sign-in names it in `amr`). */
export function madeThroughUpstream(session: Pick<Authentication, 'amr'> & Partial<Pick<Authentication, 'assurance'>>): boolean {
  return session.amr.includes(amr.upstream) || session.assurance !== undefined;
}

/** Whether a smart card (a person certificate with a hardware policy, src/identity/certificates/login.ts certificateLevel) made this session's sign-in. */
export function madeWithSmartCard(session: Pick<Authentication, 'amr'>): boolean {
  return session.amr.includes(amr.smartCard);
}

/**
 * Why `session` may not change `factor` of a person whose factors need `level`
 * (levelToChangeFactors) at `nowSeconds` (epoch seconds), or undefined when it may.
 */
export function factorChangeRefusal(
  session: Pick<Authentication, 'acr' | 'amr' | 'authTime'> & Partial<Pick<Authentication, 'assurance'>>,
  level: Acr,
  _factor: ChangedFactor,
  nowSeconds: number,
): FactorChangeRefusal | undefined {
  if (!acrSatisfies(session.acr, level)) return { reason: 'weaker_than_strongest', level };
  if (madeWithRecoveryCode(session)) return { reason: 'recovery_code' };
  // Rule 3: the person has a factor of their own (their level is above a password's), and this
  // sign-in was not made with it.
  if (acrRank(level) > acrRank(acr.password) && madeThroughUpstream(session)) return { reason: 'upstream', level };
  // Rule 5: the same, for a sign-in made with a certificate authority's smart card.
  if (acrRank(level) > acrRank(acr.password) && madeWithSmartCard(session)) return { reason: 'certificate', level };
  if (nowSeconds - session.authTime > factorChangeMaxAgeSeconds) return { reason: 'stale', level };
  return undefined;
}

/** A person's factors, as far as the level they reach goes. */
export interface FactorsHeld {
  passkeys: readonly Pick<Passkey, 'attested' | 'backupEligible' | 'aaguid'>[];
  /** A confirmed authenticator app. */
  totp: boolean;
  password: boolean;
  /**
   * An identity of theirs at an enabled upstream identity provider (src/federation/upstream): it
   * signs them in (signsIn) but is no factor of their own (rule 3), so reachOf leaves it out.
   */
  upstream?: boolean;
}

/**
 * The rung of the strongest sign-in `factors` give (src/identity/acr.ts): a passkey's level, the
 * password and the authenticator's code (`:mfa`: the authenticator is a second factor, it signs
 * nobody in without the password), the password alone; -1 when nothing signs the person in.
 */
export function reachOf(factors: FactorsHeld, policy: PasskeyAttestationPolicy | undefined): number {
  const local = factors.password ? acrRank(factors.totp ? acr.multiFactor : acr.password) : -1;
  return Math.max(local, ...factors.passkeys.map((p) => acrRank(passkeyAcr(p, policy))));
}

/**
 * Whether removing a factor — leaving `after` of `before` — takes the person below the minimum
 * their roles ask (`required`, src/identity/role-requirements.ts), and below what they reach
 * now: then the factor must stay (add the new one first, then remove the old one). A password's
 * minimum keeps nothing. Otherwise a removal would leave the person's strongest factor below
 * their role's level, and from then on whoever has only their password may enrol a factor of
 * their own and reach that level (rule 1 above: a person's strongest factor decides who changes
 * factors) — the last passkey of a role that asks one, and as much the authenticator app (or the
 * passkey) that is the only factor meeting a two-step minimum.
 */
export function removalLeavesBelowMinimum(required: Acr | undefined, before: FactorsHeld, after: FactorsHeld, policy: PasskeyAttestationPolicy | undefined): boolean {
  const need = acrRank(required);
  if (need <= acrRank(acr.password)) return false;
  const left = reachOf(after, policy);
  return left < need && left < reachOf(before, policy);
}

/**
 * Whether `factors` sign the person in at all: their password (with the authenticator's code when
 * they have one), a passkey, or their organisation's sign-in (an upstream identity linked to them).
 * An authenticator signs nobody in without the password. A smart card is not counted: Clearance
 * holds no list of the certificates that name a person (an authority's mapping rules do), and a
 * card is revoked or expires without Clearance hearing of it before the next sign-in.
 */
export function signsIn(factors: FactorsHeld): boolean {
  return factors.password || factors.passkeys.length > 0 || factors.upstream === true;
}

/**
 * Whether removing a factor — leaving `after` of `before` — leaves the person nothing to sign in
 * with: the last passkey of a person who has no password (nor an upstream identity). Such a
 * removal is refused (`last_sign_in_factor`): the person would have locked themselves out, and
 * only a recovery a second person approves would let them in again (docs/recovery.md).
 */
export function removalLocksOut(before: FactorsHeld, after: FactorsHeld): boolean {
  return signsIn(before) && !signsIn(after);
}

/** Whether the person has an identity at an enabled upstream identity provider (read in the removal's transaction). */
export async function signsInThroughUpstream(trx: Transaction<Database>, userId: string): Promise<boolean> {
  const link = await trx
    .selectFrom('user_links')
    .innerJoin('identity_providers', 'identity_providers.id', 'user_links.provider_id')
    .select('user_links.user_id')
    .where('user_links.user_id', '=', userId)
    .where('identity_providers.enabled', '=', 1)
    .executeTakeFirst();
  return link !== undefined;
}
