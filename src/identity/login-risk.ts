import type { AuditEvent } from '../audit/events.ts';
import type { Context } from '../context.ts';
import { riskAuditDetail, type RiskAssessment } from '../risk/assessment.ts';
import { assessRisk, observeRisk, type RiskFacts } from '../risk/engine.ts';
import { riskSignals } from '../risk/signals/index.ts';
import { knowLoginAccount } from '../risk/login-account.ts';
import { alertInsert } from '../signals/alerts.ts';
import type { Flight } from '../storage/flight.ts';
import type { Database } from '../storage/schema.ts';
import { networkOf } from '../risk/network.ts';
import type { SightingKind } from '../risk/sightings.ts';
import { deviceCookie, newDeviceId, presentedDeviceId } from './device-cookie.ts';

/**
 * The risk of a sign-in (issue 16, docs/authentication.md "Risk at sign-in"): the sign-in pages
 * make one per request from what the request shows — its source address, the client, the browser's
 * device cookie — and hand it to the sign-in (password, passkey, second step), which
 * 1. assesses it once the first factor verified, before any session is made (`assess`: moment
 *    `login`, principal the person; src/risk/signals new_device, new_network, recent_failures,
 *    recent_lockout, off_hours and whatever else runs at `login`);
 * 2. applies the outcome: `deny` refuses the sign-in with the message a wrong password or passkey
 *    gets (which signal fired is never shown), audited as `user.login_failed` with `details.risk`
 *    and as `risk.denied`, alerted (`risk.denied`); `step_up` asks for more than a password — a
 *    passkey meets it, a password needs the person's second factor (TOTP, or their passkey instead
 *    when they have no TOTP; someone with neither is refused as for `deny`); `allow` goes on;
 * 3. records the assessment in `user.login_succeeded` (`details.risk`) and with the session
 *    (`sessions.risk`), whose codes and refresh tokens carry its signals into each issuance
 *    (`Issuance.loginRisk`);
 * 4. in the sign-in's own transaction, lets the signals remember this device and network
 *    (`observe`) — never after a refusal or a failure.
 */
export interface SignInRisk {
  /** The request's source address. */
  readonly address: string;
  /**
   * Assesses the sign-in of the person whose account row the sign-in read, their first factor
   * verified; undefined while the engine is switched off (settings `enabled`: nothing assessed,
   * recorded or remembered, no device cookie).
   */
  assess(row: Database['users']): Promise<RiskAssessment | undefined>;
  /**
   * Adds to `flight`, the sign-in's own transaction for `userId` (not yet sent), what the signals
   * remember of it (its device and network, src/risk/signals): written with the sign-in or not at
   * all. `landed` is to be awaited once the flight committed. A failure to prepare them is logged,
   * never the sign-in's (what is not remembered makes the next sign-in look new, never less risky);
   * once added, the upsert is part of the sign-in's transaction, and a database error in it fails
   * the sign-in as any of its statements would (the person tries again: nothing was written).
   */
  observe(userId: string, flight: Flight): Promise<{ landed: Promise<void> }>;
  /**
   * The Set-Cookie that gives the browser its device cookie, once `observe` remembered a new id for
   * it (it presented none that verified): for the response of that successful sign-in.
   */
  readonly setDeviceCookie: string | undefined;
}

/** The risk of a sign-in request (see SignInRisk). */
export function signInRisk(ctx: Context, request: { address: string; clientId?: string | undefined; cookieHeader: string | undefined }): SignInRisk {
  const presented = presentedDeviceId(ctx.identity.deviceCookieKey, request.cookieHeader, ctx.config.issuer);
  // The id this browser gets if the sign-in succeeds: remembered by `observe` with it, so the next
  // sign-in with the new cookie is from a known device.
  const issued = presented === undefined ? newDeviceId() : undefined;
  const facts = (userId: string, deviceId: string | undefined): RiskFacts => ({
    moment: 'login',
    principal: { type: 'User', id: userId },
    address: request.address,
    ...(request.clientId !== undefined ? { clientId: request.clientId } : {}),
    ...(deviceId !== undefined ? { deviceId } : {}),
  });
  let remembered = false;
  return {
    address: request.address,
    async assess(row) {
      if (!(await ctx.risk.settings.get()).enabled) return undefined;
      const seen = facts(row.id, presented);
      knowLoginAccount(seen, row);
      return assessRisk(ctx, seen);
    },
    async observe(userId, flight) {
      try {
        if (!(await ctx.risk.settings.get()).enabled) return { landed: Promise.resolve() };
        const notes = ctx.risk.sightings.notesFor(flight);
        await observeRisk(ctx, facts(userId, presented ?? issued), riskSignals, notes);
        const landed = notes.land().then(() => void (remembered = true));
        // Awaited only after a commit; a flight that failed is its caller's error, not this one's.
        landed.catch(() => undefined);
        return { landed };
      } catch (error) {
        ctx.log.warn({ err: error, userId }, 'the sign-in risk signals could not remember this sign-in');
        return { landed: Promise.resolve() };
      }
    },
    get setDeviceCookie() {
      return remembered && issued !== undefined ? deviceCookie(ctx, issued) : undefined;
    },
  };
}

/**
 * Adds to `flight` (the one that reads the account of a password sign-in) a read of what the
 * sign-in signals will ask about the person (src/risk/sightings.ts, readAheadForUsername): the
 * browser's device, if it presented one (new_device), and the source network (login_new_network),
 * each seen before or not, and whether the person has any device or network history. The signals
 * then find their answers in memory instead of making three more round trips; a signal that asks
 * something else still reads it.
 */
export function readSignInSightingsAhead(ctx: Pick<Context, 'risk' | 'identity' | 'config'>, flight: Flight, request: { username: string; address: string; cookieHeader: string | undefined }): void {
  const device = presentedDeviceId(ctx.identity.deviceCookieKey, request.cookieHeader, ctx.config.issuer);
  const values: { kind: SightingKind; value: string }[] = [{ kind: 'network', value: networkOf(request.address) }];
  if (device !== undefined) values.push({ kind: 'device', value: device });
  ctx.risk.sightings.readAheadForUsername(flight, request.username, values, ['device', 'network']);
}

/** Why a sign-in was refused for its risk, in `user.login_failed` and `risk.denied`. */
export type RiskRefusal = 'risk_denied' | 'risk_step_up_unavailable';

/**
 * A sign-in refused for its risk: the `risk.denied` audit event, and its alert added to `flight`
 * (the transaction that also records the caller's `user.login_failed`), so both exist or neither.
 */
export function riskDenied(
  ctx: Pick<Context, 'storage' | 'clock'>,
  flight: Flight,
  refusal: { reason: RiskRefusal; assessment: RiskAssessment; userId: string; method: 'password' | 'passkey' | 'certificate' | 'upstream'; sourceAddress: string; base: Partial<AuditEvent> },
): AuditEvent {
  const { assessment } = refusal;
  const signals = assessment.signals.map((s) => s.signal);
  void flight.run(
    alertInsert(ctx.storage.db, ctx.clock, {
      type: 'risk.denied',
      subject: refusal.userId,
      data: {
        moment: 'login',
        reason: refusal.reason,
        method: refusal.method,
        score: assessment.score,
        level: assessment.level,
        outcome: assessment.outcome,
        signals,
        source_address: refusal.sourceAddress,
        ...(refusal.base.client ? { client: refusal.base.client } : {}),
      },
    }),
  );
  return {
    type: 'risk.denied',
    ...refusal.base,
    subject: refusal.userId,
    decision: { allow: false, reasons: [refusal.reason, ...signals] },
    details: { moment: 'login', method: refusal.method, risk: riskAuditDetail(assessment), source_address: refusal.sourceAddress },
  };
}
