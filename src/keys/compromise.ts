/**
 * A compromised token-signing key (issue 26 item 1; docs/keys.md "Token-signing keys: compromise").
 * `clearance keys revoke KID --compromised`, or the admin API with a second person's approval or a
 * break-glass activation, ends a key at once instead of letting it age out (`retire` waits until
 * every token it signed has expired). In ONE transaction, holding the signing keys' lock (one
 * change of them at a time: two revocations at once are done one after the other):
 *
 * 1. the key is retired and marked compromised (`retired_at` = `compromised_at` = now, nothing ever
 *    clears them): out of the JWKS, never a verification key (src/tokens/own-jwt.ts asks
 *    KeyStore.verificationKey, which knows only unretired keys), never signing again. Every token it
 *    signed — access tokens at introspection and at every resource of ours, ID tokens as hints,
 *    SETs — is dead from the moment each node's key cache reloads: at once on this process, on
 *    the others when the `keys` generation's change notice arrives (PostgreSQL, milliseconds), else
 *    at their next one-second check. No per-token list is needed, and the hot path stays one
 *    in-memory lookup;
 * 2. when it was the active key, the next one signs now: a staged `next` key is promoted (unless
 *    its own revocation as compromised was asked for: a key in doubt), else a new key is made. Its activation is set a few seconds in the past, so every node signs with it
 *    at once whatever its clock's skew. Before commit the signer is checked: a good key signs (never
 *    none, never a compromised one, never a superseded one again), else a new one is made;
 * 3. the refresh tokens issued with tokens it signed (`refresh_tokens.access_kid`, or for rows older
 *    than that column, created while it signed) are revoked with their whole families (and the
 *    refresh grant refuses any whose tokens a compromised key signed: one a node wrote before it
 *    learned of the revocation);
 * 4. ONE `key.compromised` event says what it ended and who asked and allowed it.
 */
import { sql, type Transaction } from 'kysely';
import { maxTokenLifetimeSeconds, type SigningAlg } from '../config.ts';
import { listPendingApprovalRequests } from '../approvals/requests.ts';
import { isPostgres } from '../audit/dialect.ts';
import type { AuditEvent } from '../audit/events.ts';
import { containsJwt } from '../audit/guard.ts';
import type { Context } from '../context.ts';
import type { Database } from '../storage/schema.ts';
import { bumpGeneration } from '../storage/generations.ts';
import { KeyError, keyFactsOf, keyInfos, type KeyInfo, type KeyState } from './keystore.ts';

/**
 * Why a key cannot be revoked: unknown, already out of the JWKS, changed by someone else meanwhile,
 * or a reason the audit log would refuse (`reason`: the caller's mistake) — each said before anything
 * is written. `interrupted`: something was written, and the caller's transaction must roll back
 * (never expected: the signing keys' lock is held; it guards against a path that takes none).
 */
export class KeyRevocationError extends KeyError {
  readonly code: 'unknown' | 'retired' | 'compromised' | 'changed' | 'reason' | 'interrupted';
  constructor(code: KeyRevocationError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/** Who asked for the revocation and what allowed it. */
export type CompromiseAuthority =
  /** An operator on the command line (database access: no approval asked). */
  | { via: 'cli'; operator: string }
  /** A person or client through the admin API, and the second persons who approved. */
  | { via: 'approval'; requester: string; requesterType: 'user' | 'client'; approvalRequestId: string; approvers: string[] }
  /** An emergency account's token under a break-glass activation in force. */
  | { via: 'break_glass'; client: string; activation: string };

export interface CompromiseInput {
  kid: string;
  reason?: string;
  authority: CompromiseAuthority;
  /** The HTTP request's id, for the event. */
  requestId?: string;
}

export interface CompromiseReport {
  kid: string;
  alg: SigningAlg;
  /** Its state before: active, next, superseded or retirable. */
  previousState: KeyState;
  /** The key that signs from now on, when the revoked one was signing. */
  promoted?: { kid: string; how: 'staged' | 'generated' };
  /** When it signed (ms): [signedFrom, signedUntil); empty for a key that never signed. */
  signedFrom: number;
  signedUntil: number;
  /** Access tokens issued while it signed and within the longest token lifetime (the log's token.issued and token.exchanged): at most this many were still live. */
  accessTokensEndedAtMost: number;
  /** Live refresh tokens issued with its tokens, and their families (every token of each is revoked). */
  refreshTokensRevoked: number;
  refreshFamiliesRevoked: number;
  at: number;
}

/** Longest reason recorded. */
export const maxReasonLength = 500;

/**
 * Why `reason` cannot be recorded, or undefined when it can. The reason goes into the approval
 * request and the `key.compromised` event, and the audit guard (src/audit/guard.ts) refuses a
 * JWT-shaped string, a PEM block or a reference token's handle — so mid-emergency an operator who
 * pastes the leaked token or key as the reason would have the whole revocation rolled back. Said
 * up front instead (400 / exit 2), before anything is written: record where it leaked, not what.
 */
export function reasonProblem(reason: string): string | undefined {
  if (reason.trim().length === 0 || reason.length > maxReasonLength) return `the reason must be 1 to ${maxReasonLength} characters`;
  // Line breaks are fine (a pasted note); other control characters are no reason.
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(reason)) return 'the reason must not contain control characters';
  const secret = 'say where the key or token was found, not what it is: the reason is kept in the audit log, which never holds tokens or keys';
  if (containsJwt(reason)) return `the reason holds a JWT; ${secret}`;
  if (/-----BEGIN [A-Z0-9 ]+-----/.test(reason)) return `the reason holds a PEM block; ${secret}`;
  if (reason.includes('clr_at_')) return `the reason holds a reference token; ${secret}`;
  return undefined;
}

/**
 * How far in the past a promoted key's activation is set: more than the clock skew between nodes,
 * so no node, its clock a little behind, finds no key that signs (or an older one) meanwhile.
 */
const promotionSkewMs = 5_000;

/** Families revoked per statement. */
const familiesPerStatement = 500;

/** Why `key` (looked up as `kid`) cannot be revoked, or undefined when it can. */
export function revocationProblem(kid: string, key: KeyInfo | undefined): KeyRevocationError | undefined {
  if (!key) return new KeyRevocationError('unknown', `no signing key with kid "${kid}"`);
  if (key.state === 'compromised') return new KeyRevocationError('compromised', `key "${kid}" was already revoked as compromised at ${new Date(key.compromisedAt!).toISOString()}`);
  if (key.state === 'retired') {
    return new KeyRevocationError('retired', `key "${kid}" is retired: it is no longer published and verifies no token, so there is nothing left to revoke`);
  }
  return undefined;
}

/** The key as it stands in the database now (not a cache), or the reason it cannot be revoked. */
export async function revocableKey(ctx: Pick<Context, 'keys'>, kid: string): Promise<KeyInfo> {
  ctx.keys.invalidate();
  const key = (await ctx.keys.list()).find((k) => k.kid === kid);
  const problem = revocationProblem(kid, key);
  if (problem) throw problem;
  return key!;
}

/**
 * Revokes `input.kid` as compromised in its own transaction with its `key.compromised` event, then
 * makes this process's key cache read the database again (the others follow the change notice).
 */
export async function revokeCompromisedKey(ctx: Pick<Context, 'audit' | 'keys' | 'clock' | 'config'>, input: CompromiseInput): Promise<CompromiseReport> {
  try {
    return await ctx.audit.recordWith(async (trx) => {
      const { report, event } = await compromiseIn(ctx, trx, input);
      return { value: report, events: [event] };
    });
  } finally {
    ctx.keys.invalidate();
  }
}

/**
 * The revocation in the caller's transaction (an approval's settlement, or revokeCompromisedKey's):
 * steps 1–3 above, and the `key.compromised` event for the caller to record in that transaction.
 * The caller invalidates `ctx.keys` once it committed. Throws KeyRevocationError, having written
 * nothing, for an unknown, retired or already compromised key or a reason the audit log would
 * refuse; code `interrupted` after writing (the caller's transaction must roll back).
 */
export async function compromiseIn(
  ctx: Pick<Context, 'keys' | 'clock' | 'config'>,
  trx: Transaction<Database>,
  input: CompromiseInput,
): Promise<{ report: CompromiseReport; event: AuditEvent }> {
  if (input.reason !== undefined) {
    const bad = reasonProblem(input.reason);
    if (bad) throw new KeyRevocationError('reason', bad);
  }
  // One change of the signing keys at a time: two revocations at once (the active key and the
  // staged one, from two nodes) must each see what the other did, or both promote a key the other
  // revokes and nothing signs. The same lock as the audit keys' (src/audit/audit-key.ts); on SQLite
  // the transaction's BEGIN IMMEDIATE already makes this process the one writer. Taken before the
  // read, so the read is of the keys as they are (READ COMMITTED: each statement sees the latest commit).
  if (isPostgres(trx)) await sql`lock table signing_keys in exclusive mode`.execute(trx);
  const now = ctx.clock.now();
  const keys = await keysIn(trx, now);
  const supersededBefore = new Set(keys.filter((k) => k.state === 'superseded' || k.state === 'retirable').map((k) => k.kid));

  const key = keys.find((k) => k.kid === input.kid);
  const problem = revocationProblem(input.kid, key);
  if (problem) throw problem;
  const revoked = key!;

  // 1. Out of the JWKS, never verifying or signing again: one conditional update, so of two
  //    revocations at once (CLI and API, two nodes) one does it and the other is told.
  const out = await trx.updateTable('signing_keys').set({ retired_at: now, compromised_at: now }).where('kid', '=', revoked.kid).where('retired_at', 'is', null).executeTakeFirst();
  if (Number(out.numUpdatedRows) !== 1) throw new KeyRevocationError('changed', `key "${revoked.kid}" was retired or revoked meanwhile; see clearance keys list`);

  // 2. The next key signs now, when the revoked one was signing. Strictly after the revoked key's
  //    activation, so no older (superseded) key takes over; a later staged key stays later.
  let promoted: CompromiseReport['promoted'];
  if (revoked.state === 'active') {
    const activatesAt = Math.min(now, Math.max(revoked.activatesAt + 1, now - promotionSkewMs));
    // A staged key someone asked to revoke as compromised is in doubt: never promoted (every admin
    // token would then be signed by a key that vouches for no one, src/keys/compromise-signer.ts).
    let staged: KeyInfo | undefined;
    const doubted: string[] = [];
    for (const candidate of keys.filter((k) => k.state === 'next')) {
      if (await revocationPending(trx, candidate.kid, now)) doubted.push(candidate.kid);
      else staged ??= candidate;
    }
    // Nor does one become the signer later on its own schedule: its activation is moved to just
    // before the new signer's, so it verifies (until its own revocation is decided) but never signs.
    for (const kid of doubted) {
      await trx.updateTable('signing_keys').set({ activates_at: activatesAt - 1 }).where('kid', '=', kid).where('retired_at', 'is', null).where('compromised_at', 'is', null).execute();
    }
    if (staged) {
      const moved = await trx.updateTable('signing_keys').set({ activates_at: activatesAt }).where('kid', '=', staged.kid).where('retired_at', 'is', null).executeTakeFirst();
      // Under the lock nobody retires it meanwhile; if something did, nothing is left half done.
      if (Number(moved.numUpdatedRows) !== 1) throw new KeyRevocationError('interrupted', `the staged key "${staged.kid}" was retired or revoked meanwhile; see clearance keys list`);
      promoted = { kid: staged.kid, how: 'staged' };
    } else {
      promoted = { kid: await ctx.keys.createIn(trx, ctx.config.signingAlg, activatesAt), how: 'generated' };
    }
  }

  // Before this commits, what signs is checked, not assumed: a good key — never compromised, never
  // one a newer key had superseded (its tokens would verify again, and it may be older and weaker).
  // Should anything have left none (a key changed by a path that took no lock), a new one is made.
  const after = await keysIn(trx, now);
  const signerAfter = after.find((k) => k.state === 'active');
  if (!signerAfter || supersededBefore.has(signerAfter.kid)) {
    const newest = Math.max(-Infinity, ...after.filter((k) => k.activatesAt <= now).map((k) => k.activatesAt));
    const activatesAt = Math.min(now, Math.max(newest + 1, now - promotionSkewMs));
    const kid = await ctx.keys.createIn(trx, ctx.config.signingAlg, activatesAt);
    const check = (await keysIn(trx, now)).find((k) => k.state === 'active');
    if (check?.kid !== kid) throw new KeyRevocationError('interrupted', 'no key could be made to sign after the revocation; nothing was changed: try again');
    promoted = { kid, how: 'generated' };
  }

  // 3. The refresh tokens issued with what it signed: the live ones, and every token of their families.
  const signedFrom = revoked.activatesAt;
  const signedUntil = revoked.state === 'active' ? now : revoked.state === 'next' ? signedFrom : revoked.supersededAt!;
  const live = await trx
    .selectFrom('refresh_tokens')
    .select(['id', 'family_id'])
    .where('state', '=', 'active')
    .where('expires_at', '>', now)
    .where((eb) =>
      eb.or([
        eb('access_kid', '=', revoked.kid),
        // Rows written before migration 0057 name no key: those created while it signed.
        eb.and([eb('access_kid', 'is', null), eb('created_at', '>=', signedFrom), eb('created_at', '<', signedUntil)]),
      ]),
    )
    .execute();
  const families = [...new Set(live.map((row) => row.family_id))];
  for (let i = 0; i < families.length; i += familiesPerStatement) {
    await trx
      .updateTable('refresh_tokens')
      .set({ state: 'revoked' })
      .where('family_id', 'in', families.slice(i, i + familiesPerStatement))
      .where('state', 'in', ['active', 'rotated', 'superseded'])
      .execute();
  }

  // What it ended of the access tokens, which are not stored: those the log says were issued while
  // it signed and could still be unexpired (reference tokens, which no key signs, are counted too).
  const liveFrom = Math.max(signedFrom, now - maxTokenLifetimeSeconds * 1000);
  const issued =
    signedUntil > liveFrom
      ? await trx
          .selectFrom('audit_events')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('time', '>=', liveFrom)
          .where('time', '<', signedUntil)
          .where('type', 'in', ['token.issued', 'token.exchanged'])
          .executeTakeFirst()
      : undefined;

  // Every node's key cache: the change notice of this bump (PostgreSQL), else its next check.
  await bumpGeneration(trx, 'keys');

  const report: CompromiseReport = {
    kid: revoked.kid,
    alg: revoked.alg,
    previousState: revoked.state,
    ...(promoted ? { promoted } : {}),
    signedFrom,
    signedUntil,
    accessTokensEndedAtMost: Number(issued?.n ?? 0),
    refreshTokensRevoked: live.length,
    refreshFamiliesRevoked: families.length,
    at: now,
  };
  return { report, event: compromisedEvent(report, input) };
}

/** Whether a `key_compromise` approval request for `kid` is pending (src/keys/compromise-request.ts), as the transaction sees it. */
async function revocationPending(trx: Transaction<Database>, kid: string, now: number): Promise<boolean> {
  const [pending] = await listPendingApprovalRequests({ db: trx, now }, { kinds: ['key_compromise'], subject: kid, limit: 1 });
  return pending !== undefined;
}

/** Every signing key with its state at `now`, as the transaction sees them (not a cache). */
async function keysIn(trx: Transaction<Database>, now: number): Promise<KeyInfo[]> {
  const rows = await trx
    .selectFrom('signing_keys')
    .select(['kid', 'alg', 'created_at', 'activates_at', 'retired_at', 'compromised_at'])
    .orderBy('activates_at')
    .orderBy('kid')
    .execute();
  return keyInfos(rows.map(keyFactsOf), now);
}

/** The one `key.compromised` event: the key, what it ended, what signs now, who asked and allowed it. */
function compromisedEvent(report: CompromiseReport, input: CompromiseInput): AuditEvent {
  const authority = input.authority;
  const who =
    authority.via === 'cli'
      ? { actor: authority.operator, details: { requested_by: authority.operator } }
      : authority.via === 'approval'
        ? {
            actor: authority.requester,
            txn: authority.approvalRequestId,
            details: { requested_by: authority.requester, requester_type: authority.requesterType, approved_by: authority.approvers, approval_request_id: authority.approvalRequestId },
          }
        : { actor: authority.client, txn: authority.activation, details: { requested_by: authority.client, break_glass: true, break_glass_activation: authority.activation } };
  return {
    type: 'key.compromised',
    subject: report.kid,
    actor: who.actor,
    ...('txn' in who ? { txn: who.txn } : {}),
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    details: {
      kid: report.kid,
      alg: report.alg,
      previous_state: report.previousState,
      ...(input.reason !== undefined ? { reason: input.reason } : {}),
      via: authority.via,
      ...who.details,
      promoted_kid: report.promoted?.kid ?? null,
      ...(report.promoted ? { promoted: report.promoted.how } : {}),
      signed_from: report.signedFrom,
      signed_until: report.signedUntil,
      access_tokens_ended_at_most: report.accessTokensEndedAtMost,
      refresh_tokens_revoked: report.refreshTokensRevoked,
      refresh_families_revoked: report.refreshFamiliesRevoked,
    },
  };
}
