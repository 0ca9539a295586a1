import { createHash } from 'node:crypto';
import type { AuditEvent } from '../audit/events.ts';
import type { AuthorizationDetail } from '../authorization/authorization-details.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import type { DecisionMeta } from '../policy/decide.ts';
import { issuanceEventOf, type Issuance } from '../policy/issuance.ts';
import { destinationStatus, type DestinationStatus } from './address-book.ts';
import { formatAmount, parseAmount } from './amounts.ts';
import { controlsFor, transferControls, type EffectiveControls } from './controls.ts';
import { assetKey, destinationKey, isTransfer, type TransferDetail } from './detail.ts';
import { forgetFirstUse, recordUse, usedBefore } from './destination-uses.ts';
import { sameBeneficiary, screenBookName } from './beneficiary-name.ts';
import { approvalDemandText, approvalsPerDemand, atOrAboveThreshold, type ApprovalDemand } from './thresholds.ts';
import { newHolder, totalScope, transferTotals, TotalsUnavailable } from './totals.ts';

/**
 * Transfers at token issuance (issue 24, docs/transfers.md "Enforcement at issuance"): called by
 * `authorizeIssuance` (src/policy/issuance.ts) right after KYC/AML, before any policy is asked —
 * code, not policy, so no policy set can let a transfer through that these rules refuse. For every
 * `transfer` entry of the request, in this order (every entry is checked before anything is
 * reserved):
 *
 * 1. **source account**: an account of the entity model; its legal entity's controls apply. An
 *    unknown account → invalid_authorization_details (fail closed).
 * 2. **destination** (the address book, src/transfers/address-book.ts, by the destination's key):
 *    not in the book or removed → "is not in the address book"; pending or held for review →
 *    "awaits approval"; cooling down → "is cooling down until <ISO time>"; an IBAN whose book
 *    names its beneficiary: a request naming another → "names another beneficiary than its
 *    address book's", a request naming none → screened by the book's name (./beneficiary-name.ts).
 *    All invalid_authorization_details (RFC 9396 §5). Exempt: an `internal` destination that is an
 *    account of the SAME legal entity (the firm's own accounts are declared in the entity model,
 *    under apply's own review; money that stays in the firm is still held to the threshold, the
 *    totals and the policies below).
 * 3. **approval threshold** (apply's `transfer_controls`, ./thresholds.ts): an amount at or above
 *    the entity's threshold for the asset needs one second person's approval of this transfer —
 *    the amount being the sum of the request's entries from the same source account in the same
 *    asset (`requestSums`), so splitting one transfer into entries does not escape it;
 * 4. **risk holds** (a destination's FIRST use from this account, ./destination-uses.ts — since its
 *    latest removal from the book, if any: one added again is new again): within
 *    `first_use_hold` seconds of its cool-down ending, or from a session whose sign-in fired
 *    `new_device` (src/risk/signals/new-device.ts, the issuance's `loginRisk`) → held: it needs one
 *    second person's approval too. Both (3 and 4) are lifted only by the token's `approvals` (a
 *    CIBA request approved by a second person: src/approvals/four-eyes.ts asks for it); outside it
 *    they are refused with a message saying so.
 * 5. **rolling 24-hour total** per account and asset (./totals.ts), against the daily limit: a
 *    reservation, atomic across nodes; a total that would exceed the limit → refused; the store
 *    not answering → temporarily_unavailable (503, fail closed).
 *
 * Every refusal is one `transfer.refused` event (reason, entry, destination key and id, amount,
 * asset, account, legal entity); the allowed transfers are returned for the token event
 * (`withTransfers`). What this request reserved (and a first use it recorded) is taken back by
 * `release` when the issuance is refused or fails after this step, at any point before its events
 * are durable (the decision point, signing, the grant's own writes: src/tokens/issue.ts) — its
 * own hold only: a reservation it found already counted under the same id stays counted while the
 * token issued before it, or an identical issuance of the txn in parallel, holds it (./totals.ts).
 * Once its token is issued, its holds become the reservations' lasting holds (`release({ issued })`,
 * ./totals.ts `keep`): a refreshed or exchanged token adds no holder for the rest of the window.
 *
 * `forecast` (/bc-authorize's four-eyes question, src/policy/issuance.ts `assessRisk: false`):
 * steps 1–3 only, nothing reserved or recorded but refusals.
 */
export async function enforceTransfers(ctx: Context, issuance: Issuance, meta: DecisionMeta, options: { forecast?: boolean } = {}): Promise<EnforcedTransfers> {
  const entries = transferEntries(issuance.authorizationDetails);
  if (entries.length === 0) return noTransfers;
  const checked: Checked[] = [];
  const sums = requestSums(entries);
  for (const entry of entries) checked.push(await check(ctx, issuance, meta, entry, options.forecast === true, { sums }));
  if (options.forecast) return { transfers: checked.map(summary), release: async () => {} };
  return reserve(ctx, issuance, meta, checked);
}

/** What enforcement let through: the transfers for the token event, and how to take their reservations back. */
export interface EnforcedTransfers {
  /** One per transfer entry, for `details.transfers` of the token event (B1's evidence bundle reads `destination_id`). */
  transfers: TransferRecord[];
  /**
   * Takes back the reservations and first uses (the issuance was refused, or failed, after
   * enforcement: src/tokens/issue.ts `release`). Never throws: what it cannot take back is logged.
   * `keepShared`: the issuance lost to another (a code, refresh token or CIBA request redeemed in
   * parallel; a txn's start), which holds the same reservation ids with its own holds (under a
   * txn; without one, ids of its own): this attempt's holds are let go (kept, they would count
   * until the window ends), the destinations' first uses it recorded are kept — the winner's
   * transfer is that use, with a txn or without.
   * `issued`: the token was issued after all (its events durable, src/tokens/issue.ts
   * `settleIssuance`): nothing is taken back, and the attempt's holds become the reservations'
   * lasting holds (./totals.ts `keep`) — so a token refreshed or exchanged again and again holds
   * its reservation once, not once more per issuance.
   */
  release(options?: ReleaseOptions): Promise<void>;
}

/** How an issuance settles its reservations (`EnforcedTransfers.release`): taken back when it failed, kept when it was issued. */
export interface ReleaseOptions {
  /**
   * Another issuance won the race (a parallel redemption of the same grant, a txn's start) and
   * counts on what this one recorded: this attempt's holds are let go all the same — the winner
   * holds its reservations with its own — but the first uses of its destinations are kept, with a
   * txn or without.
   */
  keepShared?: boolean;
  /** The token was issued: its holds become the reservations' lasting holds; nothing is taken back. */
  issued?: boolean;
}

/** A transfer as the token event records it. */
export interface TransferRecord {
  authorization_details: number;
  transfer_type: string;
  account: string;
  lei: string;
  asset: string;
  /** As requested (a decimal string). */
  amount: string;
  destination_key: string;
  /** The address-book entry and version used; absent for an exempt internal transfer. */
  destination_id?: string;
  destination_version?: number;
  /** An internal transfer between the legal entity's own accounts: not checked against the book. */
  own_account?: true;
  /** What asked for the second person's approval the token carries. */
  approval?: ApprovalDemand[];
  /** The rolling total of the account and asset with this transfer, and its limit (when one is set). */
  daily_total?: string;
  daily_limit?: string;
}

const noTransfers: EnforcedTransfers = Object.freeze({ transfers: [], release: async () => {} });

/**
 * How many second persons must approve a CIBA request carrying these transfers (src/approvals/
 * four-eyes.ts, asked at /bc-authorize): one when any entry is at or above its threshold or in its
 * first-use hold, else none. A transfer that can never be issued (unknown destination, awaiting
 * approval, cooling down, unknown account) is refused now, recorded, so nobody is asked to approve it.
 */
export async function transferApprovalsNeeded(ctx: Context, issuance: Issuance): Promise<{ approvals: number; policies: string[] }> {
  const entries = transferEntries(issuance.authorizationDetails);
  if (entries.length === 0) return { approvals: 0, policies: [] };
  const meta: DecisionMeta = { requestId: issuance.requestId, caller: issuance.clientId, via: issuance.grantType, ...(issuance.txn ? { txn: issuance.txn } : {}) };
  const demands = new Set<ApprovalDemand>();
  const sums = requestSums(entries);
  for (const entry of entries) {
    const c = await check(ctx, { ...issuance, approvals: 0 }, meta, entry, true, { askOnly: true, sums });
    c.demands.forEach((d) => demands.add(d));
    // The first-use hold is a matter of time: asked now, as it stands — only while it lasts, as at the token endpoint (check, step 4).
    const now = ctx.clock.now();
    if (c.firstUseHoldUntil !== undefined && now < c.firstUseHoldUntil && !(await usedBefore(ctx.storage.db, c.account, c.key, now, c.status?.removedAt))) demands.add('transfer-first-use-hold');
  }
  return { approvals: demands.size > 0 ? approvalsPerDemand : 0, policies: [...demands].sort() };
}

/** The token event with the transfers it carries in `details.transfers`. */
export function withTransfers(event: AuditEvent, transfers: readonly TransferRecord[] | undefined): AuditEvent {
  if (!transfers || transfers.length === 0) return event;
  return { ...event, details: { ...event.details, transfers } };
}

// ---- the checks --------------------------------------------------------------------------------

interface Entry {
  index: number;
  detail: TransferDetail;
}

interface Checked {
  entry: Entry;
  account: string;
  lei: string;
  key: string;
  amount: bigint;
  controls: EffectiveControls;
  status?: DestinationStatus;
  ownAccount: boolean;
  demands: ApprovalDemand[];
  /** When the destination's first-use hold ends (its cool-down's end plus the hold), when one applies. */
  firstUseHoldUntil?: number;
}

function transferEntries(details: readonly AuthorizationDetail[]): Entry[] {
  return details.flatMap((detail, index) => (isTransfer(detail) ? [{ index, detail }] : []));
}

/** The key of a request's entries the threshold adds up: the source account and the asset (canonical). */
const sumKey = (d: TransferDetail) => JSON.stringify([d.source_account, assetKey(d.asset)]);

/**
 * The sum of the request's entries per source account and asset (micro-units, rounded up): the
 * approval threshold applies to it, so that one transfer split into several entries of one request
 * (two of 999,999 under a threshold of 1,000,000) is held to the threshold as the whole it is.
 */
function requestSums(entries: readonly Entry[]): Map<string, bigint> {
  const sums = new Map<string, bigint>();
  for (const { detail } of entries) {
    const amount = parseAmount(detail.amount, 'up');
    if (amount === undefined) continue; // refused as an unknown amount by check()
    const key = sumKey(detail);
    sums.set(key, (sums.get(key) ?? 0n) + amount);
  }
  return sums;
}

async function check(ctx: Context, issuance: Issuance, meta: DecisionMeta, entry: Entry, forecast: boolean, mode: { askOnly?: boolean; sums: Map<string, bigint> }): Promise<Checked> {
  const { detail, index } = entry;
  const snapshot = await ctx.entities.snapshot();
  const key = destinationKey(detail.destination);
  const amount = parseAmount(detail.amount, 'up');
  const base = { index, account: detail.source_account, key, asset: detail.asset, amount: String(detail.amount), transferType: detail.transfer_type };
  const owner = snapshot.accounts.get(detail.source_account);
  // 1. The source account's legal entity decides the controls; an account nobody declared is refused (fail closed).
  if (!owner || amount === undefined) {
    throw await refuse(ctx, issuance, meta, { ...base, reason: 'unknown-source-account' }, `authorization_details[${index}]: source account ${detail.source_account} is not an account of any legal entity`);
  }
  const lei = owner.lei;
  const refused = (reason: string, text: string, extra: Record<string, unknown> = {}) => refuse(ctx, issuance, meta, { ...base, lei, reason, ...extra }, text);
  const controls = controlsFor(await transferControls(ctx).get(), lei, detail.source_account, detail.asset);

  // 2. The address book, unless the money stays within the legal entity (an internal transfer to one of its own accounts).
  const destination = detail.destination as { kind: string; account?: string };
  const ownAccount = destination.kind === 'internal' && destination.account !== undefined && snapshot.accounts.get(destination.account)?.lei === lei;
  let status: DestinationStatus | undefined;
  if (!ownAccount) {
    status = await destinationStatus(ctx, { lei, account: detail.source_account, key });
    const where = `destination ${key} ${status.id ? `(${status.id}) ` : ''}`;
    const ids = { ...(status.id ? { destination_id: status.id } : {}), ...(status.version !== undefined ? { destination_version: status.version } : {}), state: status.state };
    switch (status.state) {
      case 'unknown':
      case 'removed':
        throw await refused('destination-not-in-address-book', `authorization_details[${index}]: ${where}is not in the address book of account ${detail.source_account}`, ids);
      case 'pending':
      case 'held_for_review':
        throw await refused('destination-awaits-approval', `authorization_details[${index}]: ${where}of account ${detail.source_account} awaits approval`, ids);
      case 'cooling_down':
        throw await refused('destination-cooling-down', `authorization_details[${index}]: ${where}of account ${detail.source_account} is cooling down until ${new Date(status.usableFrom!).toISOString()}`, { ...ids, usable_from: new Date(status.usableFrom!).toISOString() });
      case 'usable':
        break;
    }
    // 2b. The beneficiary's name, when the book holds one for the IBAN (./beneficiary-name.ts).
    if (status.name !== undefined && detail.destination.kind === 'iban') {
      const named = detail.destination;
      if (named.name !== undefined && !sameBeneficiary(named.name, status.name)) {
        throw await refused('destination-name-mismatch', `authorization_details[${index}]: ${where}of account ${detail.source_account} names another beneficiary than its address book's`, ids);
      }
      // Naming no one: screened by the book's name (the rule's one home, ./beneficiary-name.ts).
      await screenBookName(ctx, issuance, index, status.name);
    }
  }
  const demands: ApprovalDemand[] = [];
  // 3. The approval threshold: one second person per transfer at or above it — this entry with the
  // request's other entries from the same account in the same asset (a split transfer is one).
  const combined = mode.sums.get(sumKey(detail)) ?? amount;
  if (atOrAboveThreshold(controls, combined)) demands.push('transfer-approval-threshold');
  // 4. The risk holds, on a destination's first use from this account (the token endpoint's: they read the session and the time of use).
  const firstUseHoldUntil = status?.usableFrom !== undefined && controls.firstUseHoldSeconds > 0 ? status.usableFrom + controls.firstUseHoldSeconds * 1000 : undefined;
  const checked: Checked = { entry, account: detail.source_account, lei, key, amount, controls, ...(status ? { status } : {}), ownAccount, demands, ...(firstUseHoldUntil !== undefined ? { firstUseHoldUntil } : {}) };
  if (!forecast && !ownAccount) {
    const now = ctx.clock.now();
    // A destination added again after a removal is new again: its uses before the removal do not count.
    const first = !(await usedBefore(ctx.storage.db, detail.source_account, key, now, status?.removedAt));
    if (first && firstUseHoldUntil !== undefined && now < firstUseHoldUntil) demands.push('transfer-first-use-hold');
    if (first && issuance.loginRisk?.some((hit) => hit.signal === 'new_device')) demands.push('transfer-new-device-first-use');
  }
  if (mode.askOnly || demands.length === 0 || (issuance.approvals ?? 0) >= approvalsPerDemand) return checked;
  const demand = demands[0]!;
  const ids = { ...(status?.id ? { destination_id: status.id, destination_version: status.version } : {}), demands };
  const split = combined > amount ? { combined, account: detail.source_account } : {};
  throw await refused(demand, approvalDemandText(index, demand, { amount, asset: detail.asset, destination: key, ...split, ...(controls.approvalThreshold !== undefined ? { threshold: controls.approvalThreshold } : {}), ...(firstUseHoldUntil !== undefined ? { holdUntil: firstUseHoldUntil } : {}) }), {
    ...ids,
    ...(controls.approvalThreshold !== undefined ? { approval_threshold: formatAmount(controls.approvalThreshold) } : {}),
    ...(combined > amount ? { request_total: formatAmount(combined) } : {}),
  });
}

/** 5. The rolling totals: every entry with a daily limit reserved, in order; all taken back when one is refused. */
async function reserve(ctx: Context, issuance: Issuance, meta: DecisionMeta, checked: Checked[]): Promise<EnforcedTransfers> {
  const totals = transferTotals(ctx);
  // What this attempt holds (./totals.ts): the reservations it created and
  // those it found already counted under the same id (the same transfer of the same txn). Releasing
  // lets go of its own holds only: a reservation stays counted while the token issued before, or an
  // identical issuance of the txn running in parallel, still holds it (else a refused exchange, or
  // a parallel twin refused by a policy, would empty the total).
  const reserved: { scope: string; id: string }[] = [];
  // The attempt's own name as a holder: fresh per attempt (./totals.ts `newHolder`).
  const holder = newHolder(issuance.requestId);
  let current: Checked | undefined;
  const firstUses: { account: string; key: string; at: number }[] = [];
  // Never throws: it runs while another error is on its way out, which must stay the answer. What
  // could not be taken back is logged (a reservation then lapses with its 24-hour window).
  const release = async (options: ReleaseOptions = {}) => {
    if (options.issued) {
      // Issued: this attempt's holds join the reservations' lasting hold, so they do not pile up
      // one per refresh or exchange. Not kept (the store failing now): the holder's row or name
      // stays to the end of the window, counted as before — never less.
      const failed = (await Promise.allSettled(reserved.map((r) => totals.keep(r.scope, r.id, holder)))).filter((r) => r.status === 'rejected');
      if (failed.length > 0) ctx.log.warn({ err: (failed[0] as PromiseRejectedResult).reason, requestId: issuance.requestId }, 'transfers: an issued token\'s holds could not all be made lasting; they stay counted until their window ends');
      return;
    }
    // Its own holds always go: a reservation another issuance counts on (the parallel redemption
    // that won, same txn and entries) stays counted by that issuance's hold (./totals.ts), and a
    // hold kept here would stay until the window ends. The first uses it recorded are kept then,
    // with a txn or without: a use is the account's and destination's, not the txn's, and the
    // winner's transfer to the same destinations is that use: it found this attempt's record, or
    // shares it (a first use in the same millisecond), and has no other to stand for it.
    const forget = options.keepShared ? [] : firstUses;
    const failed = (await Promise.allSettled([
      ...reserved.map((r) => totals.release(r.scope, r.id, holder)),
      ...forget.map((u) => forgetFirstUse(ctx.storage.db, u.account, u.key, u.at)),
    ])).filter((r) => r.status === 'rejected');
    if (failed.length > 0) ctx.log.warn({ err: (failed[0] as PromiseRejectedResult).reason, requestId: issuance.requestId }, 'transfers: a refused issuance\'s reservations could not all be taken back');
  };
  const records: TransferRecord[] = [];
  try {
    for (const c of checked) {
      current = c;
      const record = summary(c);
      const limit = c.controls.dailyLimit;
      if (limit !== undefined) {
        const scope = totalScope(c.lei, c.account, c.entry.detail.asset);
        const now = ctx.clock.now();
        const id = reservationId(issuance, c);
        const result = c.amount > limit ? { reserved: false, created: false, total: await totals.total(scope, now) } : await totals.reserve({ scope, id, holder, amount: c.amount, limit, now });
        if (!result.reserved) {
          throw await refuse(
            ctx,
            issuance,
            meta,
            { ...baseOf(c), reason: 'daily-limit', daily_total: formatAmount(result.total), daily_limit: formatAmount(limit) },
            `authorization_details[${c.entry.index}]: ${formatAmount(c.amount)} ${c.entry.detail.asset} from account ${c.account} would bring its rolling 24-hour total to ${formatAmount(result.total + c.amount)} ${c.entry.detail.asset}, above its limit of ${formatAmount(limit)}`,
          );
        }
        reserved.push({ scope, id });
        record.daily_total = formatAmount(result.total + c.amount);
        record.daily_limit = formatAmount(limit);
      }
      records.push(record);
    }
    const now = ctx.clock.now();
    for (const c of checked) {
      if (c.ownAccount) continue;
      if (await recordUse(ctx.storage.db, c.account, c.key, now, c.status?.removedAt)) firstUses.push({ account: c.account, key: c.key, at: now });
    }
  } catch (error) {
    await release();
    if (error instanceof TotalsUnavailable) {
      // Fail closed: without the shared total no node can know the account's limit holds.
      const c = current ?? checked[0]!;
      throw await refuse(ctx, issuance, meta, { ...baseOf(c), reason: 'totals-unavailable' }, 'the rolling transfer totals cannot be checked at present; try again shortly', { error: 'temporarily_unavailable', detail: error.message });
    }
    throw error;
  }
  return { transfers: records, release };
}

/** The reservation's id: the same transfer under the same txn (a refreshed or exchanged token) is counted once. */
function reservationId(issuance: Issuance, c: Checked): string {
  const d = c.entry.detail;
  const of = issuance.txn !== undefined ? `txn:${issuance.txn}` : `request:${issuance.requestId}`;
  return createHash('sha256').update(JSON.stringify([of, c.entry.index, d.transfer_type, c.account, d.asset, c.amount.toString(), c.key])).digest('base64url').slice(0, 32);
}

function summary(c: Checked): TransferRecord {
  const d = c.entry.detail;
  return {
    authorization_details: c.entry.index,
    transfer_type: d.transfer_type,
    account: c.account,
    lei: c.lei,
    asset: d.asset,
    amount: String(d.amount),
    destination_key: c.key,
    ...(c.status?.id ? { destination_id: c.status.id } : {}),
    ...(c.status?.version !== undefined ? { destination_version: c.status.version } : {}),
    ...(c.ownAccount ? { own_account: true as const } : {}),
    ...(c.demands.length > 0 ? { approval: [...c.demands] } : {}),
  };
}

function baseOf(c: Checked) {
  return {
    index: c.entry.index,
    account: c.account,
    lei: c.lei,
    key: c.key,
    asset: c.entry.detail.asset,
    amount: String(c.entry.detail.amount),
    transferType: c.entry.detail.transfer_type,
    ...(c.status?.id ? { destination_id: c.status.id } : {}),
  };
}

interface RefusalFacts {
  reason: string;
  index: number;
  account: string;
  lei?: string;
  key: string;
  asset: string;
  amount: string;
  transferType: string;
  [extra: string]: unknown;
}

/** Records `transfer.refused` and returns the error: invalid_authorization_details (RFC 9396 §5), or 503 when the totals cannot be checked. */
async function refuse(ctx: Context, issuance: Issuance, meta: DecisionMeta, facts: RefusalFacts, text: string, options: { error?: 'temporarily_unavailable'; detail?: string } = {}): Promise<OAuthError> {
  const { reason, index, account, lei, key, asset, amount, transferType, ...extra } = facts;
  await ctx.audit.record(
    issuanceEventOf('transfer.refused', issuance, meta, { allow: false, reasons: [reason] }, {
      via: issuance.grantType,
      reason,
      authorization_details: index,
      transfer_type: transferType,
      account,
      ...(lei !== undefined ? { lei } : {}),
      asset,
      amount,
      destination_key: key,
      ...extra,
    }),
  );
  if (options.error === 'temporarily_unavailable') {
    // RFC 6749 §4.1.2.1 / §5.2 use: the server cannot answer now; the client may try again.
    return new OAuthError('temporarily_unavailable', text, { headers: { 'Retry-After': '5' }, ...(options.detail ? { detail: options.detail } : {}) });
  }
  return new OAuthError('invalid_authorization_details', text);
}
