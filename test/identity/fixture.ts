/**
 * Shared setup for the people-side tests: a full test Context with users applied the way
 * `clearance apply` does it, a throttle and lockout policy the test chooses, and audit helpers.
 */
import type { TestContext } from 'node:test';
import { executeApply, planApply, type ApplyResult } from '../../src/apply/index.ts';
import type { AuditEventType, StoredAuditEvent } from '../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import type { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { defaultIdentityPolicy, type IdentityPolicy } from '../../src/identity/index.ts';
import { MemoryLoginThrottle, type LoginThrottle, type LoginThrottleOptions } from '../../src/identity/login-throttle.ts';
import { RedisLoginThrottle } from '../../src/risk/limits/redis-throttles.ts';
import { testSharedStore } from '../helpers/redis.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';

export const alicePassword = 'alice-correct-horse-42';
export const bobPassword = 'bob-battery-staple-77';

export const people = [
  {
    username: 'alice',
    password: alicePassword,
    name: 'Alice Trader',
    email: 'alice@broker.example',
    desks: ['fx-spot', 'rates'],
    attributes: { kyc_status: 'verified', suitability: ['fx', 'rates'] },
  },
  { username: 'bob', password: bobPassword, name: 'Bob Ops', desks: ['ops'] },
];

export interface PeopleFixture {
  ctx: Context;
  clock: ManualClock;
  apply(document: Record<string, unknown>): Promise<ApplyResult>;
  /** Replaces the throttle and lockout policy (defaults: the server's). */
  policy(options: { throttle?: LoginThrottleOptions; policy?: Partial<IdentityPolicy> }): void;
  /** Stored audit events of a type, oldest first. */
  events(type: AuditEventType): Promise<StoredAuditEvent[]>;
  /** Every stored audit row's text, to search for leaked values. */
  auditText(): Promise<string>;
  /** The consecutive failed sign-ins counted against `username` (users.failed_logins). */
  failedLogins(username: string): Promise<number>;
}

export interface PeopleFixtureOptions {
  env?: NodeJS.ProcessEnv;
  /** Default: SQLite. */
  dialect?: TestDialect;
  /**
   * The risk engine: `off` by default — these tests sign people in, which the engine would assess
   * by the hour the suite runs at (testContext's `risk`); a risk test sets its own settings.
   */
  risk?: 'on' | 'off';
  /**
   * Where the login throttle counts: this process's memory (default), or Redis (the shared test
   * Redis under a prefix of the test's own; a fallback that fails the test if used).
   */
  throttleStore?: 'memory' | 'redis';
}

export async function peopleFixture(t: Pick<TestContext, 'after'>, options: PeopleFixtureOptions = {}): Promise<PeopleFixture> {
  const { ctx, clock } = await testContext({ t, env: options.env ?? {}, ...(options.dialect ? { dialect: options.dialect } : {}), risk: options.risk ?? 'off' });
  const shared = options.throttleStore === 'redis' ? await testSharedStore(t) : undefined;
  const unused: LoginThrottle = { reserve: () => { throw new Error('the fallback login throttle was used'); } };
  const throttleOf = (throttle?: LoginThrottleOptions): LoginThrottle =>
    shared ? new RedisLoginThrottle(shared, unused, clock, throttle) : new MemoryLoginThrottle(clock, throttle);
  // Object.assign, not a spread: the device cookie key is a getter that follows the master key (src/identity/index.ts).
  Object.assign(ctx.identity, { throttle: throttleOf() });
  const fixture: PeopleFixture = {
    ctx,
    clock,
    async apply(document) {
      const { plan, problems } = await planApply(ctx, document);
      if (!plan) throw new Error(problems.map(formatProblem).join('\n'));
      return executeApply(ctx, plan, { actor: 'test', via: 'cli' });
    },
    policy(options) {
      Object.assign(ctx.identity, { throttle: throttleOf(options.throttle), policy: { ...defaultIdentityPolicy, ...options.policy } });
    },
    async events(type) {
      const rows = await ctx.storage.db.selectFrom('audit_events').select(['event', 'seq']).where('type', '=', type).orderBy('seq').execute();
      // Personal fields are stored encrypted (docs/privacy.md): read them back through the decrypting reader.
      return decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(ctx.config).key, rows.map((row) => JSON.parse(row.event) as StoredAuditEvent));
    },
    async auditText() {
      const rows = await ctx.storage.db.selectFrom('audit_events').selectAll().execute();
      return rows.map((row) => `${row.event}\n${row.client ?? ''}\n${row.subject ?? ''}`).join('\n');
    },
    async failedLogins(username) {
      const row = await ctx.storage.db.selectFrom('users').select('failed_logins').where('username', '=', username).executeTakeFirstOrThrow();
      return Number(row.failed_logins);
    },
  };
  await fixture.apply({ users: people });
  return fixture;
}
