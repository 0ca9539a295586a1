import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { adminAudience } from '../../src/admin/authorize.ts';
import { maxTokenLifetimeSeconds } from '../../src/config.ts';
import type { Context } from '../../src/context.ts';
import { KeyRevocationError, maxReasonLength, reasonProblem, revokeCompromisedKey, type CompromiseInput, type CompromiseReport } from '../../src/keys/compromise.ts';
import { requestKeyRevocation } from '../../src/keys/compromise-request.ts';
import { KeyError } from '../../src/keys/keystore.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';
import { mintAccessToken, newJti, verifyAccessToken } from '../../src/tokens/access-token.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, decodeJwt, ordersApi } from '../endpoints/fixture.ts';
import { testContext, testDialects } from '../helpers/storage.ts';

// A compromised token-signing key (src/keys/compromise.ts, docs/keys.md "Token-signing keys:
// compromise"), from the outside (HTTP: introspection, userinfo, the admin API, the JWKS, the token
// endpoint) and the inside (the key store, the refresh tokens, the audit log).

const byOperator = (kid: string, reason = 'the key file was found on a build server'): CompromiseInput => ({ kid, reason, authority: { via: 'cli', operator: 'cli:oncall' } });

const kidOf = (jwt: string) => decodeJwt(jwt).header.kid as string;

async function introspect(f: CodeFlowFixture, token: string): Promise<Record<string, unknown>> {
  const response = await f.post('/introspect', { auth: f.basic('orders-gateway'), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as Record<string, unknown>;
}

/** A person's tokens from the code flow (web-app: a refresh token too). */
async function personTokens(f: CodeFlowFixture, scope = 'openid'): Promise<{ access: string; id: string; refresh: string }> {
  const { code, pkce } = await f.authorizeAndApprove({ query: { scope } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const body = redeemed.json() as { access_token: string; id_token: string; refresh_token: string };
  return { access: body.access_token, id: body.id_token, refresh: body.refresh_token };
}

const published = async (f: CodeFlowFixture) => ((await f.inject({ method: 'GET', url: '/jwks' })).json() as { keys: { kid: string }[] }).keys.map((k) => k.kid);
const userinfo = (f: CodeFlowFixture, token: string) => f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${token}` } });
const adminKeys = (f: CodeFlowFixture, token: string) => f.inject({ method: 'GET', url: '/admin/keys', headers: { authorization: `Bearer ${token}` } });
const ordersToken = (f: CodeFlowFixture) => f.accessToken('broker-1', { resource: ordersApi, scope: 'order:create' });

for (const dialect of testDialects()) {
  describe(`revoking a compromised signing key on ${dialect.name}`, () => {
    test('its tokens are inactive at once at introspection, userinfo and the admin API; the JWKS drops it; new tokens verify with a new key', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [only] = await f.ctx.keys.list();
      assert.equal((await f.ctx.keys.list()).length, 1, 'the only key');
      const business = await ordersToken(f);
      const person = await personTokens(f);
      const admin = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      for (const token of [business, person.access, person.id, admin]) assert.equal(kidOf(token), only!.kid);
      assert.equal((await introspect(f, business)).active, true);
      assert.equal((await userinfo(f, person.access)).statusCode, 200);
      assert.equal((await adminKeys(f, admin)).statusCode, 200);

      f.clock.advance(1000);
      const report = await revokeCompromisedKey(f.ctx, byOperator(only!.kid));
      assert.equal(report.previousState, 'active');
      assert.equal(report.promoted?.how, 'generated', 'none was staged: a new key');
      const promoted = report.promoted!.kid;
      assert.notEqual(promoted, only!.kid);

      assert.deepEqual(await introspect(f, business), { active: false });
      assertOAuthError(await userinfo(f, person.access), 401, 'invalid_token');
      assertOAuthError(await adminKeys(f, admin), 401, 'invalid_token');
      assert.deepEqual(await published(f), [promoted]);
      const states = await f.ctx.keys.list();
      assert.deepEqual(states.map((k) => [k.kid, k.state]), [[only!.kid, 'compromised'], [promoted, 'active']]);
      assert.equal(states[0]!.compromisedAt, f.clock.now());

      // New tokens: signed by the promoted key, and they verify everywhere.
      const fresh = await ordersToken(f);
      assert.equal(kidOf(fresh), promoted);
      assert.equal((await introspect(f, fresh)).active, true);
      const freshAdmin = await f.accessToken('admin-viewer', { resource: adminAudience(f.issuer) });
      const inventory = (await adminKeys(f, freshAdmin)).json() as { signing_keys: { kid: string; state: string; compromised_at: string | null }[] };
      assert.deepEqual(inventory.signing_keys.map((k) => [k.kid, k.state]), [[only!.kid, 'compromised'], [promoted, 'active']]);
      assert.equal(inventory.signing_keys[0]!.compromised_at, new Date(f.clock.now()).toISOString());

      // The refresh token issued with the compromised key's tokens is revoked.
      assertOAuthError(await f.refresh('web-app', person.refresh), 400, 'invalid_grant');
    });

    test('one key.compromised event names the key, what it ended, the key that signs now and who asked', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [old] = await f.ctx.keys.list();
      await ordersToken(f);
      await personTokens(f);
      await personTokens(f, 'openid order:create');
      f.clock.advance(1000);
      const report = await revokeCompromisedKey(f.ctx, byOperator(old!.kid));
      const events = await f.auditEvents('key.compromised');
      assert.equal(events.length, 1);
      const [event] = events;
      assert.equal(event!.subject, old!.kid);
      assert.equal(event!.actor, 'cli:oncall');
      assert.deepEqual(event!.details, {
        kid: old!.kid,
        alg: 'ES256',
        previous_state: 'active',
        reason: 'the key file was found on a build server',
        via: 'cli',
        requested_by: 'cli:oncall',
        promoted_kid: report.promoted!.kid,
        promoted: 'generated',
        signed_from: old!.activatesAt,
        signed_until: f.clock.now(),
        // Three token requests, each one token.issued, all within the longest token lifetime.
        access_tokens_ended_at_most: 3,
        refresh_tokens_revoked: 2,
        refresh_families_revoked: 2,
      });
      // No other key event: the new key is named by this one (key.created is the first key's, at start).
      assert.deepEqual((await f.auditEvents('key.created')).map((e) => e.subject), [old!.kid]);
      assert.deepEqual(await f.auditEvents('key.rotated'), []);
    });

    test('a staged next key is promoted and signs at once; families whose latest tokens another key signed are kept', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [first] = await f.ctx.keys.list();
      const kept = await personTokens(f); // the first key's, which will not be compromised
      const toMove = await personTokens(f);

      await f.ctx.keys.rotate('ES256', 0);
      f.clock.advance(11_000);
      const [, second] = await f.ctx.keys.list();
      assert.equal(second!.state, 'active');
      const lost = await personTokens(f); // the second key's
      // A family of the first key refreshed under the second: its latest tokens are the second key's.
      const moved = await f.refresh('web-app', toMove.refresh);
      assert.equal(moved.statusCode, 200, moved.body);
      assert.equal(kidOf((moved.json() as { access_token: string }).access_token), second!.kid);
      const staged = await f.ctx.keys.rotate('ES256', 600);
      assert.equal(staged.state, 'next');

      f.clock.advance(1000);
      const report = await revokeCompromisedKey(f.ctx, byOperator(second!.kid));
      assert.deepEqual(report.promoted, { kid: staged.kid, how: 'staged' });
      assert.deepEqual((await f.ctx.keys.list()).map((k) => [k.kid, k.state]), [[first!.kid, 'superseded'], [second!.kid, 'compromised'], [staged.kid, 'active']]);
      assert.equal(kidOf(await ordersToken(f)), staged.kid, 'the staged key signs now, not after its lead');
      assert.deepEqual((await published(f)).sort(), [first!.kid, staged.kid].sort());

      assertOAuthError(await f.refresh('web-app', lost.refresh), 400, 'invalid_grant');
      assertOAuthError(await f.refresh('web-app', (moved.json() as { refresh_token: string }).refresh_token), 400, 'invalid_grant');
      // The first key's family is not the compromised key's: it refreshes, with the promoted key.
      const refreshed = await f.refresh('web-app', kept.refresh);
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(kidOf((refreshed.json() as { access_token: string }).access_token), staged.kid);
      assert.equal((await userinfo(f, kept.access)).statusCode, 200, 'the first key still verifies its own tokens');
      assert.equal(report.refreshFamiliesRevoked, 2);
    });

    test('a refresh token written before its key was recorded is revoked when it was issued while the key signed', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [key] = await f.ctx.keys.list();
      const tokens = await personTokens(f);
      // As a row from before migration 0057.
      await f.ctx.storage.db.updateTable('refresh_tokens').set({ access_kid: null }).execute();
      f.clock.advance(1000);
      const report = await revokeCompromisedKey(f.ctx, byOperator(key!.kid));
      assert.equal(report.refreshTokensRevoked, 1);
      assertOAuthError(await f.refresh('web-app', tokens.refresh), 400, 'invalid_grant');
    });

    test('a refresh token written with the compromised key’s tokens after the revocation (a node that had not heard yet) is refused at use', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [key] = await f.ctx.keys.list();
      const tokens = await personTokens(f);
      f.clock.advance(1000);
      await revokeCompromisedKey(f.ctx, byOperator(key!.kid));
      // As a lagging node would have written it: active, naming the compromised key.
      await f.ctx.storage.db.updateTable('refresh_tokens').set({ state: 'active' }).execute();
      assert.equal((await f.ctx.storage.db.selectFrom('refresh_tokens').select('access_kid').executeTakeFirstOrThrow()).access_kid, key!.kid);
      assertOAuthError(await f.refresh('web-app', tokens.refresh), 400, 'invalid_grant');
    });

    test('an unknown, retired or already compromised key is refused with a clear reason, and nothing changes', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [old] = await f.ctx.keys.list();
      await assert.rejects(revokeCompromisedKey(f.ctx, byOperator('no-such-kid')), (error: unknown) => {
        assert.ok(error instanceof KeyRevocationError && error instanceof KeyError);
        assert.equal(error.code, 'unknown');
        assert.equal(error.message, 'no signing key with kid "no-such-kid"');
        return true;
      });

      await f.ctx.keys.rotate('ES256', 0);
      f.clock.advance(10_000 + (maxTokenLifetimeSeconds + 61) * 1000);
      await f.ctx.keys.retire(old!.kid);
      await assert.rejects(revokeCompromisedKey(f.ctx, byOperator(old!.kid)), /is retired: it is no longer published and verifies no token, so there is nothing left to revoke/);

      const [, current] = await f.ctx.keys.list();
      await revokeCompromisedKey(f.ctx, byOperator(current!.kid));
      await assert.rejects(revokeCompromisedKey(f.ctx, byOperator(current!.kid)), /was already revoked as compromised at \d{4}-/);
      await assert.rejects(f.ctx.keys.retire(current!.kid), /was revoked as compromised: it is out of the JWKS for good/);
      assert.equal((await f.auditEvents('key.compromised')).length, 1, 'only the one that happened');
    });

    test('revoking a key that does not sign (staged or superseded) leaves the active key signing', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [active] = await f.ctx.keys.list();
      const staged = await f.ctx.keys.rotate('ES256', 600);
      const report = await revokeCompromisedKey(f.ctx, byOperator(staged.kid));
      assert.equal(report.promoted, undefined);
      assert.equal(report.previousState, 'next');
      assert.deepEqual(await published(f), [active!.kid]);
      assert.equal(kidOf(await ordersToken(f)), active!.kid);
      // Time passing changes nothing: the compromised key never comes back.
      f.clock.advance(700_000);
      assert.deepEqual((await f.ctx.keys.list()).map((k) => k.state), ['active', 'compromised']);
    });
  });
}

describe('the reason a revocation records', () => {
  test('is refused when it holds a JWT, a PEM block, a reference token or control characters, or is empty or too long; where it leaked is fine', () => {
    const b64 = (json: unknown) => Buffer.from(JSON.stringify(json)).toString('base64url');
    const jwt = `${b64({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })}.${b64({ sub: 'broker-1', exp: 1 })}.c2lnbmF0dXJl`;
    const refused: [string, RegExp][] = [
      [`leaked: ${jwt}`, /^the reason holds a JWT; say where the key or token was found, not what it is: the reason is kept in the audit log, which never holds tokens or keys$/],
      [`${Buffer.from(' {"alg":"none"}').toString('base64url')}.${b64({ sub: 'x' })}.`, /^the reason holds a JWT/],
      ['-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI...\n-----END EC PRIVATE KEY-----', /^the reason holds a PEM block/],
      ['-----BEGIN CERTIFICATE-----', /^the reason holds a PEM block/],
      ['the handle clr_at_Zm9vYmFy was in the proxy log', /^the reason holds a reference token/],
      ['escape \u001b[0m', /^the reason must not contain control characters$/],
      ['nul \u0000', /^the reason must not contain control characters$/],
      ['delete \u007f', /^the reason must not contain control characters$/],
      ['vertical tab \u000b', /^the reason must not contain control characters$/],
      ['', new RegExp(`^the reason must be 1 to ${maxReasonLength} characters$`)],
      ['  \n ', new RegExp(`^the reason must be 1 to ${maxReasonLength} characters$`)],
      ['x'.repeat(maxReasonLength + 1), new RegExp(`^the reason must be 1 to ${maxReasonLength} characters$`)],
    ];
    for (const [reason, expected] of refused) assert.match(reasonProblem(reason) ?? '(accepted)', expected, JSON.stringify(reason));
    for (const reason of ['found in a public repository', 'seen in build log 4411\r\nposted at 02:10\ttabbed', 'x'.repeat(maxReasonLength), 'BEGIN PRIVATE KEY (the file name, not the key)', 'a.b.c']) {
      assert.equal(reasonProblem(reason), undefined, JSON.stringify(reason));
    }
  });
});

for (const dialect of testDialects()) {
  describe(`a refused reason on ${dialect.name}`, () => {
    test('writes nothing: no approval request, no key.compromised event, the key still signs and its tokens live', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [key] = await f.ctx.keys.list();
      const tokens = await personTokens(f);
      const business = await ordersToken(f);
      f.clock.advance(1000);
      for (const reason of [`the token was ${business}`, '-----BEGIN PRIVATE KEY-----', 'clr_at_abcdef in a log', 'bell \u0007']) {
        await assert.rejects(revokeCompromisedKey(f.ctx, byOperator(key!.kid, reason)), (error: unknown) => {
          assert.ok(error instanceof KeyRevocationError);
          assert.equal(error.code, 'reason');
          assert.equal(error.message, reasonProblem(reason));
          return true;
        });
        await assert.rejects(requestKeyRevocation(f.ctx, { kid: key!.kid, reason, requester: 'someone', requesterType: 'user' }), (error: unknown) => {
          assert.ok(error instanceof KeyRevocationError);
          assert.equal(error.code, 'reason');
          return true;
        });
      }
      assert.deepEqual((await f.ctx.keys.list()).map((k) => [k.kid, k.state]), [[key!.kid, 'active']]);
      assert.deepEqual(await published(f), [key!.kid]);
      assert.deepEqual(await f.auditEvents('key.compromised'), []);
      assert.deepEqual(await f.ctx.storage.db.selectFrom('approval_requests').select('id').execute(), []);
      assert.equal((await introspect(f, business)).active, true);
      assert.equal((await f.refresh('web-app', tokens.refresh)).statusCode, 200, 'the refresh tokens are untouched');
    });

    test('a superseded key never signs again: revoking the active key with none staged makes a new one', async (t) => {
      const f = await codeFlowFixture(t, { dialect, risk: 'off' });
      const [old] = await f.ctx.keys.list();
      await f.ctx.keys.rotate('ES256', 0);
      f.clock.advance(11_000);
      const [, current] = await f.ctx.keys.list();
      assert.deepEqual((await f.ctx.keys.list()).map((k) => k.state), ['superseded', 'active']);
      const report = await revokeCompromisedKey(f.ctx, byOperator(current!.kid));
      assert.equal(report.promoted?.how, 'generated');
      assert.notEqual(report.promoted!.kid, old!.kid);
      assert.deepEqual((await f.ctx.keys.list()).map((k) => [k.kid, k.state]), [[old!.kid, 'superseded'], [current!.kid, 'compromised'], [report.promoted!.kid, 'active']]);
      assert.equal(kidOf(await ordersToken(f)), report.promoted!.kid);
    });
  });
}

const postgres = testDialects().find((d) => d.name === 'postgres');

describe('two revocations at once from two nodes on PostgreSQL', { skip: postgres ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('the active key and the staged key, revoked at once on two nodes: both done, one after the other, and one new good key signs', async (t) => {
    // Two nodes: each its own context, pool and key cache, on one database and one clock.
    const one = await testContext({ dialect: postgres!, risk: 'off' });
    const two: Context = await openContext(one.config, { clock: one.clock, log: createLogger('silent'), storage: one.database.connect() }).catch(async (error: unknown) => {
      await one.cleanup();
      throw error;
    });
    t.after(async () => {
      await two.risk.activity.close();
      await (two.audit as { close?: () => Promise<void> }).close?.();
      await one.cleanup();
    });
    const nodes: Context[] = [one.ctx, two];
    const issuer = one.config.issuer;
    const token = async (node: Context) => {
      const iat = Math.floor(one.clock.now() / 1000);
      return mintAccessToken(node.keys, { iss: issuer, aud: ordersApi, iat, exp: iat + 120, jti: newJti(), client_id: 'broker-1', sub: 'broker-1', scope: 'order:create' });
    };
    const verifies = async (node: Context, jwt: string) => (await verifyAccessToken(node.keys, issuer, jwt, Math.floor(one.clock.now() / 1000))).ok;

    const compromised = new Set<string>();
    // Several rounds: the two transactions interleave differently from one to the next.
    for (let round = 0; round < 4; round++) {
      for (const node of nodes) node.keys.invalidate();
      const [active] = (await one.ctx.keys.list()).filter((k) => k.state === 'active');
      const staged = await one.ctx.keys.rotate('ES256', 600);
      for (const node of nodes) node.keys.invalidate();
      const before = await token(two);
      assert.equal(kidOf(before), active!.kid);
      one.clock.advance(1000);

      const settled = await Promise.allSettled([
        revokeCompromisedKey(one.ctx, byOperator(active!.kid, `round ${round}: the signing host was breached`)),
        revokeCompromisedKey(two, byOperator(staged.kid, `round ${round}: the staged key's backup leaked`)),
      ]);
      const reports = settled.map((s, i) => {
        assert.equal(s.status, 'fulfilled', `round ${round}, revocation ${i}: ${s.status === 'rejected' ? String(s.reason) : ''}`);
        return (s as PromiseFulfilledResult<CompromiseReport>).value;
      });
      compromised.add(active!.kid).add(staged.kid);

      // Both nodes, reading afresh, agree: exactly one key signs — neither revoked one, never an older one.
      for (const node of nodes) node.keys.invalidate();
      const listedOne = await one.ctx.keys.list();
      assert.deepEqual(await two.keys.list(), listedOne);
      const signing = listedOne.filter((k) => k.state === 'active');
      assert.equal(signing.length, 1, `round ${round}: ${JSON.stringify(listedOne)}`);
      const signer = signing[0]!;
      assert.equal(compromised.has(signer.kid), false);
      assert.deepEqual(listedOne.filter((k) => compromised.has(k.kid)).map((k) => k.state), [...compromised].map(() => 'compromised'));
      assert.equal(listedOne.some((k) => k.state === 'next'), false, 'nothing is left staged');
      // Made by the revocation that came second: whichever order they ran in, a new key was generated for it.
      const generated = reports.flatMap((r) => (r.promoted?.how === 'generated' ? [r.promoted.kid] : []));
      assert.deepEqual(generated, [signer.kid]);

      // Tokens issued afterwards, on either node, verify on both; the old ones on neither.
      for (const issuing of nodes) {
        const fresh = await token(issuing);
        assert.equal(kidOf(fresh), signer.kid);
        for (const verifying of nodes) assert.equal(await verifies(verifying, fresh), true);
      }
      for (const verifying of nodes) assert.equal(await verifies(verifying, before), false);
      one.clock.advance(1000);
    }
    const events = await one.ctx.storage.db.selectFrom('audit_events').select('subject').where('type', '=', 'key.compromised').execute();
    assert.deepEqual(events.map((e) => e.subject).sort(), [...compromised].sort(), 'one event per revocation');
  });
});
