/** Time source, injectable so tests can move time (key rotation, expiry) without sleeping. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to; for tests. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start = Date.now()) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  set(ms: number): void {
    this.#now = ms;
  }
}

/** Whole seconds since the epoch, as JWT NumericDate wants (RFC 7519 §2). */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}

/**
 * True while `now` is less than `spanMs` after `since`, and not before it. A remembered answer
 * or a paced task asks this rather than `now - since < spanMs`: when the wall clock steps back (an
 * NTP step, a VM resumed from a snapshot) that difference goes negative and the span would last
 * the step longer — a cache would keep answering without checking for changes, however long the
 * step. Stepped back, the span is over instead.
 */
export function withinSpan(now: number, since: number, spanMs: number): boolean {
  return now >= since && now - since < spanMs;
}
