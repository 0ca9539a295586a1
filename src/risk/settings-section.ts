import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../clock.ts';
import { GenerationCache, bumpGeneration } from '../storage/generations.ts';
import type { Database } from '../storage/schema.ts';
import { join, type Validator } from '../validation.ts';
import { defaultRiskSettings, signalNames, type RiskSettings, type RiskSettingsSource } from './settings.ts';
import { sightingRetentionDays } from './sightings.ts';

/**
 * Apply's `risk` section (docs/risk.md "Settings", docs/apply.md):
 *
 *   risk:
 *     enabled: true
 *     weights: { new_network: 15, concurrent_networks: 40, ... }   # points per signal, 0–100 (0: off)
 *     levels: { medium: 30, high: 60 }                            # where each level starts
 *     outcomes: { step_up: 50, deny: 80 }                         # where each outcome starts (101: never)
 *     network_memory_days: 30
 *     failure_window: 900          # seconds
 *     failure_threshold: 3
 *     velocity_factor: 10
 *     velocity_minimum: 20
 *     exchange_burst_count: 30
 *     exchange_burst_window: 60    # seconds
 *     concurrent_window: 300       # seconds
 *     admin_burst_count: 20
 *     admin_burst_window: 300      # seconds
 *     quick_activation: 900        # seconds
 *     trading_hours: { start: "07:00", end: "18:00", weekdays: [1, 2, 3, 4, 5] }
 *
 * Each setting a document names is stored as one row of `risk_settings` (a weight, a level and an
 * outcome threshold each on its own: `weights.new_network`, `levels.high`); one it does not name
 * keeps its value. Every node reads them through a cache reloaded when the generation
 * `risk_settings` moves (bumped in the apply transaction), so an assessment costs no round trip.
 */

/** The settings a document names: row name → its stored value (JSON-serialisable). */
export type RiskSection = Record<string, unknown>;

type NumericSetting =
  | 'networkMemoryDays'
  | 'failureWindowSeconds'
  | 'failureThreshold'
  | 'velocityFactor'
  | 'velocityMinimum'
  | 'exchangeBurstCount'
  | 'exchangeBurstWindowSeconds'
  | 'concurrentWindowSeconds'
  | 'adminBurstCount'
  | 'adminBurstWindowSeconds'
  | 'quickActivationSeconds';

/** The scalar settings: their YAML name, the RiskSettings field and the accepted range. */
const scalars: Record<string, { field: NumericSetting; min: number; max: number }> = {
  // Sightings older than their retention are forgotten anyway (src/risk/sightings.ts).
  network_memory_days: { field: 'networkMemoryDays', min: 1, max: sightingRetentionDays },
  failure_window: { field: 'failureWindowSeconds', min: 60, max: 86_400 },
  failure_threshold: { field: 'failureThreshold', min: 1, max: 1000 },
  velocity_factor: { field: 'velocityFactor', min: 2, max: 1000 },
  velocity_minimum: { field: 'velocityMinimum', min: 1, max: 1_000_000 },
  // Each exchange is remembered until its window ends (src/risk/memory.ts): bounded.
  exchange_burst_count: { field: 'exchangeBurstCount', min: 2, max: 10_000 },
  // Counted in memory per node (src/risk/memory.ts): an hour at most.
  exchange_burst_window: { field: 'exchangeBurstWindowSeconds', min: 1, max: 3600 },
  // "At once": minutes, not hours (a person moving between networks in a day is not concurrent).
  concurrent_window: { field: 'concurrentWindowSeconds', min: 10, max: 3600 },
  // Intrusion signals (src/risk/intrusion.ts): counted in the database, kept a day (src/risk/admin-actions.ts).
  admin_burst_count: { field: 'adminBurstCount', min: 2, max: 100_000 },
  admin_burst_window: { field: 'adminBurstWindowSeconds', min: 10, max: 86_400 },
  quick_activation: { field: 'quickActivationSeconds', min: 60, max: 30 * 86_400 },
};

const sectionKeys = ['enabled', 'weights', 'levels', 'outcomes', 'trading_hours', ...Object.keys(scalars)];

/** A clock time `HH:MM` (24-hour; `24:00` is the end of the day). */
const clockTime = /^(?:([01]\d|2[0-3]):([0-5]\d)|(24):(00))$/;

/** Validates apply's `risk` section, recording every problem under `path`. `current`: the settings in force (for the checks across settings). */
export function readRiskSection(v: Validator, path: string, value: unknown, current: RiskSettings): RiskSection | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, sectionKeys);
  const section: RiskSection = {};
  if (o.enabled !== undefined) {
    const b = v.boolean(join(path, 'enabled'), o.enabled);
    if (b !== undefined) section.enabled = b;
  }
  const group = (key: string, names: readonly string[], range: { min: number; max: number }) => {
    if (o[key] === undefined) return;
    const g = v.object(join(path, key), o[key]);
    if (!g) return;
    v.knownKeys(join(path, key), g, names);
    for (const name of names) {
      if (g[name] === undefined) continue;
      const n = v.integer(join(join(path, key), name), g[name], range);
      if (n !== undefined) section[`${key}.${name}`] = n;
    }
  };
  group('weights', signalNames, { min: 0, max: 100 });
  group('levels', ['medium', 'high'], { min: 1, max: 100 });
  // A score never exceeds 100: 101 means the outcome is never reached.
  group('outcomes', ['step_up', 'deny'], { min: 1, max: 101 });
  for (const [name, rule] of Object.entries(scalars)) {
    if (o[name] === undefined) continue;
    const n = v.integer(join(path, name), o[name], rule);
    if (n !== undefined) section[name] = n;
  }
  if (o.trading_hours !== undefined) {
    const hours = readTradingHours(v, join(path, 'trading_hours'), o.trading_hours);
    if (hours) section.trading_hours = hours;
  }
  if (v.problems.length !== before) return undefined;
  // Across settings, as they will be in force: the document's over what is stored.
  const merged = settingsWith(current, section);
  if (merged.levels.medium >= merged.levels.high) v.fail(join(path, 'levels'), `medium (${merged.levels.medium}) must be below high (${merged.levels.high})`);
  if (merged.outcomes.step_up > merged.outcomes.deny) v.fail(join(path, 'outcomes'), `step_up (${merged.outcomes.step_up}) must not be above deny (${merged.outcomes.deny})`);
  return v.problems.length === before ? section : undefined;
}

function readTradingHours(v: Validator, path: string, value: unknown): RiskSettings['tradingHours'] | undefined {
  const o = v.object(path, value);
  if (!o) return undefined;
  const before = v.problems.length;
  v.knownKeys(path, o, ['start', 'end', 'weekdays']);
  const time = (key: 'start' | 'end'): number | undefined => {
    const text = v.string(join(path, key), o[key], { pattern: clockTime, patternMessage: 'must be a time HH:MM (00:00 to 24:00)' });
    if (text === undefined) return undefined;
    const [hours, minutes] = text.split(':').map(Number);
    return hours! * 60 + minutes!;
  };
  const start = time('start');
  const end = time('end');
  const weekdays = v.array(join(path, 'weekdays'), o.weekdays, (p, d) => v.integer(p, d, { min: 1, max: 7 }), { nonEmpty: true, unique: true });
  if (start !== undefined && end !== undefined && start === end) v.fail(join(path, 'end'), 'must differ from start');
  if (v.problems.length !== before || start === undefined || end === undefined || !weekdays) return undefined;
  return { start, end, weekdays: [...weekdays].sort((a, b) => a - b) };
}

/** `settings` with the stored settings `rows` (row name → value) over them; a value of the wrong type is ignored. */
export function settingsWith(settings: RiskSettings, rows: RiskSection): RiskSettings {
  const next: RiskSettings = {
    ...settings,
    weights: { ...settings.weights },
    levels: { ...settings.levels },
    outcomes: { ...settings.outcomes },
    tradingHours: { ...settings.tradingHours, weekdays: [...settings.tradingHours.weekdays] },
  };
  const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;
  for (const [name, value] of Object.entries(rows)) {
    const [group, member] = name.split('.') as [string, string | undefined];
    if (name === 'enabled' && typeof value === 'boolean') next.enabled = value;
    else if (group === 'weights' && (signalNames as readonly string[]).includes(member ?? '') && isCount(value)) next.weights[member as keyof RiskSettings['weights']] = value;
    else if (group === 'levels' && (member === 'medium' || member === 'high') && isCount(value)) next.levels[member] = value;
    else if (group === 'outcomes' && (member === 'step_up' || member === 'deny') && isCount(value)) next.outcomes[member] = value;
    else if (scalars[name] && isCount(value)) next[scalars[name].field] = value;
    else if (name === 'trading_hours' && isTradingHours(value)) next.tradingHours = value;
  }
  return next;
}

function isTradingHours(value: unknown): value is RiskSettings['tradingHours'] {
  const h = value as Partial<RiskSettings['tradingHours']> | null;
  return typeof h === 'object' && h !== null && Number.isInteger(h.start) && Number.isInteger(h.end) && Array.isArray(h.weekdays) && h.weekdays.every((d) => Number.isInteger(d));
}

/** Stores the settings a document names, inside the apply transaction; one change per setting. */
export async function upsertRiskSettings(
  trx: Transaction<Database>,
  now: number,
  section: RiskSection,
): Promise<{ kind: 'risk_setting'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[]> {
  const changes: { kind: 'risk_setting'; id: string; outcome: 'created' | 'updated' | 'unchanged' }[] = [];
  const stored = new Map((await trx.selectFrom('risk_settings').select(['name', 'value']).execute()).map((r) => [r.name, r.value]));
  for (const [name, setting] of Object.entries(section)) {
    const value = JSON.stringify(setting);
    const existing = stored.get(name);
    if (existing === value) {
      changes.push({ kind: 'risk_setting', id: name, outcome: 'unchanged' });
      continue;
    }
    if (existing === undefined) await trx.insertInto('risk_settings').values({ name, value, updated_at: now }).execute();
    else await trx.updateTable('risk_settings').set({ value, updated_at: now }).where('name', '=', name).execute();
    changes.push({ kind: 'risk_setting', id: name, outcome: existing === undefined ? 'created' : 'updated' });
  }
  // Every node's cache (StoredRiskSettings) reloads when this commits.
  if (changes.some((c) => c.outcome !== 'unchanged')) await bumpGeneration(trx, 'risk_settings');
  return changes;
}

/** The settings in force, read from the database: the defaults with the stored rows over them. */
export async function loadRiskSettings(db: Kysely<Database> | Transaction<Database>): Promise<RiskSettings> {
  const rows = await db.selectFrom('risk_settings').select(['name', 'value']).execute();
  return settingsWith(defaultRiskSettings, Object.fromEntries(rows.map((r) => [r.name, JSON.parse(r.value) as unknown])));
}

/**
 * The settings as every assessment reads them: cached, reloaded within a second of a change by any
 * process (generation `risk_settings`), at once after an apply through this one (`invalidate`).
 */
export class StoredRiskSettings implements RiskSettingsSource {
  readonly #cache: GenerationCache<RiskSettings>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#cache = new GenerationCache(db, 'risk_settings', () => loadRiskSettings(db), clock);
  }

  get(): Promise<RiskSettings> {
    return this.#cache.get();
  }

  invalidate(): void {
    this.#cache.invalidate();
  }
}
