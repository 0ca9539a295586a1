import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { executeApply, planApply } from '../../src/apply/index.ts';
import { parseDocument } from '../../src/apply/parse.ts';
import type { StoredAuditEvent } from '../../src/audit/events.ts';
import { ManualClock } from '../../src/clock.ts';
import type { Context } from '../../src/context.ts';
import { findUserByUsername } from '../../src/identity/users.ts';
import { getMandate, revokeMandate } from '../../src/mandates/store.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, testDialects } from '../helpers/storage.ts';
import { exampleMandate, grantorLei, monday0900London } from './fixture.ts';

const source = { actor: 'cli:ops', via: 'cli' } as const;

const yaml = `
resource_servers:
  - identifier: https://orders.example.com
    scopes: [order:create, order:cancel, order:amend]
clients:
  - client_id: algo-7
    kind: agent
    grant_types: [client_credentials]
    scope: order:create order:cancel
users:
  - username: alice
    name: Alice Trader
mandates:
  - id: mandate-ops-2026
    grantor: { lei: ${grantorLei} }
    grantee: { client_id: algo-7 }
    scopes: [order:create, order:cancel]
    constraints:
      instrument_classes: [fx, bond]
      venues: [XLON, XNYS]
      max_notional: { amount: "5000000.00", currency: USD }
      regions: [uk, eu]
      time_window:
        timezone: Europe/London
        days: [mon, tue, wed, thu, fri]
        hours: { from: "08:00", to: "17:30" }
    legal_basis:
      reference: Master services agreement 2026-04, clause 7
      text: The grantor authorises the grantee to route orders.
    effective_from: 2026-05-01T00:00:00Z
    effective_to: 2027-05-01T00:00:00Z
    accepted_by: algo-desk-head-42
    accepted_at: 2026-04-30T12:00:00Z
  - id: alice-rates
    grantor: { account: ACC-7781 }
    grantee: { user: alice }
    scopes: [order:create]
    legal_basis: { reference: Desk mandate 2026-05 }
    effective_from: 2026-05-01T00:00:00Z
`;

async function plan(ctx: Context, document: unknown) {
  const { plan, problems } = await planApply(ctx, document);
  assert.ok(plan, problems.map(formatProblem).join('\n'));
  return plan;
}

async function apply(ctx: Context, document: unknown) {
  return executeApply(ctx, await plan(ctx, document), source);
}

async function problemsOf(ctx: Context, document: unknown): Promise<string[]> {
  const { plan, problems } = await planApply(ctx, document);
  assert.equal(plan, undefined);
  return problems.map(formatProblem);
}

async function events(ctx: Context, prefix = 'mandate.'): Promise<StoredAuditEvent[]> {
  await (ctx.audit as { flush?: () => Promise<void> }).flush?.();
  const rows = await ctx.storage.db.selectFrom('audit_events').select('event').where('type', 'like', `${prefix}%`).orderBy('seq').execute();
  return rows.map((r) => JSON.parse(r.event) as StoredAuditEvent);
}

const base = { resource_servers: [{ identifier: 'https://orders.example.com', scopes: ['order:create', 'order:cancel', 'order:amend'] }] };
const mandate = (overrides: Record<string, unknown> = {}) => ({ ...exampleMandate, grantee: { lei: '529900T8BM49AURSDO55' }, ...overrides });
const accepted = { accepted_by: 'algo-desk-head-42', accepted_at: '2026-04-30T12:00:00Z' };

for (const dialect of testDialects()) {
  describe(`the mandates section of clearance apply on ${dialect.name}`, () => {
    const setup = async (t: TestContext) => {
      const clock = new ManualClock(monday0900London);
      const { ctx } = await testContext({ t, dialect, clock });
      return { ctx, clock };
    };

    test('creates mandates with the servers, clients and users of the same file, and re-applying it changes nothing', async (t) => {
      const { ctx } = await setup(t);
      const document = parseDocument(yaml, 'config.yaml').value;
      const first = await apply(ctx, document);
      assert.deepEqual(
        first.changes.filter((c) => c.kind === 'mandate'),
        [
          { kind: 'mandate', id: 'mandate-ops-2026', outcome: 'created' },
          { kind: 'mandate', id: 'alice-rates', outcome: 'created' },
        ],
      );
      const ops = (await getMandate(ctx, 'mandate-ops-2026'))!.current;
      assert.equal(ops.status, 'active');
      assert.deepEqual(ops.acceptance, { by: 'algo-desk-head-42', at: Date.parse('2026-04-30T12:00:00Z') });
      assert.equal(ops.createdBy, 'cli:ops');
      assert.equal(ops.terms.constraints.max_notional?.amount, '5000000');
      const alice = await findUserByUsername(ctx, 'alice');
      const rates = (await getMandate(ctx, 'alice-rates'))!.current;
      assert.equal(rates.status, 'proposed');
      assert.deepEqual(rates.terms.grantee, { kind: 'user', id: alice!.id }, 'a user grantee is stored by id, never by username');
      assert.deepEqual((await events(ctx)).map((e) => `${e.type} ${e.mandate!.id}`), [
        'mandate.created mandate-ops-2026',
        'mandate.accepted mandate-ops-2026',
        'mandate.created alice-rates',
      ]);
      assert.equal((await events(ctx)).some((e) => JSON.stringify(e).includes('alice"')), false);
      const applied = (await events(ctx, 'config.applied')).at(-1)!;
      assert.deepEqual((applied.details!.changes as { kind: string }[]).filter((c) => c.kind === 'mandate').length, 2);

      const again = await apply(ctx, document);
      assert.deepEqual(again.changes.map((c) => c.outcome), again.changes.map(() => 'unchanged'));
      assert.equal((await events(ctx)).length, 3);
    });

    test('accepts a proposed mandate when the file adds the acceptance, and amends it into a new version when its terms change', async (t) => {
      const { ctx, clock } = await setup(t);
      await apply(ctx, { ...base, mandates: [mandate()] });
      assert.equal((await getMandate(ctx, exampleMandate.id))!.current.status, 'proposed');

      const acceptedNow = await apply(ctx, { ...base, mandates: [mandate(accepted)] });
      assert.deepEqual(acceptedNow.changes.at(-1), { kind: 'mandate', id: exampleMandate.id, outcome: 'updated' });
      assert.deepEqual((await getMandate(ctx, exampleMandate.id))!.history.map((v) => [v.version, v.status]), [[1, 'active']]);

      clock.advance(3600_000);
      const amendment = mandate({ scopes: ['order:create'], accepted_by: 'algo-desk-head-42', accepted_at: '2026-05-04T08:30:00Z' });
      const amended = await apply(ctx, { ...base, mandates: [amendment] });
      assert.deepEqual(amended.changes.at(-1), { kind: 'mandate', id: exampleMandate.id, outcome: 'updated' });
      const history = (await getMandate(ctx, exampleMandate.id))!.history;
      assert.deepEqual(history.map((v) => [v.version, v.status]), [[1, 'superseded'], [2, 'active']]);
      assert.deepEqual(history[0]!.terms.scopes, ['order:cancel', 'order:create'], 'version 1 is unchanged');
      assert.deepEqual(history[1]!.terms.scopes, ['order:create']);

      // Terms changed without an acceptance: a proposed version 3.
      await apply(ctx, { ...base, mandates: [mandate({ scopes: ['order:cancel'] })] });
      assert.deepEqual((await getMandate(ctx, exampleMandate.id))!.history.map((v) => v.status), ['superseded', 'superseded', 'proposed']);
      assert.deepEqual((await events(ctx)).map((e) => `${e.type} v${e.mandate!.v}`), [
        'mandate.created v1',
        'mandate.accepted v1',
        'mandate.amended v2',
        'mandate.accepted v2',
        'mandate.amended v3',
      ]);
      const again = await apply(ctx, { ...base, mandates: [mandate({ scopes: ['order:cancel'] })] });
      assert.equal(again.changes.at(-1)!.outcome, 'unchanged');
    });

    test('checks entries against the document and the store, reporting each problem at its path', async (t) => {
      const { ctx } = await setup(t);
      assert.deepEqual(
        await problemsOf(ctx, {
          ...base,
          mandates: [
            mandate({ id: 'a', scopes: ['order:create', 'settlement:submit', 'admin:write'] }),
            mandate({ id: 'b', grantee: { client_id: 'ghost' } }),
            mandate({ id: 'c', grantee: { user: 'nobody' } }),
            mandate({ id: 'd', accepted_by: 'x', accepted_at: '2026-05-04T08:00:01Z' }),
            mandate({ id: 'e', effective_to: '2026-05-04T08:00:00Z' }),
            mandate({ id: 'a' }),
          ],
        }),
        [
          'mandates[5].id: "a" is also defined at mandates[0]',
          'mandates[0].scopes: "admin:write" is not offered by any resource server',
          'mandates[0].scopes: "settlement:submit" is not offered by any resource server',
          'mandates[1].grantee.client_id: no client "ghost"',
          'mandates[2].grantee.user: no user "nobody"',
          'mandates[3].accepted_at: is in the future',
          'mandates[4].effective_to: is in the past',
        ],
      );

      await apply(ctx, { ...base, mandates: [mandate({ id: 'live', ...accepted }), mandate({ id: 'gone', ...accepted })] });
      await revokeMandate(ctx, 'gone', { reason: 'terminated' }, { actor: 'admin-ops' });
      assert.deepEqual(
        await problemsOf(ctx, {
          ...base,
          mandates: [
            mandate({ id: 'live', grantor: { account: 'ACC-1' }, grantee: { lei: '5493001KJTIIGC8Y1R12' } }),
            mandate({ id: 'live', scopes: ['order:create'], ...accepted }),
            mandate({ id: 'live', accepted_by: 'someone-else', accepted_at: '2026-04-30T12:00:00Z' }),
            mandate({ id: 'gone', scopes: ['order:create'] }),
            mandate({ id: 'gone', ...accepted, accepted_at: '2026-05-01T00:00:00Z' }),
          ],
        }),
        [
          'mandates[1].id: "live" is also defined at mandates[0]',
          'mandates[2].id: "live" is also defined at mandates[0]',
          'mandates[4].id: "gone" is also defined at mandates[3]',
          'mandates[0].grantor: cannot change (mandate live exists); give a new mandate a new id',
          'mandates[0].grantee: cannot change (mandate live exists); give a new mandate a new id',
          'mandates[1].accepted_at: is the acceptance of version 1; the amended terms need their own acceptance (or none: they are then proposed)',
          'mandates[2].accepted_by: version 1 was accepted by algo-desk-head-42 at 2026-04-30T12:00:00.000Z; an acceptance is not rewritten',
          'mandates[3]: mandate gone was revoked; a revoked mandate never changes (give the new terms a new id)',
          'mandates[4].accepted_by: version 1 was accepted by algo-desk-head-42 at 2026-04-30T12:00:00.000Z; an acceptance is not rewritten',
        ],
      );
      // The revoked mandate, re-applied as it was, is simply unchanged: a file never revives it.
      const same = await apply(ctx, { ...base, mandates: [mandate({ id: 'gone', ...accepted })] });
      assert.equal(same.changes.at(-1)!.outcome, 'unchanged');
      assert.equal((await getMandate(ctx, 'gone'))!.current.status, 'revoked');
    });

    test('constrains mandates to declared instrument classes: the built-in ones until the operator declares its own', async (t) => {
      const { ctx } = await setup(t);
      const classes = (...ids: string[]) => mandate({ constraints: { instrument_classes: ids } });
      assert.ok((await planApply(ctx, { ...base, mandates: [classes('fx', 'bond')] })).plan, 'fx and bond are built-in');
      assert.deepEqual(await problemsOf(ctx, { ...base, mandates: [classes('fx', 'weather')] }), [
        'mandates[0].constraints.instrument_classes: "weather" is not a declared instrument class (add it under instrument_classes)',
      ]);
      // Declared in the same document, the firm's classes replace the built-in ones.
      const firm = { instrument_classes: [{ id: 'fx' }, { id: 'rates_derivatives', complex: true }] };
      assert.deepEqual(await problemsOf(ctx, { ...base, ...firm, mandates: [classes('bond', 'rates_derivatives')] }), [
        'mandates[0].constraints.instrument_classes: "bond" is not a declared instrument class (add it under instrument_classes)',
      ]);
      await apply(ctx, { ...base, ...firm, mandates: [classes('fx', 'rates_derivatives')] });
      assert.deepEqual(await problemsOf(ctx, { ...base, mandates: [classes('bond')] }), [
        'mandates[0].constraints.instrument_classes: "bond" is not a declared instrument class (add it under instrument_classes)',
      ]);
    });

    test('is all or nothing: when a mandate changed between planning and executing, nothing of the document is written', async (t) => {
      const { ctx } = await setup(t);
      await apply(ctx, { ...base, mandates: [mandate(accepted)] });
      const planned = await plan(ctx, {
        ...base,
        clients: [{ client_id: 'late-client', grant_types: ['client_credentials'], scope: 'order:create' }],
        mandates: [mandate({ scopes: ['order:create'] })],
      });
      await revokeMandate(ctx, exampleMandate.id, { reason: 'meanwhile' }, { actor: 'admin-ops' });
      const before = (await events(ctx)).length;
      await assert.rejects(executeApply(ctx, planned, source), /revoked mandate cannot be amended/);
      assert.equal(await ctx.clients.get('late-client'), undefined);
      assert.deepEqual((await getMandate(ctx, exampleMandate.id))!.history.map((v) => v.status), ['revoked']);
      assert.equal((await events(ctx)).length, before);
    });
  });
}
