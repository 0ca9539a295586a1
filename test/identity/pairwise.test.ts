import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt } from 'jose';
import { claimsForHolder, crossesRegion, holderMustNotRead, pairwiseKey, pairwiseSubject, regionSector, sectorOf, subjectForClient } from '../../src/identity/pairwise.ts';
import { readClientMetadata } from '../../src/clients/metadata.ts';
import { planApply } from '../../src/apply/index.ts';
import { Validator, formatProblem } from '../../src/validation.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture } from '../authorization/fixture.ts';
import { assertOAuthError } from '../endpoints/fixture.ts';
import { testContext } from '../helpers/storage.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { openContext } from '../../src/server.ts';

// OIDC Core 1.0 §8.1 pairwise subject identifiers; OIDC Registration §2, §5 subject_type and
// sector_identifier_uri.

describe('pairwise subjects (src/identity/pairwise.ts)', () => {
  test('are stable for one key, differ by sector and by key, and keep sector and subject apart', () => {
    const key = pairwiseKey(randomBytes(32));
    const a = pairwiseSubject(key, 'a.example.com', 'user-1');
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(pairwiseSubject(key, 'a.example.com', 'user-1'), a, 'stable');
    assert.notEqual(pairwiseSubject(key, 'b.example.com', 'user-1'), a, 'another sector');
    assert.notEqual(pairwiseSubject(key, 'a.example.com', 'user-2'), a, 'another person');
    assert.notEqual(pairwiseSubject(pairwiseKey(randomBytes(32)), 'a.example.com', 'user-1'), a, 'another master key');
    assert.notEqual(pairwiseSubject(key, 'a.b', 'c'), pairwiseSubject(key, 'a', '.bc'), 'length-prefixed parts');
    assert.notEqual(pairwiseSubject(key, regionSector('us'), 'user-1'), pairwiseSubject(key, regionSector('eu'), 'user-1'));
  });

  test('are the same on two nodes with the same master key', async (t) => {
    const masterKey = randomBytes(32).toString('hex');
    const one = await testContext({ t, env: { CLEARANCE_MASTER_KEY: masterKey } });
    // Another process on the same database: it derives from the database's root, with the same key (src/keys/master-key-state.ts).
    const two = { ctx: await openContext(loadConfig({ CLEARANCE_DATA_DIR: one.dataDir, CLEARANCE_MASTER_KEY: masterKey }), { clock: one.clock, log: createLogger('silent'), storage: one.database.connect() }) };
    const client = { client_id: 'rp', subject_type: 'pairwise' as const, redirect_uris: ['https://rp.example.com/cb'] };
    assert.equal(subjectForClient(one.ctx, client, 'user-1'), subjectForClient(two.ctx, client, 'user-1'));
    assert.notEqual(subjectForClient(one.ctx, client, 'user-1'), 'user-1');
    assert.equal(subjectForClient(one.ctx, { ...client, subject_type: 'public' }, 'user-1'), 'user-1');
  });

  test('take the sector from sector_identifier_uri, else the one redirect_uri host', () => {
    assert.equal(sectorOf({ redirect_uris: ['https://rp.example.com/cb', 'https://rp.example.com/cb2'] }), 'rp.example.com');
    assert.equal(sectorOf({ redirect_uris: ['https://a.example.com/cb'], sector_identifier_uri: 'https://sector.example.com/s.json' }), 'sector.example.com');
    assert.equal(sectorOf({ redirect_uris: ['https://a.example.com/cb', 'https://b.example.com/cb'] }), undefined);
  });

  test('cross a region only when both regions are declared and differ', () => {
    assert.equal(crossesRegion('eu', 'us'), true);
    assert.equal(crossesRegion('eu', 'eu'), false);
    assert.equal(crossesRegion(undefined, 'us'), false);
    assert.equal(crossesRegion('eu', undefined), false);
  });
});

describe('subject_type in client metadata (OIDC Registration §2)', () => {
  const read = (input: Record<string, unknown>) => {
    const v = new Validator();
    const metadata = readClientMetadata(v, 'client', { client_id: 'rp', redirect_uris: ['https://rp.example.com/cb'], ...input });
    return { metadata, problems: v.problems.map(formatProblem) };
  };

  test('accepts pairwise with redirect_uris on one host, and public', () => {
    assert.equal(read({ subject_type: 'pairwise' }).metadata?.subject_type, 'pairwise');
    assert.equal(read({ subject_type: 'public' }).metadata?.subject_type, 'public');
    assert.equal(read({}).metadata?.subject_type, undefined);
  });

  test('refuses pairwise with redirect_uris on several hosts and no sector_identifier_uri (OIDC Core §8.1)', () => {
    const { metadata, problems } = read({ subject_type: 'pairwise', redirect_uris: ['https://a.example.com/cb', 'https://b.example.com/cb'] });
    assert.equal(metadata, undefined);
    assert.match(problems.join('\n'), /sector_identifier_uri.*several hosts/);
  });

  test('refuses an unknown subject_type, and a sector_identifier_uri without pairwise or over plain http', () => {
    assert.match(read({ subject_type: 'secret' }).problems.join('\n'), /subject_type/);
    assert.match(read({ sector_identifier_uri: 'https://s.example.com/s.json' }).problems.join('\n'), /applies only to subject_type pairwise/);
    assert.match(read({ subject_type: 'pairwise', sector_identifier_uri: 'http://s.example.com/s.json' }).problems.join('\n'), /https/);
  });
});

/** A loopback server answering `body` as JSON at every path. */
async function sectorServer(t: TestContext, body: unknown): Promise<string> {
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/sector.json`;
}

describe('sector_identifier_uri at dynamic registration (OIDC Registration §5, RFC 7591 §3.2.2)', () => {
  const app = (extra: Record<string, unknown>) => ({
    client_name: 'RP',
    kind: 'app',
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid order:create',
    subject_type: 'pairwise',
    redirect_uris: ['https://a.example.com/cb', 'https://b.example.com/cb'],
    ...extra,
  });
  const register = async (f: CodeFlowFixture, body: unknown) => {
    const token = await f.initialAccessToken({ scope: 'openid order:create', grantTypes: ['authorization_code'], kinds: ['app'] });
    return f.inject({ method: 'POST', url: '/register', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, payload: JSON.stringify(body) });
  };

  test('registers a pairwise client whose sector document lists every redirect_uri', async (t) => {
    const f = await codeFlowFixture(t);
    const uri = await sectorServer(t, ['https://a.example.com/cb', 'https://b.example.com/cb', 'https://c.example.com/cb']);
    const response = await register(f, app({ sector_identifier_uri: uri }));
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.json().subject_type, 'pairwise');
    assert.equal(response.json().sector_identifier_uri, uri);
  });

  test('refuses a sector document that misses a redirect_uri, one that is not an array, and one it cannot fetch', async (t) => {
    const f = await codeFlowFixture(t);
    const missing = await sectorServer(t, ['https://a.example.com/cb']);
    const body = assertOAuthError(await register(f, app({ sector_identifier_uri: missing })), 400, 'invalid_client_metadata');
    assert.match(String(body.error_description), /does not list redirect_uri https:\/\/b\.example\.com\/cb/);
    const notArray = await sectorServer(t, { redirect_uris: ['https://a.example.com/cb'] });
    assert.match(String(assertOAuthError(await register(f, app({ sector_identifier_uri: notArray })), 400, 'invalid_client_metadata').error_description), /JSON array/);
    // Several hosts and no sector document: OIDC Core §8.1.
    assertOAuthError(await register(f, app({})), 400, 'invalid_client_metadata');
  });

  test('apply checks the sector document too, at the member\'s path', async (t) => {
    const f = await codeFlowFixture(t);
    const missing = await sectorServer(t, ['https://a.example.com/cb']);
    const good = await sectorServer(t, ['https://a.example.com/cb', 'https://b.example.com/cb']);
    const client = (uri: string) => ({ client_id: 'rp', ...app({ sector_identifier_uri: uri }) });
    const { plan, problems } = await planApply(f.ctx, { clients: [client(missing)] });
    assert.equal(plan, undefined);
    assert.match(problems.map(formatProblem).join('\n'), /clients\[0\]\.sector_identifier_uri.*does not list redirect_uri https:\/\/b\.example\.com\/cb/);
    await f.apply({ clients: [client(good)] });
    assert.equal((await f.ctx.clients.get('rp'))?.metadata.sector_identifier_uri, good);
  });

  test('never fetches a sector document from a private address unless the private network is allowed', async (t) => {
    const f = await codeFlowFixture(t, { env: { CLEARANCE_CLIENT_JWKS_ALLOW_PRIVATE_NETWORK: 'false' } });
    const loopback = await sectorServer(t, ['https://a.example.com/cb', 'https://b.example.com/cb']);
    assert.match(String(assertOAuthError(await register(f, app({ sector_identifier_uri: loopback })), 400, 'invalid_client_metadata').error_description), /not https|private network/);
    const privateHost = assertOAuthError(await register(f, app({ sector_identifier_uri: 'https://10.20.30.40/sector.json' })), 400, 'invalid_client_metadata');
    assert.match(String(privateHost.error_description), /10\.20\.30\.40.*address/);
  });
});

describe('pairwise subjects in ID tokens and userinfo (OIDC Core §8.1, §5.3.2)', () => {
  const secretApp = (client_id: string, redirect: string) => ({
    client_id,
    kind: 'app',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    redirect_uris: [redirect],
    scope: 'openid order:create',
    subject_type: 'pairwise',
  });
  const sectorA = 'https://a.example.com/cb';
  const sectorA2 = 'https://a.example.com/other-cb';
  const sectorB = 'https://b.example.com/cb';

  /** The ID token sub and userinfo sub `client` gets for `person` (a userinfo token through `openid` alone). */
  async function subjects(f: CodeFlowFixture, client: string, redirect: string, person: Awaited<ReturnType<CodeFlowFixture['signIn']>>) {
    const challenge = pkce();
    const { code } = await f.authorizeAndApprove({ client, person, pkce: challenge, query: { redirect_uri: redirect, scope: 'openid' } });
    const redeemed = await f.token({ auth: f.basic(client), form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier, redirect_uri: redirect } });
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    const { id_token, access_token } = redeemed.json() as { id_token: string; access_token: string };
    const userinfo = await f.inject({ method: 'GET', url: '/userinfo', headers: { authorization: `Bearer ${access_token}` } });
    assert.equal(userinfo.statusCode, 200, userinfo.body);
    return { id: String(decodeJwt(id_token).sub), userinfo: userinfo.json() as Record<string, unknown>, token: access_token };
  }

  test('two clients in different sectors get different stable subjects for one person; the same sector, the same; userinfo agrees', async (t) => {
    const f = await codeFlowFixture(t);
    await f.apply({ clients: [secretApp('rp-a', sectorA), secretApp('rp-a2', sectorA2), secretApp('rp-b', sectorB)] });
    const person = await f.signIn('alice');
    const a = await subjects(f, 'rp-a', sectorA, person);
    const again = await subjects(f, 'rp-a', sectorA, person);
    const a2 = await subjects(f, 'rp-a2', sectorA2, person);
    const b = await subjects(f, 'rp-b', sectorB, person);

    assert.notEqual(a.id, person.userId, 'never the local id');
    assert.equal(again.id, a.id, 'stable');
    assert.equal(a2.id, a.id, 'one sector, one subject');
    assert.notEqual(b.id, a.id, 'another sector, another subject');
    for (const s of [a, a2, b]) {
      assert.equal(s.userinfo.sub, s.id, 'OIDC Core §5.3.2: userinfo sub is the ID token sub');
      assert.equal(s.userinfo.preferred_username, 'alice');
      // The userinfo token is an opaque handle the client cannot read (userinfo resolves it).
      assert.match(s.token, /^clr_at_[A-Za-z0-9_-]{43}$/);
      assert.throws(() => decodeJwt(s.token));
      // Introspected by its own client, it names the pairwise subject, never the local one.
      const asHolder = await f.introspect(s === b ? 'rp-b' : s === a2 ? 'rp-a2' : 'rp-a', s.token);
      assert.equal(asHolder.active, true);
      assert.equal(asHolder.sub, s.id);
    }
    // A public client is told the local id, and its userinfo token stays a JWT that says so.
    const publicSub = await subjects(f, 'web-app', 'https://app.example.com/cb', person);
    assert.equal(publicSub.id, person.userId);
    assert.equal(decodeJwt(publicSub.token).sub, person.userId);
    assert.equal((await f.introspect('web-app', publicSub.token)).sub, person.userId);
  });

  test('discovery advertises public and pairwise', async (t) => {
    const f = await codeFlowFixture(t);
    const metadata = (await f.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json() as Record<string, unknown>;
    assert.deepEqual(metadata.subject_types_supported, ['public', 'pairwise']);
  });
});

describe('a pairwise client never learns the local subject from its access tokens (OIDC Core §8.1)', () => {
  const ordersApi = 'https://orders.example.com/api';
  const redirect = 'https://a.example.com/cb';
  const setup = async (t: TestContext) => {
    const f = await codeFlowFixture(t);
    await f.apply({
      // A JWT resource server: a pairwise client's tokens for it are reference tokens all the same.
      resource_servers: [{ identifier: ordersApi, name: 'Order API', scopes: ['order:create'], introspection_clients: ['orders-rs'] }],
      clients: [
        { client_id: 'rp-a', kind: 'app', token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [redirect], scope: 'openid order:create', subject_type: 'pairwise' },
        { client_id: 'orders-rs', kind: 'service', grant_types: ['client_credentials'] },
      ],
    });
    const person = await f.signIn('alice');
    const challenge = pkce();
    const { code } = await f.authorizeAndApprove({ client: 'rp-a', person, pkce: challenge, query: { redirect_uri: redirect, scope: 'openid order:create', resource: ordersApi } });
    const redeemed = await f.token({ auth: f.basic('rp-a'), form: { grant_type: 'authorization_code', code, code_verifier: challenge.verifier, redirect_uri: redirect } });
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    return { f, person, tokens: redeemed.json() as { id_token: string; access_token: string; refresh_token?: string } };
  };

  test('its token for a JWT resource server is an opaque handle; introspection tells it the pairwise sub and the resource server the local one', async (t) => {
    const { f, person, tokens } = await setup(t);
    const pairwise = String(decodeJwt(tokens.id_token).sub);
    assert.notEqual(pairwise, person.userId);
    assert.match(tokens.access_token, /^clr_at_/);
    assert.throws(() => decodeJwt(tokens.access_token), 'not a JWT the client could decode');

    const asHolder = await f.introspect('rp-a', tokens.access_token);
    assert.equal(asHolder.active, true);
    assert.equal(asHolder.sub, pairwise);
    assert.equal(asHolder.aud, ordersApi);
    assert.ok(!JSON.stringify(asHolder).includes(person.userId), 'the local id appears nowhere in the holder\'s answer');

    const asResourceServer = await f.introspect('orders-rs', tokens.access_token);
    assert.equal(asResourceServer.active, true);
    assert.equal(asResourceServer.sub, person.userId, 'the resource server gets the local subject, as for any token');
    assert.equal(asResourceServer.client_id, 'rp-a');

    // The refreshed token is a handle too.
    assert.ok(tokens.refresh_token, 'a refresh token');
    const refreshed = await f.token({ auth: f.basic('rp-a'), form: { grant_type: 'refresh_token', refresh_token: tokens.refresh_token } });
    assert.equal(refreshed.statusCode, 200, refreshed.body);
    assert.match(String(refreshed.json().access_token), /^clr_at_/);
  });

  test('the holder\'s view drops act, origin_person and device_id and maps second approvers (claimsForHolder)', async (t) => {
    const { ctx } = await testContext({ t });
    const client = { client_id: 'rp', subject_type: 'pairwise' as const, redirect_uris: ['https://rp.example.com/cb'] };
    const claims = { sub: 'user-1', client_id: 'rp', aud: 'x', act: { sub: 'user-9' }, origin_person: 'user-1', origin_lei: 'LEI', device_id: 'dev-1', approvals: [{ sub: 'user-2', acr: 'a', time: 1, evidence_digest: 'd' }] };
    const seen = claimsForHolder(ctx, client, claims);
    assert.equal(seen.sub, subjectForClient(ctx, client, 'user-1'));
    assert.equal(seen.approvals![0]!.sub, subjectForClient(ctx, client, 'user-2'));
    assert.equal(seen.act, undefined);
    assert.equal(seen.origin_person, undefined);
    assert.equal(seen.device_id, undefined);
    assert.equal(seen.origin_lei, 'LEI');
    // A public client, and a pairwise client's own token (sub = client_id), are answered unchanged.
    assert.equal(claimsForHolder(ctx, { ...client, subject_type: 'public' }, claims), claims);
    assert.equal(claimsForHolder(ctx, client, { ...claims, sub: 'rp' }).sub, 'rp');
    assert.equal(holderMustNotRead(client, 'user-1'), true);
    assert.equal(holderMustNotRead(client, 'rp'), false);
    assert.equal(holderMustNotRead({ client_id: 'rp', subject_type: 'public' }, 'user-1'), false);
  });
});

describe('a pairwise CIBA client names its sector (OIDC Core §8.1: no redirect proves its redirect_uri host)', () => {
  const ciba = 'urn:openid:params:grant-type:ciba';
  const cibaClient = (extra: Record<string, unknown>) => ({
    client_name: 'CIBA RP',
    kind: 'app',
    grant_types: [ciba],
    backchannel_token_delivery_mode: 'poll',
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid',
    subject_type: 'pairwise',
    redirect_uris: ['https://victim.example.com/cb'],
    ...extra,
  });

  test('the metadata check refuses one without sector_identifier_uri, at that member, and the sector falls back to nothing', () => {
    const v = new Validator();
    assert.equal(readClientMetadata(v, 'clients[0]', { client_id: 'c', ...cibaClient({}) }), undefined);
    assert.match(v.problems.map(formatProblem).join('\n'), /clients\[0\]\.sector_identifier_uri.*urn:openid:params:grant-type:ciba/);
    assert.equal(sectorOf({ redirect_uris: ['https://victim.example.com/cb'], grant_types: [ciba] }), undefined);
    assert.throws(() => subjectForClient({ identity: { factorKeys: { master: randomBytes(32) } } } as never, { client_id: 'c', subject_type: 'pairwise', redirect_uris: ['https://victim.example.com/cb'], grant_types: [ciba] }, 'user-1'));
    assert.equal(sectorOf({ redirect_uris: ['https://victim.example.com/cb'], grant_types: [ciba], sector_identifier_uri: 'https://rp.example.com/s.json' }), 'rp.example.com');
  });

  test('dynamic registration answers invalid_client_metadata without one, and registers one whose sector document lists its redirect_uri', async (t) => {
    const f = await codeFlowFixture(t);
    const register = async (body: unknown) => {
      const token = await f.initialAccessToken({ scope: 'openid', grantTypes: [ciba], kinds: ['app'] });
      return f.inject({ method: 'POST', url: '/register', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, payload: JSON.stringify(body) });
    };
    const refused = assertOAuthError(await register(cibaClient({})), 400, 'invalid_client_metadata');
    assert.match(String(refused.error_description), /sector_identifier_uri/);
    const uri = await sectorServer(t, ['https://victim.example.com/cb']);
    const registered = await register(cibaClient({ sector_identifier_uri: uri }));
    assert.equal(registered.statusCode, 201, registered.body);
  });

  test('apply refuses one without sector_identifier_uri at the member\'s path', async (t) => {
    const f = await codeFlowFixture(t);
    const { plan, problems } = await planApply(f.ctx, { clients: [{ client_id: 'ciba-rp', ...cibaClient({}) }] });
    assert.equal(plan, undefined);
    assert.match(problems.map(formatProblem).join('\n'), /clients\[0\]\.sector_identifier_uri.*is required for subject_type pairwise with the urn:openid:params:grant-type:ciba grant/);
  });
});
