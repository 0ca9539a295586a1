import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import fastify from 'fastify';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JSONWebKeySet } from 'jose';
import { createGuard, createSsfReceiver, MemorySecurityEventRevocations, SqliteReplayStore, type SsfReceiverOptions } from 'clearance/guard';
import { ssfReceiverRoute } from 'clearance/guard/fastify';

// The guard as a Shared Signals receiver (src/guard/ssf.ts, RFC 8935 §2): which pushes it takes,
// how it refuses the others, and which tokens each security event drops.

const issuer = 'https://clearance.example.com';
const caep = 'https://schemas.openid.net/secevent/caep/event-type/';
const risc = 'https://schemas.openid.net/secevent/risc/event-type/';
const headers = { 'content-type': 'application/secevent+jwt', authorization: 'Bearer push-secret' };

async function setup(now = 1_800_000_000_000) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const other = await generateKeyPair('ES256', { extractable: true });
  const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
  const revocations = new MemorySecurityEventRevocations({ now: () => now });
  const events: string[] = [];
  const receiver = createSsfReceiver({ issuer, audience: 'orders-receiver', jwks, authorization: 'Bearer push-secret', revocations, now: () => now, onEvent: (e) => events.push(e.type) });
  const set = (events: Record<string, unknown>, subject: Record<string, unknown>, options: { key?: CryptoKey; iss?: string; aud?: string; typ?: string } = {}) =>
    new SignJWT({ jti: crypto.randomUUID(), sub_id: subject, events })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: options.typ ?? 'secevent+jwt' })
      .setIssuer(options.iss ?? issuer)
      .setAudience(options.aud ?? 'orders-receiver')
      .setIssuedAt(Math.floor(now / 1000))
      .sign(options.key ?? privateKey);
  return { receiver, revocations, set, other, events, nowSeconds: Math.floor(now / 1000) };
}

const person = (sub: string) => ({ format: 'iss_sub', iss: issuer, sub });

describe('the guard’s SSF receiver', () => {
  test('accepts a valid push with 202 and refuses the rest with RFC 8935 errors', async () => {
    const r = await setup();
    const body = await r.set({ [`${caep}session-revoked`]: { event_timestamp: r.nowSeconds } }, person('alice'));
    assert.deepEqual(await r.receiver.receive({ headers, body }), { status: 202 });
    assert.deepEqual(r.events, [`${caep}session-revoked`]);
    const refusal = async (request: { headers: Record<string, string>; body: string }) => (await r.receiver.receive(request)).body?.err;
    assert.equal((await r.receiver.receive({ headers: { 'content-type': 'application/secevent+jwt' }, body })).status, 401);
    assert.equal(await refusal({ headers: { ...headers, authorization: 'Bearer guess' }, body }), 'authentication_failed');
    assert.equal(await refusal({ headers: { ...headers, 'content-type': 'application/json' }, body }), 'invalid_request');
    assert.equal(await refusal({ headers, body: await r.set({ x: {} }, person('a'), { key: r.other.privateKey }) }), 'invalid_key');
    assert.equal(await refusal({ headers, body: await r.set({ x: {} }, person('a'), { iss: 'https://evil.example.com' }) }), 'invalid_issuer');
    assert.equal(await refusal({ headers, body: await r.set({ x: {} }, person('a'), { aud: 'someone-else' }) }), 'invalid_audience');
    assert.equal(await refusal({ headers, body: await r.set({ x: {} }, person('a'), { typ: 'JWT' }) }), 'invalid_request');
    assert.equal(await refusal({ headers, body: await r.set({}, person('a')) }), 'invalid_request', 'a SET has at least one event');
    assert.equal(await refusal({ headers, body: 'not.a.set' }), 'invalid_request');
    assert.deepEqual(r.events, [`${caep}session-revoked`], 'refused pushes act on nothing');
  });

  test('session-revoked of a person drops their tokens issued until then; of one session, only that grant’s or token’s', async () => {
    const r = await setup();
    const t0 = r.nowSeconds;
    await r.receiver.receive({ headers, body: await r.set({ [`${caep}session-revoked`]: { event_timestamp: t0 } }, person('alice')) });
    assert.match(String(r.revocations.check({ sub: 'alice', iat: t0 - 10, jti: 'a1' })), /revoked by a security event/);
    assert.equal(r.revocations.check({ sub: 'alice', iat: t0 + 1, jti: 'a2' }), undefined, 'a token issued after the event stands');
    assert.equal(r.revocations.check({ sub: 'bob', iat: t0 - 10, jti: 'b1' }), undefined);

    await r.receiver.receive({ headers, body: await r.set({ [`${caep}session-revoked`]: { event_timestamp: t0 } }, { format: 'complex', user: person('bob'), session: { format: 'opaque', id: 'grant-7' } }) });
    assert.match(String(r.revocations.check({ sub: 'bob', iat: t0 - 5, jti: 'b2', grant_id: 'grant-7' })), /session was revoked/);
    assert.equal(r.revocations.check({ sub: 'bob', iat: t0 - 5, jti: 'b3', grant_id: 'grant-8' }), undefined, 'his other grants stand');
  });

  test('session-revoked of a refresh family drops that family’s tokens and keeps another family’s of the same grant', async () => {
    const r = await setup();
    const t0 = r.nowSeconds;
    // Clearance ended one device's refresh family (RFC 7009 §2.1); the SET names the family.
    await r.receiver.receive({ headers, body: await r.set({ [`${caep}session-revoked`]: { event_timestamp: t0 } }, { format: 'complex', user: person('bob'), session: { format: 'opaque', id: 'family-laptop' } }) });
    assert.match(String(r.revocations.check({ sub: 'bob', iat: t0 - 5, jti: 'b4', grant_id: 'grant-7', refresh_family: 'family-laptop' })), /session was revoked/);
    assert.equal(r.revocations.check({ sub: 'bob', iat: t0 - 5, jti: 'b5', grant_id: 'grant-7', refresh_family: 'family-phone' }), undefined, 'the same grant’s other device stands');
    assert.equal(r.revocations.check({ sub: 'bob', iat: t0 + 1, jti: 'b6', grant_id: 'grant-7', refresh_family: 'family-laptop' }), undefined, 'a token issued after the event stands');
  });

  test('token-claims-change, account-disabled and account-purged drop the subject’s tokens; other events drop nothing', async () => {
    const r = await setup();
    const t0 = r.nowSeconds;
    for (const [type, sub] of [[`${caep}token-claims-change`, 'algo-7'], [`${risc}account-disabled`, 'carol'], [`${risc}account-purged`, 'dave'], [`${caep}credential-change`, 'erin']] as const) {
      const subject = sub === 'algo-7' ? { format: 'opaque', id: sub } : person(sub);
      assert.equal((await r.receiver.receive({ headers, body: await r.set({ [type]: { event_timestamp: t0 } }, subject) })).status, 202);
    }
    for (const sub of ['algo-7', 'carol', 'dave']) assert.ok(r.revocations.check({ sub, iat: t0, jti: 'x' }), sub);
    assert.equal(r.revocations.check({ sub: 'erin', iat: t0, jti: 'x' }), undefined, 'a credential change alone revokes nothing');
    const foreign = await r.set({ [`${risc}account-disabled`]: {} }, { format: 'iss_sub', iss: 'https://other-idp.example.com', sub: 'zoe' });
    assert.equal((await r.receiver.receive({ headers, body: foreign })).status, 202);
    assert.equal(r.revocations.check({ sub: 'zoe', iat: t0, jti: 'x' }), undefined, 'another issuer’s subject is not ours');
  });

  test('the guard refuses a token the revocations name with 401 invalid_token', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
    const revocations = new MemorySecurityEventRevocations();
    const guard = createGuard({ issuer, audience: 'https://orders.example.com', jwks, revocations });
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ client_id: 'desk', jti: 'j1', scope: 'order:create' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
      .setIssuer(issuer)
      .setAudience('https://orders.example.com')
      .setSubject('alice')
      .setIssuedAt(now - 5)
      .setExpirationTime(now + 300)
      .sign(privateKey);
    const request = { method: 'GET', url: 'https://orders.example.com/orders', headers: { authorization: `Bearer ${token}` } };
    assert.equal((await guard.verify(request)).subject, 'alice');
    revocations.revokeSubject('alice', now);
    await assert.rejects(guard.verify(request), (e: { status?: number; error?: string }) => e.status === 401 && e.error === 'invalid_token');
  });

  test('past maxEntries the expired revocations go first, then the least recently revoked', () => {
    let now = 1_800_000_000_000;
    const at = () => Math.floor(now / 1000);
    const revocations = new MemorySecurityEventRevocations({ maxEntries: 3, maxTokenLifetimeSeconds: 60, now: () => now });
    const revoked = (sub: string) => revocations.check({ sub, iat: at() - 120, jti: 'j' }) !== undefined;
    revocations.revokeSubject('old', at() - 61); // no token it covers can still be valid
    revocations.revokeSubject('a', at());
    revocations.revokeSubject('b', at());
    revocations.revokeSubject('c', at());
    assert.deepEqual(['old', 'a', 'b', 'c'].map(revoked), [false, true, true, true]);

    // Every revocation live: the least recently revoked goes ('b' was revoked again, so it is 'a').
    revocations.revokeSubject('b', at());
    revocations.revokeSubject('d', at());
    assert.deepEqual(['a', 'b', 'c', 'd'].map(revoked), [false, true, true, true]);

    // A second later, a sweep finds nothing expired: again the least recently revoked.
    now += 1000;
    revocations.revokeSubject('e', at());
    assert.deepEqual(['c', 'b', 'd', 'e'].map(revoked), [false, true, true, true]);
  });

  test('sessions are bounded on their own: a full session map drops no subject', () => {
    const now = 1_800_000_000_000;
    const at = Math.floor(now / 1000);
    const revocations = new MemorySecurityEventRevocations({ maxEntries: 2, now: () => now });
    revocations.revokeSubject('alice', at);
    for (const id of ['g1', 'g2', 'g3']) revocations.revokeSession(id, at);
    assert.ok(revocations.check({ sub: 'alice', iat: at - 1, jti: 'j' }));
    assert.equal(revocations.check({ sub: 'bob', iat: at - 1, jti: 'g1' }), undefined);
    assert.ok(revocations.check({ sub: 'bob', iat: at - 1, jti: 'g3' }));
  });
});

/**
 * A receiver behind its fastify route (clearance/guard/fastify), on a clock the test moves: pushes
 * go over HTTP (app.inject) as Clearance's transmitter sends them.
 */
async function receiverRoute(t: TestContext, keys: { privateKey: CryptoKey; jwks: JSONWebKeySet }, clock: { now: number }, options: Partial<SsfReceiverOptions> = {}) {
  const revocations = new MemorySecurityEventRevocations({ now: () => clock.now });
  const acted: string[] = [];
  const receiver = createSsfReceiver({ issuer, audience: 'orders-receiver', jwks: keys.jwks, authorization: 'Bearer push-secret', revocations, now: () => clock.now, onEvent: (e) => acted.push(e.jti), ...options });
  const app = fastify();
  await ssfReceiverRoute(app, { receiver, path: '/ssf/events' });
  t.after(() => app.close());
  const push = (body: string) => app.inject({ method: 'POST', url: '/ssf/events', headers, payload: body });
  return { push, revocations, acted };
}

async function transmitterKeys() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] } };
}

/** A session-revoked SET about alice, issued at `iat` (epoch s), with no event_timestamp: it takes effect when received. */
function sessionRevoked(privateKey: CryptoKey, iat: number, jti: string = randomUUID()): Promise<string> {
  return new SignJWT({ jti, sub_id: person('alice'), events: { [`${caep}session-revoked`]: {} } })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'secevent+jwt' })
    .setIssuer(issuer)
    .setAudience('orders-receiver')
    .setIssuedAt(iat)
    .sign(privateKey);
}

describe('the guard’s SSF receiver route: jti and iat (RFC 8417 §2.2)', () => {
  test('acknowledges a replayed SET with 202 and acts on it only once', async (t) => {
    const keys = await transmitterKeys();
    const clock = { now: 1_800_000_000_000 };
    const r = await receiverRoute(t, keys, clock);
    const t0 = Math.floor(clock.now / 1000);
    const body = await sessionRevoked(keys.privateKey, t0, 'set-1');
    assert.equal((await r.push(body)).statusCode, 202);
    assert.deepEqual(r.acted, ['set-1']);
    // Ten minutes later the same SET again (a retry after a lost 202, or a replay): alice's token
    // issued since then stands — acting again would revoke her tokens up to the replay.
    clock.now += 600_000;
    const replayed = await r.push(body);
    assert.equal(replayed.statusCode, 202, replayed.body);
    assert.equal(replayed.body, '');
    assert.deepEqual(r.acted, ['set-1'], 'onEvent is not called again');
    assert.equal(r.revocations.check({ sub: 'alice', iat: t0 + 300, jti: 'a1' }), undefined, 'the replay revoked nothing more');
    assert.ok(r.revocations.check({ sub: 'alice', iat: t0 - 1, jti: 'a0' }), 'the first delivery’s revocation stands');
    // Another SET (another jti) is acted on.
    assert.equal((await r.push(await sessionRevoked(keys.privateKey, t0 + 600, 'set-2'))).statusCode, 202);
    assert.deepEqual(r.acted, ['set-1', 'set-2']);
  });

  test('refuses with 400 invalid_request a SET whose iat is more than a minute ahead or older than maxAgeSeconds, acting on nothing', async (t) => {
    const keys = await transmitterKeys();
    const clock = { now: 1_800_000_000_000 };
    const now = Math.floor(clock.now / 1000);
    const r = await receiverRoute(t, keys, clock);
    const refusedFor = async (iat: number, what: string) => {
      const answer = await r.push(await sessionRevoked(keys.privateKey, iat, what));
      assert.equal(answer.statusCode, 400, `${what}: ${answer.body}`);
      assert.equal(answer.headers['cache-control'], 'no-store');
      assert.equal(answer.json().err, 'invalid_request', what);
      return answer.json().description as string;
    };
    assert.match(await refusedFor(now + 61, 'ahead'), /iat/);
    // The default age: a day and an hour, beyond Clearance's day of push retries (CLEARANCE_SSF_MAX_DELIVERY_AGE).
    assert.match(await refusedFor(now - 90_001, 'too old'), /iat/);
    assert.deepEqual(r.acted, [], 'refused SETs act on nothing');
    assert.equal(r.revocations.check({ sub: 'alice', iat: now - 100_000, jti: 'x' }), undefined);
    // Within the skew and the age, a SET is taken.
    assert.equal((await r.push(await sessionRevoked(keys.privateKey, now + 60, 'skewed'))).statusCode, 202);
    assert.equal((await r.push(await sessionRevoked(keys.privateKey, now - 90_000, 'late'))).statusCode, 202);
    assert.deepEqual(r.acted, ['skewed', 'late']);

    const strict = await receiverRoute(t, keys, clock, { maxAgeSeconds: 600, clockSkewSeconds: 5 });
    assert.equal((await strict.push(await sessionRevoked(keys.privateKey, now - 601, 'old'))).statusCode, 400);
    assert.equal((await strict.push(await sessionRevoked(keys.privateKey, now + 6, 'ahead'))).statusCode, 400);
    assert.equal((await strict.push(await sessionRevoked(keys.privateKey, now - 600, 'fresh'))).statusCode, 202);
    assert.deepEqual(strict.acted, ['fresh']);
  });

  test('remembers the SETs it acted on across a restart with a SqliteReplayStore', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clearance-ssf-replay-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'guard.db');
    const keys = await transmitterKeys();
    const clock = { now: 1_800_000_000_000 };
    const body = await sessionRevoked(keys.privateKey, Math.floor(clock.now / 1000), 'before-restart');

    const first = new SqliteReplayStore(file, { now: () => clock.now });
    const before = await receiverRoute(t, keys, clock, { replay: first });
    assert.equal((await before.push(body)).statusCode, 202);
    assert.deepEqual(before.acted, ['before-restart']);
    first.close();

    // The guard restarts: a new process, the same file.
    clock.now += 60_000;
    const second = new SqliteReplayStore(file, { now: () => clock.now });
    t.after(() => second.close());
    const after = await receiverRoute(t, keys, clock, { replay: second });
    assert.equal((await after.push(body)).statusCode, 202);
    assert.deepEqual(after.acted, [], 'the replay after the restart acts on nothing');
    assert.equal((await after.push(await sessionRevoked(keys.privateKey, Math.floor(clock.now / 1000), 'after-restart'))).statusCode, 202);
    assert.deepEqual(after.acted, ['after-restart']);
  });

  test('answers 503 and acts on nothing when the replay store fails, so that the transmitter retries', async (t) => {
    const keys = await transmitterKeys();
    const clock = { now: 1_800_000_000_000 };
    let broken = true;
    const seen = new Set<string>();
    const replay = {
      use(key: string) {
        if (broken) throw new Error('the disk is full');
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      },
    };
    const r = await receiverRoute(t, keys, clock, { replay });
    const body = await sessionRevoked(keys.privateKey, Math.floor(clock.now / 1000), 'retried');
    const failed = await r.push(body);
    assert.equal(failed.statusCode, 503, failed.body);
    assert.equal(failed.headers['cache-control'], 'no-store');
    assert.deepEqual(r.acted, []);
    broken = false;
    assert.equal((await r.push(body)).statusCode, 202);
    assert.deepEqual(r.acted, ['retried'], 'the retry is acted on');
  });
});
