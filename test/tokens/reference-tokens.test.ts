import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/clock.ts';
import { migrate } from '../../src/storage/database.ts';
import { GroupCommit } from '../../src/storage/group-commit.ts';
import { handleDigest, isReferenceHandle, ReferenceTokenStore, type ReferenceClaims } from '../../src/tokens/reference-tokens.ts';
import { readResourceServer } from '../../src/resource-servers/definition.ts';
import { Validator } from '../../src/validation.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { ath, dpopKey, dpopProof } from '../helpers/dpop.ts';
import { assertOAuthError, ordersApi, protocolFixture, resourceServers, secretClient, type ProtocolFixture } from '../endpoints/fixture.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';

// Reference access tokens (RFC 7662): an opaque handle for a resource server registered with
// `access_token_format: reference`, whose claims only introspection reveals.

const custodyApi = 'https://custody.example.com/api';
const custodyTtl = 90;

function claimsAt(nowMs: number, extra: Partial<ReferenceClaims> = {}): ReferenceClaims {
  const iat = Math.floor(nowMs / 1000);
  return { iss: 'https://as.example.com', sub: 'svc', aud: custodyApi, exp: iat + 60, iat, jti: crypto.randomUUID(), client_id: 'svc', scope: 'custody:view', ...extra };
}

for (const dialect of testDialects()) {
  describe(`the reference token store on ${dialect.name}`, () => {
    test('stores the claims under the digest of a fresh handle and resolves them, from another node too', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_700_000_000_000);
      const store = new ReferenceTokenStore(database.storage.db, clock);
      const claims = claimsAt(clock.now(), { cnf: { jkt: 'abc' } });
      const handle = await store.store(claims);
      assert.match(handle, /^clr_at_[A-Za-z0-9_-]{43}$/);
      assert.ok(isReferenceHandle(handle));
      assert.deepEqual(await store.resolve(handle, claims.iat), claims);
      const other = new ReferenceTokenStore(database.connect().db, clock);
      assert.deepEqual(await other.resolve(handle, claims.iat), claims);
      // Only the digest is stored: the handle appears nowhere in the table.
      const rows = await database.storage.db.selectFrom('reference_tokens').selectAll().execute();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.digest, handleDigest(handle));
      assert.ok(!JSON.stringify(rows).includes(handle.slice(7)));
      assert.equal(Number(rows[0]!.expires_at), claims.exp * 1000);
    });

    test('resolves nothing for an unknown handle, a malformed one, or one past its exp', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_700_000_000_000);
      const store = new ReferenceTokenStore(database.storage.db, clock);
      const claims = claimsAt(clock.now());
      const handle = await store.store(claims);
      assert.equal(await store.resolve(`clr_at_${'A'.repeat(43)}`, claims.iat), undefined);
      for (const garbage of ['', 'clr_at_', `${handle}x`, handle.slice(0, -1), handle.toUpperCase(), `clr_at_${'.'.repeat(43)}`, 'x'.repeat(100_000)]) {
        assert.equal(await store.resolve(garbage, claims.iat), undefined, garbage.slice(0, 60));
      }
      assert.deepEqual(await store.resolve(handle, claims.exp - 1), claims);
      // RFC 7519 §4.1.4: not on or after exp.
      assert.equal(await store.resolve(handle, claims.exp), undefined);
    });

    test('with a group-commit writer, stores a burst of handles in one transaction, each durable when returned', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_700_000_000_000);
      const store = new ReferenceTokenStore(database.storage.db, clock, { writer: new GroupCommit(database.storage.db) });
      const many = Array.from({ length: 620 }, () => claimsAt(clock.now()));
      const handles = await Promise.all(many.map((c) => store.store(c)));
      assert.equal(new Set(handles).size, 620);
      const other = new ReferenceTokenStore(database.connect().db, clock);
      for (const i of [0, 499, 500, 619]) assert.deepEqual(await other.resolve(handles[i]!, many[i]!.iat), many[i]);
    });

    test('prunes rows whose token has expired, and keeps the others', async (t) => {
      const database = await dialect.create(t);
      await migrate(database.storage);
      const clock = new ManualClock(1_700_000_000_000);
      const store = new ReferenceTokenStore(database.storage.db, clock, { pruneEveryMs: 1000 });
      const short = claimsAt(clock.now(), { exp: Math.floor(clock.now() / 1000) + 10 });
      const long = claimsAt(clock.now(), { exp: Math.floor(clock.now() / 1000) + 600 });
      await store.store(short);
      const kept = await store.store(long);
      clock.advance(11_000);
      // The next issuance prunes, off its own path.
      await store.store(claimsAt(clock.now()));
      await store.settled();
      const count = await database.storage.db.selectFrom('reference_tokens').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
      assert.equal(Number(count.n), 2);
      assert.deepEqual(await store.resolve(kept, Math.floor(clock.now() / 1000)), long);
      assert.equal(await store.prune(clock.now() + 3_600_000), 2);
    });
  });
}

describe('access_token_format in a resource server definition', () => {
  test('is optional (jwt when absent), takes jwt or reference, and refuses anything else', () => {
    const read = (extra: Record<string, unknown>) => {
      const v = new Validator();
      const server = readResourceServer(v, 'resource_servers[0]', { identifier: custodyApi, scopes: ['custody:view'], ...extra });
      return { server, problems: v.problems };
    };
    assert.equal(read({}).server!.access_token_format, undefined);
    assert.equal(read({ access_token_format: 'reference' }).server!.access_token_format, 'reference');
    assert.equal(read({ access_token_format: 'jwt' }).server!.access_token_format, 'jwt');
    for (const bad of ['opaque', 'JWT', 1, null]) {
      const { server, problems } = read({ access_token_format: bad });
      assert.equal(server, undefined);
      assert.match(problems.map((p) => `${p.path}: ${p.message}`).join('\n'), /resource_servers\[0\]\.access_token_format/);
    }
  });
});

/** The protocol fixture with a reference-format audience, its own client and its gateway (an introspector). */
async function referenceFixture(t: Parameters<typeof protocolFixture>[0], dialect?: TestDialect): Promise<ProtocolFixture> {
  const f = await protocolFixture(t, dialect ? { dialect } : {});
  await f.apply({
    resource_servers: [{ identifier: custodyApi, scopes: ['custody:view', 'custody:move'], access_token_ttl: custodyTtl, access_token_format: 'reference', introspection_clients: ['custody-gateway'] }],
    clients: [secretClient('custody-desk', 'custody:view custody:move order:create'), secretClient('custody-gateway', 'custody:view')],
  });
  return f;
}

async function introspect(f: ProtocolFixture, callerId: string, token: string): Promise<Record<string, unknown>> {
  const response = await f.post('/introspect', { auth: f.basic(callerId), form: { token } });
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers['cache-control'], 'no-store');
  return response.json() as Record<string, unknown>;
}

const now = (f: ProtocolFixture) => Math.floor(f.clock.now() / 1000);

for (const dialect of testDialects()) {
  describe(`reference access tokens over HTTP on ${dialect.name}`, () => {
    test('client_credentials for a reference audience answers an opaque handle that introspects to the claims', async (t) => {
      const f = await referenceFixture(t, dialect);
      const response = await f.token({ auth: f.basic('custody-desk'), form: { grant_type: 'client_credentials', resource: custodyApi, scope: 'custody:view' } });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.headers['cache-control'], 'no-store');
      const body = response.json() as Record<string, unknown>;
      const handle = body.access_token as string;
      // Not a JWT: no dots, no claims to read.
      assert.match(handle, /^clr_at_[A-Za-z0-9_-]{43}$/);
      assert.ok(!handle.includes('.'));
      assert.equal(body.token_type, 'Bearer');
      assert.equal(body.expires_in, custodyTtl);
      assert.equal(body.scope, 'custody:view');

      const answer = await introspect(f, 'custody-gateway', handle);
      assert.equal(answer.active, true);
      assert.equal(answer.token_type, 'Bearer');
      assert.equal(answer.iss, f.issuer);
      assert.equal(answer.aud, custodyApi);
      assert.equal(answer.sub, 'custody-desk');
      assert.equal(answer.client_id, 'custody-desk');
      assert.equal(answer.scope, 'custody:view');
      assert.equal(answer.exp, now(f) + custodyTtl);
      assert.equal(answer.iat, now(f));
      assert.equal(typeof answer.jti, 'string');
      // The client it was issued to may introspect it too; a client that is neither may not.
      assert.equal((await introspect(f, 'custody-desk', handle)).active, true);
      assert.deepEqual(await introspect(f, 'broker-1', handle), { active: false });

      // The issuance says the format; the handle is in no audit event.
      const issued = (await f.auditEvents('token.issued')).filter((e) => e.audience === custodyApi);
      assert.equal(issued.length, 1);
      assert.equal(issued[0]!.details!.format, 'reference');
      assert.equal(issued[0]!.details!.jti, answer.jti);
      assert.ok(!(await f.auditText()).includes(handle.slice(7)));
    });

    test('a revoked handle is inactive at once, for its client and its resource server', async (t) => {
      const f = await referenceFixture(t, dialect);
      const handle = await f.accessToken('custody-desk', { resource: custodyApi, scope: 'custody:view' });
      assert.equal((await introspect(f, 'custody-gateway', handle)).active, true);
      // Another client cannot revoke it (RFC 7009 §2.1): still 200, still active.
      const foreign = await f.post('/revoke', { auth: f.basic('custody-gateway'), form: { token: handle } });
      assert.equal(foreign.statusCode, 200);
      assert.equal((await introspect(f, 'custody-gateway', handle)).active, true);
      const revoked = await f.post('/revoke', { auth: f.basic('custody-desk'), form: { token: handle, token_type_hint: 'access_token' } });
      assert.equal(revoked.statusCode, 200, revoked.body);
      assert.deepEqual(await introspect(f, 'custody-gateway', handle), { active: false });
      assert.deepEqual(await introspect(f, 'custody-desk', handle), { active: false });
      const events = (await f.auditEvents('token.revoked')).filter((e) => e.audience === custodyApi);
      assert.equal(events.length, 1);
    });

    test('an expired handle is inactive', async (t) => {
      const f = await referenceFixture(t, dialect);
      const handle = await f.accessToken('custody-desk', { resource: custodyApi, scope: 'custody:view' });
      f.clock.advance((custodyTtl - 1) * 1000);
      assert.equal((await introspect(f, 'custody-gateway', handle)).active, true);
      f.clock.advance(1000);
      assert.deepEqual(await introspect(f, 'custody-gateway', handle), { active: false });
    });
  });
}

describe('reference access tokens over HTTP', () => {
  test('a DPoP-bound handle is of type DPoP and introspects with cnf.jkt', async (t) => {
    const f = await referenceFixture(t);
    const key = dpopKey();
    const response = await f.token({
      auth: f.basic('custody-desk'),
      form: { grant_type: 'client_credentials', resource: custodyApi, scope: 'custody:move' },
      headers: { dpop: dpopProof(key, { htm: 'POST', htu: `${f.issuer}/token`, iat: now(f) }) },
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as Record<string, unknown>;
    assert.equal(body.token_type, 'DPoP');
    const answer = await introspect(f, 'custody-gateway', body.access_token as string);
    assert.equal(answer.active, true);
    assert.equal(answer.token_type, 'DPoP');
    assert.deepEqual(answer.cnf, { jkt: key.jkt });
    // The proof's ath is the handle's hash, as for any access token (RFC 9449 §4.2).
    assert.equal(typeof ath(body.access_token as string), 'string');
  });

  test('an audience without the option still gets a JWT, and its event names no format (a JWT is the default)', async (t) => {
    const f = await referenceFixture(t);
    const token = await f.accessToken('custody-desk', { resource: ordersApi, scope: 'order:create' });
    assert.equal(token.split('.').length, 3);
    assert.ok(!token.startsWith('clr_at_'));
    const issued = (await f.auditEvents('token.issued')).filter((e) => e.audience === ordersApi);
    assert.equal(issued.at(-1)!.details!.format, undefined);
  });

  test('answers garbage handles without a 5xx: inactive at introspection, 200 at revocation', async (t) => {
    const f = await referenceFixture(t);
    const garbage = ['clr_at_', `clr_at_${'A'.repeat(43)}`, `clr_at_${'A'.repeat(44)}`, `clr_at_${'é'.repeat(43)}`, `clr_at_${'A'.repeat(20_000)}`, 'clr_at_../../etc', "clr_at_' or 1=1 --"];
    for (const token of garbage) {
      const answer = await f.post('/introspect', { auth: f.basic('custody-gateway'), form: { token } });
      assert.equal(answer.statusCode, 200, `${token.slice(0, 40)}: ${answer.body}`);
      assert.deepEqual(answer.json(), { active: false });
      const revoked = await f.post('/revoke', { auth: f.basic('custody-desk'), form: { token } });
      assert.equal(revoked.statusCode, 200, `${token.slice(0, 40)}: ${revoked.body}`);
    }
  });

  test('a reference subject token is exchanged as a JWT subject token is, and a revoked or unknown one is invalid_request', async (t) => {
    const f = await referenceFixture(t);
    const exchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
    await f.apply({
      resource_servers: [{ identifier: custodyApi, scopes: ['custody:view', 'custody:move'], access_token_ttl: custodyTtl, access_token_format: 'reference', introspection_clients: ['custody-gateway'], exchange_clients: ['custody-backend'] }],
      clients: [{ client_id: 'custody-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:create custody:view' }],
    });
    const subject = await f.accessToken('custody-desk', { resource: custodyApi, scope: 'custody:view' });
    const exchangeIt = (token: string, resource: string) =>
      f.token({ auth: f.basic('custody-backend'), form: { grant_type: exchange, subject_token: token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource } });
    // To a reference audience: a handle again, with the subject's jti as parent and its own claims.
    const next = await exchangeIt(subject, custodyApi);
    assert.equal(next.statusCode, 200, next.body);
    const handle = next.json().access_token as string;
    assert.match(handle, /^clr_at_/);
    const answer = await introspect(f, 'custody-gateway', handle);
    assert.equal(answer.active, true);
    assert.equal(answer.sub, 'custody-desk');
    assert.equal(answer.client_id, 'custody-backend');
    assert.deepEqual(answer.act, { sub: 'custody-backend' });
    const exchanged = (await f.auditEvents('token.exchanged')).at(-1)!;
    assert.equal(exchanged.details!.format, 'reference');
    // Revoked: refused as any dead subject token is; garbage: the same.
    const revoked = await f.post('/revoke', { auth: f.basic('custody-desk'), form: { token: subject } });
    assert.equal(revoked.statusCode, 200);
    assertOAuthError(await exchangeIt(subject, custodyApi), 400, 'invalid_request', 'revoked subject');
    assertOAuthError(await exchangeIt(`clr_at_${'A'.repeat(43)}`, custodyApi), 400, 'invalid_request', 'unknown handle');
    assertOAuthError(await exchangeIt('clr_at_x.y.z', custodyApi), 400, 'invalid_request', 'malformed handle');
  });

  test('a person\'s code flow and refresh for a reference audience give handles with the grant\'s claims', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ resource_servers: [{ ...resourceServers[0], access_token_format: 'reference' }] });
    const person = await f.signIn('alice');
    const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'openid offline_access order:create', resource: ordersApi } });
    const redeemed = await f.redeem('web-app', code, pkce.verifier);
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    const handle = redeemed.json().access_token as string;
    assert.match(handle, /^clr_at_/);
    assert.equal(String(redeemed.json().id_token).split('.').length, 3, 'the ID token is a JWT still');
    const ask = (token: string) => f.introspect('web-app', token);
    const answer = await ask(handle);
    assert.equal(answer.active, true);
    assert.equal(answer.sub, person.userId);
    assert.equal(typeof answer.grant_id, 'string');
    const refreshed = await f.refresh('web-app', redeemed.json().refresh_token as string, { resource: ordersApi });
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    const next = refreshed.json().access_token as string;
    assert.match(next, /^clr_at_/);
    assert.notEqual(next, handle);
    assert.equal((await ask(next)).grant_id, answer.grant_id);
  });

  test('the admin API and apply show the format of a resource server', async (t) => {
    const f = await referenceFixture(t);
    const admin = await f.accessToken('admin-viewer', { resource: `${f.issuer}/admin`, scope: 'admin:read' });
    const listed = await f.inject({ method: 'GET', url: '/admin/resource-servers', headers: { authorization: `Bearer ${admin}` } });
    assert.equal(listed.statusCode, 200, listed.body);
    const servers = listed.json().resource_servers as Record<string, unknown>[];
    assert.equal(servers.find((r) => r.identifier === custodyApi)?.access_token_format, 'reference');
    // Absent: jwt (definitions applied before the option existed are unchanged).
    assert.equal(servers.find((r) => r.identifier === ordersApi)?.access_token_format, undefined);
    assert.ok(!servers.some((r) => r.access_token_format === 'reference' && String(r.identifier).startsWith(f.issuer)), 'the built-in audiences stay jwt');
    const { planApply } = await import('../../src/apply/index.ts');
    const { problems } = await planApply(f.ctx, { resource_servers: [{ identifier: custodyApi, scopes: ['custody:view'], access_token_format: 'opaque' }] });
    assert.match(problems.map((p) => `${p.path}: ${p.message}`).join('\n'), /access_token_format: must be one of jwt, reference/);
    assertOAuthError(await f.post('/introspect', { auth: f.basic('custody-gateway'), form: {} }), 400, 'invalid_request');
  });
});
