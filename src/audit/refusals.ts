import type { Context } from '../context.ts';
import { containsJwt } from './guard.ts';
import type { AuditEvent, AuditEventType } from './events.ts';

/**
 * Every refusal on the record (docs/audit.md "Refusals"), without letting a flood fill the log.
 *
 * Per source (the client id, or the address when the caller is not authenticated) and per window
 * (CLEARANCE_REFUSAL_AUDIT_WINDOW, 60 s), the first CLEARANCE_REFUSAL_AUDIT_LIMIT (20) refusals
 * are events of their own; the rest are counted, and one `audit.refusals_suppressed` (count,
 * source, window, reason codes) is written when the window is over — at the source's next refusal,
 * at any later refusal on the node (the oldest windows are swept first), or when the source is
 * evicted from the bounded map (at most `maxSources`, oldest first). Nothing is lost silently; a
 * count still pending when a node stops is lost with it (logged at most per window otherwise).
 * Per node: N nodes record at most N × the limit per source and window.
 *
 * Recording never changes the answer: a failure is logged with the request id and the refusal is
 * still answered (fail closed: still refused).
 */
export interface Refusal {
  type: Extract<AuditEventType, 'token.refused' | 'exchange.refused' | 'assertion.refused' | 'introspection.refused' | 'client.registration_refused' | 'upstream.sign_in_refused' | 'upstream.logout_refused' | 'evidence.refused' | 'evidence.counterparty_refused' | 'recovery.link_refused'>;
  requestId: string;
  /** The authenticated client; undefined before authentication (then `address` is the source). */
  client?: string;
  address?: string;
  subject?: string;
  txn?: string;
  /** The OAuth error answered (`invalid_grant`, ...). */
  error: string;
  /** A short reason code (`txn_reused`, `not_entitled`, ...) or the error when none is finer. */
  reason: string;
  details?: Record<string, unknown>;
  /** A refusal that is a decision about a person (an upstream sign-in): `decision.reasons` names why, as a sign-in's event does. */
  decided?: boolean;
}

/** Most sources one node tracks at once. */
export const maxSources = 10_000;

interface Window {
  start: number;
  recorded: number;
  suppressed: number;
  reasons: Set<string>;
}

export class RefusalLimiter {
  readonly #windows = new Map<string, Window>();
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #maxSources: number;

  constructor(limit: number, windowMs: number, sources = maxSources) {
    this.#limit = limit;
    this.#windowMs = windowMs;
    this.#maxSources = sources;
  }

  /**
   * Whether this refusal of `source` is recorded, and the summaries due now (closed windows with
   * suppressed refusals: this source's, the oldest expired ones', an evicted one's).
   */
  admit(source: string, reason: string, now: number): { record: boolean; summaries: Summary[] } {
    const summaries: Summary[] = [];
    let window = this.#windows.get(source);
    if (window && now - window.start >= this.#windowMs) {
      this.#close(source, window, summaries);
      window = undefined;
    }
    // Windows are kept in the order they opened: sweep the expired ones from the front.
    for (const [key, open] of this.#windows) {
      if (now - open.start < this.#windowMs) break;
      this.#close(key, open, summaries);
    }
    if (!window) {
      if (this.#windows.size >= this.#maxSources) {
        const [oldest, open] = this.#windows.entries().next().value!;
        this.#close(oldest, open, summaries);
      }
      window = { start: now, recorded: 0, suppressed: 0, reasons: new Set() };
      this.#windows.set(source, window);
    }
    if (window.recorded < this.#limit) {
      window.recorded++;
      return { record: true, summaries };
    }
    window.suppressed++;
    // Bounded too: at most 32 distinct reason codes named per summary.
    if (window.reasons.size < 32) window.reasons.add(reason);
    return { record: false, summaries };
  }

  /** The summaries of every window that is over (closed now); the rest stay open. */
  sweep(now: number): Summary[] {
    const summaries: Summary[] = [];
    for (const [key, open] of this.#windows) {
      if (now - open.start < this.#windowMs) break;
      this.#close(key, open, summaries);
    }
    return summaries;
  }

  /** Whether a window still holds refusals not recorded (a summary to come). */
  get pending(): boolean {
    for (const open of this.#windows.values()) if (open.suppressed > 0) return true;
    return false;
  }

  #close(source: string, window: Window, summaries: Summary[]): void {
    this.#windows.delete(source);
    if (window.suppressed > 0) summaries.push({ source, count: window.suppressed, from: window.start, to: window.start + this.#windowMs, reasons: [...window.reasons].sort() });
  }
}

export interface Summary {
  source: string;
  count: number;
  from: number;
  to: number;
  reasons: string[];
}

const limiters = new WeakMap<object, RefusalLimiter>();
/** A flush armed for a limiter with suppressed refusals (one timer per limiter, unref'd). */
const armed = new WeakSet<RefusalLimiter>();

function limiterOf(ctx: Pick<Context, 'config' | 'audit'>): RefusalLimiter {
  let limiter = limiters.get(ctx.audit);
  if (!limiter) {
    limiter = new RefusalLimiter(ctx.config.refusalAuditLimit, ctx.config.refusalAuditWindowSeconds * 1000);
    limiters.set(ctx.audit, limiter);
  }
  return limiter;
}

/** Records a refusal (rate limited per source); never throws. */
export async function recordRefusal(ctx: Pick<Context, 'config' | 'audit' | 'clock' | 'log'>, refusal: Refusal): Promise<void> {
  try {
    const source = refusal.client !== undefined ? `client:${refusal.client}` : `address:${refusal.address ?? 'unknown'}`;
    const limiter = limiterOf(ctx);
    const { record, summaries } = limiter.admit(source, refusal.reason, ctx.clock.now());
    const events: AuditEvent[] = summaries.map((s) => summaryEvent(s, refusal.requestId));
    if (record) events.push(eventOf(refusal));
    else armFlush(ctx, limiter);
    await Promise.all(events.map((event) => ctx.audit.record(event)));
  } catch (error) {
    ctx.log.error({ err: error, requestId: refusal.requestId, refusal: refusal.type }, 'a refusal could not be audited; it was still refused');
  }
}

function eventOf(refusal: Refusal): AuditEvent {
  return {
    type: refusal.type,
    requestId: refusal.requestId,
    ...(refusal.client !== undefined ? { actor: refusal.client, client: refusal.client } : {}),
    ...(refusal.subject !== undefined ? { subject: refusal.subject } : {}),
    ...(refusal.txn !== undefined ? { txn: refusal.txn } : {}),
    ...(refusal.decided ? { decision: { allow: false, reasons: [refusal.reason] } } : {}),
    details: { error: refusal.error, reason: refusal.reason, ...(refusal.address !== undefined && refusal.client === undefined ? { address: refusal.address } : {}), ...refusal.details },
  };
}

/** A client-facing description fit for the record: short, and nothing shaped like a token. */
export function safeDescription(description: string | undefined): string | undefined {
  if (description === undefined || description.length > 300 || containsJwt(description)) return undefined;
  return description;
}

/** The reason code of an OAuthError: its `detail` when that is a code (snake_case), else the error. */
export function reasonCode(error: { error: string; detail: string | undefined }): string {
  return error.detail !== undefined && /^[a-z][a-z0-9_]{0,63}$/.test(error.detail) ? error.detail : error.error;
}

const alreadyRecorded = new WeakSet<object>();

/** Marks a refusal its thrower recorded itself (with more detail), so a catch-all does not record it twice. */
export function recorded<E extends object>(error: E): E {
  alreadyRecorded.add(error);
  return error;
}

export function isRecorded(error: object): boolean {
  return alreadyRecorded.has(error);
}

function summaryEvent(s: Summary, requestId?: string): AuditEvent {
  return {
    type: 'audit.refusals_suppressed',
    ...(requestId !== undefined ? { requestId } : {}),
    details: { source: s.source, count: s.count, window_start: s.from, window_end: s.to, reasons: s.reasons },
  };
}

/**
 * Writes the summaries of the windows that are over, with no refusal needed to trigger them: the
 * periodic signal service calls it, and so does a timer each node (cluster workers included) arms
 * when it first holds back a refusal. Never throws.
 */
export async function flushRefusalSummaries(ctx: Pick<Context, 'config' | 'audit' | 'clock' | 'log'>): Promise<number> {
  const limiter = limiters.get(ctx.audit);
  if (!limiter) return 0;
  const summaries = limiter.sweep(ctx.clock.now());
  try {
    await Promise.all(summaries.map((s) => ctx.audit.record(summaryEvent(s))));
  } catch (error) {
    ctx.log.error({ err: error, summaries: summaries.length }, 'refusal summaries could not be audited');
  }
  return summaries.length;
}

function armFlush(ctx: Pick<Context, 'config' | 'audit' | 'clock' | 'log'>, limiter: RefusalLimiter): void {
  if (armed.has(limiter)) return;
  armed.add(limiter);
  const timer = setTimeout(() => {
    armed.delete(limiter);
    void flushRefusalSummaries(ctx).finally(() => {
      if (limiter.pending) armFlush(ctx, limiter);
    });
  }, ctx.config.refusalAuditWindowSeconds * 1000 + 1000);
  timer.unref();
}
