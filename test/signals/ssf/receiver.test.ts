import assert from 'node:assert/strict';
import { webcrypto, type JsonWebKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import fastify from 'fastify';
import { createGuard, createSsfReceiver, MemorySecurityEventRevocations, type ReceivedSecurityEvent } from 'clearance/guard';
import { clearanceGuard, ssfReceiverRoute } from 'clearance/guard/fastify';
import { ssfEventTypes } from '../../../src/signals/ssf/event-types.ts';
import { startTestServer } from '../../helpers/server.ts';

// The done-when of issue 17: an SSF receiver on localhost receives a signed session-revoked SET
// within a second of a revocation. The receiver is the guard's (src/guard/ssf.ts) in a fastify
// order API; each SET is also checked here without the jose package — the signature with WebCrypto
// against the published JWKS, the header and claims by hand — and the guard drops the revoked token.

const ordersApi = 'https://orders.example.com';

const b64url = (text: string) => Buffer.from(text, 'base64url');

/** RFC 7515 §5.2 by hand: the JWS signature over `header.payload` with the JWK its kid names (ES256 or EdDSA). */
async function verifyIndependently(jwt: string, jwks: { keys: (JsonWebKey & { kid?: string; alg?: string })[] }): Promise<{ header: Record<string, unknown>; claims: Record<string, unknown> }> {
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(b64url(h!).toString('utf8')) as Record<string, unknown>;
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `the JWKS holds the key ${String(header.kid)}`);
  const data = new TextEncoder().encode(`${h}.${p}`);
  let ok: boolean;
  if (header.alg === 'ES256') {
    const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    ok = await webcrypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, b64url(s!), data);
  } else if (header.alg === 'EdDSA' || header.alg === 'Ed25519') {
    const key = await webcrypto.subtle.importKey('jwk', jwk, { name: 'Ed25519' }, false, ['verify']);
    ok = await webcrypto.subtle.verify({ name: 'Ed25519' }, key, b64url(s!), data);
  } else {
    throw new Error(`unexpected alg ${String(header.alg)}`);
  }
  assert.equal(ok, true, 'the signature verifies with the published key');
  return { header, claims: JSON.parse(b64url(p!).toString('utf8')) as Record<string, unknown> };
}

test('a receiver on localhost gets a signed session-revoked SET within a second of a revocation, and the guard drops the revoked token', async (t) => {
  const server = await startTestServer({ t });
  const issuer = server.issuer;
  await server.apply({
    resource_servers: [{ identifier: ordersApi, name: 'Orders', scopes: ['order:create'] }],
    clients: [
      { client_id: 'desk', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'order:create' },
      { client_id: 'orders-receiver', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], scope: 'ssf:manage' },
    ],
  });
  const basic = (id: string) => `Basic ${Buffer.from(`${id}:${server.secrets[id]}`).toString('base64')}`;
  const tokenOf = async (id: string, resource: string, scope: string) => {
    const response = await fetch(`${issuer}/token`, { method: 'POST', headers: { authorization: basic(id), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }) });
    assert.equal(response.status, 200, await response.clone().text());
    return ((await response.json()) as { access_token: string }).access_token;
  };

  // The order API: the guard, and its SSF receiver sharing one revocation list.
  const received: { at: number; event: ReceivedSecurityEvent; body: string }[] = [];
  const waiters: (() => void)[] = [];
  const revocations = new MemorySecurityEventRevocations();
  const guard = createGuard({ issuer, audience: ordersApi, jwksUri: `${issuer}/jwks`, revocations });
  const receiver = createSsfReceiver({ issuer, audience: 'orders-receiver', jwksUri: `${issuer}/jwks`, authorization: 'Bearer push-secret', revocations, onEvent: (event) => void event });
  const app = fastify();
  await app.register(clearanceGuard, { guard, origin: 'http://127.0.0.1' });
  app.addHook('preHandler', async (request) => {
    if (request.url === '/ssf/events') {
      const body = String(request.body);
      const answer = await receiver.receive({ headers: request.headers as Record<string, string>, body });
      if (answer.status === 202) {
        const claims = JSON.parse(Buffer.from(body.split('.')[1]!, 'base64url').toString()) as { jti: string; events: Record<string, Record<string, unknown>> };
        for (const [type, payload] of Object.entries(claims.events)) received.push({ at: performance.now(), event: { jti: claims.jti, type, subject: {}, payload }, body });
        waiters.splice(0).forEach((wake) => wake());
      }
    }
  });
  // The receiver route itself answers (its second look at a SET already applied acknowledges it without acting: its jti is remembered).
  await ssfReceiverRoute(app, { receiver, path: '/ssf/events' });
  app.get('/orders', { config: { clearance: { scopes: ['order:create'] } } }, async (request) => ({ subject: request.access!.subject }));
  const receiverUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());

  // The stream, made by the receiver through the SSF API.
  const ssf = await tokenOf('orders-receiver', `${issuer}/ssf`, 'ssf:manage');
  const created = await fetch(`${issuer}/ssf/streams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ssf}`, 'content-type': 'application/json' },
    body: JSON.stringify({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: `${receiverUrl}/ssf/events`, authorization_header: 'Bearer push-secret' }, events_requested: [ssfEventTypes.sessionRevoked] }),
  });
  assert.equal(created.status, 201, await created.clone().text());
  const waitForEvent = (type: string, timeoutMs: number) =>
    new Promise<{ at: number; body: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeoutMs} ms`)), timeoutMs);
      const look = () => {
        const found = received.find((r) => r.event.type === type);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        } else waiters.push(look);
      };
      look();
    });

  // A verification round trip first (SSF §8.1.4): the stream works end to end.
  const verify = await fetch(`${issuer}/ssf/verify`, { method: 'POST', headers: { authorization: `Bearer ${ssf}`, 'content-type': 'application/json' }, body: JSON.stringify({ stream_id: ((await created.json()) as { stream_id: string }).stream_id, state: 'hello' }) });
  assert.equal(verify.status, 204);
  await waitForEvent(ssfEventTypes.verification, 5000);

  const order = await tokenOf('desk', ordersApi, 'order:create');
  const before = await app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${order}` } });
  assert.equal(before.statusCode, 200, before.body);

  const revokedAt = performance.now();
  const revoked = await fetch(`${issuer}/revoke`, { method: 'POST', headers: { authorization: basic('desk'), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: order }) });
  assert.equal(revoked.status, 200);
  const arrived = await waitForEvent(ssfEventTypes.sessionRevoked, 1000);
  const latency = arrived.at - revokedAt;
  t.diagnostic(`session-revoked SET received ${latency.toFixed(0)} ms after the revocation`);
  assert.ok(latency < 1000, `within a second (${latency.toFixed(0)} ms)`);

  const jwks = (await (await fetch(`${issuer}/jwks`)).json()) as { keys: JsonWebKey[] };
  const { header, claims } = await verifyIndependently(arrived.body, jwks);
  assert.equal(header.typ, 'secevent+jwt');
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, 'orders-receiver');
  assert.equal(typeof claims.jti, 'string');
  assert.equal(typeof claims.iat, 'number');
  assert.equal(claims.exp, undefined, 'RFC 8417 §2.2: a SET has no exp');
  assert.equal(claims.sub, undefined, 'SSF: the subject is sub_id');
  const orderJti = JSON.parse(Buffer.from(order.split('.')[1]!, 'base64url').toString()).jti;
  assert.deepEqual(claims.sub_id, { format: 'complex', user: { format: 'iss_sub', iss: issuer, sub: 'desk' }, session: { format: 'opaque', id: orderJti } });
  assert.deepEqual(Object.keys(claims.events as object), [ssfEventTypes.sessionRevoked]);

  const after = await app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${order}` } });
  assert.equal(after.statusCode, 401, after.body);
  assert.equal(after.json().error, 'invalid_token');
  const fresh = await tokenOf('desk', ordersApi, 'order:create');
  assert.equal((await app.inject({ method: 'GET', url: '/orders', headers: { authorization: `Bearer ${fresh}` } })).statusCode, 200, 'only the revoked token is dropped');
});
