import type { Context } from '../context.ts';
import { formatAmount } from '../authorization/authorization-details.ts';
import { isoTime } from './instant.ts';
import { endOf, isDue, observeExpiry, readVersion, type MandateVersion } from './store.ts';
import { canonicalAmount, compareAmounts, partyDocument, type Party } from './terms.ts';
import { describeWindow, isWithinWindow, windowEnd } from './time-window.ts';

/** What a token carries (`mandate` claim, DESIGN §4) and an audit event names: a mandate version. */
export interface MandateRef {
  id: string;
  v: number;
}

/** One action (or a token's issuance) to check against a mandate. Absent dimensions are not checked. */
export interface CoverageRequest {
  /** Business-verb scopes the action needs; each must be granted by the mandate. */
  scopes: readonly string[];
  /**
   * Who is asking, as every party they are (a client and its owner's LEI; a user and their firm's
   * LEI): the mandate's grantee must be one of them. Absent: not checked.
   */
  grantees?: readonly Party[];
  /** The product class of the instrument (`fx`, `bond`), as the mandate names classes. */
  instrumentClass?: string;
  /** ISO 10383 MIC. */
  venue?: string;
  /** The action's notional; compared exactly, in the mandate's currency only (no conversion). */
  notional?: { amount: string | number; currency: string };
  region?: string;
  /** When the action happens (effective dates and the time window are checked at this instant). */
  at: Date;
}

export type Coverage = { ok: true } | { ok: false; reason: string };

type Deps = Pick<Context, 'storage' | 'clock' | 'audit'>;

/**
 * True when the mandate version `ref` is in force at `at`: it is the mandate's current version,
 * accepted (active), not revoked, not superseded by an amendment, and `at` is within
 * [effective_from, effective_to). Introspection asks this for every token with a `mandate` claim,
 * so revoking or amending a mandate makes its tokens inactive at once. One read of one row; the
 * first check that finds a passed effective_to records `mandate.expired`. Call it outside a
 * transaction (it may write one of its own).
 */
export async function isMandateActive(ctx: Deps, ref: MandateRef, at: Date): Promise<boolean> {
  return (await inForce(ctx, ref, at.getTime())).ok;
}

/**
 * Whether the mandate version `ref` covers a request: in force at `request.at` (as
 * `isMandateActive`), every scope granted, and each dimension the request states within the
 * mandate's constraints — instrument class, venue, region, notional (same currency, not above the
 * maximum), and the time window at `request.at`. A dimension the request leaves out is not
 * checked: at token issuance the order is not known yet, and the token carries the mandate
 * reference so that each order can be checked against the mandate when it is known.
 * The reason names what failed, for the caller's audit event and error description.
 */
export async function mandateCovers(ctx: Deps, ref: MandateRef, request: CoverageRequest): Promise<Coverage> {
  const found = await inForce(ctx, ref, request.at.getTime());
  return found.ok ? termsCover(found.version, request) : found;
}

/**
 * `mandateCovers` for a version the caller has just read (a mandate's current version, or
 * `mandateInForce`'s): the same checks, without reading it again.
 */
export async function versionCovers(ctx: Deps, version: MandateVersion, request: CoverageRequest): Promise<Coverage> {
  const found = await versionInForce(ctx, version, request.at.getTime());
  return found.ok ? termsCover(version, request) : found;
}

/** The checks of `mandateCovers` on the terms of a version in force. */
function termsCover(version: MandateVersion, request: CoverageRequest): Coverage {
  const at = request.at.getTime();
  const { terms } = version;
  const c = terms.constraints;
  const name = `mandate ${version.id} v${version.version}`;
  if (request.grantees !== undefined && !request.grantees.some((p) => p.kind === terms.grantee.kind && p.id === terms.grantee.id)) {
    const [key] = Object.keys(partyDocument(terms.grantee));
    return { ok: false, reason: `${name} is granted to another ${key === 'client_id' ? 'client' : key === 'lei' ? 'legal entity' : 'user'}` };
  }
  const missing = request.scopes.filter((s) => !terms.scopes.includes(s));
  if (missing.length > 0) return { ok: false, reason: `${name} does not grant ${missing.join(' ')}` };
  if (c.instrument_classes && request.instrumentClass !== undefined && !c.instrument_classes.includes(request.instrumentClass)) {
    return { ok: false, reason: `${name} does not cover instrument class ${request.instrumentClass}` };
  }
  if (c.venues && request.venue !== undefined && !c.venues.includes(request.venue)) {
    return { ok: false, reason: `${name} does not cover venue ${request.venue}` };
  }
  if (c.regions && request.region !== undefined && !c.regions.includes(request.region)) {
    return { ok: false, reason: `${name} does not cover region ${request.region}` };
  }
  if (c.max_notional && request.notional !== undefined) {
    const max = c.max_notional;
    if (request.notional.currency !== max.currency) {
      return { ok: false, reason: `${name} limits notional in ${max.currency}, not ${String(request.notional.currency)}` };
    }
    const amount = canonicalAmount(request.notional.amount);
    if (amount === undefined) return { ok: false, reason: 'the notional is not a positive decimal amount' };
    if (compareAmounts(amount, max.amount) > 0) {
      return { ok: false, reason: `notional ${max.currency} ${formatAmount(amount)} is above the ${max.currency} ${formatAmount(max.amount)} of ${name}` };
    }
  }
  if (c.time_window && !isWithinWindow(c.time_window, at)) {
    return { ok: false, reason: `${isoTime(at)} is outside the time window of ${name} (${describeWindow(c.time_window)})` };
  }
  return { ok: true };
}

/**
 * Until when (epoch ms) the version covers what is done under it from `at` on: its end (`endOf`:
 * effective_to, or the reassignment deadline), or sooner the close of the stretch of its time
 * window that contains `at` (`windowEnd`; `at` itself outside the window); null when nothing ends
 * it. The one rule for how long a token issued under the version at `at` lives
 * (src/tokens/issue.ts), so that a JWT a resource server verifies locally is not used outside the
 * dates or hours the grantor allowed. Reads nothing; the window's arithmetic only when it has one.
 */
export function coverEndsAt(version: Pick<MandateVersion, 'terms'> & { reassignBy?: number | null }, at: number): number | null {
  const end = endOf(version);
  const window = version.terms.constraints.time_window;
  if (!window) return end;
  const closes = windowEnd(window, at);
  const soonest = end === null ? closes : Math.min(end, closes);
  return Number.isFinite(soonest) ? soonest : null;
}

/** The version `ref` names when it is in force at `at` (for callers that need its terms), else undefined. */
export async function mandateInForce(ctx: Deps, ref: MandateRef, at: Date): Promise<MandateVersion | undefined> {
  const found = await inForce(ctx, ref, at.getTime());
  return found.ok ? found.version : undefined;
}

async function inForce(ctx: Deps, ref: MandateRef, at: number): Promise<{ ok: true; version: MandateVersion } | { ok: false; reason: string }> {
  if (!isRef(ref)) return { ok: false, reason: 'not a mandate reference {id, v}' };
  const version = await readVersion(ctx.storage.db, ref.id, ref.v);
  if (!version) return { ok: false, reason: `mandate ${ref.id} v${ref.v} does not exist` };
  return versionInForce(ctx, version, at);
}

async function versionInForce(ctx: Deps, version: MandateVersion, at: number): Promise<{ ok: true; version: MandateVersion } | { ok: false; reason: string }> {
  if (!Number.isFinite(at)) return { ok: false, reason: 'no valid time to check the mandate at' };
  const name = `mandate ${version.id} v${version.version}`;
  if (isDue(version, ctx.clock.now())) {
    await observeExpiry(ctx, version.id, version.version);
    return { ok: false, reason: `${name} expired at ${isoTime(endOf(version)!)}` };
  }
  if (version.status !== 'active') return { ok: false, reason: `${name} is ${version.status}` };
  if (at < version.terms.effectiveFrom) return { ok: false, reason: `${name} is not in effect before ${isoTime(version.terms.effectiveFrom)}` };
  if (version.terms.effectiveTo !== null && at >= version.terms.effectiveTo) {
    return { ok: false, reason: `${name} is not in effect from ${isoTime(version.terms.effectiveTo)}` };
  }
  // The person who granted it left: in force only until the reassignment deadline (src/lifecycle/leaver.ts).
  if (version.reassignBy !== null && at >= version.reassignBy) {
    return { ok: false, reason: `${name} was not reassigned by ${isoTime(version.reassignBy)} after the person who granted it left` };
  }
  return { ok: true, version };
}

/** A well-formed `{id, v}` (a token's claim is checked before it is used in a query). */
export function isRef(ref: unknown): ref is MandateRef {
  if (typeof ref !== 'object' || ref === null) return false;
  const { id, v } = ref as Record<string, unknown>;
  return typeof id === 'string' && id.length > 0 && id.length <= 64 && typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
}
