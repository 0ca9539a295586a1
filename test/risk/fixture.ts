/**
 * Shared setup for the risk tests: fixed settings on a Context, a fixed moment of a known weekday,
 * an entity model whose desk has a time zone, and a way to find one signal in an assessment.
 */
import type { Context } from '../../src/context.ts';
import type { RiskAssessment, SignalHit } from '../../src/risk/assessment.ts';
import { defaultRiskSettings, type RiskSettings, type SignalName } from '../../src/risk/settings.ts';

/** Tuesday 2 June 2026, 14:00 UTC: within the default trading hours (for a Context made at that time). */
export const tuesdayAfternoonUtc = Date.parse('2026-06-02T14:00:00Z');
/** Saturday 6 June 2026, 14:00 UTC. */
export const saturdayAfternoonUtc = Date.parse('2026-06-06T14:00:00Z');

/**
 * The first moment at least a day after `from` (epoch ms) on ISO weekday `weekday` at `hour`:`minute`
 * UTC. For a Context made at the real time: its clock only ever moves forward (signing keys made
 * now are not active in the past).
 */
export function nextUtc(from: number, weekday: number, hour: number, minute = 0): number {
  const day = new Date(from + 86_400_000);
  day.setUTCHours(hour, minute, 0, 0);
  const iso = day.getUTCDay() === 0 ? 7 : day.getUTCDay();
  return day.getTime() + (((weekday - iso + 7) % 7) * 86_400_000);
}

/** The Context assesses with these settings: the defaults with `changes`. */
export function useRiskSettings(ctx: Context, changes: Partial<RiskSettings> = {}): RiskSettings {
  const settings: RiskSettings = { ...defaultRiskSettings, ...changes, weights: { ...defaultRiskSettings.weights, ...changes.weights } };
  ctx.risk.settings = { get: async () => settings };
  return settings;
}

/** The hit of one signal in an assessment, if it fired. */
export function hit(assessment: RiskAssessment, name: SignalName): SignalHit | undefined {
  return assessment.signals.find((s) => s.signal === name);
}

/**
 * An entity model with one desk in Tokyo (`tokyo-fx`, UTC+9 all year: no daylight saving time to
 * move the tests' hours) and one without a time zone (`ops`).
 */
export const tokyoDesk = {
  regions: [{ id: 'jp', name: 'Japan' }],
  instrument_classes: [{ id: 'fx', name: 'FX spot' }],
  legal_entities: [
    {
      lei: '254900EXAMPLEUS0AA64',
      name: 'Example Securities KK',
      jurisdiction: 'JP',
      home_region: 'jp',
      roles: ['broker'],
      desks: [
        { id: 'tokyo-fx', name: 'FX Tokyo', product_classes: ['fx'], time_zone: 'Asia/Tokyo' },
        { id: 'ops', name: 'Operations', product_classes: ['fx'] },
      ],
    },
  ],
};
