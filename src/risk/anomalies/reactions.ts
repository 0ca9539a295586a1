import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../storage/schema.ts';
import { GenerationCache, bumpGeneration } from '../../storage/generations.ts';
import { principalKey, type ActivePrincipal } from './activity.ts';

/** Bumped in the transaction that opens or resolves a step-up anomaly, suspends or reinstates. */
const reactionsGeneration = 'risk_reactions';

export function bumpReactions(trx: Transaction<Database> | Kysely<Database>): Promise<void> {
  return bumpGeneration(trx, reactionsGeneration);
}

interface InForce {
  /** Principals with an open anomaly whose reaction is `step_up`. */
  stepUp: Set<string>;
  /** Principals suspended pending review. */
  suspended: Set<string>;
}

/**
 * The anomaly reactions in force, as the request path asks them: whether a principal has an open
 * step-up anomaly (the `open_anomaly` signal) and whether it is suspended (the token endpoint and
 * sign-in). Both sets are held in memory and reloaded when their generation changes (checked at most
 * once a second, src/storage/generations.ts): no round trip per request, and a suspension raised on
 * one node is in force on every node within a second.
 */
export class RiskReactions {
  readonly #cache: GenerationCache<InForce>;

  constructor(db: Kysely<Database>, clock: Clock) {
    this.#cache = new GenerationCache(db, reactionsGeneration, () => loadInForce(db), clock);
  }

  async stepUp(principal: ActivePrincipal): Promise<boolean> {
    return (await this.#cache.get()).stepUp.has(principalKey(principal));
  }

  async suspended(principal: ActivePrincipal): Promise<boolean> {
    return (await this.#cache.get()).suspended.has(principalKey(principal));
  }

  /** The first of `principals` that is suspended, if any. */
  async firstSuspended(principals: readonly ActivePrincipal[]): Promise<ActivePrincipal | undefined> {
    const { suspended } = await this.#cache.get();
    return suspended.size === 0 ? undefined : principals.find((p) => suspended.has(principalKey(p)));
  }

  /** Reload on the next read (this process changed them). */
  invalidate(): void {
    this.#cache.invalidate();
  }
}

async function loadInForce(db: Kysely<Database>): Promise<InForce> {
  const [stepUp, suspended] = await Promise.all([
    db.selectFrom('risk_anomalies').select(['principal_type', 'principal_id']).where('status', '=', 'open').where('reaction', '=', 'step_up').execute(),
    db.selectFrom('risk_suspensions').select(['principal_type', 'principal_id']).where('reinstated_at', 'is', null).execute(),
  ]);
  const keys = (rows: { principal_type: string; principal_id: string }[]) => new Set(rows.map((r) => `${r.principal_type}:${r.principal_id}`));
  return { stepUp: keys(stepUp), suspended: keys(suspended) };
}
