import type { Context } from '../context.ts';
import { pruneRefreshTokens } from '../tokens/refresh-tokens.ts';
import { pruneCodes } from './codes.ts';
import { pruneInteractions } from './interactions.ts';
import { prunePushedRequests } from './pushed-requests.ts';
import { pruneFirstUses } from '../policy/first-use.ts';
import { pruneCibaRequests } from '../ciba/store.ts';
import { pruneDestinationUses } from '../transfers/destination-uses.ts';
import { pruneTransferTotals } from '../transfers/totals.ts';
import { withinSpan } from '../clock.ts';

/** How often a process prunes expired authorization state. */
const pruneEveryMs = 10 * 60_000;

const lastPrune = new WeakMap<object, number>();
const running = new WeakMap<object, Promise<unknown>>();

/**
 * Deletes expired pushed requests, interactions (auditing the step-ups they waited for as
 * abandoned), codes (a day after expiry: a redeemed code is kept that long to recognise its reuse),
 * refresh tokens, first uses past their retention, and CIBA requests a day after their expiry (their
 * sealed notification tokens with them; the approval request and its evidence stay). At most once per 10 minutes per process and
 * database, off the request's path; a failure waits for the next interval.
 */
export function maybePruneAuthorizationState(ctx: Pick<Context, 'storage' | 'clock' | 'audit' | 'risk'>): void {
  const now = ctx.clock.now();
  const last = lastPrune.get(ctx.storage) ?? -Infinity;
  if (running.has(ctx.storage) || withinSpan(now, last, pruneEveryMs)) return;
  lastPrune.set(ctx.storage, now);
  const work = (async () => {
    await prunePushedRequests(ctx, now);
    await pruneInteractions(ctx, now);
    await pruneCodes(ctx, now);
    await pruneRefreshTokens(ctx, now);
    // The first-use history behind step-up policies, past its retention (src/policy/first-use.ts).
    await pruneFirstUses(ctx, now);
    await pruneCibaRequests(ctx.storage.db, now);
    // Transfer destinations' first uses past their retention, reservations out of every window and
    // holders a dead node left (src/transfers, the database's and Redis's).
    await pruneDestinationUses(ctx.storage.db, now);
    await pruneTransferTotals(ctx, now);
  })()
    .catch(() => undefined)
    .finally(() => running.delete(ctx.storage));
  running.set(ctx.storage, work);
}

/** Resolves when a prune started by maybePruneAuthorizationState has finished (tests, shutdown). */
export async function authorizationPruningSettled(ctx: Pick<Context, 'storage'>): Promise<void> {
  await running.get(ctx.storage);
}
