import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { withinSpan, type Clock } from '../../clock.ts';
import { nodeId } from '../../log.ts';
import type { Database } from '../../storage/schema.ts';
import type { Baseline } from './baselines.ts';
import { anomalyClasses, defaultAnomalySettings, type AnomalyClass, type AnomalySettingsSource } from './settings.ts';

/** Whom activity is counted for: a person (by user id) or a client (by client_id). */
export interface ActivePrincipal {
  type: 'User' | 'Client';
  id: string;
}

export type ActivityKind = 'token' | 'login';

/** A principal's activity in the current window, across nodes as far as this node knows. */
export interface CurrentActivity {
  tokens: number;
  logins: number;
  windowStart: number;
  windowMs: number;
}

/** Distinct audiences remembered per principal and window (more still count as this many). */
export const maxAudiences = 100;

/** How often a node writes its counts (and reads the other nodes' and the baselines). */
export const defaultFlushEveryMs = 5000;

/** The start of the window `at` falls in: windows are aligned on multiples of their length. */
export function windowStartOf(at: number, windowMs: number): number {
  return Math.floor(at / windowMs) * windowMs;
}

export function principalKey(principal: ActivePrincipal): string {
  return `${principal.type}:${principal.id}`;
}

interface Tally {
  principal: ActivePrincipal;
  windowStart: number;
  windowMs: number;
  tokens: number;
  logins: number;
  audiences: Set<string>;
  /** Changed since it was last written. */
  dirty: boolean;
}

/**
 * Activity counting (docs/risk.md "Baselines and anomalies"): per principal and evaluation window,
 * the tokens issued, the logins made and the distinct audiences of the tokens. Counted in memory on
 * the request path (`count`: no round trip, no await); every `flushEveryMs` (and at `close`) the node
 * writes its running totals, one row per window, principal and node (an upsert of absolute values:
 * a retried write never counts twice), so the evaluation pass (./evaluate.ts) sums every node's
 * rows. A node that stops cleanly loses nothing; a node that crashes loses what it counted since its
 * last flush (at most `flushEveryMs` of its traffic).
 *
 * The same flush reads what the `velocity` signal needs, so the signal costs no round trip either:
 * the other nodes' counts for the current window (as they last flushed them) and the baselines of
 * the principals active here (refreshed once per window).
 */
export class ActivityCounter {
  /** This counter's node in `risk_activity` (two contexts in one process are two nodes). */
  readonly node = `${nodeId}/${randomBytes(4).toString('hex')}`;
  readonly flushEveryMs: number;
  readonly #db: Kysely<Database>;
  readonly #clock: Clock;
  readonly #settings: AnomalySettingsSource;
  readonly #log: Logger | undefined;
  /** The window length in force, as of the last flush (the request path never waits for it). */
  #windowMs = defaultAnomalySettings.windowMs;
  readonly #tallies = new Map<string, Tally>();
  #others: { windowStart: number; windowMs: number; counts: Map<string, { tokens: number; logins: number }> } = { windowStart: -1, windowMs: 0, counts: new Map() };
  #baselines = new Map<string, { readAt: number; metrics: Partial<Record<AnomalyClass, Baseline>> }>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(db: Kysely<Database>, clock: Clock, settings: AnomalySettingsSource, options: { log?: Logger; flushEveryMs?: number } = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#settings = settings;
    this.#log = options.log;
    this.flushEveryMs = options.flushEveryMs ?? defaultFlushEveryMs;
  }

  /** Counts one token or login of `principal` now (a token with its audience). Synchronous: the request path's only cost. */
  count(principal: ActivePrincipal, kind: ActivityKind, audience?: string): void {
    const windowMs = this.#windowMs;
    const windowStart = windowStartOf(this.#clock.now(), windowMs);
    const key = `${windowMs}|${windowStart}|${principalKey(principal)}`;
    let tally = this.#tallies.get(key);
    if (!tally) {
      tally = { principal: { type: principal.type, id: principal.id }, windowStart, windowMs, tokens: 0, logins: 0, audiences: new Set(), dirty: true };
      this.#tallies.set(key, tally);
    }
    if (kind === 'token') tally.tokens += 1;
    else tally.logins += 1;
    if (audience !== undefined && tally.audiences.size < maxAudiences) tally.audiences.add(audience);
    tally.dirty = true;
    this.#startTimer();
  }

  /**
   * A token issued: counted for the principal it is about and, when that is not the client itself
   * (a person's token, a partner's subject), for the client too — a runaway client shows in its own
   * rate whoever its tokens are for.
   */
  countToken(principal: ActivePrincipal, clientId: string, audience: string): void {
    this.count(principal, 'token', audience);
    if (principal.type !== 'Client' || principal.id !== clientId) this.count({ type: 'Client', id: clientId }, 'token', audience);
  }

  /** The principal's count in the current window: this node's live count plus the other nodes' last flushed counts. */
  current(principal: ActivePrincipal): CurrentActivity {
    const windowMs = this.#windowMs;
    const windowStart = windowStartOf(this.#clock.now(), windowMs);
    const key = principalKey(principal);
    const mine = this.#tallies.get(`${windowMs}|${windowStart}|${key}`);
    const others = this.#others.windowStart === windowStart && this.#others.windowMs === windowMs ? this.#others.counts.get(key) : undefined;
    return { tokens: (mine?.tokens ?? 0) + (others?.tokens ?? 0), logins: (mine?.logins ?? 0) + (others?.logins ?? 0), windowStart, windowMs };
  }

  /** The principal's baseline for a metric as last read (undefined: none, or not read yet on this node). */
  baseline(principal: ActivePrincipal, kind: AnomalyClass): Baseline | undefined {
    return this.#baselines.get(principalKey(principal))?.metrics[kind];
  }

  /** Writes what changed, then reads the other nodes' current counts and stale baselines. One at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushOnce().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  /** Stops the timer and writes what is left (the server's shutdown, before the database closes). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await this.#flushing;
      await this.flush();
    } catch (error) {
      this.#log?.error({ err: error }, 'writing the last activity counts failed; they are lost');
    }
  }

  #startTimer(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      this.flush().catch((error: unknown) => this.#log?.warn({ err: error }, 'writing activity counts failed; retrying at the next flush'));
    }, this.flushEveryMs);
    this.#timer.unref();
  }

  async #flushOnce(): Promise<void> {
    this.#windowMs = (await this.#settings.get()).windowMs;
    const now = this.#clock.now();
    const dirty = [...this.#tallies.values()].filter((t) => t.dirty);
    for (const tally of dirty) tally.dirty = false;
    try {
      await this.#write(dirty, now);
    } catch (error) {
      for (const tally of dirty) tally.dirty = true;
      throw error;
    }
    // A window that ended and was written is the evaluation pass's now.
    for (const [key, tally] of this.#tallies) if (!tally.dirty && tally.windowStart + tally.windowMs <= now) this.#tallies.delete(key);
    const windowMs = this.#windowMs;
    const windowStart = windowStartOf(now, windowMs);
    const active = [...this.#tallies.values()].filter((t) => t.windowStart === windowStart && t.windowMs === windowMs).map((t) => t.principal);
    if (active.length === 0) return;
    await this.#readOthers(windowStart, windowMs);
    await this.#readBaselines(active, now);
  }

  async #write(tallies: Tally[], now: number): Promise<void> {
    for (let i = 0; i < tallies.length; i += 100) {
      const rows = tallies.slice(i, i + 100).map((t) => ({
        window_start: t.windowStart,
        window_ms: t.windowMs,
        principal_type: t.principal.type,
        principal_id: t.principal.id,
        node: this.node,
        tokens: t.tokens,
        logins: t.logins,
        audiences: JSON.stringify([...t.audiences].sort()),
        updated_at: now,
      }));
      await this.#db
        .insertInto('risk_activity')
        .values(rows)
        .onConflict((oc) =>
          oc.columns(['window_start', 'window_ms', 'principal_type', 'principal_id', 'node']).doUpdateSet((eb) => ({
            tokens: eb.ref('excluded.tokens'),
            logins: eb.ref('excluded.logins'),
            audiences: eb.ref('excluded.audiences'),
            updated_at: eb.ref('excluded.updated_at'),
          })),
        )
        .execute();
    }
  }

  async #readOthers(windowStart: number, windowMs: number): Promise<void> {
    const rows = await this.#db
      .selectFrom('risk_activity')
      .select((eb) => ['principal_type', 'principal_id', eb.fn.sum<number>('tokens').as('tokens'), eb.fn.sum<number>('logins').as('logins')])
      .where('window_start', '=', windowStart)
      .where('window_ms', '=', windowMs)
      .where('node', '<>', this.node)
      .groupBy(['principal_type', 'principal_id'])
      .execute();
    const counts = new Map(rows.map((r) => [`${r.principal_type}:${r.principal_id}`, { tokens: Number(r.tokens), logins: Number(r.logins) }]));
    this.#others = { windowStart, windowMs, counts };
  }

  /** The baselines of the principals active here: kept while fresher than one window, the rest read again. */
  async #readBaselines(active: ActivePrincipal[], now: number): Promise<void> {
    const kept = new Map<string, { readAt: number; metrics: Partial<Record<AnomalyClass, Baseline>> }>();
    const stale: ActivePrincipal[] = [];
    for (const principal of active) {
      const key = principalKey(principal);
      const cached = this.#baselines.get(key);
      if (cached && withinSpan(now, cached.readAt, this.#windowMs)) kept.set(key, cached);
      else stale.push(principal);
    }
    for (let i = 0; i < stale.length; i += 500) {
      const chunk = stale.slice(i, i + 500);
      const wanted = new Set(chunk.map(principalKey));
      for (const key of wanted) kept.set(key, { readAt: now, metrics: {} });
      const rows = await this.#db
        .selectFrom('risk_baselines')
        .selectAll()
        .where('principal_id', 'in', [...new Set(chunk.map((p) => p.id))])
        .execute();
      for (const row of rows) {
        const key = `${row.principal_type}:${row.principal_id}`;
        if (!wanted.has(key) || !anomalyClasses.includes(row.metric as AnomalyClass)) continue;
        kept.get(key)!.metrics[row.metric as AnomalyClass] = { ewma: Number(row.ewma), windows: Number(row.windows), windowMs: Number(row.window_ms), lastWindow: Number(row.last_window) };
      }
    }
    this.#baselines = kept;
  }
}
