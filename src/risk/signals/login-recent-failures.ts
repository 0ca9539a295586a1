import { loginAccountOf } from '../login-account.ts';
import type { RiskSignal } from '../engine.ts';

/**
 * `recent_failures` at a sign-in: the account has `failureThreshold` or more failed sign-ins (wrong passwords,
 * wrong second factors) since its last successful one, the latest within `failureWindowSeconds`.
 * Read from the account's lockout counter and the time of its latest failure (users
 * `failed_logins`, `last_failed_login_at`: src/identity/failed-login.ts), which every
 * node shares. Nothing to remember: a successful sign-in resets the counter.
 */
export const loginRecentFailures: RiskSignal = {
  name: 'recent_failures',
  moments: ['login'],
  async evaluate(deps, facts, settings) {
    const account = await loginAccountOf(deps, facts);
    if (!account || account.lastFailedLoginAt === null || account.failedLogins < settings.failureThreshold) return undefined;
    const ago = deps.clock.now() - account.lastFailedLoginAt;
    if (ago > settings.failureWindowSeconds * 1000) return undefined;
    return { detail: `${account.failedLogins} failed sign-ins, the latest ${Math.max(0, Math.round(ago / 1000))} s ago` };
  },
};
