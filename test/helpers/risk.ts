import { defaultRiskSettings, type RiskSettingsSource } from '../../src/risk/settings.ts';

/**
 * The risk settings of a test that is not about risk: the engine switched off (nothing assessed,
 * recorded or remembered), so a sign-in or an admin change does not depend on the time of day the
 * suite runs at. testContext and startTestServer use it unless a test asks for the engine (`risk: 'on'`).
 */
export const riskEngineOff: RiskSettingsSource = { get: async () => ({ ...defaultRiskSettings, enabled: false }) };
