import { countAdminActions, recordAdminAction } from '../admin-actions.ts';
import type { RiskSignal } from '../engine.ts';

/**
 * `admin_burst` (intrusion signal): this write is at least the `adminBurstCount`-th by one
 * administrator within `adminBurstWindowSeconds`. Every write is remembered in the database
 * (`risk_admin_actions`), so a burst spread over several nodes, or the API and the CLI, counts whole.
 */
export const adminBurst: RiskSignal = {
  name: 'admin_burst',
  moments: ['admin'],
  async evaluate(deps, facts, settings) {
    const earlier = await countAdminActions(deps.storage.db, facts.principal.id, deps.clock.now() - settings.adminBurstWindowSeconds * 1000);
    const count = earlier + 1;
    return count >= settings.adminBurstCount ? { detail: `${count} changes within ${settings.adminBurstWindowSeconds} s` } : undefined;
  },
  async observe(deps, facts) {
    await recordAdminAction(deps.storage.db, { adminId: facts.principal.id, action: facts.action ?? 'unknown', at: deps.clock.now() });
  },
};
