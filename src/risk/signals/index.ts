import type { RiskSignal } from '../engine.ts';
import { concurrentNetworks } from './concurrent-networks.ts';
import { deepChain } from './deep-chain.ts';
import { exchangeBurst } from './exchange-burst.ts';
import { newActor } from './new-actor.ts';
import { newAudience } from './new-audience.ts';
import { newNetwork } from './new-network.ts';
import { newResource } from './new-resource.ts';
import { newScope } from './new-scope.ts';
import { offHours } from './off-hours.ts';
import { recentFailures } from './recent-failures.ts';
import { openAnomaly } from './open-anomaly.ts';
import { velocity } from './velocity.ts';

/**
 * Every signal the engine runs, in the order their hits are listed. Each lives in its own file of
 * this folder (docs/risk.md "Signals" describes each).
 */
export const riskSignals: RiskSignal[] = [
  // Token issuance and AuthZEN evaluation (the client, its network and what it asks for).
  newNetwork,
  recentFailures,
  offHours,
  newScope,
  newAudience,
  newResource,
  concurrentNetworks,
  // Delegation (token exchange).
  newActor,
  deepChain,
  exchangeBurst,
  // Activity against the principal's baseline, and its open anomalies (src/risk/anomalies).
  velocity,
  openAnomaly,
];
