import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { AuditKeys, auditOrigin } from '../../src/audit/audit-key.ts';
import { exportBundle, verifyBundle } from '../../src/audit/bundle.ts';
import { createSealer } from '../../src/audit/lifecycle.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import { epochSeconds } from '../../src/clock.ts';
import { revokeMandate } from '../../src/mandates/store.ts';
import { foldedDecisions } from '../../src/policy/issuance-audit.ts';
import { acr } from '../../src/identity/acr.ts';
import { mintAccessToken } from '../../src/tokens/access-token.ts';
import type { AccessTokenClaims } from '../../src/tokens/claims.ts';
import { mintIdToken } from '../../src/tokens/id-token.ts';
import { RevocationList } from '../../src/tokens/revocation.ts';
import { assertOAuthError, ordersApi, resourceServers } from '../endpoints/fixture.ts';
import { codeFlowFixture } from '../authorization/fixture.ts';
import { dpopKey } from '../helpers/dpop.ts';
import { testDialects, type TestDialect } from '../helpers/storage.ts';
import { applyDocument } from '../policy/fixture.ts';
import { accessTokenType, exchangeFixture, exchangeGrantType } from './exchange-fixture.ts';
import { agentGateway } from './agent-gateway.ts';
import { flushRefusalSummaries } from '../../src/audit/refusals.ts';
import { assertUuidV7At } from '../helpers/uuid-v7.ts';
import { nextUtc } from '../risk/fixture.ts';
import { offboardPerson } from '../../src/lifecycle/leaver.ts';
import { bumpGeneration } from '../../src/storage/generations.ts';

// RFC 8693 token exchange over HTTP: the three-hop chain of a trade (arranger → broker → clearing)
// and every case of SECURITY-CHECKLIST "Token exchange".

const arrangerApi = 'https://arranger.example.com/orders';
const brokerApi = 'https://broker.example.com/execution';
const clearingApi = 'https://clearing.example.com/settlement';
const exchange = exchangeGrantType;
const tradeScopes = 'order:create settlement:submit';

const exchanger = (client_id: string, scope = tradeScopes) => ({ client_id, kind: 'service', grant_types: [exchange], scope });

const document = {
  resource_servers: [
    { identifier: arrangerApi, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['arranger-backend'] },
    { identifier: brokerApi, scopes: ['order:create', 'settlement:submit'], exchange_clients: ['broker-backend'] },
    { identifier: clearingApi, scopes: ['settlement:submit'], require_sender_constraint: true },
  ],
  clients: [
    { client_id: 'trader-app', kind: 'agent', grant_types: ['client_credentials', exchange], scope: tradeScopes },
    exchanger('arranger-backend'),
    exchanger('broker-backend'),
    exchanger('outsider'),
    exchanger('narrow-backend', 'settlement:submit'),
    { client_id: 'not-an-exchanger', kind: 'service', grant_types: ['client_credentials'], scope: tradeScopes },
    { client_id: 'other-trader', kind: 'agent', grant_types: ['client_credentials'], scope: tradeScopes },
  ],
};

async function fixture(t: TestContext, dialect?: TestDialect, env?: Record<string, string>) {
  const f = await exchangeFixture(t, document, { ...(dialect ? { dialect } : {}), ...(env ? { env } : {}) });
  /** The first hop's token: the trading app's own, for the arranger's order API. */
  const orderToken = async (form: Record<string, string> = {}) => (await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, ...form }))).access_token;
  return { ...f, orderToken };
}

/** The millisecond a txn Clearance minted was made at: it is a UUIDv7 (src/transactions/txn.ts mintTxn), else the test fails. */
const mintedAt = (txn: unknown): number => assertUuidV7At(txn, 'a minted txn');

describe('token exchange (RFC 8693)', () => {
  for (const dialect of testDialects()) {
    test(`a three-hop chain keeps its txn, nests act newest-outermost, and narrows at every hop (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      const first = await f.orderToken();
      const toBroker = await f.ok(await f.exchangeFor('arranger-backend', first, { resource: brokerApi }));
      assert.equal(toBroker.issued_token_type, accessTokenType);
      assert.equal(toBroker.refresh_token, undefined, 'no refresh token from an exchange');
      const second = decodeJwt(toBroker.access_token);
      assert.equal(second.sub, 'trader-app');
      assert.equal(second.aud, brokerApi);
      assert.deepEqual(second.act, { sub: 'arranger-backend' });
      assert.equal(mintedAt(second.txn), f.clock.now(), 'the first hop mints the txn: a UUIDv7 of the time it did');

      const key = dpopKey();
      const toClearing = await f.ok(await f.exchangeFor('broker-backend', toBroker.access_token, { audience: clearingApi, scope: 'settlement:submit' }, { dpop: f.proof(key) }));
      assert.equal(toClearing.token_type, 'DPoP');
      const third = decodeJwt(toClearing.access_token);
      assert.equal(third.sub, 'trader-app');
      assert.equal(third.txn, second.txn, 'txn unchanged across hops');
      assert.deepEqual(third.act, { sub: 'broker-backend', act: { sub: 'arranger-backend' } });
      assert.equal(third.scope, 'settlement:submit');
      assert.deepEqual(third.cnf, { jkt: key.jkt });
      assert.ok(Number(third.exp) <= Number(decodeJwt(first).exp), 'never outlives the token it came from');

      // The chain from the audit log alone: each exchange names its parent's jti.
      const exchanged = await f.events('token.exchanged');
      const [issued] = await f.events('token.issued');
      const byJti = new Map(exchanged.map((e) => [e.details!.jti, e]));
      const chain: string[] = [];
      for (let jti: unknown = third.jti; jti; ) {
        const event = byJti.get(jti);
        if (!event) {
          assert.equal(jti, issued!.details!.jti, 'the chain ends at the first issuance');
          chain.push(`issued ${issued!.client} ${issued!.audience}`);
          break;
        }
        chain.push(`exchanged by ${event.client} for ${event.audience} (${(event.details!.act_chain as string[]).join(' < ')})`);
        assert.equal(event.txn, third.txn);
        jti = event.details!.parent_jti;
      }
      assert.deepEqual(chain, [
        `exchanged by broker-backend for ${clearingApi} (broker-backend < arranger-backend)`,
        `exchanged by arranger-backend for ${brokerApi} (arranger-backend)`,
        `issued trader-app ${arrangerApi}`,
      ]);
    });
  }

  test('a chain rooted in a client token passes every hop under an active policy set and a regional target', async (t) => {
    const f = await fixture(t);
    await applyDocument(f.ctx, {
      regions: [{ id: 'eu' }],
      legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'] }],
      clients: [{ ...document.clients[0], owner_lei: '5493001KJTIIGC8Y1R12' }],
      resource_servers: [{ ...document.resource_servers[2], region: 'eu' }],
      policies: [{ version: 'all-1', text: '@id("all") permit (principal, action, resource);', change_ref: 'C1', author: 'a', approver: 'b', active: true }],
    });
    const first = await f.orderToken();
    const hop = await f.ok(await f.exchangeFor('arranger-backend', first, { resource: brokerApi }));
    const last = await f.ok(await f.exchangeFor('broker-backend', hop.access_token, { resource: clearingApi }, { dpop: f.proof(dpopKey()) }));
    assert.equal(decodeJwt(last.access_token).sub, 'trader-app');
    // Each hop is one event carrying its decisions: no policy.allowed beside it.
    assert.deepEqual(await f.events('policy.allowed'), []);
    const [toClearing] = (await f.events('token.exchanged')).filter((e) => e.audience === clearingApi);
    assert.deepEqual(toClearing!.decision, { allow: true, reasons: ['all'], policyVersion: 'all-1' });
    const decided = foldedDecisions(toClearing!);
    assert.deepEqual(
      decided.map((d) => [d.principal, d.action, d.resource]),
      [['Agent::"trader-app"', 'settlement:submit', `ResourceServer::"${clearingApi}"`]],
      'the subject, a client, stays the principal down the chain',
    );
    assert.equal(decided[0]!.request!.context.region, 'eu', 'the regional target is in the context replayed');
  });

  test('widening scope, audience or authorization_details at a hop fails', async (t) => {
    const f = await fixture(t);
    const narrow = (await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, scope: 'order:create' }))).access_token;
    const wider = assertOAuthError(await f.exchangeFor('arranger-backend', narrow, { resource: brokerApi, scope: 'order:create settlement:submit' }), 400, 'invalid_scope');
    assert.match(String(wider.error_description), /settlement:submit is wider than the subject token's/);
    // The target offers none of what the subject token carries.
    assertOAuthError(await f.exchangeFor('arranger-backend', narrow, { resource: clearingApi }), 400, 'invalid_scope');
    // A client registered for fewer scopes gets no more than its registration.
    const first = await f.orderToken();
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: 'https://unknown.example.com' }), 400, 'invalid_target');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, audience: clearingApi }), 400, 'invalid_target');
    // RFC 8693 §2.2.2: an audience alone, of no resource server here, is invalid_target too.
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { audience: 'https://unknown.example.com' }), 400, 'invalid_target');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, {}), 400, 'invalid_target');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, authorization_details: JSON.stringify([{ type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' } }]) }), 400, 'invalid_authorization_details');
  });

  test('an invalid, expired, revoked or foreign subject token is invalid_request', async (t) => {
    const f = await fixture(t);
    assertOAuthError(await f.exchangeFor('arranger-backend', 'not-a-token', { resource: brokerApi }), 400, 'invalid_request');
    const revoked = await f.orderToken();
    await new RevocationList(f.ctx.storage.db).revoke(decodeJwt(revoked).jti!, Number(decodeJwt(revoked).exp) * 1000, f.clock.now(), 'test');
    assertOAuthError(await f.exchangeFor('arranger-backend', revoked, { resource: brokerApi }), 400, 'invalid_request');
    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT({ sub: 'x', aud: f.issuer, scope: tradeScopes })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
      .setIssuer('https://rogue.example.com')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    const body = assertOAuthError(await f.exchangeFor('arranger-backend', foreign, { resource: brokerApi }), 400, 'invalid_request');
    assert.match(String(body.error_description), /not a registered partner/);
    const expiring = await f.orderToken();
    f.clock.advance(301_000);
    assertOAuthError(await f.exchangeFor('arranger-backend', expiring, { resource: brokerApi }), 400, 'invalid_request');
  });

  test('a token whose kind does not match subject_token_type is invalid_request', async (t) => {
    const f = await fixture(t);
    const idToken = await mintIdToken(f.ctx.keys, { issuer: f.issuer, subject: 'u1', clientId: 'arranger-backend', now: epochSeconds(f.clock), authTime: epochSeconds(f.clock), acr: 'pwd', amr: ['pwd'] });
    assertOAuthError(await f.exchangeFor('arranger-backend', idToken, { resource: brokerApi }), 400, 'invalid_request', 'ID token as access_token');
    const access = await f.orderToken();
    assertOAuthError(await f.post('arranger-backend', { grant_type: exchange, subject_token: access, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', resource: brokerApi }), 400, 'invalid_request', 'access token as id_token');
    assertOAuthError(await f.exchangeFor('arranger-backend', access, { resource: brokerApi, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 400, 'invalid_request');
    assertOAuthError(await f.post('arranger-backend', { grant_type: exchange, subject_token: access, resource: brokerApi }), 400, 'invalid_request', 'no subject_token_type');
  });

  test('a client that is not the audience, the holder or named by may_act may not exchange, and clients must be registered for the grant', async (t) => {
    const f = await fixture(t);
    const first = await f.orderToken();
    const body = assertOAuthError(await f.exchangeFor('outsider', first, { resource: brokerApi }), 400, 'invalid_request');
    assert.match(String(body.error_description), /may not exchange/);
    assertOAuthError(await f.exchangeFor('not-an-exchanger', first, { resource: brokerApi }), 400, 'unauthorized_client');
    // The holder may exchange its own token (narrowing it for another audience).
    const own = await f.ok(await f.exchangeFor('trader-app', first, { resource: brokerApi, scope: 'order:create' }));
    assert.deepEqual(decodeJwt(own.access_token).act, { sub: 'trader-app' });
  });

  for (const dialect of testDialects()) {
    test(`a client not entitled to exchange a token gets the same refusal whether it is live or revoked (no liveness oracle, ${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      const live = await f.orderToken();
      const revoked = await f.orderToken();
      await new RevocationList(f.ctx.storage.db).revoke(decodeJwt(revoked).jti!, Number(decodeJwt(revoked).exp) * 1000, f.clock.now(), 'test');
      const asLive = assertOAuthError(await f.exchangeFor('outsider', live, { resource: brokerApi }), 400, 'invalid_request');
      const asRevoked = assertOAuthError(await f.exchangeFor('outsider', revoked, { resource: brokerApi }), 400, 'invalid_request');
      assert.deepEqual(asRevoked, asLive);
      assert.match(String(asLive.error_description), /may not exchange/);
      // An actor token of another client: the same answer live or revoked, too.
      const actorLive = assertOAuthError(await f.exchangeFor('arranger-backend', live, { resource: brokerApi, actor_token: live, actor_token_type: accessTokenType }), 400, 'invalid_request');
      const actorRevoked = assertOAuthError(await f.exchangeFor('arranger-backend', live, { resource: brokerApi, actor_token: revoked, actor_token_type: accessTokenType }), 400, 'invalid_request');
      assert.deepEqual(actorRevoked, actorLive);
      // The entitled client (the audience's exchange client) still learns the token is revoked.
      const entitled = assertOAuthError(await f.exchangeFor('arranger-backend', revoked, { resource: brokerApi }), 400, 'invalid_request');
      assert.match(String(entitled.error_description), /revoked/);
    });
  }

  test('an actor_token must be the presenting client own, and actor_token_type goes with it', async (t) => {
    const f = await fixture(t);
    const first = await f.orderToken();
    const othersToken = await f.orderToken();
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, actor_token: othersToken, actor_token_type: accessTokenType }), 400, 'invalid_request');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, actor_token_type: accessTokenType }), 400, 'invalid_request');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, actor_token: othersToken }), 400, 'invalid_request');
  });

  test('a sender-constrained subject token needs proof of its key', async (t) => {
    const f = await fixture(t);
    const holder = dpopKey();
    const bound = (await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi }, { dpop: f.proof(holder) }))).access_token;
    const refused = assertOAuthError(await f.exchangeFor('trader-app', bound, { resource: brokerApi }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /DPoP-bound; send a DPoP proof of its key/);
    assertOAuthError(await f.exchangeFor('trader-app', bound, { resource: brokerApi }, { dpop: f.proof(dpopKey()) }), 400, 'invalid_request');
    await f.ok(await f.exchangeFor('trader-app', bound, { resource: brokerApi }, { dpop: f.proof(holder) }));
  });

  test('a mandate revoked between hops makes the next hop fail closed', async (t) => {
    const f = await fixture(t);
    await applyDocument(f.ctx, {
      mandates: [
        {
          id: 'trade-mandate',
          grantor: { lei: '5493001KJTIIGC8Y1R12' },
          grantee: { client_id: 'trader-app' },
          scopes: ['order:create', 'settlement:submit'],
          legal_basis: { reference: 'Execution agreement 7' },
          effective_from: '2020-01-01T00:00:00Z',
          accepted_by: 'ops',
          accepted_at: '2020-01-01T00:00:00Z',
        },
      ],
    });
    const first = await f.orderToken({ mandate: 'trade-mandate' });
    const hop = await f.ok(await f.exchangeFor('arranger-backend', first, { resource: brokerApi }));
    assert.deepEqual(decodeJwt(hop.access_token).mandate, { id: 'trade-mandate', v: 1 });
    await revokeMandate(f.ctx, 'trade-mandate', { by: 'compliance', reason: 'client instruction' }, { actor: 'test' });
    const refused = assertOAuthError(await f.exchangeFor('broker-backend', hop.access_token, { resource: clearingApi }, { dpop: f.proof(dpopKey()) }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /subject_token is not acceptable/);
  });

  test('a token under a mandate never outlives the mandate\'s effective_to, nor does a token exchanged from it', async (t) => {
    const f = await fixture(t);
    // The mandate ends in 60 s; the arranger's API issues 5-minute tokens.
    const ends = f.clock.now() + 60_000;
    await applyDocument(f.ctx, {
      mandates: [
        {
          id: 'ending-mandate',
          grantor: { lei: '5493001KJTIIGC8Y1R12' },
          grantee: { client_id: 'trader-app' },
          scopes: ['order:create', 'settlement:submit'],
          legal_basis: { reference: 'Execution agreement 8' },
          effective_from: '2020-01-01T00:00:00Z',
          effective_to: new Date(ends).toISOString(),
          accepted_by: 'ops',
          accepted_at: '2020-01-01T00:00:00Z',
        },
      ],
    });
    const first = await f.orderToken({ mandate: 'ending-mandate' });
    assert.ok(Number(decodeJwt(first).exp) <= ends / 1000, 'a JWT validated locally must not outlast the mandate that justifies it');
    const hop = await f.ok(await f.exchangeFor('arranger-backend', first, { resource: brokerApi }));
    assert.ok(Number(decodeJwt(hop.access_token).exp) <= ends / 1000, 'nor may the next hop');
    assert.ok(hop.expires_in <= 60);
  });

  test('a token under a mandate with a time window ends when the window closes, nor does a token exchanged from it outlast the window', async (t) => {
    const f = await fixture(t);
    // Trading hours 09:00–18:00 in Tokyo (UTC+9 all year), 00:00–09:00Z; a minute before the close.
    f.clock.set(nextUtc(f.clock.now(), 1, 8, 59));
    const closes = f.clock.now() + 60_000;
    const mandate = {
      id: 'hours-mandate',
      grantor: { lei: '5493001KJTIIGC8Y1R12' },
      grantee: { client_id: 'trader-app' },
      scopes: ['order:create', 'settlement:submit'],
      constraints: { time_window: { timezone: 'Asia/Tokyo', days: ['mon', 'tue', 'wed', 'thu', 'fri'], hours: { from: '09:00', to: '18:00' } } },
      legal_basis: { reference: 'Execution agreement 9' },
      effective_from: '2020-01-01T00:00:00Z',
      accepted_by: 'ops',
      accepted_at: '2020-01-01T00:00:00Z',
    };
    await applyDocument(f.ctx, { mandates: [mandate] });
    const first = await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, mandate: 'hours-mandate' }));
    assert.equal(decodeJwt(first.access_token).exp, closes / 1000, 'a JWT validated locally must not outlast the hours the grantor allowed');
    assert.equal(first.expires_in, 60);
    const hop = await f.ok(await f.exchangeFor('arranger-backend', first.access_token, { resource: brokerApi }));
    assert.ok(Number(decodeJwt(hop.access_token).exp) <= closes / 1000, 'nor may the next hop');
    // A subject token that lives past the close (issued before this rule): the exchange cuts its own token there.
    const now = epochSeconds(f.clock);
    const claims = { ...decodeJwt(first.access_token), jti: crypto.randomUUID(), iat: now, exp: now + 300 };
    const legacy = await mintAccessToken(f.ctx.keys, claims as unknown as AccessTokenClaims);
    const cut = await f.ok(await f.exchangeFor('arranger-backend', legacy, { resource: brokerApi }));
    assert.equal(decodeJwt(cut.access_token).exp, closes / 1000);
    // At the close: no token at all.
    f.clock.set(closes);
    assertOAuthError(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, mandate: 'hours-mandate' }), 400, 'invalid_grant');
  });

  /**
   * A partner whose profile maps org_lei and its signed tokens; `firm`: the partner's legal entity
   * declared, in a region the broker's API is in, and the partner trusted for two-factor acr.
   */
  async function partnerChain(t: TestContext, options: { firm?: boolean; extra?: Record<string, unknown>; allowedScopes?: string[] } = {}) {
    const f = await fixture(t);
    const firm = options.firm ?? true;
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const partnerIssuer = 'https://as.partner-bank.example.com';
    await applyDocument(f.ctx, {
      ...(firm
        ? {
            regions: [{ id: 'eu' }],
            legal_entities: [{ lei: '5493001KJTIIGC8Y1R12', name: 'Partner Bank', jurisdiction: 'GB', home_region: 'eu', roles: ['broker'], desks: [{ id: 'pb-rates', name: 'Rates' }] }],
            resource_servers: [{ ...document.resource_servers[1], region: 'eu' }],
          }
        : {}),
      partners: [
        {
          id: 'partner-bank',
          issuer: partnerIssuer,
          jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'p1', alg: 'ES256', use: 'sig' }] },
          algorithms: ['ES256'],
          allowed_audiences: [brokerApi],
          allowed_scopes: options.allowedScopes ?? ['order:create'],
          claim_mapping: { lei: 'org_lei' },
          clients: ['arranger-backend', 'broker-backend'],
          ...(firm ? { acr: { map: { 'urn:partner-bank:mfa': acr.multiFactor, 'urn:partner-bank:hwk': acr.phishingResistant }, max: acr.multiFactor }, legal_entities: ['5493001KJTIIGC8Y1R12'] } : {}),
        },
      ],
      ...options.extra,
    });
    const partnerToken = (claims: Record<string, unknown> = {}) =>
      new SignJWT({ sub: 'pb-trader-9', scope: 'order:create', org_lei: '5493001KJTIIGC8Y1R12', auth_time: epochSeconds(f.clock) - 60, ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'p1', typ: 'at+jwt' })
        .setIssuer(partnerIssuer)
        .setAudience(f.issuer)
        .setIssuedAt(epochSeconds(f.clock))
        .setExpirationTime(epochSeconds(f.clock) + 120)
        .setJti(crypto.randomUUID())
        .sign(privateKey);
    return { ...f, partnerIssuer, partnerToken };
  }

  test('partner tokens: accepted under the trust profile, origin issuer kept, may_act honoured', async (t) => {
    const f = await partnerChain(t, { firm: false });
    const { partnerIssuer, partnerToken } = f;
    const accepted = await f.ok(await f.exchangeFor('arranger-backend', await partnerToken(), { resource: brokerApi }));
    const claims = decodeJwt(accepted.access_token);
    assert.equal(claims.sub, 'pb-trader-9');
    assert.equal(claims.origin_iss, partnerIssuer);
    assert.equal(claims.scope, 'order:create');
    // Not an audience the profile allows.
    assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken(), { resource: arrangerApi }), 400, 'invalid_target');
    // The profile bounds every later hop too: the origin issuer travels with the chain.
    const laterHop = assertOAuthError(await f.exchangeFor('broker-backend', accepted.access_token, { resource: arrangerApi }), 400, 'invalid_target');
    assert.match(String(laterHop.error_description), /partner partner-bank may not obtain tokens/);
    // may_act names another actor.
    assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken({ may_act: { sub: 'broker-backend' } }), { resource: brokerApi }), 400, 'invalid_request');
    await f.ok(await f.exchangeFor('broker-backend', await partnerToken({ may_act: { sub: 'broker-backend' } }), { resource: brokerApi }));
    // A client the profile does not name.
    assertOAuthError(await f.exchangeFor('outsider', await partnerToken(), { resource: brokerApi }), 400, 'invalid_request');
    // Values that would end up in our token and audit events must be plain identifiers: a 400, never a 5xx.
    const jwtShaped = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.x';
    assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken({ sub: jwtShaped }), { resource: brokerApi }), 400, 'invalid_request');
    assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken({ act: { sub: jwtShaped } }), { resource: brokerApi }), 400, 'invalid_request');
    // A confirmation Clearance cannot check is not taken for a bearer token.
    assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken({ cnf: { jwk: { kty: 'EC' } } }), { resource: brokerApi }), 400, 'invalid_request');
    // A partner chain past its first hop: no firm is known for its subject, so a regional target is refused.
    await applyDocument(f.ctx, { regions: [{ id: 'eu' }], resource_servers: [{ ...document.resource_servers[1], region: 'eu' }] });
    const regional = assertOAuthError(await f.exchangeFor('arranger-backend', await partnerToken(), { resource: brokerApi }), 400, 'invalid_target');
    assert.match(String(regional.error_description), /data residency/);
  });

  test('a partner token whose scope or may_act claim is malformed is refused, never read as absent (which would widen it)', async (t) => {
    const f = await partnerChain(t, { firm: false, allowedScopes: ['order:create', 'settlement:submit'] });
    const ok = decodeJwt((await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ scope: 'order:create' }), { resource: brokerApi }))).access_token);
    assert.equal(ok.scope, 'order:create');
    // An array (or a number) is no RFC 8693 scope claim: taken as "no scope", it became every scope of the profile.
    for (const scope of [['order:create'], 7]) {
      const refused = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ scope }), { resource: brokerApi }), 400, 'invalid_request');
      assert.match(String(refused.error_description), /scope claim is not a string/);
    }
    // may_act restricts who may act (RFC 8693 §4.4): one that is not an object naming a sub restricts to nobody, not to anybody.
    for (const mayAct of ['broker-backend', ['broker-backend'], { iss: f.partnerIssuer }]) {
      const refused = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ may_act: mayAct }), { resource: brokerApi }), 400, 'invalid_request');
      assert.match(String(refused.error_description), /may_act/);
    }
  });

  test('a partner suspended by a drift ends the chains that started with its subjects: a later hop is refused too', async (t) => {
    const f = await partnerChain(t, { firm: false });
    const first = await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken(), { resource: brokerApi }));
    const now = f.clock.now();
    await f.ctx.storage.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('partner_baselines')
        .values({ partner_id: 'partner-bank', status: 'suspended', keys: null, issuer: null, metadata_digest: null, profile_digest: null, last_success_at: null, unreachable_since: null, unreachable_reported_at: null, suspended_at: now, suspended_reason: 'drift: keys_removed', next_check_at: now + 3_600_000, version: 1, updated_at: now })
        .execute();
      await bumpGeneration(trx, 'partners');
    });
    f.ctx.partners.invalidate();
    // The partner's own token is refused (as before) ...
    assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken(), { resource: brokerApi }), 400, 'invalid_request');
    // ... and so is our token for its subject, at the next hop: the profile that bounds the chain is not trusted now.
    const later = assertOAuthError(await f.exchangeFor('broker-backend', first.access_token, { resource: brokerApi }), 400, 'invalid_request');
    assert.match(String(later.error_description), /suspended/);
    const [refusal] = (await f.events('exchange.refused')).slice(-1);
    assert.equal(refusal?.details?.reason, 'partner_suspended');
  });

  test('a partner subject whose firm is a declared legal entity passes a regional rule at the first hop and at the next', async (t) => {
    const f = await partnerChain(t);
    const first = await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken(), { resource: brokerApi }));
    const claims = decodeJwt(first.access_token);
    assert.equal(claims.origin_lei, '5493001KJTIIGC8Y1R12', 'the firm travels with the chain, signed by us');
    // The next hop decides as the first did: the firm is known, and permits its data in eu.
    const next = await f.ok(await f.exchangeFor('broker-backend', first.access_token, { resource: brokerApi }));
    assert.equal(decodeJwt(next.access_token).origin_lei, '5493001KJTIIGC8Y1R12');
    // A partner naming no firm is refused the regional target, at the first hop as before.
    const unnamed = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ org_lei: undefined }), { resource: brokerApi }), 400, 'invalid_target');
    assert.match(String(unnamed.error_description), /data residency/);
    // Nor may it name a firm it does not speak for (the broker's own, say).
    const other = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ org_lei: '529900T8BM49AURSDO55' }), { resource: brokerApi }), 400, 'invalid_grant');
    assert.match(String(other.error_description), /does not speak for legal entity/);
  });

  test('a partner’s acr is carried as far as its profile trusts it, with the partner named as the source of assurance', async (t) => {
    const f = await partnerChain(t);
    const trusted = decodeJwt((await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa', amr: ['pwd', 'otp'] }), { resource: brokerApi }))).access_token);
    assert.equal(trusted.acr, acr.multiFactor);
    assert.equal(trusted.auth_time, epochSeconds(f.clock) - 60, 'when the partner says the person signed in');
    // Without auth_time, no level is carried: the partner token's iat is not a sign-in time.
    const undated = decodeJwt((await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa', auth_time: undefined }), { resource: brokerApi }))).access_token);
    assert.deepEqual([undated.acr, undated.assurance_source], [undefined, undefined]);
    assert.deepEqual(trusted.amr, ['pwd', 'otp', 'urn:clearance:amr:upstream']);
    assert.equal(trusted.assurance_source, f.partnerIssuer);
    const capped = decodeJwt((await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:hwk', amr: ['hwk'] }), { resource: brokerApi }))).access_token);
    assert.equal(capped.acr, acr.multiFactor, 'phishing-resistant claimed, two factors believed');
    assert.deepEqual(capped.amr, ['urn:clearance:amr:upstream']);
    // The next hop carries it on.
    const next = decodeJwt((await f.ok(await f.exchangeFor('broker-backend', (await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa' }), { resource: brokerApi }))).access_token, { resource: brokerApi }))).access_token);
    assert.deepEqual([next.acr, next.assurance_source], [acr.multiFactor, f.partnerIssuer]);
  });

  test('a partner subject linked to a local person is decided as that person, at every hop; a locked person’s is refused', async (t) => {
    const f = await partnerChain(t, { extra: { users: [{ username: 'paula', desks: ['pb-rates'], roles: ['trader'] }] } });
    const paula = await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'paula').executeTakeFirstOrThrow();
    await f.ctx.storage.db
      .insertInto('user_links')
      .values({ issuer: f.partnerIssuer, subject: 'pb-trader-9', user_id: paula.id, provider_id: 'partner-bank-idp', linked_by: 'admin', created_at: f.clock.now(), last_login_at: null })
      .execute();
    // Her firm comes from her desk: the partner’s token names none, and the regional target is hers.
    // Decided as a person, her sign-in counts (the risk engine may ask a second factor): the partner's, trusted.
    const first = await f.ok(await f.exchangeFor('arranger-backend', await f.partnerToken({ org_lei: undefined, acr: 'urn:partner-bank:mfa' }), { resource: brokerApi }));
    const claims = decodeJwt(first.access_token);
    assert.equal(claims.sub, 'pb-trader-9', 'the subject is still the partner’s');
    assert.equal(claims.origin_person, paula.id);
    // (Unlinked, the same token names no firm and is refused the regional target: the test above.)
    const next = await f.ok(await f.exchangeFor('broker-backend', first.access_token, { resource: brokerApi }));
    assert.equal(decodeJwt(next.access_token).origin_person, paula.id);
    await applyDocument(f.ctx, { users: [{ username: 'paula', desks: ['pb-rates'], roles: ['trader'], status: 'locked' }] });
    const locked = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa' }), { resource: brokerApi }), 400, 'invalid_grant');
    assert.match(String(locked.error_description), /linked to is not active/);
    // The tokens already issued as her die with the lock, at every later hop.
    assertOAuthError(await f.exchangeFor('broker-backend', first.access_token, { resource: brokerApi }), 400, 'invalid_request');
    // Offboarded, then made active again by an administrator: her credentials are on hold until an
    // approved recovery (src/lifecycle/credential-hold.ts), and her partner identity is no way round it.
    await offboardPerson(f.ctx, 'paula', { actor: 'test', via: 'cli' });
    await applyDocument(f.ctx, { users: [{ username: 'paula', desks: ['pb-rates'], roles: ['trader'], status: 'active' }] });
    const held = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa' }), { resource: brokerApi }), 400, 'invalid_grant');
    assert.match(String(held.error_description), /linked to is not active/);
  });

  test('a partner subject linked to a person whose role asks a passkey is refused at the partner’s two-factor level: a role minimum is never waived', async (t) => {
    const f = await partnerChain(t, { extra: { users: [{ username: 'petra', desks: ['pb-rates'], roles: ['approver'] }], authentication: { role_minimums: { approver: acr.phishingResistant } } } });
    const petra = await f.ctx.storage.db.selectFrom('users').select('id').where('username', '=', 'petra').executeTakeFirstOrThrow();
    await f.ctx.storage.db
      .insertInto('user_links')
      .values({ issuer: f.partnerIssuer, subject: 'pb-trader-9', user_id: petra.id, provider_id: 'partner-bank-idp', linked_by: 'admin', created_at: f.clock.now(), last_login_at: null })
      .execute();
    const refused = assertOAuthError(await f.exchangeFor('arranger-backend', await f.partnerToken({ acr: 'urn:partner-bank:mfa' }), { resource: brokerApi }), 400, 'insufficient_user_authentication');
    assert.equal(refused.acr_values, acr.phishingResistant);
  });

  test('an authorization_details entry repeated at a hop is refused (it would double the authority)', async (t) => {
    const f = await fixture(t);
    const { narrowAuthorizationDetails } = await import('../../src/grants/exchange/narrowing.ts');
    const entry = { type: 'settlement_instruction', account: 'A-1', settlement_type: 'dvp', counterparty_lei: '5493001KJTIIGC8Y1R12', max_amount: { amount: '10', currency: 'EUR' } };
    assert.deepEqual(narrowAuthorizationDetails(JSON.stringify([entry]), [entry]), [entry]);
    assert.throws(() => narrowAuthorizationDetails(JSON.stringify([entry, entry]), [entry]), /repeats an entry/);
    void f;
  });
});

describe('the JWT bearer grant (RFC 7523 §2.1)', () => {
  const partnerIssuer = 'https://as.partner-bank.example.com';

  async function partnerFixture(t: TestContext, dialect?: TestDialect) {
    const f = await fixture(t, dialect);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    Object.assign(f.secrets, await applyDocument(f.ctx, {
      clients: [{ client_id: 'partner-gateway', kind: 'service', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scope: tradeScopes }],
      partners: [
        {
          id: 'partner-bank',
          issuer: partnerIssuer,
          jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'p1', alg: 'ES256', use: 'sig' }] },
          algorithms: ['ES256'],
          max_assertion_lifetime: 120,
          required_claims: ['org_lei'],
          allowed_audiences: [brokerApi],
          allowed_scopes: ['order:create'],
          claim_mapping: { lei: 'org_lei' },
          legal_entities: ['5493001KJTIIGC8Y1R12'],
          clients: ['partner-gateway'],
        },
      ],
    }));
    const assertion = (claims: Record<string, unknown> = {}, lifetime = 60) =>
      new SignJWT({ sub: 'pb-desk-4', org_lei: '5493001KJTIIGC8Y1R12', ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'p1' })
        .setIssuer(typeof claims.iss === 'string' ? claims.iss : partnerIssuer)
        .setAudience(f.issuer)
        .setIssuedAt(epochSeconds(f.clock))
        .setExpirationTime(epochSeconds(f.clock) + lifetime)
        .setJti(typeof claims.jti === 'string' ? claims.jti : crypto.randomUUID())
        .sign(privateKey);
    return { ...f, assertion };
  }

  test('a partner assertion gets a token for an allowed audience, with the origin issuer visible', async (t) => {
    const f = await partnerFixture(t);
    const jwt = await f.assertion();
    const response = await f.ok(await f.post('partner-gateway', { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt, resource: brokerApi }));
    const claims = decodeJwt(response.access_token);
    assert.equal(claims.sub, 'pb-desk-4');
    assert.equal(claims.origin_iss, partnerIssuer);
    assert.equal(claims.origin_lei, '5493001KJTIIGC8Y1R12', 'the firm its profile maps, for later hops');
    assert.equal(claims.scope, 'order:create');
    // Used once.
    assertOAuthError(await f.post('partner-gateway', { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt, resource: brokerApi }), 400, 'invalid_grant', 'replayed');
  });

  for (const dialect of testDialects()) {
    test(`a refused assertion is assertion.refused and a partner token failing its profile at an exchange is exchange.refused, neither with the JWT (${dialect.name})`, async (t) => {
      const f = await partnerFixture(t, dialect);
      const unknown = await f.assertion({ iss: 'https://unknown.example.com' });
      assertOAuthError(await f.post('partner-gateway', { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: unknown, resource: brokerApi }), 400, 'invalid_grant');
      const [assertion] = await f.events('assertion.refused');
      assert.equal(assertion!.client, 'partner-gateway');
      assert.equal(assertion!.details!.error, 'invalid_grant');
      assert.ok(!JSON.stringify(assertion).includes(unknown));

      const overLong = await f.assertion({}, 600);
      assertOAuthError(await f.exchangeFor('arranger-backend', overLong, { resource: brokerApi, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 400, 'invalid_request');
      const [exchanged] = await f.events('exchange.refused');
      assert.equal(exchanged!.details!.reason, 'subject_token_unacceptable');
      assert.ok(!JSON.stringify(exchanged).includes(overLong));
    });
  }

  test('unknown issuer, disallowed algorithm, expired, over-long and incomplete assertions are refused', async (t) => {
    const f = await partnerFixture(t);
    const grant = (assertion: string, form: Record<string, string> = {}) => f.post('partner-gateway', { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion, resource: brokerApi, ...form });
    assertOAuthError(await grant(await f.assertion({ iss: 'https://unknown.example.com' })), 400, 'invalid_grant', 'unknown issuer');
    const hs = await new SignJWT({ sub: 'x', org_lei: '5493001KJTIIGC8Y1R12' }).setProtectedHeader({ alg: 'HS256', kid: 'p1' }).setIssuer(partnerIssuer).setAudience(f.issuer).setIssuedAt().setExpirationTime('1m').setJti('j1').sign(new TextEncoder().encode('a-shared-secret-of-32-bytes-long!'));
    assertOAuthError(await grant(hs), 400, 'invalid_grant', 'HS256');
    assertOAuthError(await grant(await f.assertion({}, 600)), 400, 'invalid_grant', 'over the profile lifetime');
    assertOAuthError(await grant(await f.assertion({ org_lei: undefined })), 400, 'invalid_grant', 'missing required claim');
    const expired = await f.assertion();
    f.clock.advance(200_000);
    assertOAuthError(await grant(expired), 400, 'invalid_grant', 'expired');
    assertOAuthError(await grant(await f.assertion(), { resource: arrangerApi }), 400, 'invalid_target', 'audience the profile does not allow');
    assertOAuthError(await grant(await f.assertion(), { scope: 'settlement:submit' }), 400, 'invalid_scope', 'scope the profile does not allow');
  });

  for (const dialect of testDialects()) {
    test(`a partner-signed sub or jti with a control character is invalid_grant, never a 5xx (issue 20 item 4, ${dialect.name})`, async (t) => {
      const f = await partnerFixture(t, dialect);
      const grant = (assertion: string) => f.post('partner-gateway', { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion, resource: brokerApi });
      assertOAuthError(await grant(await f.assertion({ jti: 'j-\u0000-1' })), 400, 'invalid_grant', 'NUL in jti');
      assertOAuthError(await grant(await f.assertion({ sub: 'desk\u0000' })), 400, 'invalid_grant', 'NUL in sub');
      assertOAuthError(await grant(await f.assertion({ jti: 'line\nbreak' })), 400, 'invalid_grant', 'LF in jti');
    });
  }
});


/** A person's token for the orders API exchanged by desk-backend, in a code-flow fixture. */
async function personExchange(t: TestContext) {
  const f = await codeFlowFixture(t);
  await f.apply({
    resource_servers: [{ ...resourceServers[0], exchange_clients: ['desk-backend'] }],
    clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:create' }],
  });
  const person = await f.signIn('alice', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
  const { code, pkce } = await f.authorizeAndApprove({ person, query: { scope: 'order:create', resource: ordersApi } });
  const redeemed = await f.redeem('web-app', code, pkce.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  const subjectToken = redeemed.json().access_token as string;
  const exchangeIt = (token = subjectToken) =>
    f.post('/token', { auth: f.basic('desk-backend'), form: { grant_type: exchange, subject_token: token, subject_token_type: accessTokenType, resource: ordersApi } });
  const setRoles = (roles: string[]) => f.ctx.storage.db.updateTable('users').set({ roles: JSON.stringify(roles) }).where('id', '=', person.userId).execute();
  return { f, person, subjectToken, exchangeIt, setRoles };
}

describe('exchanging a person\'s token under their role minimum (RFC 9470)', () => {
  test('a token below the person\'s current minimum is insufficient_user_authentication, as a refresh is', async (t) => {
    const { f, person, exchangeIt, setRoles } = await personExchange(t);
    await f.apply({ authentication: { role_minimums: { trader: acr.phishingResistantHardware } } });
    assert.equal((await exchangeIt()).statusCode, 200, 'no role asks more yet');
    await setRoles(['trader']);
    const body = assertOAuthError(await exchangeIt(), 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.phishingResistantHardware);
    const requested = (await f.auditEvents('step_up.requested')).at(-1)!;
    assert.equal(requested.subject, person.userId);
    assert.deepEqual(requested.details!.trigger, ['role_minimum']);
    assert.equal(requested.details!.acr_before, acr.multiFactor);
    assert.equal(requested.details!.grant_type, exchange);
    assert.equal((await f.auditEvents('token.exchanged')).length, 1, 'only the first exchange');
  });

  test('a person\'s token that carries no acr is refused when their roles ask a minimum', async (t) => {
    const { f, person, subjectToken, exchangeIt, setRoles } = await personExchange(t);
    // A token of ours for the person, signed as one from before tokens carried acr.
    const { acr: _acr, amr: _amr, auth_time: _authTime, ...claims } = decodeJwt(subjectToken);
    const legacy = await mintAccessToken(f.ctx.keys, claims as unknown as AccessTokenClaims);
    assert.equal((await exchangeIt(legacy)).statusCode, 200, 'no role asks a minimum');
    await f.apply({ authentication: { role_minimums: { trader: acr.password } } });
    await setRoles(['trader']);
    const body = assertOAuthError(await exchangeIt(legacy), 400, 'insufficient_user_authentication');
    assert.equal(body.acr_values, acr.password);
    assert.equal((await f.auditEvents('step_up.requested')).at(-1)!.subject, person.userId);
    assert.equal((await exchangeIt()).statusCode, 200, 'the same person\'s token that says how they signed in meets it');
  });
});

describe('exchanging a person\'s token (RFC 8693 §2.2.2; the consent grant bounds the chain)', () => {
  test('goes only to an audience the person consented to, though another offers a scope of the same name, and goes there once they consent', async (t) => {
    const f = await codeFlowFixture(t);
    const algoApi = 'https://algo.example.com/orders';
    await f.apply({
      resource_servers: [
        { ...resourceServers[0], exchange_clients: ['desk-backend'] },
        { identifier: algoApi, scopes: ['order:create'], exchange_clients: ['desk-backend'] },
      ],
      clients: [{ client_id: 'desk-backend', kind: 'service', token_endpoint_auth_method: 'client_secret_basic', grant_types: [exchange], scope: 'order:create' }],
    });
    const { code, pkce, person } = await f.authorizeAndApprove({ query: { scope: 'order:create', resource: ordersApi } });
    const redeemed = await f.redeem('web-app', code, pkce.verifier);
    assert.equal(redeemed.statusCode, 200, redeemed.body);
    const subjectToken = redeemed.json().access_token as string;
    const exchangeTo = (resource: string) =>
      f.post('/token', { auth: f.basic('desk-backend'), form: { grant_type: exchange, subject_token: subjectToken, subject_token_type: accessTokenType, resource } });

    assert.equal((await exchangeTo(ordersApi)).statusCode, 200, 'the audience the person consented to');
    const refused = assertOAuthError(await exchangeTo(algoApi), 400, 'invalid_target');
    assert.match(String(refused.error_description), /did not consent/);

    // The person now allows web-app the algo desk's API too: the same token may be exchanged there.
    await f.authorizeAndApprove({ person, query: { scope: 'order:create', resource: algoApi } });
    const allowed = await exchangeTo(algoApi);
    assert.equal(allowed.statusCode, 200, allowed.body);
    const claims = decodeJwt(allowed.json().access_token as string);
    assert.equal(claims.aud, algoApi);
    assert.equal(claims.sub, person.userId);
  });
});

describe('one txn from the first action (issue 17 item 1; docs/audit.md)', () => {
  const order = JSON.stringify([{ type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '1000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' }]);
  const withPolicy = async (f: Awaited<ReturnType<typeof fixture>>) =>
    applyDocument(f.ctx, { policies: [{ version: 'all-1', text: '@id("all") permit (principal, action, resource);', change_ref: 'C1', author: 'a', approver: 'b', active: true }] });

  for (const dialect of testDialects()) {
    test(`a txn sent at client_credentials with authorization_details is in the first token, its decision, every hop and the trade's evidence bundle (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      await withPolicy(f);
      const first = await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, authorization_details: order, txn: 'trade-2026-0001' }));
      const claims = decodeJwt(first.access_token);
      assert.equal(claims.txn, 'trade-2026-0001');
      assert.deepEqual(claims.authorization_details, JSON.parse(order));
      const hop = await f.ok(await f.exchangeFor('arranger-backend', first.access_token, { resource: brokerApi }));
      assert.equal(decodeJwt(hop.access_token).txn, 'trade-2026-0001', 'the exchange continues the txn (no refusal: continuing is not starting)');
      const [issued] = await f.events('token.issued');
      assert.equal(issued!.txn, 'trade-2026-0001');
      assert.deepEqual(issued!.decision, { allow: true, reasons: ['all'], policyVersion: 'all-1' }, 'the decision is filed under the txn with the token');
      const [exchanged] = await f.events('token.exchanged');
      assert.equal(exchanged!.txn, 'trade-2026-0001');

      // What `clearance audit export --txn trade-2026-0001` writes (src/cli/commands/audit.ts): the trade from its first token.
      const masterKey = resolveMasterKey(f.ctx.config).key;
      await createSealer(f.ctx, masterKey).sealOnce();
      const key = await new AuditKeys(f.ctx.storage.db, masterKey, f.clock).signingKey(auditOrigin(f.ctx.config.issuer));
      const { text, bundle } = await exportBundle(f.ctx.storage.db, { query: { txn: 'trade-2026-0001' }, key, jwksInForce: (from, to) => f.ctx.keys.jwksInForce(from, to), now: f.clock.now() });
      assert.deepEqual(bundle.events.map((e) => e.event.type), ['token.issued', 'token.exchanged']);
      assert.equal(bundle.events[0]!.event.details!.jti, claims.jti);
      assert.equal(verifyBundle(text).ok, true);
    });

    test(`txn=new has Clearance mint it; a malformed, another client's or a reused txn is invalid_request, and nothing is issued (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      const start = (clientId: string, txn: string, form: Record<string, string> = { authorization_details: order }) =>
        f.post(clientId, { grant_type: 'client_credentials', resource: arrangerApi, txn, ...form });
      const minted = decodeJwt((await f.ok(await start('trader-app', 'new'))).access_token).txn;
      assert.equal(mintedAt(minted), f.clock.now(), 'a UUIDv7 of the time it was minted');

      for (const bad of ['has space', 'a/b', 'x'.repeat(65), 'semi;colon']) {
        const body = assertOAuthError(await start('trader-app', bad), 400, 'invalid_request');
        assert.match(String(body.error_description), /txn must be/);
      }
      // A txn names a trade: without authorization_details or a mandate there is none to start.
      assert.match(String(assertOAuthError(await start('trader-app', 'plain', {}), 400, 'invalid_request').error_description), /authorization_details or a mandate/);

      await f.ok(await start('trader-app', 'trade-7'));
      const before = (await f.events('token.issued')).length;
      const foreign = assertOAuthError(await start('other-trader', 'trade-7'), 400, 'invalid_request');
      assert.match(String(foreign.error_description), /not available to this client/);
      assert.doesNotMatch(String(foreign.error_description), /trader-app/, 'the other client is not named');
      const reused = assertOAuthError(await start('trader-app', 'trade-7'), 400, 'invalid_request');
      assert.match(String(reused.error_description), /already started a transaction of this client/);
      assert.match(String(assertOAuthError(await start('trader-app', minted as string), 400, 'invalid_request').error_description), /already started/);
      assert.equal((await f.events('token.issued')).length, before, 'a refused start writes no token.issued');
    });
  }

  test('a hop refused after the subject token verified is filed under its trade: a widened scope, then the token revoked', async (t) => {
    const f = await fixture(t);
    await withPolicy(f);
    const first = (await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, authorization_details: order, txn: 'trade-2026-0002' }))).access_token;
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi, scope: 'order:create admin:all' }), 400, 'invalid_scope');
    await new RevocationList(f.ctx.storage.db).revoke(decodeJwt(first).jti!, Number(decodeJwt(first).exp) * 1000, f.clock.now(), 'test');
    assertOAuthError(await f.exchangeFor('arranger-backend', first, { resource: brokerApi }), 400, 'invalid_request');
    const refusals = await f.events('exchange.refused');
    assert.deepEqual(refusals.map((e) => [e.details!.error, e.txn, e.subject]), [
      ['invalid_scope', 'trade-2026-0002', 'trader-app'],
      ['invalid_request', 'trade-2026-0002', 'trader-app'],
    ]);
    // An unentitled client learns nothing, and its refusal is not filed under the trade it tried.
    assertOAuthError(await f.exchangeFor('outsider', first, { resource: brokerApi }), 400, 'invalid_request');
    const outsider = (await f.events('exchange.refused')).find((e) => e.client === 'outsider');
    assert.equal(outsider!.txn, undefined);
  });

  test('without txn the m2m path is unchanged: no row, no txn claim', async (t) => {
    const f = await fixture(t);
    const token = decodeJwt(await f.orderToken());
    assert.equal(token.txn, undefined);
    assert.deepEqual(await f.ctx.storage.db.selectFrom('transactions').selectAll().execute(), []);
  });
});

describe('every refusal on the record (issue 17 item 3; docs/audit.md "Refusals")', () => {
  for (const dialect of testDialects()) {
    test(`a refused issuance, exchange and txn start each write their event with a reason code, never the token (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect);
      assertOAuthError(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, scope: 'admin:all' }), 400, 'invalid_scope');
      const [scope] = await f.events('token.refused');
      assert.equal(scope!.client, 'trader-app');
      assert.equal(scope!.details!.error, 'invalid_scope');
      assert.equal(scope!.details!.grant_type, 'client_credentials');

      const first = await f.orderToken();
      assertOAuthError(await f.exchangeFor('outsider', first, { resource: brokerApi }), 400, 'invalid_request');
      const [refused] = await f.events('exchange.refused');
      assert.equal(refused!.client, 'outsider');
      assert.equal(refused!.details!.reason, 'not_entitled');
      assert.equal(refused!.details!.error, 'invalid_request');
      assert.ok(!JSON.stringify(refused).includes(first), 'the presented token is not in the event');
      assert.ok(!JSON.stringify(refused).includes(f.secrets.outsider!), 'nor the client secret');

      const order = JSON.stringify([{ type: 'order', instrument: { class: 'fx', symbol: 'EURUSD' }, side: 'buy', max_notional: { amount: '1000000', currency: 'USD' }, venue: 'XLON', account: 'GB-FX-001' }]);
      await f.ok(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, authorization_details: order, txn: 'trade-9' }));
      assertOAuthError(await f.post('other-trader', { grant_type: 'client_credentials', resource: arrangerApi, authorization_details: order, txn: 'trade-9' }), 400, 'invalid_request');
      const taken = (await f.events('token.refused')).find((e) => e.client === 'other-trader');
      assert.equal(taken!.details!.reason, 'txn_of_another_client');
      assert.equal(taken!.txn, 'trade-9');
    });

    test(`a flood of refusals from one client is the limit's events and one counted summary (${dialect.name})`, async (t) => {
      const f = await fixture(t, dialect, { CLEARANCE_REFUSAL_AUDIT_LIMIT: '3', CLEARANCE_REFUSAL_AUDIT_WINDOW: '60' });
      const refuse = () => f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, scope: 'admin:all' });
      for (let i = 0; i < 10; i++) assertOAuthError(await refuse(), 400, 'invalid_scope');
      assert.equal((await f.events('token.refused')).length, 3);
      assert.deepEqual(await f.events('audit.refusals_suppressed'), [], 'the window is still open');
      f.clock.advance(60_000);
      assertOAuthError(await refuse(), 400, 'invalid_scope');
      const [summary] = await f.events('audit.refusals_suppressed');
      assert.equal(summary!.details!.count, 7);
      assert.equal(summary!.details!.source, 'client:trader-app');
      assert.deepEqual(summary!.details!.reasons, ['invalid_scope']);
      assert.equal((await f.events('token.refused')).length, 4, 'a new window records again');
    });
  }

  test('the count of refusals held back is written once the window is over, without another refusal (the periodic pass)', async (t) => {
    const f = await fixture(t, undefined, { CLEARANCE_REFUSAL_AUDIT_LIMIT: '2', CLEARANCE_REFUSAL_AUDIT_WINDOW: '60' });
    for (let i = 0; i < 5; i++) assertOAuthError(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, scope: 'admin:all' }), 400, 'invalid_scope');
    assert.equal(await flushRefusalSummaries(f.ctx), 0, 'the window is still open');
    f.clock.advance(60_000);
    assert.equal(await flushRefusalSummaries(f.ctx), 1);
    const [summary] = await f.events('audit.refusals_suppressed');
    assert.equal(summary!.details!.count, 3);
    assert.equal(await flushRefusalSummaries(f.ctx), 0, 'written once');
  });

  test('a refusal whose recording fails is still the OAuth error, never a 5xx', async (t) => {
    const f = await fixture(t);
    const record = f.ctx.audit.record.bind(f.ctx.audit);
    f.ctx.audit.record = async (event) => {
      if (event.type === 'token.refused') throw new Error('the database is gone');
      return record(event);
    };
    assertOAuthError(await f.post('trader-app', { grant_type: 'client_credentials', resource: arrangerApi, scope: 'admin:all' }), 400, 'invalid_scope');
  });
});

describe("token.exchanged names the agents the new token stands on", () => {
  test("records the agents of an agent's token exchanged, at every hop, and none for a token of no agent", async (t) => {
    const g = await agentGateway(t);
    const first = await g.toClearing(g.agentToken);
    assert.equal(first.statusCode, 200, first.body);
    const second = await g.toClearing(first.json().access_token as string);
    assert.equal(second.statusCode, 200, second.body);
    const hops = await g.auditEvents('token.exchanged');
    assert.equal(hops.length, 2);
    for (const [i, hop] of hops.entries()) {
      assert.deepEqual(hop.details!.agents, [{ id: 'algo-7', approval: g.approval }], `hop ${i + 1}: the evidence says which agents the token depended on`);
    }
    const own = await g.toClearing(g.gatewayToken);
    assert.equal(own.statusCode, 200, own.body);
    assert.equal('agents' in (await g.auditEvents('token.exchanged')).at(-1)!.details!, false, 'only when there are any');
  });
});
