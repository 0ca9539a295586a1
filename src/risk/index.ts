import type { Clock } from '../clock.ts';
import type { Storage } from '../storage/database.ts';
import { defaultRiskSettingsSource, type RiskSettingsSource } from './settings.ts';
import { SightingStore } from './sightings.ts';

/**
 * The risk side of a Context (issue 16, docs/risk.md): the engine's settings and memory. The
 * engine itself is a function (./engine.ts `assessRisk`), given the whole Context.
 */
export interface RiskServices {
  /** Apply's `risk` section, cached (no round trip on the hot path). */
  settings: RiskSettingsSource;
  /** What has been seen per principal (devices, networks, scopes, actors), shared by every node. */
  sightings: SightingStore;
}

export function createRiskServices(storage: Storage, clock: Clock): RiskServices {
  return { settings: defaultRiskSettingsSource, sightings: new SightingStore(storage.db, clock) };
}
