/**
 * Throttling of failed client authentication over HTTP (src/clients/authentication/throttle.ts):
 * it slows the caller who fails, never the client whose name is used. The same path serves the
 * token, PAR, introspection and revocation endpoints and the AuthZEN API's Basic authentication.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { signCompact } from '../../src/keys/jws.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { codeFlowFixture, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError, ordersApi, protocolFixture, type ProtocolFixture } from './fixture.ts';

const jwtBearer = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const victim = '192.0.2.50';

/** A form each endpoint accepts once the client is authenticated. */
const forms: Record<string, Record<string, string>> = {
  '/token': { grant_type: 'client_credentials', resource: ordersApi },
  '/introspect': { token: 'not-a-token' },
  '/revoke': { token: 'not-a-token' },
};
const endpoints = Object.keys(forms);

const statuses = (responses: LightMyRequestResponse[]) => responses.map((r) => r.statusCode);
const count = (responses: LightMyRequestResponse[], status: number) => responses.filter((r) => r.statusCode === status).length;

/** 50 assertions naming a private_key_jwt client (oms-service unless told) that an outsider can make: unsigned, malformed, or signed with a key of its own. */
function junkAssertions(f: ProtocolFixture, clientId = 'oms-service', kid = 'oms-1'): string[] {
  const now = Math.floor(f.clock.now() / 1000);
  const claims = { iss: clientId, sub: clientId, aud: f.issuer, iat: now, exp: now + 60 };
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const attackerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return Array.from({ length: 50 }, (_, i) => {
    const jti = `junk-${i}`;
    switch (i % 5) {
      case 0: // unsigned
        return `${b64({ alg: 'none' })}.${b64({ ...claims, jti })}.`;
      case 1: // alg none with something in the signature place
        return `${b64({ alg: 'none' })}.${b64({ ...claims, jti })}.${b64('x')}`;
      case 2: // the registered kid and alg, a garbage signature
        return `${b64({ alg: 'ES256', kid })}.${b64({ ...claims, jti })}.${Buffer.alloc(64, i).toString('base64url')}`;
      case 3: // signed with the attacker's own key
        return signCompact('ES256', attackerKey, { kid }, { ...claims, jti });
      default: // not a JWT at all
        return `junk.${i}`;
    }
  });
}

async function assertionForm(f: ProtocolFixture, form: Record<string, string>, assertion?: string): Promise<Record<string, string>> {
  return { ...form, client_assertion_type: jwtBearer, client_assertion: assertion ?? (await f.assertion()) };
}

async function fixture(t: TestContext, dialect?: TestDialect): Promise<ProtocolFixture> {
  const f = await protocolFixture(t, dialect ? { dialect } : {});
  // A policy enforcement point for the AuthZEN API, authenticating with Basic.
  await f.apply({ clients: [{ client_id: 'pdp-gateway', kind: 'service', grant_types: ['client_credentials'], scope: 'access:evaluate' }] });
  return f;
}

describe('client authentication throttling', () => {
  for (const path of endpoints) {
    test(`lets a private_key_jwt client in from its own address at ${path} after 50 junk assertions naming it from another`, async (t) => {
      const f = await fixture(t);
      const attacker = '203.0.113.66';
      const junk: LightMyRequestResponse[] = [];
      for (const assertion of junkAssertions(f)) {
        junk.push(await f.post(path, { form: await assertionForm(f, forms[path]!, assertion), remoteAddress: attacker }));
      }
      assert.ok(junk.every((r) => r.statusCode === 401 || r.statusCode === 429), statuses(junk).join());
      assert.ok(count(junk, 429) > 0, 'the attacker is throttled');

      const own = await f.post(path, { form: await assertionForm(f, forms[path]!), remoteAddress: victim });
      assert.equal(own.statusCode, 200, own.body);

      // The attacker's address stays throttled for this client, even with a valid assertion.
      const fromAttacker = await f.post(path, { form: await assertionForm(f, forms[path]!), remoteAddress: attacker });
      assertOAuthError(fromAttacker, 429, 'invalid_client');
      assert.match(String(fromAttacker.headers['retry-after']), /^[1-9][0-9]*$/);
      assert.ok((await f.auditEvents('client.throttled')).length > 0, 'throttled attempts are audited');
    });

    test(`lets a secret client in from its own address at ${path} after 50 wrong secrets naming it from another`, async (t) => {
      const f = await fixture(t);
      const attacker = '203.0.113.67';
      const wrong: LightMyRequestResponse[] = [];
      for (let i = 0; i < 50; i++) wrong.push(await f.post(path, { auth: f.basic('broker-1', `guess-${i}`), form: forms[path]!, remoteAddress: attacker }));
      assert.deepEqual(statuses(wrong), [...Array(10).fill(401), ...Array(40).fill(429)], 'ten guesses per minute from one address');
      assert.ok(wrong.slice(10).every((r) => Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60));

      const own = await f.post(path, { auth: f.basic('broker-1'), form: forms[path]!, remoteAddress: victim });
      assert.equal(own.statusCode, 200, own.body);
      // Audited as before: each 401 a client.auth_failed, each 429 a client.throttled, naming the address.
      const failed = await f.auditEvents('client.auth_failed');
      assert.equal(failed.length, 10);
      const throttled = await f.auditEvents('client.throttled');
      assert.equal(throttled.length, 40);
      assert.ok(throttled.every((e) => e.client === 'broker-1' && (e.details as Record<string, unknown>).source_address === attacker));
    });

  }

  test('bounds guessing a secret from many addresses to one guess per address a minute once ten wrong secrets were seen', async (t) => {
    const f = await fixture(t);
    const guessers = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
    const outcomes = new Map<string, number[]>(guessers.map((a) => [a, []]));
    for (let round = 0; round < 3; round++) {
      for (const address of guessers) {
        const response = await f.token({ auth: f.basic('broker-1', `${address}-${round}`), form: forms['/token']!, remoteAddress: address });
        outcomes.get(address)!.push(response.statusCode);
      }
    }
    // The first ten wrong secrets start the guessing state; from then on each address that has
    // failed as broker-1 is refused, so every address got exactly one answer that said anything.
    for (const [address, seen] of outcomes) assert.deepEqual(seen, [401, 429, 429], address);
    // The right secret from a guessing address is refused too: a 429 tells nothing about the guess.
    assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: guessers[0]! }), 429, 'invalid_client');
    // The client's own address has not failed, and is let in.
    assert.equal((await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: victim })).statusCode, 200);
    // A new address gets one guess, then waits.
    assertOAuthError(await f.token({ auth: f.basic('broker-1', 'fresh-1'), form: forms['/token']!, remoteAddress: '198.51.100.200' }), 401, 'invalid_client');
    assertOAuthError(await f.token({ auth: f.basic('broker-1', 'fresh-2'), form: forms['/token']!, remoteAddress: '198.51.100.200' }), 429, 'invalid_client');
    // Another secret client is not affected.
    assert.equal((await f.token({ auth: f.basic('broker-3'), form: forms['/token']!, remoteAddress: guessers[1]! })).statusCode, 200);
    // A minute later the failures have aged out.
    f.clock.advance(61_000);
    assert.equal((await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: guessers[0]! })).statusCode, 200);
  });

  test('does not let wrong assertions put a private_key_jwt client into the guessing state', async (t) => {
    const f = await fixture(t);
    // Signed with the client's own key but expired: made by the key's holder, not a guess.
    const now = Math.floor(f.clock.now() / 1000);
    for (let i = 0; i < 20; i++) {
      const expired = await f.assertion({ iat: now - 600, exp: now - 300 });
      const response = await f.token({ form: await assertionForm(f, forms['/token']!, expired), remoteAddress: `198.51.100.${i + 1}` });
      assertOAuthError(response, 401, 'invalid_client', `attempt ${i}`);
    }
    // Each of those addresses may still authenticate correctly: none of them is over its own limit.
    for (let i = 0; i < 20; i++) {
      const response = await f.token({ form: await assertionForm(f, forms['/token']!), remoteAddress: `198.51.100.${i + 1}` });
      assert.equal(response.statusCode, 200, response.body);
    }
  });

  test('throttles an address spraying many client ids, whatever the client, and counts junk against the address', async (t) => {
    const f = await fixture(t);
    const sprayer = '203.0.113.70';
    const answers: LightMyRequestResponse[] = [];
    for (let i = 0; i < 25; i++) answers.push(await f.token({ auth: f.basic(`probe-${i}`, 'x'), form: forms['/token']!, remoteAddress: sprayer }));
    for (let i = 0; i < 5; i++) answers.push(await f.token({ form: { ...forms['/token']!, client_assertion_type: jwtBearer, client_assertion: `x.${i}` }, remoteAddress: sprayer }));
    assert.deepEqual(statuses(answers), Array(30).fill(401));
    assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: sprayer }), 429, 'invalid_client');
    assert.equal((await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: victim })).statusCode, 200);
  });

  test('shares the counters between endpoints: failures at introspection throttle that address at the token endpoint', async (t) => {
    const f = await fixture(t);
    const attacker = '203.0.113.71';
    for (let i = 0; i < 10; i++) {
      assertOAuthError(await f.post('/introspect', { auth: f.basic('broker-1', `g-${i}`), form: forms['/introspect']!, remoteAddress: attacker }), 401, 'invalid_client');
    }
    assertOAuthError(await f.post('/revoke', { auth: f.basic('broker-1'), form: forms['/revoke']!, remoteAddress: attacker }), 429, 'invalid_client');
    assertOAuthError(await f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: attacker }), 429, 'invalid_client');
  });

  test('throttles the AuthZEN API’s Basic authentication on the same path, and lets the client in from its own address', async (t) => {
    const f = await fixture(t);
    const attacker = '203.0.113.72';
    const evaluate = (auth: string, remoteAddress: string) =>
      f.inject({
        method: 'POST',
        url: '/access/v1/evaluation',
        headers: { 'content-type': 'application/json', authorization: auth },
        payload: JSON.stringify({ subject: { type: 'user', id: 'nobody' }, action: { name: 'order:create' }, resource: { type: 'instrument', id: 'EURUSD' } }),
        remoteAddress,
      });
    const wrong: LightMyRequestResponse[] = [];
    for (let i = 0; i < 50; i++) wrong.push(await evaluate(f.basic('pdp-gateway', `guess-${i}`), attacker));
    assert.deepEqual(statuses(wrong), [...Array(10).fill(401), ...Array(40).fill(429)]);
    assert.match(String(wrong[49]!.headers['retry-after']), /^[1-9][0-9]*$/);
    const own = await evaluate(f.basic('pdp-gateway'), victim);
    assert.equal(own.statusCode, 200, own.body);
    // The token endpoint counts the same failures: the attacker's address waits there too.
    assertOAuthError(await f.token({ auth: f.basic('pdp-gateway'), form: { grant_type: 'client_credentials', scope: 'access:evaluate' }, remoteAddress: attacker }), 429, 'invalid_client');
    assert.equal((await f.auditEvents('client.throttled')).filter((e) => e.client === 'pdp-gateway').length, 41);
  });

  describe('at the PAR endpoint (RFC 9126 §2: the client authenticates as at the token endpoint)', () => {
    /** A pushed authorization request for `client` with its credentials in `auth` (Basic) or `form` (an assertion). */
    const push = (f: CodeFlowFixture, client: string, credentials: { auth?: string; form?: Record<string, string> }, remoteAddress: string) =>
      f.post('/par', { ...(credentials.auth ? { auth: credentials.auth } : {}), form: { ...(f.request(client) as Record<string, string>), ...credentials.form }, remoteAddress });

    test('throttles wrong secrets for a secret client at PAR to ten a minute from one address, and lets the client push from its own', async (t) => {
      const f = await codeFlowFixture(t);
      const attacker = '203.0.113.73';
      // The good case: web-app pushes with its secret.
      assert.equal((await push(f, 'web-app', { auth: f.basic('web-app') }, victim)).statusCode, 201);

      const wrong: LightMyRequestResponse[] = [];
      for (let i = 0; i < 50; i++) wrong.push(await push(f, 'web-app', { auth: f.basic('web-app', `guess-${i}`) }, attacker));
      // RFC 6819 §4.3.5: online guessing is limited; the first ten are ordinary refusals.
      assert.deepEqual(statuses(wrong), [...Array(10).fill(401), ...Array(40).fill(429)], 'ten guesses per minute from one address');
      for (const response of wrong.slice(0, 10)) assertOAuthError(response, 401, 'invalid_client');
      for (const response of wrong.slice(10)) {
        assertOAuthError(response, 429, 'invalid_client');
        assert.match(String(response.headers['retry-after']), /^[1-9][0-9]*$/);
        assert.ok(Number(response.headers['retry-after']) <= 60, 'no longer than the window');
      }

      // The client's own address has not failed: it still pushes.
      const own = await push(f, 'web-app', { auth: f.basic('web-app') }, victim);
      assert.equal(own.statusCode, 201, own.body);
      // The attacker's address waits even with the right secret: a 429 must not tell a right guess.
      assertOAuthError(await push(f, 'web-app', { auth: f.basic('web-app') }, attacker), 429, 'invalid_client');
      // The counters are the token endpoint's: the attacker's address waits there too.
      const atToken = await f.token({ auth: f.basic('web-app'), form: { grant_type: 'refresh_token', refresh_token: 'x' }, remoteAddress: attacker });
      assertOAuthError(atToken, 429, 'invalid_client');

      // Audited as at the other endpoints: each 401 a client.auth_failed, each 429 a client.throttled, naming the address.
      const failed = await f.auditEvents('client.auth_failed');
      assert.equal(failed.length, 10);
      assert.ok(failed.every((e) => e.client === 'web-app' && (e.details as Record<string, unknown>).source_address === attacker));
      const throttled = await f.auditEvents('client.throttled');
      assert.equal(throttled.length, 42, '40 wrong secrets, then the right secret at PAR and at the token endpoint');
      assert.ok(throttled.every((e) => e.client === 'web-app' && (e.details as Record<string, unknown>).source_address === attacker));
    });

    test('lets a private_key_jwt client push from its own address after 50 junk assertions naming it from another', async (t) => {
      const f = await codeFlowFixture(t);
      const attacker = '203.0.113.74';
      const junk: LightMyRequestResponse[] = [];
      for (const assertion of junkAssertions(f, 'par-app', 'par-1')) {
        junk.push(await push(f, 'par-app', { form: { client_assertion_type: jwtBearer, client_assertion: assertion } }, attacker));
      }
      // Junk that names no client counts only against the address (30 a minute), the rest against
      // par-app from that address too (10 a minute): the attacker gets 429s and at most 30 answers.
      for (const response of junk) assert.ok(response.statusCode === 401 || response.statusCode === 429, statuses(junk).join());
      for (const response of junk) assertOAuthError(response, response.statusCode, 'invalid_client');
      assert.ok(count(junk, 401) <= 30, statuses(junk).join());
      assert.ok(count(junk, 429) > 0, 'the attacker is throttled');

      const own = await push(f, 'par-app', await f.clientAuth('par-app'), victim);
      assert.equal(own.statusCode, 201, own.body);
      // The attacker's address stays throttled for par-app, even with a valid assertion.
      const fromAttacker = await push(f, 'par-app', await f.clientAuth('par-app'), attacker);
      assertOAuthError(fromAttacker, 429, 'invalid_client');
      assert.match(String(fromAttacker.headers['retry-after']), /^[1-9][0-9]*$/);
      // Every 429 is a client.throttled event naming the attacker's address; the last one names par-app.
      const throttled = await f.auditEvents('client.throttled');
      assert.equal(throttled.length, count(junk, 429) + 1);
      assert.ok(throttled.every((e) => (e.details as Record<string, unknown>).source_address === attacker));
      assert.equal(throttled.at(-1)!.client, 'par-app');
    });
  });
});

for (const dialect of testDialects()) {
  // The registry checks its freshness at most once a second (a database round trip); after a
  // second has passed, the whole burst waits on that round trip between the throttle's first
  // look and the verification — on PostgreSQL a real wait, as under load.
  describe(`parallel bursts on ${dialect.name}`, () => {
    for (const path of endpoints) {
      test(`gives a parallel burst of 50 wrong secrets at ${path} no more 401s than the limit`, async (t) => {
        const f = await fixture(t, dialect);
        const attacker = '203.0.113.68';
        f.clock.advance(1_000);
        const burst = await Promise.all(
          Array.from({ length: 50 }, (_, i) => f.post(path, { auth: f.basic('broker-1', `parallel-${i}`), form: forms[path]!, remoteAddress: attacker })),
        );
        assert.equal(count(burst, 401), 10, statuses(burst).join());
        assert.equal(count(burst, 429), 40);
        // Even a correct secret from that address now waits.
        assertOAuthError(await f.post(path, { auth: f.basic('broker-1'), form: forms[path]!, remoteAddress: attacker }), 429, 'invalid_client');
      });
    }

    test('throttles a parallel burst of forged assertions from one address to the limit too', async (t) => {
      const f = await fixture(t, dialect);
      const attacker = '203.0.113.69';
      const forged = junkAssertions(f).filter((_, i) => i % 5 === 3);
      f.clock.advance(1_000);
      const burst = await Promise.all(
        Array.from({ length: 40 }, (_, i) => f.token({ form: { ...forms['/token']!, client_assertion_type: jwtBearer, client_assertion: forged[i % forged.length]! }, remoteAddress: attacker })),
      );
      assert.equal(count(burst, 401), 10, statuses(burst).join());
      assert.equal(count(burst, 429), 30);
    });

    test('lets 50 parallel correct authentications of one client from one address through', async (t) => {
      const f = await fixture(t, dialect);
      f.clock.advance(1_000);
      const burst = await Promise.all(Array.from({ length: 50 }, () => f.token({ auth: f.basic('broker-1'), form: forms['/token']!, remoteAddress: victim })));
      assert.deepEqual(statuses(burst), Array(50).fill(200));
      const assertions = await Promise.all(
        Array.from({ length: 50 }, async () => f.token({ form: await assertionForm(f, forms['/token']!), remoteAddress: victim })),
      );
      assert.deepEqual(statuses(assertions), Array(50).fill(200));
    });
  });
}
