/**
 * The failure throttles of one node shared by its worker processes (`clearance start --workers N`).
 *
 * The throttles count in memory (src/clients/authentication/throttle.ts, src/identity/login-throttle.ts),
 * and their guarantees are about one set of counters: "N parallel wrong guesses get at most
 * `limit` 401s", "a source over its limit does not learn that a guess was right". Counters per
 * worker would multiply every limit by the number of workers, and a guesser who opens a new
 * connection per guess is spread over all of them. So the primary process holds the node's one set
 * of counters, and the workers ask it over the cluster's IPC channel:
 *
 * - client authentication, a failure: `settle` is decided in the primary, in one step on its
 *   counters, exactly as in one process; the primary then sends every failure it counted to every
 *   worker, and each keeps a copy of the counters from them;
 * - client authentication, a success: decided in the primary too whenever the worker's copy has a
 *   failure of the source in the window (a success is refused on the same terms as a failure);
 *   a source without any failure cannot be over a limit, and its success is decided in the worker
 *   without a message. The hot path (correct credentials from sources that do not fail) costs no
 *   round trip: measured, a message per request cost more than the throttle protects (an IPC
 *   write is a context switch on a busy machine). The copy lags the primary by the IPC latency, so
 *   a success racing a source's very first failures is decided as if it came before them;
 * - client authentication, `check` (before any work, so a throttled caller costs nothing): the
 *   worker's copy. A lagging copy only costs the work of an attempt that `settle` then refuses;
 * - password login: `reserve` and `refund` are decided in the primary (a login is slow anyway).
 *
 * With `REDIS_URL` the workers count in Redis directly (src/risk/limits/redis-throttles.ts), as
 * every node does; this relay is then their fallback while Redis does not answer, so limits hold
 * per node in an outage. Without Redis it is the node's one store.
 *
 * A new worker gets the failures of the last window first (`history`), so a restarted worker
 * does not forget who is throttled. A worker that cannot reach the primary (it is gone, or does
 * not answer within `replyTimeoutMs`) refuses: fail closed, 429 for client authentication,
 * `throttled` for a login.
 */
import type { Cluster, Worker } from 'node:cluster';
import type { Clock } from '../clock.ts';
import {
  defaultThrottleOptions,
  MemoryAuthFailureThrottle,
  throttleKeyForAddress,
  type AuthAttempt,
  type AuthFailureThrottle,
  type AuthOutcome,
  type ThrottleRefusal,
} from '../clients/authentication/throttle.ts';
import { defaultLoginThrottle, MemoryLoginThrottle, type LoginReservation, type LoginThrottle } from '../identity/login-throttle.ts';
import { BoundedMap } from '../jose/bounded-map.ts';

/** How long a worker waits for the primary's answer before it refuses the attempt. */
export const replyTimeoutMs = 2000;

/** The longest window of the client-authentication counters: how long a failure matters. */
const windowMs = Math.max(
  defaultThrottleOptions.perAddress.windowMs,
  defaultThrottleOptions.perClientAddress.windowMs,
  defaultThrottleOptions.secretGuesses.windowMs,
);

/** Most counted failures the primary keeps for new workers; past it, they ask it for every success for a window. */
const maxHistory = 20_000;

/** Every message of this module carries this tag (the channel is the cluster's, shared with Node's own messages). */
const tag = 'clearance.throttle';

/** A failure the primary counted, at its time. */
interface Counted {
  attempt: AuthAttempt;
  outcome: AuthOutcome;
  at: number;
}

type Request =
  | { tag: typeof tag; op: 'settle'; id: number; attempt: AuthAttempt; outcome: AuthOutcome }
  | { tag: typeof tag; op: 'reserve'; id: number; username: string; address: string }
  | { tag: typeof tag; op: 'refund'; ticket: number };

type Reply =
  | { tag: typeof tag; op: 'reply'; id: number; refusal?: ThrottleRefusal; granted?: boolean; retryAfterMs?: number; ticket?: number }
  /** A failure the primary counted, as it happens. */
  | { tag: typeof tag; op: 'counted'; failure: Counted }
  /** A new worker's welcome: the failures of the last window (`complete` false when some were dropped). */
  | { tag: typeof tag; op: 'history'; failures: Counted[]; complete: boolean };

/** What a worker needs of its IPC channel (`process` in a cluster worker). */
export interface Channel {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  readonly connected: boolean;
}

function isOurs<T>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && (message as { tag?: unknown }).tag === tag;
}

export interface ThrottleService {
  /** Sends a new worker the failures of the last window, before it serves. */
  welcome(worker: Worker): void;
  stop(): void;
}

/** The primary's side: the node's counters, answering every worker of `cluster`. */
export function serveThrottles(cluster: Cluster, clock: Clock): ThrottleService {
  const clientAuthentication = new MemoryAuthFailureThrottle(clock);
  const login = new MemoryLoginThrottle(clock);
  // Failures counted in the last window, oldest first, for workers that start later.
  let history: Counted[] = [];
  let historyCompleteFrom = 0; // failures before this time may be missing from `history`
  // Outstanding login reservations by ticket, oldest first. A reservation whose refund never
  // comes (the worker died mid-login) stays counted, as a failure would; its entry is dropped once
  // the longest login window has passed, when its count has aged out anyway.
  const refunds = new Map<number, { at: number; refund: () => Promise<void> }>();
  const keepRefundsMs = Math.max(defaultLoginThrottle.perAccount.windowMs, defaultLoginThrottle.perAddress.windowMs);
  let nextTicket = 0;

  const send = (worker: Worker, message: Reply) => {
    if (worker.isConnected()) worker.send(message);
  };

  const counted = (failure: Counted) => {
    const cutoff = failure.at - windowMs;
    let drop = 0;
    while (drop < history.length && history[drop]!.at <= cutoff) drop++;
    if (history.length - drop >= maxHistory) {
      drop = history.length - maxHistory + 1;
      historyCompleteFrom = history[drop - 1]!.at + 1;
    }
    if (drop > 0) history = history.slice(drop);
    history.push(failure);
    const message: Reply = { tag, op: 'counted', failure };
    for (const worker of Object.values(cluster.workers ?? {})) if (worker) send(worker, message);
  };

  async function answer(worker: Worker, request: Request): Promise<void> {
    const reply = (fields: Omit<Extract<Reply, { op: 'reply' }>, 'tag' | 'op'>) => send(worker, { tag, op: 'reply', ...fields });
    switch (request.op) {
      case 'settle': {
        // The decision and the count in one step, on the node's counters (throttle.ts).
        const at = clock.now();
        const refusal = await clientAuthentication.settle(request.attempt, request.outcome);
        if (!refusal && request.outcome !== 'success') counted({ attempt: request.attempt, outcome: request.outcome, at });
        return reply(refusal ? { id: request.id, refusal } : { id: request.id });
      }
      case 'reserve': {
        const reservation = await login.reserve(request.username, request.address);
        if (!reservation.granted) return reply({ id: request.id, granted: false, retryAfterMs: reservation.retryAfterMs });
        const now = clock.now();
        for (const [ticket, entry] of refunds) {
          if (now - entry.at < keepRefundsMs && refunds.size < 100_000) break;
          refunds.delete(ticket);
        }
        const ticket = nextTicket++;
        refunds.set(ticket, { at: now, refund: reservation.refund });
        return reply({ id: request.id, granted: true, ticket });
      }
      case 'refund': {
        const entry = refunds.get(request.ticket);
        refunds.delete(request.ticket);
        await entry?.refund();
        return;
      }
    }
  }

  const onMessage = (worker: Worker, message: unknown) => {
    if (!isOurs<Request>(message)) return;
    void answer(worker, message).catch(() => undefined); // a worker gone meanwhile: nobody to answer
  };
  cluster.on('message', onMessage);
  return {
    welcome(worker) {
      const cutoff = clock.now() - windowMs;
      send(worker, { tag, op: 'history', failures: history.filter((f) => f.at > cutoff), complete: historyCompleteFrom <= cutoff });
    },
    stop: () => cluster.off('message', onMessage),
  };
}

/** The worker's side: throttles that ask the primary, for `openContext`. Attach before the primary's welcome arrives. */
export function throttleRelays(channel: Channel, clock: Clock): { clientAuthentication: AuthFailureThrottle; login: LoginThrottle } {
  // The copy of the primary's counters, fed only with the failures it counted, each at its time.
  let replaying: number | undefined;
  const copy = new MemoryAuthFailureThrottle({ now: () => replaying ?? clock.now() });
  // The last failure counted against each source (the throttle's address key), least recent first;
  // twice the throttle's own bound: a source forgotten here is one the primary forgot too.
  const failedAt = new BoundedMap<string, number>(2 * defaultThrottleOptions.maxTracked);
  // Until the history arrives, and for a window after an incomplete one, every success is asked.
  let welcomed = false;
  let askAllUntil = 0;
  const waiting = new Map<number, (reply: Extract<Reply, { op: 'reply' }> | undefined) => void>();
  let nextId = 0;

  const apply = (failure: Counted) => {
    replaying = failure.at;
    try {
      void copy.settle(failure.attempt, failure.outcome); // synchronous inside (throttle.ts)
    } finally {
      replaying = undefined;
    }
    const key = throttleKeyForAddress(failure.attempt.address);
    failedAt.delete(key);
    failedAt.set(key, failure.at);
  };

  channel.on('message', (message) => {
    if (!isOurs<Reply>(message)) return;
    // A failure sent before the history is in the history (both travel in order on this channel).
    if (message.op === 'counted') {
      if (welcomed) apply(message.failure);
      return;
    }
    if (message.op === 'history') {
      for (const failure of message.failures) apply(failure);
      if (!message.complete) askAllUntil = clock.now() + windowMs;
      welcomed = true;
      return;
    }
    const resolve = waiting.get(message.id);
    waiting.delete(message.id);
    resolve?.(message);
  });

  /** The primary's reply, or undefined when it cannot be asked or does not answer in time. */
  function ask(request: Extract<Request, { id: number }>): Promise<Extract<Reply, { op: 'reply' }> | undefined> {
    return new Promise((resolve) => {
      if (!channel.connected) return resolve(undefined);
      const timer = setTimeout(() => {
        waiting.delete(request.id);
        resolve(undefined);
      }, replyTimeoutMs);
      waiting.set(request.id, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      try {
        channel.send(request);
      } catch {
        waiting.delete(request.id);
        clearTimeout(timer);
        resolve(undefined);
      }
    });
  }

  /** True when no failure of the source was counted in the window: no limit can refuse it. */
  const clean = (address: string) => {
    const now = clock.now();
    if (!welcomed || now < askAllUntil) return false;
    const last = failedAt.get(throttleKeyForAddress(address));
    return last === undefined || last <= now - windowMs;
  };

  const unreachable: ThrottleRefusal = { retryAfterMs: 1000, reason: 'the failure throttle (in the primary process) did not answer' };

  return {
    clientAuthentication: {
      check: (attempt) => copy.check(attempt),
      async settle(attempt, outcome) {
        if (outcome === 'success' && clean(attempt.address)) return undefined;
        const reply = await ask({ tag, op: 'settle', id: nextId++, attempt: plainAttempt(attempt), outcome });
        return reply ? reply.refusal : unreachable;
      },
    },
    login: {
      async reserve(username, address): Promise<LoginReservation> {
        const reply = await ask({ tag, op: 'reserve', id: nextId++, username, address });
        if (!reply) return { granted: false, retryAfterMs: unreachable.retryAfterMs };
        if (!reply.granted || reply.ticket === undefined) return { granted: false, retryAfterMs: reply.retryAfterMs ?? unreachable.retryAfterMs };
        const ticket = reply.ticket;
        return {
          granted: true,
          async refund() {
            // Lost if the primary is gone: the attempt then stays counted, which errs on the safe side.
            try {
              if (channel.connected) channel.send({ tag, op: 'refund', ticket } satisfies Request);
            } catch {
              // the channel closed meanwhile
            }
          },
        };
      },
    },
  };
}

/** The attempt's fields only (an attempt object may carry more than the IPC message needs). */
function plainAttempt(attempt: AuthAttempt): AuthAttempt {
  return attempt.clientId === undefined
    ? { address: attempt.address, secret: attempt.secret }
    : { address: attempt.address, clientId: attempt.clientId, secret: attempt.secret };
}
