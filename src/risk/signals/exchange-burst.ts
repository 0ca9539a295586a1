import type { RiskSignal } from '../engine.ts';

/**
 * `exchange_burst` at a token exchange: this would be at least the `exchange_burst_count`th
 * exchange for one subject within `exchange_burst_window` seconds. Counted in memory per node
 * (../memory.ts): a burst spread over N nodes fires on one only when its share reaches the count.
 */
export const exchangeBurst: RiskSignal = {
  name: 'exchange_burst',
  moments: ['issuance'],
  evaluate(ctx, facts, settings) {
    if (facts.actors === undefined) return undefined;
    const before = ctx.risk.exchanges.count(subjectKey(facts), ctx.clock.now() - settings.exchangeBurstWindowSeconds * 1000);
    if (before + 1 < settings.exchangeBurstCount) return undefined;
    return { detail: `${before + 1} exchanges for this subject within ${settings.exchangeBurstWindowSeconds} s` };
  },
  observe(ctx, facts, settings) {
    // Counting up to the burst is enough: a steady stream keeps `exchange_burst_count` times, not thousands.
    if (facts.actors !== undefined) ctx.risk.exchanges.record(subjectKey(facts), ctx.clock.now(), settings.exchangeBurstCount);
  },
};

const subjectKey = (facts: { principal: { type: string; id: string } }) => JSON.stringify([facts.principal.type, facts.principal.id]);
