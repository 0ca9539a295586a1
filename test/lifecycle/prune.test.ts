import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { PruneRefusedError, executeApply, planApply, previewApply, type ApplyPlan } from '../../src/apply/index.ts';
import { consoleClientId } from '../../src/console/client.ts';
import { documentDigest } from '../../src/lifecycle/plan.ts';
import { isBuiltinResourceServer } from '../../src/resource-servers/builtins.ts';
import { formatProblem } from '../../src/validation.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi } from '../endpoints/fixture.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { partnerKey } from '../federation/fixture.ts';
import { isTokenLive } from '../../src/tokens/liveness.ts';
import type { AccessTokenClaims } from '../../src/tokens/claims.ts';

/**
 * Apply's plan and prune (issue 23 item 1, src/lifecycle/prune.ts): the plan of a document is
 * exactly what applying it would do; with prune, the kinds it declares are authoritative, and what
 * it no longer declares is disabled with its tokens ended at once.
 */

const source = { actor: 'test:gitops', via: 'cli' } as const;
const people = [
  { username: 'alice', name: 'Alice Trader', email: 'alice@broker.example.com' },
  { username: 'bob', name: 'Bob Trader', email: 'bob@broker.example.com' },
];

async function plan(f: CodeFlowFixture, document: Record<string, unknown>): Promise<ApplyPlan> {
  const { plan, problems } = await planApply(f.ctx, document);
  if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
  return plan;
}

/** Every client the fixture registered (but Clearance's own console client), as a document declares them. */
async function declaredClients(f: CodeFlowFixture): Promise<Record<string, unknown>[]> {
  return (await f.ctx.clients.list()).filter((c) => c.metadata.client_id !== consoleClientId).map((c) => ({ ...c.metadata }));
}

interface Scene {
  f: CodeFlowFixture;
  /** The document applied as the baseline: every client, alice and bob. */
  baseline: Record<string, unknown>;
  brokerToken: string;
  alice: { access: string; refresh: string };
}

/** A baseline document applied; a client token of broker-3 and alice's tokens from a code flow. */
async function scene(t: TestContext, dialect: TestDialect): Promise<Scene> {
  const f = await codeFlowFixture(t, { dialect, risk: 'off' });
  const baseline = { clients: await declaredClients(f), users: people };
  await executeApply(f.ctx, await plan(f, baseline), source);
  const brokerToken = await f.accessToken('broker-3', { resource: ordersApi });
  const person = await f.signIn('alice');
  const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; refresh_token: string };
  return { f, baseline, brokerToken, alice: { access: body.access_token, refresh: body.refresh_token } };
}

/** The baseline without broker-3 and without alice. */
function withoutBrokerAndAlice(baseline: Record<string, unknown>): Record<string, unknown> {
  return {
    clients: (baseline.clients as { client_id: string }[]).filter((c) => c.client_id !== 'broker-3'),
    users: people.filter((p) => p.username !== 'alice'),
  };
}

for (const dialect of testDialects()) {
  describe(`apply's plan and prune on ${dialect.name}`, () => {
    test('the plan of a document without a client and a person shows exactly those removals, and writes nothing', async (t) => {
      const { f, baseline, brokerToken } = await scene(t, dialect);
      const eventsBefore = (await f.auditEvents()).length;
      const preview = await previewApply(f.ctx, await plan(f, withoutBrokerAndAlice(baseline)), source, { prune: true });
      assert.deepEqual(preview.changes, [
        { kind: 'client', id: 'broker-3', outcome: 'disabled' },
        { kind: 'user', id: 'alice', outcome: 'disabled' },
      ]);
      assert.deepEqual(preview.refusals, []);
      // Without prune, the same document changes nothing: entries missing from it are kept.
      const plain = await previewApply(f.ctx, await plan(f, withoutBrokerAndAlice(baseline)), source);
      assert.deepEqual(plain.changes, []);
      // Nothing was written: the client still works, nothing was audited.
      assert.equal((await f.introspect('orders-gateway', brokerToken)).active, true);
      assert.equal((await f.ctx.clients.get('broker-3'))?.disabledAt, null);
      assert.equal((await f.auditEvents()).length, eventsBefore);
    });

    test('prune disables the client and offboards the person, and their tokens are inactive at introspection at once', async (t) => {
      const { f, baseline, brokerToken, alice } = await scene(t, dialect);
      const document = withoutBrokerAndAlice(baseline);
      const digest = documentDigest(JSON.stringify(document));
      const result = await executeApply(f.ctx, await plan(f, document), source, { prune: true, digest });
      assert.deepEqual(
        result.changes.filter((c) => c.outcome !== 'unchanged'),
        [
          { kind: 'client', id: 'broker-3', outcome: 'disabled' },
          { kind: 'user', id: 'alice', outcome: 'disabled' },
        ],
      );
      assert.equal((await f.introspect('orders-gateway', brokerToken)).active, false);
      assert.equal((await f.introspect('orders-gateway', alice.access)).active, false);
      // The client can no longer authenticate; alice's refresh token is dead.
      assertOAuthError(await f.token({ auth: f.basic('broker-3'), form: { grant_type: 'client_credentials', resource: ordersApi } }), 401, 'invalid_client');
      assertOAuthError(await f.refresh('web-app', alice.refresh), 400, 'invalid_grant');
      // Disabled, not deleted: the client is still registered, alice still exists (offboarded).
      assert.notEqual((await f.ctx.clients.get('broker-3'))?.disabledAt, null);
      const row = await f.ctx.storage.db.selectFrom('users').select(['status', 'offboarded_at']).where('username', '=', 'alice').executeTakeFirstOrThrow();
      assert.equal(row.status, 'disabled');
      assert.notEqual(row.offboarded_at, null);
      // One config.changed per change, each carrying the document's digest; the leaver's own event too.
      const changed = (await f.auditEvents('config.changed')).filter((e) => e.details?.document_digest === digest);
      assert.deepEqual(
        changed.map((e) => [e.details!.kind, e.details!.outcome]),
        [
          ['client', 'disabled'],
          ['user', 'disabled'],
        ],
      );
      const offboarded = await f.auditEvents('user.offboarded');
      assert.equal(offboarded.length, 1);
      assert.equal(offboarded[0]!.details!.document_digest, digest);
      assert.equal(offboarded[0]!.details!.via, 'apply-prune');
      // Other clients and people are untouched.
      assert.equal((await f.introspect('orders-gateway', await f.accessToken('broker-1', { resource: ordersApi }))).active, true);
    });

    test('a client declared again after prune is back in service, but tokens issued before it was disabled stay dead', async (t) => {
      const { f, baseline, brokerToken } = await scene(t, dialect);
      await executeApply(f.ctx, await plan(f, withoutBrokerAndAlice(baseline)), source, { prune: true });
      f.clock.advance(1000);
      const again = await executeApply(f.ctx, await plan(f, { clients: baseline.clients }), source, { prune: true });
      assert.deepEqual(again.changes.filter((c) => c.outcome !== 'unchanged'), [{ kind: 'client', id: 'broker-3', outcome: 'updated' }]);
      assert.equal((await f.introspect('orders-gateway', brokerToken)).active, false);
      f.clock.advance(1000);
      assert.equal((await f.introspect('orders-gateway', await f.accessToken('broker-3', { resource: ordersApi }))).active, true);
    });

    test('the safety rule refuses to prune more than the configured share of a kind, and writes nothing; --force goes past it', async (t) => {
      const { f, baseline } = await scene(t, dialect);
      const emptied = { clients: (baseline.clients as { client_id: string }[]).filter((c) => c.client_id === 'web-app' || c.client_id === 'admin-ops') };
      const preview = await previewApply(f.ctx, await plan(f, emptied), source, { prune: true });
      assert.equal(preview.refusals.length, 1);
      assert.equal(preview.refusals[0]!.kind, 'client');
      await assert.rejects(executeApply(f.ctx, await plan(f, emptied), source, { prune: true }), (error: unknown) => {
        assert.ok(error instanceof PruneRefusedError);
        assert.match(error.message, /client\(s\) in service .*without --force.*nothing was applied/);
        return true;
      });
      assert.equal((await f.ctx.clients.list()).filter((c) => c.disabledAt !== null).length, 0);
      const forced = await executeApply(f.ctx, await plan(f, emptied), source, { prune: true, force: true });
      assert.ok(forced.changes.filter((c) => c.outcome === 'disabled').length > 1);
      // Clearance's own console client is never pruned.
      assert.equal((await f.ctx.clients.get(consoleClientId))?.disabledAt, null);
    });

    test('prune never disables the last clients that can administer Clearance, even with --force', async (t) => {
      const { f, baseline } = await scene(t, dialect);
      const withoutAdmins = { clients: (baseline.clients as { client_id: string }[]).filter((c) => c.client_id !== 'admin-ops') };
      const preview = await previewApply(f.ctx, await plan(f, withoutAdmins), source, { prune: true });
      assert.deepEqual(preview.refusals.map((r) => r.lastAdministrators), [['admin-ops']]);
      await assert.rejects(executeApply(f.ctx, await plan(f, withoutAdmins), source, { prune: true, force: true }), (error: unknown) => {
        assert.ok(error instanceof PruneRefusedError);
        assert.match(error.message, /every client that can administer Clearance \(admin:write: admin-ops\).*--force does not override/);
        return true;
      });
      assert.equal((await f.ctx.clients.get('admin-ops'))?.disabledAt, null);
    });

    test('the plan shows a change field by field, and a secret or a person\'s personal data only as changed', async (t) => {
      const { f, baseline } = await scene(t, dialect);
      const changed = {
        clients: (baseline.clients as { client_id: string; scope?: string }[]).map((c) => (c.client_id === 'broker-3' ? { ...c, scope: 'order:create order:cancel' } : c)),
        users: people.map((p) => (p.username === 'bob' ? { ...p, email: 'robert@broker.example.com', password: 'a new long passphrase 42' } : p)),
      };
      const preview = await previewApply(f.ctx, await plan(f, changed), source);
      assert.deepEqual(preview.changes, [
        { kind: 'client', id: 'broker-3', outcome: 'updated', fields: [{ field: 'scope', before: 'order:create', after: 'order:create order:cancel' }] },
        {
          kind: 'user',
          id: 'bob',
          outcome: 'updated',
          fields: [{ field: 'email', personal: true }, { field: 'password', secret: true }],
        },
      ]);
      assert.doesNotMatch(JSON.stringify(preview), /a new long passphrase|robert@/);
    });

    test('a resource server absent from an authoritative document is no audience any more, and its tokens are dead', async (t) => {
      const { f } = await scene(t, dialect);
      const surveillance = 'https://surveillance.example.com';
      await executeApply(f.ctx, await plan(f, { resource_servers: [{ identifier: surveillance, scopes: ['market:read'] }] }), source);
      const token = await f.accessToken('broker-1', { resource: surveillance, scope: 'market:read' });
      assert.equal((await f.introspect('broker-1', token)).active, true);
      const kept = (await f.ctx.resourceServers.list()).filter((r) => r.identifier !== surveillance && !isBuiltinResourceServer(f.issuer, r.identifier));
      const result = await executeApply(f.ctx, await plan(f, { resource_servers: kept }), source, { prune: true });
      assert.deepEqual(result.changes.filter((c) => c.outcome !== 'unchanged'), [{ kind: 'resource_server', id: surveillance, outcome: 'disabled' }]);
      assert.equal((await f.introspect('broker-1', token)).active, false);
      assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: surveillance, scope: 'market:read' } }), 400, 'invalid_target');
      assert.ok((await f.ctx.resourceServers.getStored(surveillance))?.disabledAt);
    });

    test('a partner absent from an authoritative document is no longer trusted, and what came from it is dead even once it is declared again', async (t) => {
      const { f } = await scene(t, dialect);
      const issuer = 'https://as.acme-bank.example';
      const partner = {
        id: 'acme',
        issuer,
        jwks: { keys: [(await partnerKey('acme-1')).jwk] },
        algorithms: ['ES256'],
        allowed_audiences: [ordersApi],
        allowed_scopes: ['order:create'],
      };
      await executeApply(f.ctx, await plan(f, { partners: [partner] }), source);
      // A token exchanged from one of the partner's tokens carries its issuer (origin_iss).
      const now = Math.floor(f.clock.now() / 1000);
      const claims = { iss: f.issuer, sub: 'acme-trader', aud: ordersApi, exp: now + 300, iat: now, jti: 'from-acme-1', client_id: 'broker-1', scope: 'order:create', origin_iss: issuer } as AccessTokenClaims;
      assert.equal(await isTokenLive(f.ctx, claims), true);
      f.clock.advance(1000);
      const pruned = await executeApply(f.ctx, await plan(f, { partners: [] }), source, { prune: true });
      assert.deepEqual(pruned.changes, [{ kind: 'partner', id: 'acme', outcome: 'disabled' }]);
      assert.equal(await f.ctx.partners.byIssuer(issuer), undefined);
      assert.equal(await isTokenLive(f.ctx, claims), false);
      f.clock.advance(1000);
      await executeApply(f.ctx, await plan(f, { partners: [partner] }), source);
      assert.equal((await f.ctx.partners.byIssuer(issuer))?.id, 'acme');
      assert.equal(await isTokenLive(f.ctx, claims), false, 'issued before the partner was disabled');
      const later = Math.floor(f.clock.now() / 1000) + 1;
      f.clock.advance(1000);
      assert.equal(await isTokenLive(f.ctx, { ...claims, jti: 'from-acme-2', iat: later, exp: later + 300 }), true);
    });

    test('a mandate absent from an authoritative document is revoked', async (t) => {
      const { f } = await scene(t, dialect);
      const mandate = (id: string) => ({ id, grantor: { lei: '5493001KJTIIGC8Y1R12' }, grantee: { client_id: 'broker-1' }, scopes: ['order:create'], legal_basis: { reference: `Desk mandate ${id}` }, effective_from: '2026-05-01T00:00:00Z' });
      await executeApply(f.ctx, await plan(f, { mandates: [mandate('m-kept'), mandate('m-dropped')] }), source);
      const result = await executeApply(f.ctx, await plan(f, { mandates: [mandate('m-kept')] }), source, { prune: true });
      assert.deepEqual(result.changes.filter((c) => c.outcome !== 'unchanged'), [{ kind: 'mandate', id: 'm-dropped', outcome: 'disabled' }]);
      const status = async (id: string) =>
        (await f.ctx.storage.db.selectFrom('mandate_versions').select('status').where('mandate_id', '=', id).orderBy('version', 'desc').executeTakeFirstOrThrow()).status;
      assert.equal(await status('m-dropped'), 'revoked');
      assert.notEqual(await status('m-kept'), 'revoked');
      assert.equal((await f.auditEvents('mandate.revoked')).length, 1);
    });
  });
}
