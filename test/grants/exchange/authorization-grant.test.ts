import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { epochSeconds } from '../../../src/clock.ts';
import { pairwiseKey, pairwiseSubject } from '../../../src/identity/pairwise.ts';
import { bumpGeneration } from '../../../src/storage/generations.ts';
import { assertOAuthError } from '../../endpoints/fixture.ts';
import { testDialects } from '../../helpers/storage.ts';
import {
  aIssuer,
  aOrdersApi,
  accessTokenType,
  bIssuer,
  bSettlementApi,
  brokerLei,
  cIssuer,
  exchangeGrant,
  grantAt,
  jwtBearerAt,
  jwtType,
  twoDomains,
} from '../../helpers/domains.ts';

// Identity and authorization chaining across domains (draft-ietf-oauth-identity-chaining): two
// Clearance instances, A and B, each with its own database. A's backend exchanges a token at A for
// a JWT authorization grant aimed at B's authorization server (RFC 8693), and presents it at B's
// token endpoint (RFC 7523 §2.1). docs/federation.md "Identity chaining across domains".

describe('identity chaining: A issues a JWT authorization grant, B accepts it', () => {
  for (const dialect of testDialects()) {
    test(`a person's token at A becomes a grant for B and then a B token whose chain records A's issuer, subject, actor and txn (${dialect.name})`, async (t) => {
      const { a, b, person, orderToken } = await twoDomains(t, { dialect });
      const pseudonym = pairwiseSubject(pairwiseKey(a.f.ctx.identity.factorKeys.master), `partner:${bIssuer}`, person.userId);

      // At A: RFC 8693 with requested_token_type jwt and B's issuer as the audience.
      const exchanged = await grantAt(a, 'a-desk-backend', orderToken);
      assert.equal(exchanged.statusCode, 200, exchanged.body);
      const response = exchanged.json() as Record<string, unknown>;
      assert.equal(response.issued_token_type, jwtType);
      assert.equal(response.token_type, 'N_A', 'a grant is no access token (RFC 8693 §2.2.1)');
      assert.equal(response.scope, 'order:create');
      assert.ok((response.expires_in as number) > 0 && (response.expires_in as number) <= 60);
      assert.equal(exchanged.headers['cache-control'], 'no-store');
      const grant = response.access_token as string;

      // The grant: A's, for B only, about Alice's pseudonym for B, short-lived, signed with a key in A's JWKS.
      assert.equal(decodeProtectedHeader(grant).typ, 'JWT');
      const { payload: claims } = await jwtVerify(grant, createLocalJWKSet(await a.f.ctx.keys.jwks()), { issuer: aIssuer, audience: bIssuer, currentDate: new Date(a.f.clock.now()) });
      assert.equal(claims.aud, bIssuer, 'one audience: the partner authorization server');
      assert.equal(claims.sub, pseudonym);
      assert.notEqual(claims.sub, person.userId, 'never the local id');
      assert.ok(claims.exp! - claims.iat! <= 60);
      assert.equal(typeof claims.jti, 'string');
      assert.equal(claims.scope, 'order:create');
      assert.deepEqual(claims.act, { sub: 'a-desk-backend', iss: aIssuer });
      assert.equal(claims.origin_lei, brokerLei);
      assert.equal(typeof claims.txn, 'string');
      for (const absent of ['grant_id', 'client_id', 'acr', 'mandate', 'cnf', 'origin_person']) assert.equal(claims[absent], undefined, `${absent} is not for the partner`);

      // A's record of the hop: token.exchanged, naming the target domain and who the pseudonym stands for.
      const hop = (await a.f.auditEvents('token.exchanged')).at(-1)! as StoredAuditEvent;
      assert.equal(hop.audience, bIssuer);
      assert.equal(hop.subject, person.userId);
      assert.equal(hop.txn, claims.txn);
      assert.equal(hop.details!.issued_token_type, jwtType);
      assert.equal(hop.details!.jti, claims.jti);
      assert.equal(hop.details!.parent_jti, decodeJwt(orderToken).jti);
      assert.deepEqual(hop.details!.act_chain, ['a-desk-backend']);
      assert.deepEqual(hop.details!.chaining, { partner: 'clearance-b', audience: bIssuer, subject_mapping: 'pairwise', subject: pseudonym, claims: ['act', 'txn', 'origin_lei'] });

      // At B: the JWT bearer grant by A's backend as B knows it.
      const issued = await jwtBearerAt(b, 'domain-a-desk', grant, bSettlementApi);
      assert.equal(issued.statusCode, 200, issued.body);
      const token = issued.json().access_token as string;
      const bClaims = decodeJwt(token);
      assert.equal(bClaims.iss, bIssuer);
      assert.equal(bClaims.aud, bSettlementApi);
      assert.equal(bClaims.sub, pseudonym, 'the subject A named');
      assert.equal(bClaims.origin_iss, aIssuer);
      assert.equal(bClaims.txn, claims.txn, 'one txn across the two domains');
      assert.deepEqual(bClaims.act, { sub: 'domain-a-desk', act: { sub: 'a-desk-backend', iss: aIssuer } }, 'newest actor outermost; A\'s actor named with A\'s issuer');
      assert.equal(bClaims.origin_lei, brokerLei, 'the firm, through B\'s claim_mapping');
      assert.equal(bClaims.scope, 'order:create', 'never wider than the grant');

      // B's record: the partner, its jti, the chain, under the same txn.
      const accepted = (await b.f.auditEvents('token.issued')).at(-1)! as StoredAuditEvent;
      assert.equal(accepted.txn, claims.txn);
      assert.equal(accepted.subject, pseudonym);
      assert.equal(accepted.details!.partner, 'clearance-a');
      assert.equal(accepted.details!.partner_jti, claims.jti);
      assert.equal(accepted.details!.origin_iss, aIssuer);
      assert.deepEqual(accepted.details!.act_chain, ['domain-a-desk', `a-desk-backend (${aIssuer})`]);
      const introspected = (await b.f.post('/introspect', { auth: b.f.basic('b-settlement-rs'), form: { token } })).json() as Record<string, unknown>;
      assert.equal(introspected.active, true);

      // The grant is used once (RFC 7523 §3 (7)).
      assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', grant, bSettlementApi), 400, 'invalid_grant', 'replayed');
      // B holds nothing of Alice but her pseudonym.
      const bText = await b.f.auditText();
      assert.ok(!bText.includes(person.userId) && !bText.includes('alice'));
    });
  }

  test('a client credentials chain: the client is the subject, by its client_id, and the txn is kept', async (t) => {
    const { a, b } = await twoDomains(t);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const exchanged = await grantAt(a, 'a-desk-backend', own, { requested_token_type: '', resource: bIssuer });
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    assert.equal(exchanged.json().issued_token_type, jwtType, 'without requested_token_type, a partner authorization server as the target gets a grant (the draft\'s example)');
    const grant = decodeJwt(exchanged.json().access_token as string);
    assert.equal(grant.sub, 'a-desk-backend');
    const issued = await jwtBearerAt(b, 'domain-a-desk', exchanged.json().access_token as string, bSettlementApi);
    assert.equal(issued.statusCode, 200, issued.body);
    assert.equal(decodeJwt(issued.json().access_token as string).txn, grant.txn);
  });
});

describe('identity chaining: what A refuses', () => {
  test('a client the profile does not name gets no grant, though it may exchange the token', async (t) => {
    const { a, orderToken } = await twoDomains(t);
    const body = assertOAuthError(await grantAt(a, 'a-other-backend', orderToken), 400, 'invalid_target', 'not in chaining.clients');
    assert.match(String(body.error_description), /may not obtain grants for partner clearance-b/);
    const refused = (await a.f.auditEvents('exchange.refused')).at(-1)!;
    assert.equal(refused.client, 'a-other-backend');
    // The same client may exchange it within A.
    const within = await a.f.post('/token', { auth: a.f.basic('a-other-backend'), form: { grant_type: exchangeGrant, subject_token: orderToken, subject_token_type: accessTokenType, resource: aOrdersApi } });
    assert.equal(within.statusCode, 200, within.body);
  });

  test('a scope beyond the subject token, the client or the profile is invalid_scope; a grant never widens', async (t) => {
    const { a, orderToken } = await twoDomains(t);
    assertOAuthError(await grantAt(a, 'a-desk-backend', orderToken, { scope: 'settlement:submit' }), 400, 'invalid_scope', 'wider than the subject token');
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create settlement:submit' });
    assertOAuthError(await grantAt(a, 'a-desk-backend', own, { scope: 'settlement:submit' }), 400, 'invalid_scope', 'not in chaining.scopes');
    const narrowed = await grantAt(a, 'a-desk-backend', own);
    assert.equal(narrowed.statusCode, 200, narrowed.body);
    assert.equal(decodeJwt(narrowed.json().access_token as string).scope, 'order:create', 'only what the profile allows');
  });

  test('a person who did not consent to the partner, a target that is no chaining partner and authorization_details are refused', async (t) => {
    const { a, person } = await twoDomains(t);
    // Bob consented to the order API only.
    const bob = await a.f.signIn('bob', { acr: 'urn:clearance:acr:mfa', amr: ['pwd', 'otp', 'mfa'] });
    const { code, pkce } = await a.f.authorizeAndApprove({ person: bob, query: { scope: 'order:create', resource: aOrdersApi } });
    const bobToken = (await a.f.redeem('web-app', code, pkce.verifier)).json().access_token as string;
    const noConsent = assertOAuthError(await grantAt(a, 'a-desk-backend', bobToken), 400, 'invalid_target', 'no consent to B');
    assert.match(String(noConsent.error_description), /did not consent/);
    // Alice did consent: her token passes where Bob's does not.
    assert.ok(person.userId);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    assertOAuthError(await grantAt(a, 'a-desk-backend', own, { audience: aOrdersApi }), 400, 'invalid_target', 'a resource server is no partner authorization server');
    assertOAuthError(await grantAt(a, 'a-desk-backend', own, { audience: 'https://unknown.example.com' }), 400, 'invalid_target', 'unknown');
    // A grant carries no authorization_details: the partner could not bound them.
    assertOAuthError(await grantAt(a, 'a-desk-backend', own, { authorization_details: '[{"type":"order"}]' }), 400, 'invalid_authorization_details');
    // Asking for an access token keeps the resource-server path: B's issuer is one at A.
    const access = await grantAt(a, 'a-desk-backend', own, { requested_token_type: accessTokenType });
    assert.equal(access.statusCode, 200, access.body);
    assert.equal(access.json().issued_token_type, accessTokenType);
  });

  test('no grant for a partner suspended by a drift', async (t) => {
    const { a } = await twoDomains(t);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const now = a.f.clock.now();
    await a.f.ctx.storage.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('partner_baselines')
        .values({ partner_id: 'clearance-b', status: 'suspended', keys: null, issuer: null, metadata_digest: null, profile_digest: null, last_success_at: null, unreachable_since: null, unreachable_reported_at: null, suspended_at: now, suspended_reason: 'drift: test', next_check_at: now + 3_600_000, version: 1, updated_at: now })
        .execute();
      await bumpGeneration(trx, 'partners');
    });
    a.f.ctx.partners.invalidate();
    const body = assertOAuthError(await grantAt(a, 'a-desk-backend', own), 400, 'invalid_target', 'suspended');
    assert.match(String(body.error_description), /suspended/);
  });

  test('the grant is cut to the subject token\'s expiry; an expired subject token gets none', async (t) => {
    const { a } = await twoDomains(t);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const exp = decodeJwt(own).exp!;
    a.f.clock.set((exp - 20) * 1000);
    const late = await grantAt(a, 'a-desk-backend', own);
    assert.equal(late.statusCode, 200, late.body);
    assert.equal(decodeJwt(late.json().access_token as string).exp, exp, 'never outlives its subject token');
    a.f.clock.set((exp + 1) * 1000);
    assertOAuthError(await grantAt(a, 'a-desk-backend', own), 400, 'invalid_request', 'expired subject token');
  });
});

describe('identity chaining: subject mapping and claims per profile', () => {
  test('linked names the person by their identity at the partner, and a person without one gets no grant', async (t) => {
    const { a, person, orderToken } = await twoDomains(t, { chaining: { subject: 'linked', claims: [] } });
    assertOAuthError(await grantAt(a, 'a-desk-backend', orderToken), 400, 'invalid_target', 'no identity at B');
    await a.f.ctx.storage.db
      .insertInto('user_links')
      .values({ issuer: bIssuer, subject: 'alice@b', user_id: person.userId, provider_id: 'b', linked_by: 'test', created_at: a.f.clock.now(), last_login_at: null })
      .execute();
    const exchanged = await grantAt(a, 'a-desk-backend', orderToken);
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const grant = decodeJwt(exchanged.json().access_token as string);
    assert.equal(grant.sub, 'alice@b');
    for (const absent of ['act', 'txn', 'origin_lei']) assert.equal(grant[absent], undefined, `${absent}: not in the profile's claims`);
    // Her identifier at B links her across systems: A's log keeps it sealed as personal data.
    const hop = (await a.f.auditEvents('token.exchanged')).at(-1)! as StoredAuditEvent;
    assert.equal(hop.details!.upstream_subject, 'alice@b');
    assert.equal((hop.details!.chaining as Record<string, unknown>).subject, undefined);
    assert.ok(!(await a.f.auditText()).includes('alice@b'), 'stored encrypted');
  });

  test('public names the person by their local id; acr is carried when the profile allows it', async (t) => {
    const { a, person, orderToken } = await twoDomains(t, { chaining: { subject: 'public', claims: ['acr'], lifetime: 300 } });
    const exchanged = await grantAt(a, 'a-desk-backend', orderToken);
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const grant = decodeJwt(exchanged.json().access_token as string);
    assert.equal(grant.sub, person.userId);
    assert.equal(grant.acr, decodeJwt(orderToken).acr);
    assert.ok(grant.exp! - grant.iat! <= 300);
  });
});

describe('identity chaining: what B refuses', () => {
  test('a grant for another audience, expired, from an untrusted issuer, or asked for more scope or another resource is refused', async (t) => {
    const { a, b } = await twoDomains(t);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const fresh = async () => {
      const exchanged = await grantAt(a, 'a-desk-backend', own);
      assert.equal(exchanged.statusCode, 200, exchanged.body);
      return exchanged.json().access_token as string;
    };

    // A grant A issued for domain C, presented at B.
    const forC = await grantAt(a, 'a-desk-backend', own, { audience: cIssuer });
    assert.equal(forC.statusCode, 200, forC.body);
    assert.equal(decodeJwt(forC.json().access_token as string).aud, cIssuer);
    const wrongAudience = assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', forC.json().access_token as string, bSettlementApi), 400, 'invalid_grant', 'audience C');
    assert.match(String(wrongAudience.error_description), /audience/);

    // More scope than the grant carries; a resource B's profile for A does not allow.
    const grant = await fresh();
    assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', grant, bSettlementApi, { scope: 'settlement:submit' }), 400, 'invalid_scope', 'wider than the grant');
    // A refused presentation spends the grant all the same (its jti is recorded when it verifies): A issues another.
    assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', grant, bSettlementApi, { scope: 'order:create' }), 400, 'invalid_grant', 'the jti was used by the refused request');
    assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', await fresh(), 'https://elsewhere.example.com/api'), 400, 'invalid_target', 'resource not allowed');

    // Signed by someone B does not trust, with A's claims otherwise.
    const { privateKey } = await generateKeyPair('ES256');
    const now = epochSeconds(b.f.clock);
    const rogue = await new SignJWT({ scope: 'order:create' }).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).setIssuer('https://rogue.example.com').setSubject('x').setAudience(bIssuer).setIssuedAt(now).setExpirationTime(now + 60).setJti(crypto.randomUUID()).sign(privateKey);
    const untrusted = assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', rogue, bSettlementApi), 400, 'invalid_grant', 'untrusted issuer');
    assert.match(String(untrusted.error_description), /not a registered partner/);
    const forged = await new SignJWT({ scope: 'order:create' }).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: decodeProtectedHeader(grant).kid! }).setIssuer(aIssuer).setSubject('x').setAudience(bIssuer).setIssuedAt(now).setExpirationTime(now + 60).setJti(crypto.randomUUID()).sign(privateKey);
    const badSignature = assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', forged, bSettlementApi), 400, 'invalid_grant', 'A\'s issuer, another key');
    assert.match(String(badSignature.error_description), /signature/);

    // Expired: past its exp and the 60 s of clock skew.
    const expiring = await fresh();
    b.f.clock.advance(60_000 + 61_000);
    const expired = assertOAuthError(await jwtBearerAt(b, 'domain-a-desk', expiring, bSettlementApi), 400, 'invalid_grant', 'expired');
    assert.match(String(expired.error_description), /expired/);
    const refusals = await b.f.auditEvents('assertion.refused');
    assert.ok(refusals.length >= 4);
    assert.ok(refusals.every((e) => !JSON.stringify(e).includes(expiring)), 'never the grant itself');
  });

  test('a client B does not let present A\'s grants is refused', async (t) => {
    const { a, b } = await twoDomains(t);
    await b.f.apply({ clients: [{ client_id: 'b-stranger', kind: 'service', grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'], scope: 'order:create' }] });
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const exchanged = await grantAt(a, 'a-desk-backend', own);
    assertOAuthError(await jwtBearerAt(b, 'b-stranger', exchanged.json().access_token as string, bSettlementApi), 400, 'invalid_grant', 'not in the profile clients');
  });
});
