import { loginAccountOf } from '../login-account.ts';
import type { RiskSignal } from '../engine.ts';

/**
 * `recent_lockout`: the automatic lockout (too many failed sign-ins) locked the account within
 * `failureWindowSeconds` — it was unlocked since, or the person signs in some other way. Read from
 * the account's `last_lockout_at` (src/identity/failed-login.ts), which every node shares
 * and an unlock leaves in place.
 */
export const recentLockout: RiskSignal = {
  name: 'recent_lockout',
  moments: ['login'],
  async evaluate(deps, facts, settings) {
    const account = await loginAccountOf(deps, facts);
    if (!account || account.lastLockoutAt === null) return undefined;
    const ago = deps.clock.now() - account.lastLockoutAt;
    if (ago > settings.failureWindowSeconds * 1000) return undefined;
    return { detail: `locked out ${Math.max(0, Math.round(ago / 1000))} s ago` };
  },
};
