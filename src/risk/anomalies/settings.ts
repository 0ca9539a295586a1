import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../../storage/generations.ts';
import { join, type Validator } from '../../validation.ts';

/**
 * Apply's `anomalies` section (docs/risk.md "Baselines and anomalies", docs/apply.md):
 *
 *   anomalies:
 *     window: 300              # seconds of one evaluation window (60–3600)
 *     minimum_history: 12      # active windows a principal needs before it is judged (1–10000)
 *     baseline_windows: 24     # the EWMA's span N, in active windows: weight 2/(N+1) (2–10000)
 *     audience_minimum: 5      # distinct audiences before audience_spread can fire (2–1000)
 *     reactions:               # per anomaly class: alert | step_up | suspend
 *       token_rate: step_up
 *       login_rate: step_up
 *       audience_spread: alert
 *
 * How far above the baseline counts as an anomaly is the risk settings' `velocityFactor` and
 * `velocityMinimum` (src/risk/settings.ts), shared with the `velocity` signal. Each setting a
 * document names is stored (one row each); one it does not name keeps its value. Every node reads
 * them through a generation cache: no round trip on the request path.
 */

/** What an anomaly is about: a principal's tokens per window, logins per window, distinct audiences per window. */
export const anomalyClasses = ['token_rate', 'login_rate', 'audience_spread'] as const;
export type AnomalyClass = (typeof anomalyClasses)[number];

/**
 * What Clearance does about an anomaly: `alert` (the `risk.anomaly` audit event and alert only);
 * `step_up` (also: the `open_anomaly` signal fires for the principal while the anomaly is open);
 * `suspend` (also: the principal is refused at the token endpoint and at sign-in until reinstated).
 */
export const anomalyReactions = ['alert', 'step_up', 'suspend'] as const;
export type AnomalyReaction = (typeof anomalyReactions)[number];

export interface AnomalySettings {
  windowMs: number;
  minimumHistory: number;
  /** The EWMA's span in active windows (weight of a new window: 2/(N+1)). */
  baselineWindows: number;
  audienceMinimum: number;
  reactions: Record<AnomalyClass, AnomalyReaction>;
}

export const defaultAnomalySettings: Readonly<AnomalySettings> = Object.freeze({
  windowMs: 300_000,
  minimumHistory: 12,
  baselineWindows: 24,
  audienceMinimum: 5,
  reactions: Object.freeze({ token_rate: 'step_up', login_rate: 'step_up', audience_spread: 'alert' }) as Record<AnomalyClass, AnomalyReaction>,
});

/** The section as validated: only what the document names. */
export type AnomalySection = Partial<{ window: number; minimum_history: number; baseline_windows: number; audience_minimum: number }> & {
  reactions?: Partial<Record<AnomalyClass, AnomalyReaction>>;
};

const limits = {
  window: { min: 60, max: 3600 },
  minimum_history: { min: 1, max: 10_000 },
  baseline_windows: { min: 2, max: 10_000 },
  audience_minimum: { min: 2, max: 1000 },
} as const;
const numbers = Object.keys(limits) as (keyof typeof limits)[];

/** Validates apply's `anomalies` section, recording every problem under `path`. */
export function readAnomalySection(v: Validator, path: string, value: unknown): AnomalySection | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, [...numbers, 'reactions']);
  const section: AnomalySection = {};
  for (const name of numbers) {
    if (o[name] === undefined) continue;
    const n = v.integer(join(path, name), o[name], limits[name]);
    if (n !== undefined) section[name] = n;
  }
  if (o.reactions !== undefined) {
    const reactions = v.object(join(path, 'reactions'), o.reactions);
    if (reactions) {
      v.knownKeys(join(path, 'reactions'), reactions, anomalyClasses);
      section.reactions = {};
      for (const kind of anomalyClasses) {
        if (reactions[kind] === undefined) continue;
        const reaction = v.string(join(join(path, 'reactions'), kind), reactions[kind], { oneOf: anomalyReactions });
        if (reaction !== undefined) section.reactions[kind] = reaction as AnomalyReaction;
      }
    }
  }
  return v.problems.length === before ? section : undefined;
}

/** The stored rows a section names: one per number, one per class's reaction (`reactions.<class>`). */
function rowsOf(section: AnomalySection): [string, string][] {
  const rows: [string, string][] = numbers.filter((n) => section[n] !== undefined).map((n) => [n, JSON.stringify(section[n])]);
  for (const kind of anomalyClasses) {
    const reaction = section.reactions?.[kind];
    if (reaction !== undefined) rows.push([`reactions.${kind}`, JSON.stringify(reaction)]);
  }
  return rows;
}

type SettingChange = { kind: 'anomaly_setting'; id: string; outcome: 'created' | 'updated' | 'unchanged' };

/** Stores the settings a document names, inside the apply transaction; one change per setting. */
export async function upsertAnomalySettings(trx: Transaction<Database>, now: number, section: AnomalySection): Promise<SettingChange[]> {
  const stored = new Map((await trx.selectFrom('risk_anomaly_settings').select(['name', 'value']).execute()).map((r) => [r.name, r.value]));
  const changes: SettingChange[] = [];
  for (const [name, value] of rowsOf(section)) {
    const existing = stored.get(name);
    if (existing === value) {
      changes.push({ kind: 'anomaly_setting', id: name, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('risk_anomaly_settings').values({ name, value, updated_at: now }).execute();
    else await trx.updateTable('risk_anomaly_settings').set({ value, updated_at: now }).where('name', '=', name).execute();
    changes.push({ kind: 'anomaly_setting', id: name, outcome: existing === undefined ? 'created' : 'updated' });
  }
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, settingsGeneration);
  return changes;
}

const settingsGeneration = 'risk_anomaly_settings';

/** The settings in force (defaults for any not set). A stored value of the wrong type is ignored. */
export async function loadAnomalySettings(db: Kysely<Database>): Promise<AnomalySettings> {
  const rows = await db.selectFrom('risk_anomaly_settings').select(['name', 'value']).execute();
  const settings: AnomalySettings = { ...defaultAnomalySettings, reactions: { ...defaultAnomalySettings.reactions } };
  for (const row of rows) {
    const value = JSON.parse(row.value) as unknown;
    if (row.name.startsWith('reactions.')) {
      const kind = row.name.slice('reactions.'.length) as AnomalyClass;
      if (anomalyClasses.includes(kind) && anomalyReactions.includes(value as AnomalyReaction)) settings.reactions[kind] = value as AnomalyReaction;
      continue;
    }
    if (typeof value !== 'number') continue;
    if (row.name === 'window') settings.windowMs = value * 1000;
    if (row.name === 'minimum_history') settings.minimumHistory = value;
    if (row.name === 'baseline_windows') settings.baselineWindows = value;
    if (row.name === 'audience_minimum') settings.audienceMinimum = value;
  }
  return settings;
}

/** The anomaly settings, cached per process and reloaded when any process stores new ones. */
export class AnomalySettingsSource {
  readonly #cache: GenerationCache<AnomalySettings>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#cache = new GenerationCache(db, settingsGeneration, () => loadAnomalySettings(db), clock);
  }

  get(): Promise<AnomalySettings> {
    return this.#cache.get();
  }

  /** Forces a reload on the next read (after apply stored new settings in this process). */
  invalidate(): void {
    this.#cache.invalidate();
  }
}
