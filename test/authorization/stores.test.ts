import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { issueCode, redeemCode } from '../../src/authorization/codes.ts';
import { approveRequest, findActiveGrant, revokeGrant } from '../../src/authorization/consent.ts';
import { consumePushedRequest, storePushedRequest } from '../../src/authorization/pushed-requests.ts';
import type { AuthorizationRequest } from '../../src/authorization/request.ts';
import type { Context } from '../../src/context.ts';
import { issueRefreshToken, refreshTokenById, retryRefreshToken, rotateRefreshToken } from '../../src/tokens/refresh-tokens.ts';
import { createInteraction, pruneInteractions } from '../../src/authorization/interactions.ts';
import type { StepUpRecord } from '../../src/authorization/step-up.ts';
import { acr } from '../../src/identity/acr.ts';
import { authorizationPruningSettled, maybePruneAuthorizationState } from '../../src/authorization/pruning.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

const request: AuthorizationRequest = {
  clientId: 'web-app',
  redirectUri: 'https://app.example.com/cb',
  codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  resource: 'https://orders.example.com/api',
  scopes: ['order:create'],
  oidcScopes: ['openid'],
  authorizationDetails: [],
  prompt: [],
  acrValues: [],
  via: 'parameters',
};

/**
 * The context twice: on PostgreSQL the second has its own connection pool, as another node would.
 * SQLite serves one node per database file, with one connection per process: a second connection
 * in the same process would wait for the first one's transaction synchronously, blocking the event
 * loop that the first one needs to finish (a deadlock no deployment has), so there both share one.
 */
async function twoNodes(t: TestContext, dialect: ReturnType<typeof testDialects>[number]): Promise<[Context, Context]> {
  const { ctx, database } = await testContext({ t, dialect });
  return [ctx, dialect.name === 'postgres' ? { ...ctx, storage: database.connect() } : ctx];
}

for (const dialect of testDialects()) {
  describe(`single use in the authorization stores on ${dialect.name}`, () => {
    test('redeems a code exactly once among 20 concurrent attempts on two connections', async (t) => {
      const [a, b] = await twoNodes(t, dialect);
      const { id } = await issueCode(a, {
        clientId: 'web-app',
        grantId: 'g-1',
        userId: 'u-1',
        redirectUri: request.redirectUri,
        codeChallenge: request.codeChallenge,
        payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [], sessionId: 's' },
      });
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => redeemCode(i % 2 ? a : b, id)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('rotates a refresh token exactly once among concurrent attempts, the child already in place for the losers', async (t) => {
      const [a, b] = await twoNodes(t, dialect);
      const issued = await issueRefreshToken(a, {
        grantId: 'g-1',
        clientId: 'web-app',
        userId: 'u-1',
        payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [] },
      });
      const parent = (await refreshTokenById(a, issued.id))!;
      const children = await Promise.all(Array.from({ length: 10 }, (_, i) => rotateRefreshToken(i % 2 ? a : b, parent, issued.token)));
      assert.equal(children.filter(Boolean).length, 1);
      const rows = await a.storage.db.selectFrom('refresh_tokens').select(['id', 'state', 'parent_id']).execute();
      assert.equal(rows.length, 2);
      assert.equal(rows.find((r) => r.id === parent.id)!.state, 'rotated');
    });

    test('gives every concurrent retry of a rotated token its one unused successor on two connections, and none once that was used', async (t) => {
      const [a, b] = await twoNodes(t, dialect);
      const issued = await issueRefreshToken(a, { grantId: 'g-1', clientId: 'web-app', userId: 'u-1', payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [] } });
      const parent = (await refreshTokenById(a, issued.id))!;
      // Rotations and retries at once, as 20 concurrent requests with one token would make them.
      const results = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const node = i % 2 ? a : b;
          return (await rotateRefreshToken(node, parent, issued.token)) ?? (await retryRefreshToken(node, parent, issued.token));
        }),
      );
      assert.ok(results.every(Boolean), 'every duplicate gets a token');
      assert.equal(new Set(results.map((r) => r!.token)).size, 1, 'the same one: exactly one rotation');
      const rows = await a.storage.db.selectFrom('refresh_tokens').select(['id', 'state']).execute();
      assert.deepEqual(rows.map((r) => r.state).sort(), ['active', 'rotated']);
      const child = (await refreshTokenById(a, results[0]!.id))!;
      assert.equal(child.state, 'active');
      // A seal opens only with the parent's token value.
      assert.equal(await retryRefreshToken(a, parent, `${issued.token}x`), undefined);

      assert.ok(await rotateRefreshToken(b, child, results[0]!.token), 'the successor is used');
      assert.equal(await retryRefreshToken(a, parent, issued.token), undefined, 'a retry after that is a reuse');
      const seals = await a.storage.db.selectFrom('refresh_tokens').select(['state', 'retry_seal']).execute();
      assert.deepEqual(seals.filter((r) => r.retry_seal !== null).map((r) => r.state), ['active'], 'only the unused token keeps a seal');
    });

    test('replaces, on retry, a successor rotated before retries were sealed', async (t) => {
      const [a] = await twoNodes(t, dialect);
      const issued = await issueRefreshToken(a, { grantId: 'g-1', clientId: 'web-app', userId: 'u-1', payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [] } });
      const parent = (await refreshTokenById(a, issued.id))!;
      const old = (await rotateRefreshToken(a, parent, issued.token))!;
      await a.storage.db.updateTable('refresh_tokens').set({ retry_seal: null }).where('id', '=', old.id).execute();
      const retried = (await retryRefreshToken(a, parent, issued.token))!;
      assert.notEqual(retried.token, old.token);
      assert.equal((await refreshTokenById(a, old.id))!.state, 'superseded');
      assert.equal((await retryRefreshToken(a, parent, issued.token))!.token, retried.token, 'the replacement is sealed');
    });

    test('consumes a pushed request exactly once', async (t) => {
      const [a, b] = await twoNodes(t, dialect);
      const pushed = await storePushedRequest(a, request);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => consumePushedRequest(i % 2 ? a : b, pushed.id)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('keeps one active grant per person and client under concurrent approvals, with every scope and mandate approved, and revokes it once', async (t) => {
      const [a, b] = await twoNodes(t, dialect);
      const approvals = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          approveRequest(i % 2 ? a : b, 'u-1', { ...request, scopes: [i % 2 ? 'order:create' : 'order:cancel'], ...(i % 3 === 0 ? { mandate: `m-${i}` } : {}) }),
        ),
      );
      assert.equal(new Set(approvals.map((g) => g.id)).size, 1);
      const grant = (await findActiveGrant(a, 'u-1', 'web-app'))!;
      assert.deepEqual(grant.resources['https://orders.example.com/api']!.sort(), ['order:cancel', 'order:create']);
      assert.deepEqual([...grant.mandates].sort(), ['m-0', 'm-3'], 'no concurrent approval loses another one\'s mandate');
      const revoked = await Promise.all(Array.from({ length: 4 }, (_, i) => revokeGrant(i % 2 ? a : b, grant.id, { actor: 'test', reason: 'test' })));
      assert.equal(revoked.filter(Boolean).length, 1);
      assert.equal(await findActiveGrant(a, 'u-1', 'web-app'), undefined);
      const fresh = await approveRequest(a, 'u-1', request);
      assert.notEqual(fresh.id, grant.id, 'after a revocation, approval makes a new grant');
    });

    test('prunes expired pushed requests, interactions, codes and refresh tokens, and keeps live ones', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const count = async () => {
        const db = ctx.storage.db;
        const n = async (table: 'pushed_requests' | 'interactions' | 'authorization_codes' | 'refresh_tokens') =>
          Number((await db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
        return [await n('pushed_requests'), await n('interactions'), await n('authorization_codes'), await n('refresh_tokens')];
      };
      const fill = async () => {
        await storePushedRequest(ctx, request);
        await createInteraction(ctx, request, 'browser');
        await issueCode(ctx, { clientId: 'web-app', grantId: 'g', userId: 'u', redirectUri: request.redirectUri, codeChallenge: request.codeChallenge, payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [], sessionId: 's' } });
        await issueRefreshToken(ctx, { grantId: 'g', clientId: 'web-app', userId: 'u', payload: { scopes: [], oidcScopes: [], authorizationDetails: [], authTime: 0, acr: 'x', amr: [] } });
      };
      await fill();
      maybePruneAuthorizationState(ctx);
      await authorizationPruningSettled(ctx);
      assert.deepEqual(await count(), [1, 1, 1, 1], 'nothing live is pruned');
      clock.advance(2 * 24 * 3600_000);
      await fill();
      maybePruneAuthorizationState(ctx);
      await authorizationPruningSettled(ctx);
      assert.deepEqual(await count(), [1, 1, 1, 1], 'the expired ones went, the new ones stayed');
    });

    test('an interaction that expires waiting for a step-up is audited as abandoned when pruned, once', async (t) => {
      const { ctx, clock } = await testContext({ t, dialect });
      const stepUp: StepUpRecord = { id: 'su-1', triggers: ['role_minimum'], acr: acr.multiFactor, factorOffered: 'password+totp', acrBefore: acr.password, requestedAt: clock.now() };
      await createInteraction(ctx, request, 'browser', { stepUp });
      await createInteraction(ctx, request, 'browser');
      clock.advance(2 * 24 * 3600_000);
      assert.equal(await pruneInteractions(ctx, clock.now()), 2);
      assert.equal(await pruneInteractions(ctx, clock.now()), 0);
      const events = (await ctx.storage.db.selectFrom('audit_events').select('event').where('type', '=', 'step_up.completed').execute()).map((r) => JSON.parse(r.event));
      assert.equal(events.length, 1);
      assert.equal(events[0].details.outcome, 'abandoned');
      assert.equal(events[0].details.step_up_id, 'su-1');
      assert.deepEqual(events[0].details.trigger, ['role_minimum']);
    });
  });
}
