import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { createGuard, createSsfReceiver, MemorySecurityEventRevocations } from 'clearance/guard';

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
