import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { ConfigError, type Config } from '../config.ts';
import type { Storage } from '../storage/database.ts';
import { collectAtScrape } from '../metrics.ts';
import { ActivityCounter } from './anomalies/activity.ts';
import { collectAnomalyMetrics } from './anomalies/metrics.ts';
import { RiskReactions } from './anomalies/reactions.ts';
import { AnomalySettingsSource } from './anomalies/settings.ts';
import { KycStore } from './kyc/store.ts';
import { createLimits, type Limits } from './limits/index.ts';
import { RecentEvents, TokenPresentations } from './memory.ts';
import { ScreeningListError } from './screening/list.ts';
import { ScreeningService } from './screening/service.ts';
import type { RiskSettingsSource } from './settings.ts';
import { StoredRiskSettings } from './settings-section.ts';
import { SightingStore } from './sightings.ts';

/**
 * The risk side of a Context (issue 16, docs/risk.md): the engine's settings and memory, the
 * baselines and reactions, the rate limits, KYC records and the screening list. The engine itself
 * is a function (./engine.ts `assessRisk`), given the whole Context.
 */
export interface RiskServices {
  /** Apply's `risk` section, cached (no round trip on the hot path). */
  settings: RiskSettingsSource;
  /** What has been seen per principal (devices, networks, scopes, actors), shared by every node. */
  sightings: SightingStore;
  /**
   * This node's memory of the last minutes (./memory.ts): client authentication failures by source
   * address and by claimed client at that address (`recent_failures`), noted by client authentication.
   */
  failures: RecentEvents;
  /** Token exchanges per subject (`exchange_burst`), per node. */
  exchanges: RecentEvents;
  /** Where tokens were presented by their holders (`concurrent_networks`), per node. */
  presentations: TokenPresentations;
  /**
   * Tokens and logins per principal and evaluation window, counted in memory and flushed to the
   * database every few seconds (./anomalies/activity.ts): the issuance and login paths call
   * `countToken` / `count(principal, 'login')` on success.
   */
  activity: ActivityCounter;
  /** Apply's `anomalies` section, cached (./anomalies/settings.ts). */
  anomalySettings: AnomalySettingsSource;
  /** Open step-up anomalies and suspensions in force, cached (./anomalies/reactions.ts). */
  reactions: RiskReactions;
  /** Rate limits, and the store (Redis or memory) the failure throttles share with them (./limits). */
  limits: Limits;
  /** KYC records as decisions read them, cached per node (src/risk/kyc). */
  kyc: KycStore;
  /** The sanctions/PEP screening list this node holds, as an in-memory index (src/risk/screening). */
  screening: ScreeningService;
}

/**
 * `options.config` names Redis (`REDIS_URL`) and the screening list file
 * (`CLEARANCE_SCREENING_LIST`, loaded now: one that does not load throws); `options.log` is where
 * Redis outages are told.
 */
export function createRiskServices(
  storage: Storage,
  clock: Clock,
  options: { config?: Pick<Config, 'redisUrl' | 'redisPrefix' | 'redisTimeoutMs' | 'screeningList'>; log?: Logger; namesKey?: Buffer } = {},
): RiskServices {
  const screening = new ScreeningService(options.config?.screeningList, clock);
  try {
    screening.load();
  } catch (error) {
    // A configured list that does not load stops the start (fail closed), named like any other setting.
    if (error instanceof ScreeningListError) throw new ConfigError(error.message);
    throw error;
  }
  const anomalySettings = new AnomalySettingsSource(storage.db, clock);
  collectAtScrape('risk_anomalies', collectAnomalyMetrics);
  return {
    settings: new StoredRiskSettings(storage.db, clock),
    sightings: new SightingStore(storage.db, clock),
    // A failure threshold is at most 1000 (settings-section.ts).
    failures: new RecentEvents({ keep: 1000 }),
    exchanges: new RecentEvents({ maxKeys: 10_000 }),
    presentations: new TokenPresentations(),
    activity: new ActivityCounter(storage.db, clock, anomalySettings, options.log ? { log: options.log } : {}),
    anomalySettings,
    reactions: new RiskReactions(storage.db, clock),
    limits: createLimits(storage.db, clock, options),
    kyc: new KycStore(storage.db, clock),
    screening,
  };
}
