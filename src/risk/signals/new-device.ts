import type { RiskSignal } from '../engine.ts';

/**
 * `new_device`: a person signs in from a browser whose device id (the signed device cookie,
 * src/identity/device-cookie.ts) was never seen for this account — or with no valid device cookie
 * at all (none, expired, tampered with): an unknown browser is a new device. After a successful
 * sign-in the device is remembered for the account (`risk_sightings`, kind `device`), the id the
 * browser presented or the one it is given with that sign-in. "New" is relative to a history, as
 * for the issuance signals: an account's first sign-in (no device seen yet) sets the baseline and
 * fires nothing, so a new person does not start with a score.
 */
export const newDevice: RiskSignal = {
  name: 'new_device',
  moments: ['login'],
  async evaluate(deps, facts) {
    const seen = facts.deviceId === undefined ? undefined : await deps.risk.sightings.lastSeen(facts.principal, 'device', facts.deviceId);
    if (seen !== undefined || !(await deps.risk.sightings.anySeen(facts.principal, 'device'))) return undefined;
    return { detail: facts.deviceId === undefined ? 'no valid device cookie' : 'device never seen for this account' };
  },
  async observe(_deps, facts, _settings, notes) {
    if (facts.deviceId !== undefined) await notes.note(facts.principal, 'device', facts.deviceId);
  },
};
