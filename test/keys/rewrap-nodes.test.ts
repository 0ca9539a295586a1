import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { eventually } from '../helpers/eventually.ts';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { consoleAssertion, consoleClientId } from '../../src/console/client.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { deviceCookie, newDeviceId, presentedDeviceId } from '../../src/identity/device-cookie.ts';
import { keyringOf, masterKeyId } from '../../src/keys/keyring.ts';
import { authenticationKey } from '../../src/keys/master-key.ts';
import { rewrap } from '../../src/keys/rewrap.ts';
import { sealedKeyIdOf } from '../../src/keys/sealed-box.ts';
import { dpopKey, dpopProof, type DpopKey } from '../helpers/dpop.ts';
import { assertOAuthError, basicAuthorization, formBody, ordersApi } from '../endpoints/fixture.ts';
import { testDialects } from '../helpers/storage.ts';
import { newKey, oldKey, rewrapFixture, sealedValues, type RewrapFixture } from './rewrap-fixture.ts';

// Nodes of one deployment while `clearance keys rewrap` runs (docs/keys.md "The master key"), over
// HTTP: each node is a context of its own on the same database (its own storage handle and caches)
// with its own app, as further processes would be. A node not yet restarted holds the old key
// alone; a restarted one holds both. Every node follows the root row (src/keys/master-key-state.ts):
// on SQLite at its next look (every second), on PostgreSQL at once when notices are listened for
// (these handles poll) — so every wait for a switch below is a bounded poll, never a timed one.

const oldId = masterKeyId(Buffer.from(oldKey, 'hex'));
const newId = masterKeyId(Buffer.from(newKey, 'hex'));
const rotating = { CLEARANCE_MASTER_KEY: newKey, CLEARANCE_PREVIOUS_MASTER_KEY: oldKey };

/** What two nodes may take to follow each other: 15 s, looked at every 20 ms. */
const patiently = { withinMs: 15_000, everyMs: 20 };

function serve(t: { after(fn: () => Promise<unknown>): void }, ctx: Context): FastifyInstance {
  const app = buildApp(ctx);
  t.after(() => app.close());
  return app;
}

/** client_credentials at `app` with HTTP Basic, and DPoP header values if given. */
function token(app: FastifyInstance, clientId: string, secret: string, dpop?: string): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization(clientId, secret), ...(dpop ? { dpop } : {}) },
    payload: formBody({ grant_type: 'client_credentials', resource: ordersApi, scope: 'order:create' }),
  });
}

/** 503 temporarily_unavailable as src/http/errors.ts answers it for a node without the master key: JSON, Retry-After. */
function assertUnavailable(response: LightMyRequestResponse, what: string): void {
  assert.equal(response.statusCode, 503, `${what}: ${response.statusCode} ${response.body}`);
  assert.equal(response.headers['retry-after'], '5', what);
  assert.match(String(response.headers['content-type']), /^application\/json/, what);
  assert.equal((response.json() as { error: string }).error, 'temporarily_unavailable', what);
}

const readyz = (app: FastifyInstance) => app.inject({ method: 'GET', url: '/readyz' });

/** Runs the rewrap as the command line does, from a process of its own with both keys. */
async function runRewrap(f: RewrapFixture): Promise<void> {
  const cli = await f.node(rotating);
  await rewrap(cli, f.masterOf(cli), { actor: 'cli:test', settleMs: 0 });
}

/** A DPoP proof for POST /token at `ctx`'s issuer, at the shared clock's time. */
function tokenProof(ctx: Context, key: DpopKey, nonce?: string): string {
  return dpopProof(key, { htm: 'POST', htu: `${ctx.config.issuer}/token`, iat: Math.floor(ctx.clock.now() / 1000), ...(nonce ? { nonce } : {}) });
}

/** The console's client authentication at the token endpoint with an assertion made from `masterKey`: a bogus code, so 400 invalid_grant says the client authenticated. */
function consoleTokenRequest(app: FastifyInstance, ctx: Context, masterKey: Buffer): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: formBody({
      grant_type: 'authorization_code',
      code: randomUUID(),
      redirect_uri: `${ctx.config.issuer}/console/callback`,
      code_verifier: 'a'.repeat(43),
      client_id: consoleClientId,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: consoleAssertion(ctx.config.issuer, masterKey, ctx.clock.now()),
    }),
  });
}

for (const dialect of testDialects()) {
  describe(`nodes during a master key rewrap on ${dialect.name}`, () => {
    test('the node with the old key alone seals nothing once the rewrap begins: what would seal is 503 temporarily_unavailable, /readyz 503 with the reason; the node with both keys serves on', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const secret = f.secrets['broker-1']!;
      const a = await f.node({ CLEARANCE_MASTER_KEY: oldKey });
      const b = await f.node(rotating);
      const [appA, appB] = [serve(t, a), serve(t, b)];

      for (const app of [appA, appB]) {
        assert.deepEqual((await readyz(app)).json(), { status: 'ready' });
        assert.equal((await token(app, 'broker-1', secret)).statusCode, 200);
      }

      await runRewrap(f);
      await eventually(async () => (await readyz(appA)).statusCode === 503, 'the node with the old key alone reports not ready', patiently);
      const notReady = await readyz(appA);
      assert.deepEqual(notReady.json(), { status: 'unavailable', reason: `master key unavailable: the database seals with master key ${newId}, and this node holds ${oldId}` });
      await eventually(() => keyringOf(f.masterOf(b))!.sealing === keyringOf(f.masterOf(b))!.current, 'the node with both keys seals with the new key', patiently);
      assert.deepEqual((await readyz(appB)).json(), { status: 'ready' });

      // What seals: refused on A, never sealed with the old key; done on B, with the new key. The
      // first refused client authentication from an address is audited with the address sealed
      // under a new subject key (docs/privacy.md): a write that seals.
      assertUnavailable(await token(appA, 'unknown-client', 'wrong'), 'a refusal whose audit event seals');
      assertOAuthError(await token(appB, 'unknown-client', 'wrong'), 401, 'invalid_client');
      // The console's sign-in cookie is sealed under its cookie key, which the sealing master key derives.
      const signInA = await appA.inject({ method: 'GET', url: '/console/sign-in' });
      assert.equal(signInA.statusCode, 503, 'the console sign-in (an HTML page)');
      assert.equal(signInA.headers['retry-after'], '5');
      const signInB = await appB.inject({ method: 'GET', url: '/console/sign-in' });
      assert.equal(signInB.statusCode, 303, signInB.body);
      const sealedCookie = /clearance_console_signin=([^;]+)/.exec(String(signInB.headers['set-cookie']))![1]!;
      const cookieKeyOf = (master: Buffer) => masterKeyId(authenticationKey(master, 'clearance console cookies v1'));
      assert.equal(sealedKeyIdOf(sealedCookie), cookieKeyOf(Buffer.from(newKey, 'hex')), 'B seals it under the new key’s derivation');
      assert.ok((await sealedValues(b)).every((v) => v.keyId === newId), 'nothing in the database under the old key');

      // Tokens: B issues; A, once its key set is read again (B rotates a signing key, and the
      // keys' generation moves), signs with none in place of the re-sealed key it cannot open,
      // and answers 503 where it cannot tell — its key set, a token's validity — rather than an
      // empty JWKS or `active: false`.
      const issued = (await token(appB, 'broker-1', secret)).json() as { access_token: string };
      await b.keys.rotate('ES256', 600);
      f.clock.advance(1000);
      assertUnavailable(await token(appA, 'broker-1', secret), 'an issuance on A');
      assertUnavailable(await appA.inject({ method: 'GET', url: '/jwks' }), 'the JWKS of A');
      const introspect = (app: FastifyInstance) =>
        app.inject({ method: 'POST', url: '/introspect', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuthorization('broker-1', secret) }, payload: formBody({ token: issued.access_token }) });
      assertUnavailable(await introspect(appA), 'an introspection on A');
      assert.equal((await token(appB, 'broker-1', secret)).statusCode, 200);
      assert.equal(((await appB.inject({ method: 'GET', url: '/jwks' })).json() as { keys: unknown[] }).keys.length, 2);
      assert.equal((await introspect(appB)).json().active, true);
    });

    test('what the old key authenticated is refused once the rewrap begins: DPoP nonces, device cookies and the console client key follow the key that seals', async (t) => {
      const f = await rewrapFixture(t, dialect);
      const secret = f.secrets['broker-1']!;
      const a = await f.node({ CLEARANCE_MASTER_KEY: oldKey, CLEARANCE_DPOP_NONCE: 'required' });
      const b = await f.node({ ...rotating, CLEARANCE_DPOP_NONCE: 'required' });
      const [appA, appB] = [serve(t, a), serve(t, b)];
      const key = dpopKey();

      // Before: both nodes derive from the old key, which seals: one node's nonce is good at the other.
      const asked = await token(appB, 'broker-1', secret, tokenProof(b, key));
      assertOAuthError(asked, 400, 'use_dpop_nonce');
      const oldNonce = String(asked.headers['dpop-nonce']);
      assert.equal((await token(appA, 'broker-1', secret, tokenProof(a, key, oldNonce))).statusCode, 200, 'a nonce of B at A');
      assert.equal((await token(appB, 'broker-1', secret, tokenProof(b, key, oldNonce))).statusCode, 200);
      const device = newDeviceId();
      const oldCookie = deviceCookie(b, device).split(';')[0]!;
      assert.equal(presentedDeviceId(b.identity.deviceCookieKey, oldCookie, b.config.issuer), device);
      assert.equal(presentedDeviceId(a.identity.deviceCookieKey, oldCookie, a.config.issuer), device, 'every node verifies it');
      const oldMaster = Buffer.from(oldKey, 'hex'); // the old key alone, as whoever kept a copy holds it
      assertOAuthError(await consoleTokenRequest(appB, b, oldMaster), 400, 'invalid_grant', 'the console authenticates with the old key’s derivation');

      await runRewrap(f);
      await eventually(() => keyringOf(f.masterOf(b))!.sealing === keyringOf(f.masterOf(b))!.current, 'B seals with the new key', patiently);
      await eventually(async () => (await readyz(appA)).statusCode === 503, 'A reports not ready', patiently);

      // DPoP: the old nonce is answered with a fresh one on B (RFC 9449 §8), which then serves; A can check none.
      const refused = await token(appB, 'broker-1', secret, tokenProof(b, key, oldNonce));
      assertOAuthError(refused, 400, 'use_dpop_nonce');
      const newNonce = String(refused.headers['dpop-nonce']);
      assert.notEqual(newNonce, oldNonce);
      assert.equal((await token(appB, 'broker-1', secret, tokenProof(b, key, newNonce))).statusCode, 200);
      assertUnavailable(await token(appA, 'broker-1', secret, tokenProof(a, key, oldNonce)), 'A checks no nonce');

      // Device cookies: the one made before is no longer recognised (a new device once), and the
      // old key alone makes none that is; a new one is.
      assert.equal(presentedDeviceId(b.identity.deviceCookieKey, oldCookie, b.config.issuer), undefined, 'a cookie made with the old key');
      const fresh = newDeviceId();
      assert.equal(presentedDeviceId(b.identity.deviceCookieKey, deviceCookie(b, fresh).split(';')[0]!, b.config.issuer), fresh);
      assert.throws(() => a.identity.deviceCookieKey, /master key unavailable/, 'A verifies none');

      // The console client: registered again with the key the new master key derives; the old key's assertion is refused.
      // Re-registered by B when it switched; its client cache sees it at its next look (a second of the clock).
      await eventually(async () => {
        f.clock.advance(1000);
        return (await consoleTokenRequest(appB, b, f.masterOf(b))).statusCode === 400;
      }, 'B registered the console client again', patiently);
      assertOAuthError(await consoleTokenRequest(appB, b, f.masterOf(b)), 400, 'invalid_grant', 'the new key’s assertion authenticates');
      assertOAuthError(await consoleTokenRequest(appB, b, oldMaster), 401, 'invalid_client', 'the old key’s assertion does not');
    });
  });
}
