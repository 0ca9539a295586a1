/**
 * RFC 7591 §5: registration metadata is self-asserted and confers no authority. The firm a client
 * belongs to (mandates, policy, data residency), its kind, grant types and scopes come from the
 * initial access token an administrator issued, and an RFC 7592 update cannot change them.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { tokenExchangeGrantType, jwtBearerGrantType } from '../../../src/tokens/token-types.ts';
import { assertOAuthError, basicAuthorization, ordersApi, protocolFixture, type ProtocolFixture } from '../../endpoints/fixture.ts';
import { exampleEntities } from '../../policy/fixture.ts';

/** Example Broker Ltd (examples/entities.yaml): home region uk. */
const brokerLei = '5493001KJTIIGC8Y1R12';
/** Example US firm (examples/entities.yaml): home region us. */
const usFirmLei = '254900EXAMPLEUS0AA64';
/** A reporting API that processes its data in the uk: only a client of a firm that permits uk gets a token. */
const ukReportingApi = 'https://uk-reporting.example.com';

/** The US firm lets the broker (any of its clients) create orders on its behalf. */
const brokerMandate = {
  id: 'us-firm-to-broker',
  grantor: { lei: usFirmLei },
  grantee: { lei: brokerLei },
  scopes: ['order:create'],
  constraints: {},
  legal_basis: { reference: 'Introducing broker agreement 2026-03' },
  effective_from: '2020-01-01T00:00:00Z',
  accepted_by: 'head-of-trading',
  accepted_at: '2020-01-01T00:00:00Z',
};

const serviceMetadata = { client_name: 'Algo desk 7', grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'order:create' };

interface Registered {
  client_id: string;
  client_secret: string;
  registration_access_token: string;
  owner_lei?: string;
  [key: string]: unknown;
}

async function fixture(t: TestContext): Promise<ProtocolFixture> {
  const f = await protocolFixture(t);
  await f.apply({ ...exampleEntities(), resource_servers: [{ identifier: ukReportingApi, scopes: ['report:view'], region: 'uk' }] });
  await f.apply({ mandates: [brokerMandate] });
  return f;
}

function register(f: ProtocolFixture, token: string, body: unknown): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'POST',
    url: '/register',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    payload: JSON.stringify(body),
  });
}

async function registered(f: ProtocolFixture, token: string, body: unknown = serviceMetadata): Promise<Registered> {
  const response = await register(f, token, body);
  assert.equal(response.statusCode, 201, response.body);
  return response.json() as Registered;
}

function update(f: ProtocolFixture, client: Registered, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return f.inject({
    method: 'PUT',
    url: `/register/${encodeURIComponent(client.client_id)}`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${client.registration_access_token}` },
    payload: JSON.stringify({ ...body, client_id: client.client_id }),
  });
}

/** client_credentials for the registered client, with extra form members (resource, mandate). */
function clientToken(f: ProtocolFixture, client: Registered, form: Record<string, string>): Promise<LightMyRequestResponse> {
  return f.token({ auth: basicAuthorization(client.client_id, client.client_secret), form: { grant_type: 'client_credentials', ...form } });
}

const underMandate = { resource: ordersApi, mandate: brokerMandate.id };

describe('the firm of a dynamically registered client (RFC 7591 §5)', () => {
  test("refuses a registrant that claims a firm with owner_lei, and its client gets no token under that firm's mandate nor passes its data residency", async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create report:view', uses: 2 });
    const claimed = await register(f, token, { ...serviceMetadata, owner_lei: brokerLei });
    const body = assertOAuthError(claimed, 400, 'invalid_client_metadata');
    assert.match(String(body.error_description), /owner_lei/);
    const [refused] = await f.auditEvents('client.registration_refused');
    assert.equal(refused?.details?.member, 'owner_lei');

    // The token was not spent; the registrant's client belongs to no firm.
    const client = await registered(f, token, { ...serviceMetadata, scope: 'order:create report:view' });
    assert.equal(client.owner_lei, undefined);
    assert.equal((await f.ctx.clients.get(client.client_id))?.metadata.owner_lei, undefined);
    assertOAuthError(await clientToken(f, client, underMandate), 400, 'invalid_grant');
    assertOAuthError(await clientToken(f, client, { resource: ukReportingApi }), 400, 'invalid_target');
  });

  test("gives a client the firm its initial access token names, which the firm's mandate and data residency then recognise", async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create report:view', ownerLei: brokerLei, uses: 3 });
    const client = await registered(f, token, { ...serviceMetadata, scope: 'order:create report:view' });
    assert.equal(client.owner_lei, brokerLei);
    const issued = await clientToken(f, client, underMandate);
    assert.equal(issued.statusCode, 200, issued.body);
    assert.deepEqual(decodeJwt(issued.json().access_token as string).mandate, { id: brokerMandate.id, v: 1 });
    assert.equal((await clientToken(f, client, { resource: ukReportingApi })).statusCode, 200);

    // Sending the token's own firm is fine; another firm is refused (RFC 7591 §3.2.2).
    assert.equal((await registered(f, token, { ...serviceMetadata, owner_lei: brokerLei })).owner_lei, brokerLei);
    assertOAuthError(await register(f, token, { ...serviceMetadata, owner_lei: usFirmLei }), 400, 'invalid_client_metadata');

    const events = await f.auditEvents('client.registered');
    assert.equal(events.at(-1)?.details?.owner_lei, brokerLei);
    assert.equal(events.at(-1)?.details?.authorized_by, 'test');
  });

  test('refuses an RFC 7592 update that sets or switches the firm, and keeps the firm when the update omits it', async (t) => {
    const f = await fixture(t);
    const firmless = await registered(f, await f.initialAccessToken({ scope: 'order:create' }));
    assertOAuthError(await update(f, firmless, { ...serviceMetadata, owner_lei: brokerLei }), 400, 'invalid_client_metadata');
    assert.equal((await f.ctx.clients.get(firmless.client_id))?.metadata.owner_lei, undefined);
    assertOAuthError(await clientToken(f, firmless, underMandate), 400, 'invalid_grant');

    const broker = await registered(f, await f.initialAccessToken({ scope: 'order:create', ownerLei: brokerLei }));
    assertOAuthError(await update(f, broker, { ...serviceMetadata, owner_lei: usFirmLei }), 400, 'invalid_client_metadata');
    const renamed = await update(f, broker, { ...serviceMetadata, client_name: 'Algo desk 7b' });
    assert.equal(renamed.statusCode, 200, renamed.body);
    assert.equal(renamed.json().owner_lei, brokerLei);
    assert.equal((await f.ctx.clients.get(broker.client_id))?.metadata.owner_lei, brokerLei);
    assert.equal((await clientToken(f, broker, underMandate)).statusCode, 200);
    assert.equal((await f.auditEvents('client.registration_updated')).length, 1);
  });

  test('lets an administrator set the firm of a registered client, which a later update then keeps', async (t) => {
    const f = await fixture(t);
    const client = await registered(f, await f.initialAccessToken({ scope: 'order:create' }));
    const stored = (await f.ctx.clients.get(client.client_id))!.metadata;
    await f.apply({ clients: [{ ...stored, owner_lei: brokerLei }] });
    const response = await update(f, client, serviceMetadata);
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().owner_lei, brokerLei);
    assert.equal((await clientToken(f, client, underMandate)).statusCode, 200);
  });
});

describe('what a dynamically registered client may be and do (RFC 7591 §5)', () => {
  test("refuses grant types outside the initial access token's allowance: token exchange and jwt-bearer only when it lists them", async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create', uses: 2 });
    for (const grant of [tokenExchangeGrantType, jwtBearerGrantType]) {
      const body = assertOAuthError(await register(f, token, { ...serviceMetadata, grant_types: ['client_credentials', grant] }), 400, 'invalid_client_metadata');
      assert.match(String(body.error_description), /grant type/);
    }
    const allowing = await f.initialAccessToken({ scope: 'order:create', grantTypes: ['client_credentials', tokenExchangeGrantType] });
    const exchanger = await registered(f, allowing, { ...serviceMetadata, grant_types: ['client_credentials', tokenExchangeGrantType] });
    assert.deepEqual(exchanger.grant_types, ['client_credentials', tokenExchangeGrantType]);
    assertOAuthError(await register(f, await f.initialAccessToken({ scope: 'order:create', grantTypes: ['client_credentials'] }), { ...serviceMetadata, grant_types: ['client_credentials', jwtBearerGrantType] }), 400, 'invalid_client_metadata');
  });

  test("refuses a kind outside the initial access token's allowance: an agent (an Agent to policy) only when it allows one", async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create', uses: 2 });
    for (const kind of ['agent', 'app']) {
      const body = assertOAuthError(await register(f, token, { ...serviceMetadata, kind }), 400, 'invalid_client_metadata');
      assert.match(String(body.error_description), /kind/);
    }
    assert.equal((await registered(f, token)).kind, 'service');
    // A token for agents only: a registration that names no kind is an agent.
    const agent = await registered(f, await f.initialAccessToken({ scope: 'order:create', kinds: ['agent'] }));
    assert.equal(agent.kind, 'agent');
  });

  test("refuses Clearance's own privileged scopes unless the initial access token allows them", async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create' });
    for (const scope of ['admin:write', 'admin:read', 'audit:read', 'access:evaluate']) {
      assertOAuthError(await register(f, token, { ...serviceMetadata, scope: `order:create ${scope}` }), 400, 'invalid_client_metadata', scope);
    }
    const client = await registered(f, token);
    assertOAuthError(await clientToken(f, client, { resource: `${f.issuer}/admin` }), 400, 'invalid_scope');
  });

  test('refuses an RFC 7592 update that widens grant types or scope or changes the kind, and keeps them when it omits them', async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create order:cancel', grantTypes: ['client_credentials', tokenExchangeGrantType], kinds: ['service', 'agent'] });
    const client = await registered(f, token);
    const refusedBodies = [
      { ...serviceMetadata, grant_types: ['client_credentials', tokenExchangeGrantType] },
      { ...serviceMetadata, kind: 'agent' },
      { ...serviceMetadata, scope: 'order:create order:cancel' },
      { ...serviceMetadata, scope: 'order:create admin:write' },
    ];
    for (const body of refusedBodies) assertOAuthError(await update(f, client, body), 400, 'invalid_client_metadata', JSON.stringify(body));
    const { grant_types: _g, scope: _s, ...bare } = serviceMetadata;
    const kept = await update(f, client, { ...bare, client_name: 'renamed' });
    assert.equal(kept.statusCode, 200, kept.body);
    const metadata = (await f.ctx.clients.get(client.client_id))!.metadata;
    assert.deepEqual([metadata.kind, metadata.grant_types, metadata.scope, metadata.client_name], ['service', ['client_credentials'], 'order:create', 'renamed']);
  });

  test('keeps profile fapi2 through an RFC 7592 update that omits it', async (t) => {
    const f = await fixture(t);
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const fapi = {
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] },
      scope: 'order:create',
    };
    const client = await registered(f, await f.initialAccessToken({ scope: 'order:create' }), { ...fapi, profile: 'fapi2' });
    const response = await update(f, client, { ...fapi, client_name: 'renamed' });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal((await f.ctx.clients.get(client.client_id))?.metadata.profile, 'fapi2');
  });
});

describe('every refused registration is on the record (issue 17 item 3)', () => {
  test('a bad initial access token, malformed metadata and a bad registration access token are each client.registration_refused, once, without the token', async (t) => {
    const f = await fixture(t);
    const token = await f.initialAccessToken({ scope: 'order:create', uses: 2 });
    assertOAuthError(await register(f, 'not-a-real-token', serviceMetadata), 401, 'invalid_token');
    assertOAuthError(await register(f, token, { ...serviceMetadata, redirect_uris: 'not-a-list' }), 400, 'invalid_redirect_uri');
    const client = await registered(f, token);
    assertOAuthError(await update(f, { ...client, registration_access_token: 'wrong' }, serviceMetadata), 401, 'invalid_token');
    // The authority check records its own refusal (with the member): not twice.
    assertOAuthError(await register(f, await f.initialAccessToken({ scope: 'order:create' }), { ...serviceMetadata, owner_lei: brokerLei }), 400, 'invalid_client_metadata');
    const refused = await f.auditEvents('client.registration_refused');
    assert.deepEqual(
      refused.map((e) => [e.details?.via, e.details?.error ?? 'authority', e.details?.member]),
      [
        ['rfc7591', 'invalid_token', undefined],
        ['rfc7591', 'invalid_redirect_uri', undefined],
        ['rfc7592', 'invalid_token', undefined],
        ['rfc7591', 'authority', 'owner_lei'],
      ],
    );
    assert.equal(refused[2]!.details?.claimed_client, client.client_id);
    assert.ok(!JSON.stringify(refused).includes(token) && !JSON.stringify(refused).includes(client.registration_access_token));
  });
});
