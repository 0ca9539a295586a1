import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { ManualClock, epochSeconds } from '../../src/clock.ts';
import { maxTokenLifetimeSeconds } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { AuditKeys } from '../../src/audit/audit-key.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { verifyStore } from '../../src/audit/verify.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { acquireLease, leaseHolder } from '../../src/lifecycle/lease.ts';
import { KeySchedule, activationLeadSeconds, dueSteps, keyScheduleLease } from '../../src/lifecycle/key-schedule.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { startTestServer } from '../helpers/server.ts';
import { testContext, testDialects, type TestDialect } from '../helpers/storage.ts';

const day = 86_400_000;
const rotationMs = 30 * day;

/** A token as the server signs it, valid for the longest token lifetime. */
function signToken(ctx: Context, sub: string): Promise<string> {
  const now = epochSeconds(ctx.clock);
  return ctx.keys.signJwt({ typ: 'at+jwt' }, { iss: ctx.config.issuer, sub, aud: 'https://rs.example', iat: now, exp: now + maxTokenLifetimeSeconds });
}

function kidOf(token: string): string {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
}

async function events(ctx: Context, type: string): Promise<Record<string, unknown>[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', type).orderBy('seq').execute();
  return rows.map((row) => JSON.parse(row.event) as Record<string, unknown>);
}

/**
 * Two nodes on one database, as two server processes: the second context opened on a second
 * handle of the first one's database, both on one manual clock (the nodes' clocks agree).
 */
async function twoNodes(t: TestContext, dialect: TestDialect | undefined, clock = new ManualClock()) {
  const a = await testContext({ clock, ...(dialect ? { dialect } : {}) });
  const ctxB = await openContext(a.config, { clock, log: createLogger('silent'), storage: a.database.connect(), listenForChanges: false });
  t.after(async () => {
    await ctxB.risk.activity.close();
    await (ctxB.audit as { close?: () => Promise<void> }).close?.();
    await a.cleanup();
  });
  return { a: a.ctx, b: ctxB, clock, config: a.config };
}

/**
 * A relying party that caches the JWKS exactly as long as Cache-Control allows and never asks again
 * sooner — not even for a `kid` it does not know (the strictest cache a relying party may keep).
 */
function cachingRelyingParty(fetchJwks: () => Promise<{ jwks: JSONWebKeySet; maxAge: number }>, clock: ManualClock) {
  let cached: { keys: ReturnType<typeof createLocalJWKSet>; until: number } | undefined;
  let fetches = 0;
  return {
    get fetches() {
      return fetches;
    },
    /** Fetches the JWKS again if the cached copy has expired. */
    async refresh() {
      if (!cached || clock.now() >= cached.until) {
        const { jwks, maxAge } = await fetchJwks();
        fetches++;
        cached = { keys: createLocalJWKSet(jwks), until: clock.now() + maxAge * 1000 };
      }
      return cached.keys;
    },
    async verify(token: string) {
      return jwtVerify(token, await this.refresh(), { currentDate: new Date(clock.now()), audience: 'https://rs.example' });
    },
  };
}

describe('the key schedule', () => {
  test('is due only when the active key has signed for the interval, one pending key at a time', () => {
    const active = { kid: 'a', alg: 'ES256' as const, state: 'active' as const, createdAt: 0, activatesAt: 0 };
    assert.deepEqual(dueSteps([active], [], rotationMs - 1, rotationMs, 0), { rotate: false, retire: [], rotateAudit: false });
    assert.equal(dueSteps([active], [], rotationMs, rotationMs, 0).rotate, true);
    assert.equal(dueSteps([active], [], rotationMs, 0, 0).rotate, false, 'interval 0: the schedule is off');
    const next = { kid: 'b', alg: 'ES256' as const, state: 'next' as const, createdAt: rotationMs, activatesAt: rotationMs + 600_000 };
    assert.equal(dueSteps([active, next], [], 2 * rotationMs, rotationMs, 0).rotate, false, 'a pending next key is not rotated over');
    const retirable = { kid: 'c', alg: 'ES256' as const, state: 'retirable' as const, createdAt: 0, activatesAt: 0 };
    assert.deepEqual(dueSteps([retirable, active], [], 1, rotationMs, 0).retire, ['c']);
    assert.deepEqual(dueSteps([retirable, active], [], 1, 0, 0).retire, [], 'retiring is part of the schedule: off with it');
    assert.equal(dueSteps([active], [{ createdAt: 0 }], 10 * day, 0, 10 * day).rotateAudit, true);
    assert.equal(dueSteps([active], [{ createdAt: 0 }], 10 * day - 1, 0, 10 * day).rotateAudit, false);
  });

  test('publishes a scheduled key at least as long as the JWKS may be cached before it signs', () => {
    assert.equal(activationLeadSeconds(600), 600);
    assert.equal(activationLeadSeconds(0), 0, 'the key store still waits publishMarginMs for the other nodes');
    for (const overlap of [0, 1, 30, 600, 86_400]) assert.ok(activationLeadSeconds(overlap) >= Math.min(300, Math.floor(overlap / 2)));
  });

  for (const dialect of testDialects()) {
    describe(`on ${dialect.name}`, () => {
      test('rotates when due and not before, publishes the next key for the overlap, then retires the old one once no token it signed is valid', async (t) => {
        const { ctx, clock } = await testContext({ t, dialect });
        const app = buildApp(ctx);
        const schedule = new KeySchedule(ctx, { rotationMs, holder: 'node-a/1' });
        const [first] = await ctx.keys.list();
        const jwks = async () => {
          const response = await app.inject({ method: 'GET', url: '/jwks' });
          return { kids: (response.json() as JSONWebKeySet).keys.map((k) => k.kid), cacheControl: response.headers['cache-control'] };
        };

        clock.advance(rotationMs - 1000);
        assert.deepEqual(await schedule.runOnce(), { ran: false, retired: [] }, 'not due a second early');
        assert.equal(await leaseHolder(ctx.storage.db, keyScheduleLease), undefined, 'nothing due: not even the lease is written');

        clock.advance(1000);
        const step = await schedule.runOnce();
        assert.equal(step.ran, true);
        const next = step.rotated!;
        assert.equal(next.state, 'next');
        assert.equal(next.activatesAt, clock.now() + ctx.config.keyOverlapSeconds * 1000);
        const [rotated] = await events(ctx, 'key.rotated');
        assert.deepEqual((rotated!.details as Record<string, unknown>).scheduled, true);
        assert.equal((rotated!.details as Record<string, unknown>).node, 'node-a/1');
        assert.equal((await schedule.runOnce()).rotated, undefined, 'the pending key is not rotated over');

        // Published at once, signing only after the overlap: longer than the JWKS may be cached.
        const published = await jwks();
        assert.deepEqual(published.kids, [first!.kid, next.kid]);
        const maxAge = Number(/max-age=(\d+)/.exec(String(published.cacheControl))![1]);
        assert.ok(next.activatesAt - clock.now() >= maxAge * 1000);
        clock.set(next.activatesAt - 1);
        assert.equal(kidOf(await signToken(ctx, 'before')), first!.kid);
        clock.set(next.activatesAt);
        const lastOld = clock.now() - 1;
        assert.equal(kidOf(await signToken(ctx, 'after')), next.kid);

        // The old key stays published until every token it signed has expired, then goes.
        const old = (await ctx.keys.list()).find((k) => k.kid === first!.kid)!;
        assert.equal(old.state, 'superseded');
        assert.ok(old.retirableAt! >= lastOld + maxTokenLifetimeSeconds * 1000);
        clock.set(old.retirableAt! - 1);
        assert.deepEqual((await schedule.runOnce()).retired, []);
        assert.deepEqual((await jwks()).kids, [first!.kid, next.kid]);
        clock.set(old.retirableAt!);
        assert.deepEqual((await schedule.runOnce()).retired, [first!.kid]);
        assert.deepEqual((await jwks()).kids, [next.kid]);
        const [retired] = await events(ctx, 'key.retired');
        assert.equal(retired!.subject, first!.kid);
        assert.equal((retired!.details as Record<string, unknown>).scheduled, true);

        // The next rotation is due an interval after the new key was made.
        clock.set(next.createdAt + rotationMs - 1);
        assert.equal((await schedule.runOnce()).ran, false);
        clock.set(next.createdAt + rotationMs);
        assert.ok((await schedule.runOnce()).rotated);
      });

      test('two nodes take the step once, and both publish the new key before either signs with it', async (t) => {
        const { a, b, clock } = await twoNodes(t, dialect);
        const [first] = await a.keys.list();
        const scheduleA = new KeySchedule(a, { rotationMs, holder: 'node-a/1' });
        const scheduleB = new KeySchedule(b, { rotationMs, holder: 'node-b/1' });
        clock.advance(rotationMs);
        const [stepA, stepB] = await Promise.all([scheduleA.runOnce(), scheduleB.runOnce()]);
        const rotations = [stepA, stepB].filter((s) => s.rotated);
        assert.equal(rotations.length, 1, 'exactly one node rotated');
        assert.equal((await a.storage.db.selectFrom('signing_keys').select('kid').execute()).length, 2);
        // The other node, late, finds nothing left to do.
        assert.equal((await scheduleA.runOnce()).rotated, undefined);
        assert.equal((await scheduleB.runOnce()).rotated, undefined);
        assert.equal((await events(a, 'key.rotated')).length, 1);
        const next = rotations[0]!.rotated!;

        // Every node publishes the key within a cache check, long before it signs.
        clock.advance(1000);
        for (const node of [a, b]) {
          assert.ok((await node.keys.jwks()).keys.some((k) => k.kid === next.kid));
          assert.equal(kidOf(await signToken(node, 'x')), first!.kid);
        }
        clock.set(next.activatesAt);
        for (const node of [a, b]) assert.equal(kidOf(await signToken(node, 'y')), next.kid, 'both sign with the new key after activation');
      });

      test('the lease is held by one holder at a time, taken again by it, and free once expired', async (t) => {
        const { ctx, clock } = await testContext({ t, dialect });
        const db = ctx.storage.db;
        const now = clock.now();
        const results = await Promise.all(['x', 'y', 'z'].map((holder) => acquireLease(db, 'test', holder, now, 60_000)));
        assert.equal(results.filter(Boolean).length, 1);
        const holder = ['x', 'y', 'z'][results.indexOf(true)]!;
        assert.equal(await acquireLease(db, 'test', holder, now + 1, 60_000), true, 'its holder renews it');
        assert.equal(await acquireLease(db, 'test', 'w', now + 60_000, 60_000), false, 'not before it expires');
        assert.equal(await acquireLease(db, 'test', 'w', now + 60_001, 60_000), true, 'free once expired');
        assert.equal((await leaseHolder(db, 'test'))?.holder, 'w');
      });

      test('a relying party that caches the JWKS validates every token issued across rotations and retirements', async (t) => {
        const { a, b, clock } = await twoNodes(t, dialect);
        const apps = [buildApp(a), buildApp(b)];
        const interval = 3 * 3600_000;
        const schedules = [new KeySchedule(a, { rotationMs: interval, holder: 'node-a/1' }), new KeySchedule(b, { rotationMs: interval, holder: 'node-b/1' })];
        let turn = 0;
        // It fetches from whichever node the load balancer picks.
        const party = cachingRelyingParty(async () => {
          const response = await apps[turn++ % 2]!.inject({ method: 'GET', url: '/jwks' });
          return { jwks: response.json() as JSONWebKeySet, maxAge: Number(/max-age=(\d+)/.exec(String(response.headers['cache-control']))![1]) };
        }, clock);
        const issued: { token: string; exp: number }[] = [];
        const kids = new Set<string>();
        const start = clock.now();
        // Three rotations and two retirements; each node ticks every 47 s (so the rotations fall at
        // different points of the relying party's cache lifetime). The relying party refreshes its
        // cache (when expired) just before the tick: the worst case, a copy from just before a rotation.
        for (let minute = 0; clock.now() < start + 3 * interval + 30 * 60_000; minute++) {
          clock.advance(47_000);
          await party.refresh();
          await Promise.all(schedules.map((s) => s.runOnce()));
          const node = [a, b][minute % 2]!;
          const token = await signToken(node, `m${minute}`);
          kids.add(kidOf(token));
          issued.push({ token, exp: clock.now() + maxTokenLifetimeSeconds * 1000 });
          for (const { token: unexpired } of issued.filter((i) => i.exp > clock.now())) {
            await assert.doesNotReject(party.verify(unexpired), `a token of ${kidOf(unexpired)} failed at tick ${minute}`);
          }
        }
        assert.equal(kids.size, 4, 'tokens were signed by four keys in turn');
        assert.equal((await events(a, 'key.rotated')).length, 3);
        assert.ok((await events(a, 'key.retired')).length >= 2);
        assert.ok(party.fetches > 10, 'the relying party refreshed its cache as Cache-Control allowed, no sooner');
      });
    });
  }

  test('the audit checkpoint key rotates on its own interval, once across nodes, and the sealer signs with the new key', async (t) => {
    const { a, b, clock, config } = await twoNodes(t, undefined);
    const masterKey = resolveMasterKey(config).key;
    const sealer = createSealer(a, masterKey);
    await a.audit.record({ type: 'token.issued', subject: 'before' });
    await sealer.sealAll();
    const keys = new AuditKeys(a.storage.db, masterKey, clock);
    const [firstKey] = await keys.list();

    const schedules = [new KeySchedule(a, { rotationMs: 0, auditRotationMs: 10 * day, masterKey, holder: 'a' }), new KeySchedule(b, { rotationMs: 0, auditRotationMs: 10 * day, masterKey, holder: 'b' })];
    clock.advance(10 * day - 1);
    assert.equal((await schedules[0]!.runOnce()).ran, false);
    clock.advance(1);
    const steps = await Promise.all(schedules.map((s) => s.runOnce()));
    assert.equal(steps.filter((s) => s.auditRotated).length, 1, 'one node rotated the audit key');
    const listed = await keys.list();
    assert.equal(listed.length, 2);
    const [rotation] = await events(a, 'audit.key_rotated');
    assert.deepEqual(rotation!.details, { previous_key_id: firstKey!.keyId, key_id: listed[1]!.keyId, scheduled: true, node: steps.find((s) => s.auditRotated) === steps[0] ? 'a' : 'b' });

    // The running sealer (created before the rotation) signs its next checkpoint with the new key.
    await a.audit.record({ type: 'token.issued', subject: 'after' });
    await sealer.sealAll();
    const checkpoints = await a.storage.db.selectFrom('audit_checkpoints').select(['tree_size', 'key_id']).orderBy('tree_size').execute();
    assert.equal(checkpoints[0]!.key_id, firstKey!.keyId);
    assert.equal(checkpoints.at(-1)!.key_id, listed[1]!.keyId);
    const report = await verifyStore(a.storage.db, { keys: await keys.publicKeys() });
    assert.equal(report.ok, true, report.problem?.message);
    assert.deepEqual(new Set(report.keyIds), new Set([firstKey!.keyId, listed[1]!.keyId]));

    const status = await schedules[0]!.status();
    assert.deepEqual(status.auditKeys.keys.map((k) => k.state), ['verifying', 'signing']);
    assert.equal(status.auditKeys.nextRotationAt, listed[1]!.createdAt + 10 * day);
  });

  test('a started server publishes a scheduled key over HTTP, and closes with its schedule running', async (t) => {
    const server = await startTestServer({ t, env: { CLEARANCE_KEY_ROTATION_DAYS: '1' } });
    const ctx = server.running.ctx;
    await ctx.storage.db.updateTable('signing_keys').set((eb) => ({ created_at: eb('created_at', '-', 2 * day) })).execute();
    ctx.keys.invalidate();
    const deadline = Date.now() + 5000;
    // The server's own first tick ran at start, before the key was aged; its next is a minute away,
    // so a second schedule instance stands in for another node's tick.
    const other = new KeySchedule(ctx, { holder: 'other-node' });
    let states: string[] = [];
    while (Date.now() < deadline) {
      await other.runOnce();
      states = (await ctx.keys.list()).map((k) => k.state);
      if (states.includes('next')) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(states, ['active', 'next']);
    const response = await fetch(`${server.issuer}/jwks`);
    assert.equal(((await response.json()) as JSONWebKeySet).keys.length, 2, 'the next key is published over HTTP');
    await server.close(); // the schedule's timer is stopped before the database closes
  });

  test('ticks at start and then on its timer, and stops cleanly', async (t) => {
    const { ctx } = await testContext({ t });
    const schedule = new KeySchedule(ctx, { rotationMs, tickMs: 10 });
    schedule.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await schedule.stop();
    assert.equal((await ctx.keys.list()).length, 1, 'nothing was due');
  });
});
