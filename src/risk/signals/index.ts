import type { RiskSignal } from '../engine.ts';
import { adminBurst } from './admin-burst.ts';
import { adminNewNetwork } from './admin-new-network.ts';
import { adminOffHours } from './admin-off-hours.ts';
import { concurrentNetworks } from './concurrent-networks.ts';
import { deepChain } from './deep-chain.ts';
import { exchangeBurst } from './exchange-burst.ts';
import { loginNewNetwork } from './login-new-network.ts';
import { loginOffHours } from './login-off-hours.ts';
import { loginRecentFailures } from './login-recent-failures.ts';
import { newActor } from './new-actor.ts';
import { newAudience } from './new-audience.ts';
import { newDevice } from './new-device.ts';
import { newNetwork } from './new-network.ts';
import { newResource } from './new-resource.ts';
import { newScope } from './new-scope.ts';
import { offHours } from './off-hours.ts';
import { openAnomaly } from './open-anomaly.ts';
import { quickActivation } from './quick-activation.ts';
import { recentFailures } from './recent-failures.ts';
import { recentLockout } from './recent-lockout.ts';
import { velocity } from './velocity.ts';

/**
 * Every signal the engine runs, in the order their hits are listed. Each lives in its own file of
 * this folder (docs/risk.md "Signals" describes each). A signal name may have one file per moment
 * when what it looks at differs (`new_network` of a client at issuance, of a person at sign-in).
 */
export const riskSignals: RiskSignal[] = [
  // A person's sign-in (src/identity/login-risk.ts).
  newDevice,
  loginNewNetwork,
  loginRecentFailures,
  recentLockout,
  loginOffHours,
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
  // Clearance's own admin API and CLI (src/risk/intrusion.ts).
  adminNewNetwork,
  adminOffHours,
  adminBurst,
  quickActivation,
];
