import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { AuditRecorder } from '../../src/audit/recorder.ts';
import { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { introspect } from '../../src/endpoints/introspect/introspect.ts';
import { isMandateActive, mandateCovers, type CoverageRequest } from '../../src/mandates/coverage.ts';
import {
  acceptMandate,
  amendMandate,
  createMandate,
  expireDueMandates,
  getMandate,
  listMandates,
  MandateError,
  revokeMandate,
} from '../../src/mandates/store.ts';
import { termsDigest } from '../../src/mandates/terms.ts';
import { mintAccessToken, newJti } from '../../src/tokens/access-token.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { mandateEntry, monday0900London } from './fixture.ts';
import { applyDocument } from '../policy/fixture.ts';

const admin = { actor: 'admin-ops', requestId: 'req-1' };
const acceptance = { by: 'algo-desk-head-42', at: Date.parse('2026-04-30T12:00:00Z') };

async function events(ctx: Context): Promise<StoredAuditEvent[]> {
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'like', 'mandate.%').orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

async function refused(promise: Promise<unknown>, code: MandateError['code'], message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof MandateError, String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    return true;
  });
}

for (const dialect of testDialects()) {
  describe(`the mandate store on ${dialect.name}`, () => {
    const setup = async (t: TestContext) => {
      const clock = new ManualClock(monday0900London);
      const { ctx, database } = await testContext({ t, dialect, clock });
      return { ctx, clock, database, at: () => new Date(clock.now()) };
    };

    test('creates version 1 as proposed, makes it active on acceptance, and records each step with its terms digest', async (t) => {
      const { ctx, at } = await setup(t);
      const entry = mandateEntry();
      const created = await createMandate(ctx, entry, admin);
      assert.equal(created.version, 1);
      assert.equal(created.status, 'proposed');
      assert.equal(created.createdBy, 'admin-ops');
      const ref = { id: entry.id, v: 1 };
      assert.equal(await isMandateActive(ctx, ref, at()), false, 'proposed is not in force');

      const accepted = await acceptMandate(ctx, entry.id, 1, acceptance, admin);
      assert.equal(accepted.status, 'active');
      assert.deepEqual(accepted.acceptance, acceptance);
      assert.equal(await isMandateActive(ctx, ref, at()), true);

      const [e1, e2] = await events(ctx);
      assert.equal(e1!.type, 'mandate.created');
      assert.deepEqual(e1!.mandate, ref);
      assert.equal(e1!.actor, 'admin-ops');
      assert.equal(e1!.requestId, 'req-1');
      assert.equal(e1!.client, 'algo-7');
      assert.deepEqual(e1!.scopes, ['order:cancel', 'order:create']);
      assert.equal(e1!.details!.terms_sha256, termsDigest(entry.terms));
      assert.equal(e1!.details!.legal_basis_reference, 'Master services agreement 2026-04, clause 7');
      assert.equal(JSON.stringify(e1).includes('route orders'), false, 'the legal basis text stays in the mandate tables');
      assert.equal(e2!.type, 'mandate.accepted');
      assert.equal(e2!.details!.accepted_by, 'algo-desk-head-42');
      assert.equal(e2!.details!.accepted_at, '2026-04-30T12:00:00.000Z');
    });

    test('creates an active mandate when the acceptance comes with it', async (t) => {
      const { ctx, at } = await setup(t);
      const created = await createMandate(ctx, { ...mandateEntry(), acceptance }, admin);
      assert.equal(created.status, 'active');
      assert.equal(await isMandateActive(ctx, { id: created.id, v: 1 }, at()), true);
      assert.deepEqual((await events(ctx)).map((e) => e.type), ['mandate.created', 'mandate.accepted']);
    });

    test('an amendment writes version 2 and supersedes version 1 at once, which keeps its terms in the history', async (t) => {
      const { ctx, at, clock } = await setup(t);
      const entry = mandateEntry();
      await createMandate(ctx, { ...entry, acceptance }, admin);
      clock.advance(60_000);
      const narrower = mandateEntry({ scopes: ['order:create'] }).terms;
      const amended = await amendMandate(ctx, entry.id, 1, narrower, undefined, admin);
      assert.equal(amended.version, 2);
      assert.equal(amended.status, 'proposed');
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: 1 }, at()), false, 'the old version no longer covers its tokens');
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: 2 }, at()), false, 'the new version waits for acceptance');

      const mandate = (await getMandate(ctx, entry.id))!;
      assert.deepEqual(mandate.history.map((v) => [v.version, v.status]), [[1, 'superseded'], [2, 'proposed']]);
      assert.deepEqual(mandate.history[0]!.terms, entry.terms, 'version 1 keeps its terms');
      assert.deepEqual(mandate.history[0]!.acceptance, acceptance);
      assert.equal(mandate.history[0]!.supersededAt, clock.now());
      assert.equal(mandate.current.version, 2);

      const later = { by: 'algo-desk-head-42', at: clock.now() };
      await acceptMandate(ctx, entry.id, 2, later, admin);
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: 2 }, at()), true);
      const amendedEvent = (await events(ctx)).find((e) => e.type === 'mandate.amended')!;
      assert.deepEqual(amendedEvent.mandate, { id: entry.id, v: 2 });
      assert.deepEqual(amendedEvent.details!.changed, ['scopes']);
      assert.equal(amendedEvent.details!.previous_version, 1);
      assert.equal(amendedEvent.details!.previous_status, 'active');
      assert.equal(amendedEvent.details!.terms_sha256, termsDigest(narrower));
    });

    test('an amendment accepted with it is active at once, with no gap', async (t) => {
      const { ctx, at, clock } = await setup(t);
      const entry = mandateEntry();
      await createMandate(ctx, { ...entry, acceptance }, admin);
      const wider = mandateEntry({ scopes: ['order:create', 'order:cancel', 'order:amend'] }).terms;
      const amended = await amendMandate(ctx, entry.id, 1, wider, { by: 'algo-desk-head-42', at: clock.now() }, admin);
      assert.equal(amended.status, 'active');
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: 2 }, at()), true);
      assert.deepEqual((await events(ctx)).map((e) => `${e.type} v${e.mandate!.v}`), ['mandate.created v1', 'mandate.accepted v1', 'mandate.amended v2', 'mandate.accepted v2']);
    });

    test('refuses the steps a mandate does not allow, naming why, and changes nothing', async (t) => {
      const { ctx, clock } = await setup(t);
      const entry = mandateEntry();
      await refused(acceptMandate(ctx, 'nope', 1, acceptance, admin), 'not_found', /no mandate nope/);
      await refused(createMandate(ctx, mandateEntry({ effective_to: '2026-05-02T00:00:00Z' }), admin), 'invalid', /effective_to is in the past/);
      await refused(createMandate(ctx, { ...entry, acceptance: { by: 'x', at: clock.now() + 1 } }, admin), 'invalid', /accepted_at is in the future/);
      await createMandate(ctx, { ...entry, acceptance }, admin);
      await refused(createMandate(ctx, entry, admin), 'conflict', /already exists/);
      await refused(acceptMandate(ctx, entry.id, 1, acceptance, admin), 'conflict', /version 1 is active, not proposed/);
      await refused(acceptMandate(ctx, entry.id, 2, acceptance, admin), 'conflict', /version 2 is not the current version of mandate mandate-ops-2026 \(1\)/);
      await refused(amendMandate(ctx, entry.id, 1, entry.terms, undefined, admin), 'invalid', /changes nothing/);
      await refused(amendMandate(ctx, entry.id, 1, mandateEntry({ grantee: { client_id: 'algo-8' } }).terms, undefined, admin), 'invalid', /grantor and grantee .* cannot change/);
      const narrower = mandateEntry({ scopes: ['order:create'] }).terms;
      await refused(amendMandate(ctx, entry.id, 1, narrower, acceptance, admin), 'invalid', /are the acceptance of version 1/);
      await refused(amendMandate(ctx, entry.id, 1, mandateEntry({ scopes: ['order:create'], effective_to: '2026-05-03T00:00:00Z' }).terms, undefined, admin), 'invalid', /effective_to is in the past/);
      await amendMandate(ctx, entry.id, 1, narrower, undefined, admin);
      await refused(amendMandate(ctx, entry.id, 1, entry.terms, undefined, admin), 'conflict', /version 1 is not the current version/);
      await revokeMandate(ctx, entry.id, { reason: 'agreement terminated' }, admin);
      await refused(revokeMandate(ctx, entry.id, { reason: 'again' }, admin), 'conflict', /already revoked/);
      await refused(amendMandate(ctx, entry.id, 2, entry.terms, undefined, admin), 'conflict', /revoked mandate cannot be amended/);
      await refused(acceptMandate(ctx, entry.id, 2, acceptance, admin), 'conflict', /version 2 is revoked, not proposed/);
      const mandate = (await getMandate(ctx, entry.id))!;
      assert.deepEqual(mandate.history.map((v) => [v.version, v.status]), [[1, 'superseded'], [2, 'revoked']]);
      assert.deepEqual((await events(ctx)).map((e) => e.type), ['mandate.created', 'mandate.accepted', 'mandate.amended', 'mandate.revoked']);
    });

    test('a revocation makes the mandate inactive at once, also for another node, and records who, when and why', async (t) => {
      const { ctx, at, clock, database } = await setup(t);
      const entry = mandateEntry();
      await createMandate(ctx, { ...entry, acceptance }, admin);
      const otherNode = { storage: database.connect(), clock, audit: ctx.audit };
      const ref = { id: entry.id, v: 1 };
      assert.equal(await isMandateActive(otherNode, ref, at()), true);
      clock.advance(1000);
      const revoked = await revokeMandate(ctx, entry.id, { reason: 'suspected misuse', by: 'grantor-coo' }, admin);
      assert.deepEqual(revoked.revocation, { at: clock.now(), by: 'grantor-coo', reason: 'suspected misuse' });
      assert.equal(await isMandateActive(otherNode, ref, at()), false);
      assert.equal(await isMandateActive(ctx, ref, at()), false);
      const event = (await events(ctx)).at(-1)!;
      assert.equal(event.type, 'mandate.revoked');
      assert.equal(event.actor, 'admin-ops');
      assert.deepEqual({ ...event.details, grantor: undefined, grantee: undefined }, {
        grantor: undefined,
        grantee: undefined,
        status_before: 'active',
        revoked_by: 'grantor-coo',
        reason: 'suspected misuse',
      });
      // Without `by`, the revocation names the actor.
      await createMandate(ctx, { ...mandateEntry({ id: 'm-2' }), acceptance }, admin);
      assert.equal((await revokeMandate(ctx, 'm-2', { reason: 'r' }, admin)).revocation!.by, 'admin-ops');
    });

    test('stops being in force at effective_to, and records mandate.expired once, when first observed', async (t) => {
      const { ctx, clock, at } = await setup(t);
      const entry = mandateEntry({ effective_to: '2026-05-05T00:00:00Z' });
      await createMandate(ctx, { ...entry, acceptance }, admin);
      const ref = { id: entry.id, v: 1 };
      assert.equal(await isMandateActive(ctx, ref, new Date('2026-05-04T23:59:59.999Z')), true);
      assert.equal(await isMandateActive(ctx, ref, new Date('2026-05-05T00:00:00Z')), false, 'a later instant is outside the mandate');
      assert.equal((await events(ctx)).filter((e) => e.type === 'mandate.expired').length, 0, 'not expired yet: only asked about the future');

      clock.set(Date.parse('2026-05-05T00:00:00Z'));
      assert.equal(await isMandateActive(ctx, ref, at()), false);
      assert.equal(await isMandateActive(ctx, ref, at()), false);
      assert.deepEqual(await mandateCovers(ctx, ref, { scopes: ['order:create'], at: at() }), { ok: false, reason: 'mandate mandate-ops-2026 v1 is expired' });
      const expired = (await events(ctx)).filter((e) => e.type === 'mandate.expired');
      assert.equal(expired.length, 1);
      assert.equal(expired[0]!.actor, 'clearance');
      assert.equal(expired[0]!.details!.effective_to, '2026-05-05T00:00:00.000Z');
      assert.equal(expired[0]!.details!.status_before, 'active');
      const mandate = (await getMandate(ctx, entry.id))!;
      assert.equal(mandate.current.status, 'expired');
      assert.equal(mandate.current.expiredAt, clock.now());

      await refused(revokeMandate(ctx, entry.id, { reason: 'too late' }, admin), 'conflict', /already expired/);
      // A renewal: an expired mandate can be amended into a new version.
      const renewed = await amendMandate(ctx, entry.id, 1, mandateEntry({ effective_to: '2027-05-05T00:00:00Z' }).terms, { by: 'algo-desk-head-42', at: clock.now() }, admin);
      assert.equal(renewed.status, 'active');
      assert.deepEqual((await getMandate(ctx, entry.id))!.history.map((v) => v.status), ['expired', 'active']);
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: 2 }, at()), true);
    });

    test('records due expiries of mandates nobody asked about when listing, and a refused step still records the expiry it found', async (t) => {
      const { ctx, clock } = await setup(t);
      await createMandate(ctx, { ...mandateEntry({ id: 'short', effective_to: '2026-05-05T00:00:00Z' }), acceptance }, admin);
      await createMandate(ctx, mandateEntry({ id: 'proposal', effective_to: '2026-05-05T00:00:00Z' }), admin);
      await createMandate(ctx, { ...mandateEntry({ id: 'long' }), acceptance }, admin);
      clock.set(Date.parse('2026-05-06T00:00:00Z'));
      await refused(acceptMandate(ctx, 'proposal', 1, { by: 'x', at: clock.now() }, admin), 'conflict', /version 1 is expired, not proposed/);
      assert.deepEqual((await events(ctx)).filter((e) => e.type === 'mandate.expired').map((e) => e.mandate!.id), ['proposal']);
      const listed = await listMandates(ctx);
      assert.deepEqual(listed.map((m) => [m.id, m.status]).sort(), [['long', 'active'], ['proposal', 'expired'], ['short', 'expired']]);
      assert.deepEqual((await events(ctx)).filter((e) => e.type === 'mandate.expired').map((e) => e.mandate!.id), ['proposal', 'short']);
      assert.equal(await expireDueMandates(ctx), 0, 'each expiry is recorded once');
      assert.deepEqual((await listMandates(ctx, { status: 'active' })).map((m) => m.id), ['long']);
      assert.deepEqual((await listMandates(ctx, { grantee: 'algo-7', status: 'expired' })).map((m) => m.id).sort(), ['proposal', 'short']);
      assert.deepEqual(await listMandates(ctx, { grantee: 'someone-else' }), []);
    });

    test('is not in force before effective_from', async (t) => {
      const { ctx, clock, at } = await setup(t);
      const entry = mandateEntry({ effective_from: '2026-06-01T00:00:00Z' });
      await createMandate(ctx, { ...entry, acceptance }, admin);
      const ref = { id: entry.id, v: 1 };
      assert.equal(await isMandateActive(ctx, ref, at()), false);
      assert.deepEqual(await mandateCovers(ctx, ref, { scopes: [], at: at() }), { ok: false, reason: 'mandate mandate-ops-2026 v1 is not in effect before 2026-06-01T00:00:00.000Z' });
      clock.set(Date.parse('2026-06-01T08:00:00Z'));
      assert.equal(await isMandateActive(ctx, ref, at()), true);
    });

    test('mandateCovers checks every scope and each dimension the request states against the constraints', async (t) => {
      const { ctx } = await setup(t);
      const entry = mandateEntry();
      await createMandate(ctx, { ...entry, acceptance }, admin);
      const ref = { id: entry.id, v: 1 };
      const at = new Date(monday0900London);
      const ok = { ok: true };
      const check = (request: Partial<CoverageRequest>) => mandateCovers(ctx, ref, { scopes: ['order:create'], at, ...request });
      assert.deepEqual(await check({}), ok);
      assert.deepEqual(await check({ instrumentClass: 'fx', venue: 'XLON', region: 'uk', notional: { amount: '5000000', currency: 'USD' } }), ok);
      assert.deepEqual(await check({ notional: { amount: 4_999_999.99, currency: 'USD' } }), ok);
      assert.deepEqual(await check({ grantees: [{ kind: 'client', id: 'algo-7' }, { kind: 'lei', id: '529900T8BM49AURSDO55' }] }), ok);
      assert.deepEqual(await check({ grantees: [{ kind: 'client', id: 'algo-8' }, { kind: 'lei', id: 'algo-7' }] }), {
        ok: false,
        reason: 'mandate mandate-ops-2026 v1 is granted to another client',
      });
      assert.deepEqual(await check({ scopes: ['order:create', 'order:amend', 'settlement:submit'] }), {
        ok: false,
        reason: 'mandate mandate-ops-2026 v1 does not grant order:amend settlement:submit',
      });
      assert.deepEqual(await check({ instrumentClass: 'crypto' }), { ok: false, reason: 'mandate mandate-ops-2026 v1 does not cover instrument class crypto' });
      assert.deepEqual(await check({ venue: 'XPAR' }), { ok: false, reason: 'mandate mandate-ops-2026 v1 does not cover venue XPAR' });
      assert.deepEqual(await check({ region: 'apac' }), { ok: false, reason: 'mandate mandate-ops-2026 v1 does not cover region apac' });
      assert.deepEqual(await check({ notional: { amount: '5000000.01', currency: 'USD' } }), {
        ok: false,
        reason: 'notional USD 5,000,000.01 is above the USD 5,000,000 of mandate mandate-ops-2026 v1',
      });
      assert.deepEqual(await check({ notional: { amount: '100', currency: 'EUR' } }), { ok: false, reason: 'mandate mandate-ops-2026 v1 limits notional in USD, not EUR' });
      assert.deepEqual(await check({ notional: { amount: '1e3', currency: 'USD' } }), { ok: false, reason: 'the notional is not a positive decimal amount' });
      // Monday 18:00 in London (17:00Z in summer time): after hours.
      assert.deepEqual(await check({ at: new Date('2026-05-04T17:00:00Z') }), {
        ok: false,
        reason: '2026-05-04T17:00:00.000Z is outside the time window of mandate mandate-ops-2026 v1 (mon,tue,wed,thu,fri 08:00-17:30 Europe/London)',
      });
      assert.deepEqual(await mandateCovers(ctx, { id: entry.id, v: 2 }, { scopes: [], at }), { ok: false, reason: 'mandate mandate-ops-2026 v2 does not exist' });
      assert.deepEqual(await mandateCovers(ctx, { id: entry.id, v: 0 }, { scopes: [], at }), { ok: false, reason: 'not a mandate reference {id, v}' });
      assert.equal(await isMandateActive(ctx, { id: entry.id, v: '1' } as unknown as { id: string; v: number }, at), false);
      // A mandate without constraints limits nothing but scopes.
      await createMandate(ctx, { ...mandateEntry({ id: 'open', constraints: undefined }), acceptance }, admin);
      assert.deepEqual(await mandateCovers(ctx, { id: 'open', v: 1 }, { scopes: ['order:cancel'], venue: 'XPAR', notional: { amount: '1e9', currency: 'JPY' }, at: new Date('2026-05-09T03:00:00Z') }), ok);
    });

    test('of two concurrent amendments of one version, one wins and the other is refused', async (t) => {
      const { ctx, clock, database } = await setup(t);
      const entry = mandateEntry();
      await createMandate(ctx, { ...entry, acceptance }, admin);
      // PostgreSQL: a second pool, as another node. SQLite: one process's handles block each other
      // synchronously (busy_timeout), so both go through this handle, whose transactions queue.
      const storage = dialect.name === 'postgres' ? database.connect() : ctx.storage;
      const otherNode = { storage, clock, audit: new AuditRecorder(storage.db, { clock, node: 'node-2' }) };
      const results = await Promise.allSettled([
        amendMandate(ctx, entry.id, 1, mandateEntry({ scopes: ['order:create'] }).terms, undefined, admin),
        amendMandate(otherNode, entry.id, 1, mandateEntry({ scopes: ['order:cancel'] }).terms, undefined, admin),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      const failure = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(failure.reason instanceof MandateError && failure.reason.code === 'conflict', String(failure.reason));
      const mandate = (await getMandate(ctx, entry.id))!;
      assert.deepEqual(mandate.history.map((v) => [v.version, v.status]), [[1, 'superseded'], [2, 'proposed']]);
      assert.equal((await events(ctx)).filter((e) => e.type === 'mandate.amended').length, 1);
    });

    test('introspection answers a live token inactive the moment its mandate is revoked, amended or expired', async (t) => {
      const { ctx, clock } = await setup(t);
      // The holder asks, as it would at /introspect: a registered client (its own token's view).
      await applyDocument(ctx, { resource_servers: [{ identifier: 'https://orders.example.com', scopes: ['order:create'] }], clients: [{ client_id: 'algo-7', kind: 'service', grant_types: ['client_credentials'], scope: 'order:create' }] });
      const mint = async (mandate: { id: string; v: number }) => {
        const now = Math.floor(clock.now() / 1000);
        return mintAccessToken(ctx.keys, {
          iss: ctx.config.issuer,
          sub: 'algo-7',
          aud: 'https://orders.example.com',
          exp: now + 300,
          iat: now,
          jti: newJti(),
          client_id: 'algo-7',
          scope: 'order:create',
          mandate,
        });
      };
      await createMandate(ctx, { ...mandateEntry({ id: 'revoked' }), acceptance }, admin);
      await createMandate(ctx, { ...mandateEntry({ id: 'amended' }), acceptance }, admin);
      await createMandate(ctx, { ...mandateEntry({ id: 'expiring', effective_to: '2026-05-04T08:01:00Z' }), acceptance }, admin);
      const tokens = { revoked: await mint({ id: 'revoked', v: 1 }), amended: await mint({ id: 'amended', v: 1 }), expiring: await mint({ id: 'expiring', v: 1 }) };
      for (const [name, token] of Object.entries(tokens)) {
        const answer = await introspect(ctx, 'algo-7', token);
        assert.equal(answer.active, true, name);
        assert.deepEqual((answer as Record<string, unknown>).mandate, { id: name, v: 1 });
      }

      await revokeMandate(ctx, 'revoked', { reason: 'terminated' }, admin);
      assert.deepEqual(await introspect(ctx, 'algo-7', tokens.revoked), { active: false });

      const v2 = await amendMandate(ctx, 'amended', 1, mandateEntry({ id: 'amended', scopes: ['order:create'] }).terms, { by: 'head', at: clock.now() }, admin);
      assert.deepEqual(await introspect(ctx, 'algo-7', tokens.amended), { active: false });
      assert.equal((await introspect(ctx, 'algo-7', await mint({ id: 'amended', v: v2.version }))).active, true, 'a token for the new version is');

      clock.set(Date.parse('2026-05-04T08:01:00Z'));
      assert.deepEqual(await introspect(ctx, 'algo-7', tokens.expiring), { active: false });
      assert.deepEqual((await events(ctx)).filter((e) => e.type === 'mandate.expired').map((e) => e.mandate), [{ id: 'expiring', v: 1 }]);
      assert.deepEqual(await introspect(ctx, 'algo-7', await mint({ id: 'never-created', v: 1 })), { active: false });
    });
  });
}
