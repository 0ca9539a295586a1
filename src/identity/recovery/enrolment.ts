import { createHash, timingSafeEqual } from 'node:crypto';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { AuditEvent } from '../../audit/events.ts';
import type { Context } from '../../context.ts';
import { effectiveStatus, type ApprovalStatus } from '../../approvals/requests.ts';
import { refusedFor } from '../../storage/flight.ts';
import { verifyPassword } from '../passwords.ts';
import { registerPasskey, registrationOptions } from '../passkeys/registration.ts';
import { addNotice } from '../factors/notices.ts';
import type { Passkey } from '../passkeys/store.ts';
import { findUser, type User } from '../users.ts';
import { passwordFingerprint } from './approval.ts';
import { handleDigest } from '../../authorization/digest.ts';
import { mayHoldTokens } from '../lifecycle.ts';
import { credentialsHeld } from '../../lifecycle/credential-hold.ts';
import { recordRefusal } from '../../audit/refusals.ts';

/**
 * The enrolment link of an approved recovery (docs/recovery.md "The link"): `/recovery/{token}`
 * lets the person enrol one new passkey and nothing else — no session, no token; afterwards they
 * sign in normally. Its rules:
 * 1. the token is 256 random bits; only its SHA-256 is stored, and it is looked up by that;
 * 2. it works only once the request is approved, until `expires_at` (the approval plus apply's
 *    `recovery.enrolment_ttl`), once;
 * 3. enrolling also needs the person's password, the one they had when the request was opened:
 *    whoever was handed the link (the help desk that opened the request) cannot use it alone, and
 *    a password set after the opening — while the request waits or after its approval (an
 *    administrator's reset) — voids it for good (`password_changed`, also checked in the
 *    enrolment's transaction). Wrong passwords are counted on the link; the `maxLinkFailures`-th
 *    kills it. Each attempt is counted before its password is checked (a right one is given
 *    back), so guesses sent in parallel check no more passwords than that;
 * 4. the passkey is registered by the account page's code (src/identity/passkeys/registration.ts:
 *    challenge bound to this link, origin, user verification, the attestation policy of the
 *    person's roles), and the link's single use — the link row and the approval request
 *    (approved → consumed) — commits in the same transaction as the passkey, or nothing does;
 * 5. every refusal — of the page, the form, the passkey options — is `recovery.link_refused`
 *    (`recordLinkRefusal`), the enrolment `recovery.enrolled` (txn = the request id); neither ever
 *    holds the link or its token;
 * 6. a leaver whose credentials are on hold (src/lifecycle/credential-hold.ts) has no password: a
 *    link opened for them has no fingerprint (requests.ts) and needs no password — it works only
 *    while they still have none and are still held (read here, and required again in the
 *    enrolment's transaction). The enrolment lifts the hold in that transaction
 *    (`recovery.enrolled` says `credential_hold_lifted`): from then on the passkey signs them in.
 *    Any enrolment through a link lifts a hold the person has;
 * 7. the page's passkey options make a challenge bound to the link each time they are asked: a
 *    link keeps at most `maxLiveChallengesPerLink` of them (the newest; each new one replaces the
 *    oldest beyond), so whoever holds the link cannot fill the challenge table through it — and
 *    a person who started again keeps a ceremony or two still open;
 * 8. the enrolment leaves the person a notice on /account (`recovery_used`, ./notices.ts), in its
 *    transaction.
 */

/** Wrong passwords a link survives. */
export const maxLinkFailures = 5;

/** Passkey ceremonies a link keeps open at once (rule 7): a new one replaces the oldest beyond. */
export const maxLiveChallengesPerLink = 3;

const tokenPattern = /^[A-Za-z0-9_-]{43}$/;

export type LinkRefusal = 'unknown' | 'not_approved' | 'expired' | 'used' | /** The person's password was set after the request was opened. */ 'password_changed';

/** A live link: the request it belongs to and the person it recovers. */
export interface LiveLink {
  requestId: string;
  user: User;
  expiresAt: number;
  passwordFingerprint: string | null;
}

/**
 * Why a link of a real request answers `unknown` (the page says only "not valid"; the audit event
 * says which): killed by wrong passwords, its request no longer approvable (`request_denied`,
 * `request_cancelled`, `request_expired`), or its person gone or barred from holding tokens.
 */
export type UnknownCause = 'link_killed' | `request_${ApprovalStatus}` | 'person_inactive';

export type LinkState = { ok: true; link: LiveLink } | { ok: false; reason: LinkRefusal; requestId?: string; userId?: string; cause?: UnknownCause };

type LinkContext = Pick<Context, 'storage' | 'clock' | 'audit' | 'config'>;

/**
 * What a token opens now. `unknown` for anything that is not a live link of a recovery that can
 * still be completed (never issued, denied, cancelled, killed by wrong passwords, the person gone
 * or barred); the other reasons only to whoever holds a real token.
 */
export async function readEnrolmentLink(ctx: LinkContext, token: string): Promise<LinkState> {
  if (!tokenPattern.test(token)) return { ok: false, reason: 'unknown' };
  const row = await ctx.storage.db
    .selectFrom('recovery_links')
    .innerJoin('approval_requests', 'approval_requests.id', 'recovery_links.request_id')
    .select(['recovery_links.request_id', 'recovery_links.user_id', 'recovery_links.expires_at', 'recovery_links.password_fingerprint', 'recovery_links.failures', 'recovery_links.used_at'])
    .select(['approval_requests.status', 'approval_requests.expires_at as request_expires_at'])
    .where('recovery_links.link_digest', '=', handleDigest(token))
    .executeTakeFirst();
  if (!row) return { ok: false, reason: 'unknown' };
  const known = { requestId: row.request_id, userId: row.user_id };
  const now = ctx.clock.now();
  const status: ApprovalStatus = effectiveStatus({ status: row.status as ApprovalStatus, expiresAt: Number(row.request_expires_at) }, now);
  if (Number(row.failures) >= maxLinkFailures) return { ok: false, reason: 'unknown', ...known, cause: 'link_killed' };
  if (row.used_at !== null || status === 'consumed') return { ok: false, reason: 'used', ...known };
  if (status === 'pending') return { ok: false, reason: 'not_approved', ...known };
  if (status !== 'approved' || row.expires_at === null) return { ok: false, reason: 'unknown', ...known, cause: `request_${status}` };
  if (Number(row.expires_at) <= now) return { ok: false, reason: 'expired', ...known };
  const user = await findUser(ctx, row.user_id);
  if (!user || !mayHoldTokens(user.status, user.lockReason)) return { ok: false, reason: 'unknown', ...known, cause: 'person_inactive' };
  const current = await ctx.storage.db.selectFrom('users').select('password_hash').where('id', '=', row.user_id).executeTakeFirst();
  // Rule 6: no fingerprint — a held leaver's link, alive while they have no password and are held.
  const unchanged = row.password_fingerprint === null ? !current?.password_hash && (await credentialsHeld(ctx.storage.db, row.user_id)) : sameFingerprint(current?.password_hash, row.password_fingerprint);
  if (!unchanged) return { ok: false, reason: 'password_changed', ...known };
  return { ok: true, link: { requestId: row.request_id, user, expiresAt: Number(row.expires_at), passwordFingerprint: row.password_fingerprint } };
}

/** The WebAuthn challenge binding of a link's ceremony: its request, never the token. */
export function enrolmentBinding(requestId: string): string {
  return `recovery:${requestId}`;
}

/** The passkey creation options for a live link (the page's script asks for them), under rule 7. */
export async function enrolmentOptions(ctx: LinkContext, link: LiveLink): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const binding = enrolmentBinding(link.requestId);
  const options = await registrationOptions(ctx, link.user, binding);
  await keepNewestChallenges(ctx, binding, options.challenge);
  return options;
}

/**
 * Rule 7: deletes the link's challenges but the one just made (`challenge`, as the options carry
 * it) and the `maxLiveChallengesPerLink - 1` newest others, in one statement. What a call leaves is
 * within its own keep-set of that size, so calls sent at once leave no more than the bound once
 * answered, and none deletes the challenge it is about to hand out.
 */
async function keepNewestChallenges(ctx: LinkContext, binding: string, challenge: string): Promise<void> {
  // Stored as its SHA-256 (src/identity/passkeys/challenges.ts): the options carry the challenge itself.
  const made = createHash('sha256').update(challenge, 'utf8').digest('base64url');
  const db = ctx.storage.db;
  const newestOthers = db
    .selectFrom('passkey_challenges')
    .select('id')
    .where('binding', '=', binding)
    .where('purpose', '=', 'register')
    .where('id', '<>', made)
    .orderBy('expires_at', 'desc')
    .orderBy('id', 'desc')
    .limit(maxLiveChallengesPerLink - 1);
  await db
    .deleteFrom('passkey_challenges')
    .where('binding', '=', binding)
    .where('purpose', '=', 'register')
    .where('id', '<>', made)
    .where('id', 'not in', newestOthers)
    .execute();
}

export type EnrolmentOutcome =
  | { ok: true; passkey: Passkey }
  | { ok: false; reason: LinkRefusal }
  | { ok: false; reason: 'wrong_password'; /** The link died with this failure. */ killed: boolean }
  | { ok: false; reason: 'registration_failed'; message: string };

/**
 * Enrols a passkey through a link: the link live (readEnrolmentLink), the password right and
 * unchanged since the approval (rule 3), then the registration with the link's single use in its
 * transaction (rule 4).
 */
export async function enrolThroughLink(
  ctx: LinkContext,
  input: { token: string; password: string; name: string; credential: string | undefined; sourceAddress: string; requestId?: string },
): Promise<EnrolmentOutcome> {
  const state = await readEnrolmentLink(ctx, input.token);
  if (!state.ok) {
    await refused(ctx, state.reason, input, state, state.cause !== undefined ? { cause: state.cause } : {});
    return { ok: false, reason: state.reason };
  }
  const { link } = state;
  // Rule 3's count holds for guesses sent at once too: each takes its place before its password is checked.
  if (!(await reserveAttempt(ctx, link.requestId))) {
    // Killed or used meanwhile, by the attempts that took the places first: said as the link says it now.
    const now = await readEnrolmentLink(ctx, input.token);
    const reason: LinkRefusal = now.ok ? 'unknown' : now.reason;
    await refused(ctx, reason, input, { requestId: link.requestId, userId: link.user.id }, !now.ok && now.cause !== undefined ? { cause: now.cause } : {});
    return { ok: false, reason };
  }
  const held = await passwordHolds(ctx, link, input.password);
  if (held.ok && held.hash !== undefined) await giveBackAttempt(ctx, link.requestId);
  if (!held.ok || held.hash === undefined) {
    const now = ctx.clock.now();
    const after = await ctx.storage.db.selectFrom('recovery_links').select('failures').where('request_id', '=', link.requestId).executeTakeFirst();
    const killed = Number(after?.failures ?? maxLinkFailures) >= maxLinkFailures;
    await refused(ctx, 'wrong_password', input, { requestId: link.requestId, userId: link.user.id }, { failures: Number(after?.failures ?? 0), killed, at: now });
    return { ok: false, reason: 'wrong_password', killed };
  }
  const spent = 'recovery_link_spent';
  const changed = 'recovery_password_changed';
  const hash = held.hash;
  const lifted = await credentialsHeld(ctx.storage.db, link.user.id);
  const enrolled: AuditEvent = {
    type: 'recovery.enrolled',
    txn: link.requestId,
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    actor: link.user.id,
    subject: link.user.id,
    details: { request_id: link.requestId, source_address: input.sourceAddress, ...(lifted ? { credential_hold_lifted: true } : {}) },
  };
  try {
    const outcome = await registerPasskey(ctx, {
      person: link.user,
      name: input.name,
      credential: input.credential,
      binding: enrolmentBinding(link.requestId),
      // The evidence of the recovery (`audit export --txn <request id>`) names the passkey it enrolled.
      txn: link.requestId,
      sourceAddress: input.sourceAddress,
      ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
      within(flight, now) {
        const db = ctx.storage.db;
        // Once, while it lives: two enrolments racing with one link cannot both land.
        void flight.run(
          db.updateTable('recovery_links').set({ used_at: now }).where('request_id', '=', link.requestId).where('used_at', 'is', null).where('expires_at', '>', now).where('failures', '<', maxLinkFailures),
          { rows: 1, otherwise: spent },
        );
        // The password still the one checked above: a reset racing with this enrolment voids it.
        void flight.run(
          db.updateTable('users').set({ password_hash: hash }).where('id', '=', link.user.id).where('password_hash', hash === null ? 'is' : '=', hash),
          { rows: 1, otherwise: changed },
        );
        // Rule 6: the hold goes with this enrolment — and a link without a password works only on a hold still there.
        void flight.run(db.deleteFrom('credential_holds').where('user_id', '=', link.user.id), hash === null ? { rows: 1, otherwise: changed } : undefined);
        void flight.run(db.updateTable('approval_requests').set({ status: 'consumed', consumed_at: now }).where('id', '=', link.requestId).where('status', '=', 'approved'), { rows: 1, otherwise: spent });
        addNotice(ctx, flight, link.user.id, 'recovery_used', { source_address: input.sourceAddress }, now);
        // The passkey itself is named by `passkey.registered`, in the same transaction.
        return [enrolled];
      },
    });
    if (!outcome.ok) return { ok: false, reason: 'registration_failed', message: outcome.message };
    return { ok: true, passkey: outcome.passkey };
  } catch (error) {
    if (refusedFor(error, changed)) {
      await refused(ctx, 'password_changed', input, { requestId: link.requestId, userId: link.user.id });
      return { ok: false, reason: 'password_changed' };
    }
    if (!refusedFor(error, spent)) throw error;
    await refused(ctx, 'used', input, { requestId: link.requestId, userId: link.user.id });
    return { ok: false, reason: 'used' };
  }
}

/**
 * Counts an attempt on the link as a failure before its password is checked, in one conditional
 * update: false when `maxLinkFailures` are counted already (or the link was used) — so guesses sent
 * in parallel, which all read the link alive, are checked `maxLinkFailures` at most. A right
 * password gives its place back (giveBackAttempt).
 */
async function reserveAttempt(ctx: LinkContext, requestId: string): Promise<boolean> {
  const result = await ctx.storage.db
    .updateTable('recovery_links')
    .set((eb) => ({ failures: eb('failures', '+', 1) }))
    .where('request_id', '=', requestId)
    .where('used_at', 'is', null)
    .where('failures', '<', maxLinkFailures)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The right password was not a failure: its reserved place is given back. */
async function giveBackAttempt(ctx: LinkContext, requestId: string): Promise<void> {
  await ctx.storage.db.updateTable('recovery_links').set((eb) => ({ failures: eb('failures', '-', 1) })).where('request_id', '=', requestId).where('failures', '>', 0).execute();
}

/** The stored password hash is still the one fingerprinted when the request was opened (fails closed on nulls). */
function sameFingerprint(hash: string | null | undefined, fingerprint: string | null): boolean {
  if (!hash || fingerprint === null) return false;
  const now = Buffer.from(passwordFingerprint(hash), 'utf8');
  const then = Buffer.from(fingerprint, 'utf8');
  return now.length === then.length && timingSafeEqual(now, then);
}

/**
 * The typed password is the person's (the hash read now; `hash` is returned so the enrolment's
 * transaction can require it unchanged), and the same one they had when the recovery was opened.
 */
async function passwordHolds(ctx: LinkContext, link: LiveLink, password: string): Promise<{ ok: boolean; hash?: string | null }> {
  const row = await ctx.storage.db.selectFrom('users').select('password_hash').where('id', '=', link.user.id).executeTakeFirst();
  const hash = row?.password_hash;
  // Rule 6: a held leaver's link asks no password (they have none); `null` is required unchanged.
  if (link.passwordFingerprint === null) return row && hash === null ? { ok: true, hash: null } : { ok: false };
  if (!hash || password.length === 0) return { ok: false };
  const unchanged = sameFingerprint(hash, link.passwordFingerprint);
  // Verified even when changed, so the answer's time does not say which.
  const verified = await verifyPassword(password, hash);
  return { ok: unchanged && verified, hash };
}

/**
 * Records `recovery.link_refused` for a refused read of a link — opening its page, posting to it,
 * asking its passkey options — whatever the reason (rule 5): a link of a real request with that
 * request (txn), its person and why (`cause` for an `unknown` one); a token that names no link at
 * all through the refusal limit (src/audit/refusals.ts: anyone can try one, so past 20 a minute per
 * address the rest are counted). Never the token.
 */
export async function recordLinkRefusal(ctx: LinkContext & Pick<Context, 'log'>, state: LinkState, input: { sourceAddress: string; requestId: string }): Promise<void> {
  if (state.ok) return;
  if (state.requestId !== undefined) {
    await refused(ctx, state.reason, input, state, state.cause !== undefined ? { cause: state.cause } : {});
    return;
  }
  await recordRefusal(ctx, {
    type: 'recovery.link_refused',
    requestId: input.requestId,
    address: input.sourceAddress,
    error: 'not_found',
    reason: state.reason,
    decided: true,
    details: { source_address: input.sourceAddress },
  });
}

async function refused(
  ctx: LinkContext,
  reason: LinkRefusal | 'wrong_password',
  input: { sourceAddress: string; requestId?: string },
  known: { requestId?: string; userId?: string },
  extra: Record<string, unknown> = {},
): Promise<void> {
  await ctx.audit.record({
    type: 'recovery.link_refused',
    ...(known.requestId !== undefined ? { txn: known.requestId } : {}),
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    ...(known.userId !== undefined ? { subject: known.userId } : {}),
    decision: { allow: false, reasons: [reason] },
    details: { ...(known.requestId !== undefined ? { request_id: known.requestId } : {}), source_address: input.sourceAddress, ...extra },
  });
}
