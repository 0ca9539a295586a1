import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import type { StoredAuditEvent } from '../../../src/audit/events.ts';
import { epochSeconds } from '../../../src/clock.ts';
import { pairwiseKey, pairwiseSubject } from '../../../src/identity/pairwise.ts';
import { foldedDecisions } from '../../../src/policy/issuance-audit.ts';
import { changeKycByAdmin } from '../../../src/risk/kyc/admin.ts';
import { decideGrant, partnerAuthorizationServer } from '../../../src/grants/exchange/grant-decision.ts';
import { verifyPresentedToken } from '../../../src/grants/exchange/presented-token.ts';
import type { OAuthError } from '../../../src/oauth-error.ts';
import { bumpGeneration } from '../../../src/storage/generations.ts';
import { assertOAuthError } from '../../endpoints/fixture.ts';
import { testDialects } from '../../helpers/storage.ts';
import { applyDocument as applyDocumentAt } from '../../policy/fixture.ts';
import { agentGateway, algo7 } from '../agent-gateway.ts';
import {
  aIssuer,
  aOrdersApi,
  accessTokenType,
  bIssuer,
  bProfileAtA,
  bSettlementApi,
  brokerLei,
  cIssuer,
  consentTo,
  exchangeGrant,
  grantAt,
  jwtBearerAt,
  jwtType,
  partnerOfA,
  pIssuer,
  tokenFromP,
  twoDomains,
  type Domain,
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
  test('a chain of our actors deeper than a partner accepts (8) is refused, never cut: the grant names every actor or none', async (t) => {
    const { a, b } = await twoDomains(t);
    let token = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const hop = async (times: number) => {
      for (let i = 0; i < times; i++) {
        const r = await a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: exchangeGrant, subject_token: token, subject_token_type: accessTokenType, resource: aOrdersApi } });
        assert.equal(r.statusCode, 200, r.body);
        token = r.json().access_token as string;
      }
    };
    const depth = (act: unknown): number => (act && typeof act === 'object' ? 1 + depth((act as { act?: unknown }).act) : 0);
    // Seven hops, then the grant's own actor: eight, all of them named.
    await hop(7);
    const eight = await grantAt(a, 'a-desk-backend', token);
    assert.equal(eight.statusCode, 200, eight.body);
    assert.equal(depth(decodeJwt(eight.json().access_token as string).act), 8);
    assert.equal((await jwtBearerAt(b, 'domain-a-desk', eight.json().access_token as string, bSettlementApi)).statusCode, 200);
    // One hop more: nine actors of ours. Cutting the oldest would hide who started the chain.
    await hop(1);
    const nine = assertOAuthError(await grantAt(a, 'a-desk-backend', token), 400, 'invalid_request', 'too deep');
    assert.match(String(nine.error_description), /act/);
  });

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
    // B's authorization server gets grants only, never an access token (it would reach B without
    // the chaining rules): not by token exchange, not by client credentials.
    const access = assertOAuthError(await grantAt(a, 'a-desk-backend', own, { requested_token_type: accessTokenType }), 400, 'invalid_target');
    assert.match(String(access.error_description), /ask for a JWT authorization grant/);
    await a.f.apply({ clients: [{ client_id: 'a-desk-m2m', kind: 'service', grant_types: ['client_credentials'], scope: 'order:create' }] });
    const m2m = await a.f.post('/token', { auth: a.f.basic('a-desk-m2m'), form: { grant_type: 'client_credentials', resource: bIssuer, scope: 'order:create' } });
    assertOAuthError(m2m, 400, 'invalid_target');
    assert.equal((await a.f.auditEvents('token.issued')).filter((e) => e.audience === bIssuer).length, 0);
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

/** An active policy set of these rules (version v1). */
const policies = (text: string) => ({ policies: [{ version: 'v1', text, change_ref: 'CHG-1', author: 'alice.author', approver: 'bob.approver', active: true }] });
const permitAll = '@id("all") permit (principal, action, resource);';
/** A fourth domain, D, whose authorization server wants its token endpoint as the grant's audience. */
const dIssuer = 'https://d.clearance.test';
const dTokenEndpoint = `${dIssuer}/token`;

/** B's profile at A again, with `chaining` over its fields (a re-apply updates it). */
async function reapplyB(a: Domain, b: Domain, chaining: Record<string, unknown>, profile: Record<string, unknown> = {}) {
  await a.f.apply({ partners: [{ ...bProfileAtA({ keys: (await b.f.ctx.keys.jwks()).keys.map((k) => ({ ...k })) }, chaining), ...profile }] });
}

/** Alice, through P: P's subject `p-desk-4` is her identity at P (she signed in through it). */
async function linkToP(a: Domain, userId: string) {
  await a.f.ctx.storage.db
    .insertInto('user_links')
    .values({ issuer: pIssuer, subject: 'p-desk-4', user_id: userId, provider_id: 'p', linked_by: 'test', created_at: a.f.clock.now(), last_login_at: null })
    .execute();
}

describe('identity chaining: the partner authorization server as the decision point knows it (A)', () => {
  for (const dialect of testDialects()) {
    test(`a partner whose authorization server is not registered here gets no grant; registered under its grant audience, it does (${dialect.name})`, async (t) => {
      const { a, b } = await twoDomains(t, { dialect });
      await a.f.apply({ partners: [{ ...bProfileAtA({ keys: (await b.f.ctx.keys.jwks()).keys.map((k) => ({ ...k })) }, { audience: dTokenEndpoint }), id: 'clearance-d', issuer: dIssuer }] });
      const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });

      const refused = assertOAuthError(await grantAt(a, 'a-desk-backend', own, { audience: dIssuer }), 400, 'invalid_target', 'D is registered nowhere as a resource server');
      assert.match(String(refused.error_description), /partner clearance-d's authorization server is not registered here/);
      const recorded = (await a.f.auditEvents('exchange.refused')).at(-1)!;
      assert.equal(recorded.details!.reason, 'partner_server_unregistered');
      assert.equal(recorded.client, 'a-desk-backend');
      assert.ok((await a.f.auditEvents('token.exchanged')).every((e) => e.audience !== dTokenEndpoint), 'no grant was issued');

      // Registered under the grant's audience (its token endpoint): decided on it, and issued for it.
      await a.f.apply({ resource_servers: [{ identifier: dTokenEndpoint, name: 'Domain D', scopes: ['order:create'] }] });
      for (const target of [dIssuer, dTokenEndpoint]) {
        const granted = await grantAt(a, 'a-desk-backend', own, { audience: target });
        assert.equal(granted.statusCode, 200, granted.body);
        assert.equal(decodeJwt(granted.json().access_token as string).aud, dTokenEndpoint);
      }
      const hop = (await a.f.auditEvents('token.exchanged')).at(-1)!;
      assert.equal(hop.audience, dTokenEndpoint);
      assert.equal((hop.details!.chaining as Record<string, unknown>).partner, 'clearance-d');
    });
  }

  test('scopes are bounded by the partner authorization server as registered here', async (t) => {
    const { a, b } = await twoDomains(t);
    await reapplyB(a, b, { scopes: ['order:create', 'settlement:submit'] });
    await a.f.apply({ resource_servers: [{ identifier: bIssuer, name: 'Domain B', scopes: ['order:create'] }] });
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create settlement:submit' });
    const body = assertOAuthError(await grantAt(a, 'a-desk-backend', own, { scope: 'settlement:submit' }), 400, 'invalid_scope', 'B as registered here offers no settlement:submit');
    assert.match(String(body.error_description), /not allowed by the partner authorization server as registered here/);
    const narrowed = await grantAt(a, 'a-desk-backend', own);
    assert.equal(narrowed.statusCode, 200, narrowed.body);
    assert.equal(decodeJwt(narrowed.json().access_token as string).scope, 'order:create', 'what the profile and the registration both allow');
  });

  test('a chain that started at partner P stays bounded by P\'s profile: its allowed audiences and scopes', async (t) => {
    const { a, b } = await twoDomains(t);
    await reapplyB(a, b, { scopes: ['order:create', 'settlement:submit'] });
    await a.f.apply({ resource_servers: [{ identifier: aOrdersApi, name: 'Order API', scopes: ['order:create', 'settlement:submit'], exchange_clients: ['a-desk-backend', 'a-gateway'] }] });
    const p = await partnerOfA(a, { allowed_audiences: [aOrdersApi, bIssuer], allowed_scopes: ['order:create', 'settlement:submit'] });
    const fromP = await tokenFromP(a, p, { scope: 'order:create settlement:submit' });
    assert.equal(decodeJwt(fromP).origin_iss, pIssuer);

    const granted = await grantAt(a, 'a-desk-backend', fromP);
    assert.equal(granted.statusCode, 200, granted.body);
    assert.equal(decodeJwt(granted.json().access_token as string).scope, 'order:create settlement:submit');
    const hop = (await a.f.auditEvents('token.exchanged')).at(-1)!;
    assert.equal(hop.details!.origin_iss, pIssuer);
    assert.equal(hop.details!.parent_jti, decodeJwt(fromP).jti, 'the token of ours it was exchanged from');

    // P's profile narrowed since: its token of ours gets no more than P is now allowed.
    await a.f.apply({ partners: [p.profileOf({ allowed_audiences: [aOrdersApi, bIssuer], allowed_scopes: ['settlement:submit'] })] });
    const scope = assertOAuthError(await grantAt(a, 'a-desk-backend', fromP, { scope: 'order:create' }), 400, 'invalid_scope', 'P no longer allows order:create');
    assert.match(String(scope.error_description), /profile of partner p-bank, where the chain started/);
    const cut = await grantAt(a, 'a-desk-backend', fromP);
    assert.equal(cut.statusCode, 200, cut.body);
    assert.equal(decodeJwt(cut.json().access_token as string).scope, 'settlement:submit');
    // B no longer among P's allowed audiences.
    await a.f.apply({ partners: [p.profileOf({ allowed_audiences: [aOrdersApi] })] });
    const target = assertOAuthError(await grantAt(a, 'a-desk-backend', fromP), 400, 'invalid_target', 'P may not reach B any more');
    assert.match(String(target.error_description), /partner p-bank may not obtain tokens for this target/);
  });

  test('a chain that started at partner P gets no grant while P is suspended by a drift', async (t) => {
    const { a } = await twoDomains(t);
    const p = await partnerOfA(a, { allowed_audiences: [aOrdersApi, bIssuer] });
    const fromP = await tokenFromP(a, p, { scope: 'order:create' });
    const now = a.f.clock.now();
    await a.f.ctx.storage.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('partner_baselines')
        .values({ partner_id: 'p-bank', status: 'suspended', keys: null, issuer: null, metadata_digest: null, profile_digest: null, last_success_at: null, unreachable_since: null, unreachable_reported_at: null, suspended_at: now, suspended_reason: 'drift: test', next_check_at: now + 3_600_000, version: 1, updated_at: now })
        .execute();
      await bumpGeneration(trx, 'partners');
    });
    a.f.ctx.partners.invalidate();
    const refused = assertOAuthError(await grantAt(a, 'a-desk-backend', fromP), 400, 'invalid_request', 'P is suspended');
    assert.match(String(refused.error_description), /suspended/);
  });
});

describe('identity chaining: the decision point decides every grant (A)', () => {
  for (const dialect of testDialects()) {
    test(`a policy that forbids the partner's authorization server refuses the grant with policy.denied; where the policies permit, the decision is folded into token.exchanged (${dialect.name})`, async (t) => {
      const { a } = await twoDomains(t, { dialect });
      await a.f.apply(policies(`${permitAll}\n@id("no-domain-b") forbid (principal, action, resource == ResourceServer::"${bIssuer}");`));
      const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });

      const body = assertOAuthError(await grantAt(a, 'a-desk-backend', own), 400, 'invalid_scope', 'forbidden by policy');
      assert.match(String(body.error_description), /order:create is refused by policy: no-domain-b/);
      const denied = (await a.f.auditEvents('policy.denied')).at(-1)!;
      assert.equal(denied.audience, bIssuer, 'decided with B\'s authorization server as the resource');
      assert.equal(denied.client, 'a-desk-backend');
      assert.equal(denied.subject, 'a-desk-backend');
      assert.deepEqual(denied.decision, { allow: false, reasons: ['no-domain-b'], policyVersion: 'v1' });
      assert.equal(denied.details!.via, exchangeGrant);
      assert.ok((await a.f.auditEvents('token.exchanged')).every((e) => e.audience !== bIssuer), 'no grant for B');

      // C is not forbidden: its grant carries the decision that allowed it.
      const forC = await grantAt(a, 'a-desk-backend', own, { audience: cIssuer });
      assert.equal(forC.statusCode, 200, forC.body);
      const hop = (await a.f.auditEvents('token.exchanged')).at(-1)!;
      assert.equal(hop.audience, cIssuer);
      assert.deepEqual(hop.decision, { allow: true, reasons: ['all'], policyVersion: 'v1' });
      assert.deepEqual(
        foldedDecisions(hop).map((d) => [d.principal, d.action, d.resource]),
        [['Client::"a-desk-backend"', 'order:create', `ResourceServer::"${cIssuer}"`]],
      );
      assert.deepEqual(await a.f.auditEvents('policy.allowed'), [], 'folded, not beside it');
    });
  }

  test('a frozen firm gets no grant: its freeze ends its clients\' tokens, and the decision point refuses one verified before it (invalid_grant, policy.denied kyc-frozen); a frozen person\'s token is dead already', async (t) => {
    const { a, person, orderToken } = await twoDomains(t);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    // Verified before the freeze (as token exchange verifies it), decided after it.
    const verified = await verifyPresentedToken(a.f.ctx, own, accessTokenType, 'a-desk-backend');
    assert.ok(verified.ok);
    // The broker (a-desk-backend's owner and Alice's desk's firm) frozen: its freeze ends the live
    // tokens of the clients it owns (src/risk/kyc/changes.ts), so this one never reaches the decision…
    await changeKycByAdmin(a.f.ctx, { type: 'LegalEntity', id: brokerLei }, { status: 'frozen' }, { actor: 'compliance-1', reason: 'adverse media' });
    assertOAuthError(await grantAt(a, 'a-desk-backend', own), 400, 'invalid_request', 'the firm\'s token is no longer live');
    // …and the decision point refuses the firm's token all the same.
    const partner = (await a.f.ctx.partners.list()).find((p) => p.id === 'clearance-b')!;
    const client = { client: (await a.f.ctx.clients.get('a-desk-backend'))!, method: 'client_secret_basic' as const };
    await assert.rejects(
      decideGrant(a.f.ctx, { client, requestId: 'req-frozen-firm', server: await partnerAuthorizationServer(a.f.ctx, partner), principal: { type: 'Client', id: 'a-desk-backend' }, subject: verified.token, scopes: ['order:create'], txn: 'trade-frozen-firm', actors: [] }),
      (error: OAuthError) => error.error === 'invalid_grant' && !/frozen|kyc/i.test(String(error.description)),
    );
    const denied = (await a.f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual(denied.decision!.reasons, ['kyc-frozen']);
    assert.equal(denied.audience, bIssuer, 'decided for B\'s authorization server');
    assert.equal(denied.details!.frozen, `LegalEntity::${JSON.stringify(brokerLei)}`);
    assert.equal((await a.f.auditEvents('token.exchanged')).length, 0, 'no grant');
    await changeKycByAdmin(a.f.ctx, { type: 'LegalEntity', id: brokerLei }, { status: 'verified' }, { actor: 'compliance-1', reason: 'cleared' });
    assertOAuthError(await grantAt(a, 'a-desk-backend', own), 400, 'invalid_request', 'a token the freeze ended stays dead');
    // A token's iat has a resolution of a second: one issued in the freeze's own second counts as before it.
    a.f.clock.set(a.f.clock.now() + 1000);
    const fresh = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    assert.equal((await grantAt(a, 'a-desk-backend', fresh)).statusCode, 200, 'unfrozen, a new token gets its grant');

    // Alice frozen: her freeze ends the tokens she holds (src/risk/kyc/changes.ts), so hers never reaches the decision.
    await changeKycByAdmin(a.f.ctx, { type: 'User', id: person.userId }, { status: 'frozen' }, { actor: 'compliance-1', reason: 'adverse media' });
    assertOAuthError(await grantAt(a, 'a-desk-backend', orderToken), 400, 'invalid_request', 'her token is no longer live');
  });

  test('the decision point refuses a grant for a person frozen after their token was verified (invalid_grant, policy.denied kyc-frozen)', async (t) => {
    const { a, person, orderToken } = await twoDomains(t);
    // Verified before the freeze (as token exchange verifies it), decided after it.
    const verified = await verifyPresentedToken(a.f.ctx, orderToken, accessTokenType, 'a-desk-backend');
    assert.ok(verified.ok);
    await changeKycByAdmin(a.f.ctx, { type: 'User', id: person.userId }, { status: 'frozen' }, { actor: 'compliance-1', reason: 'adverse media' });
    const partner = (await a.f.ctx.partners.list()).find((p) => p.id === 'clearance-b')!;
    const client = { client: (await a.f.ctx.clients.get('a-desk-backend'))!, method: 'client_secret_basic' as const };
    const request = {
      client,
      requestId: 'req-frozen',
      server: await partnerAuthorizationServer(a.f.ctx, partner),
      principal: { type: 'User' as const, id: person.userId },
      subject: verified.token,
      scopes: ['order:create'],
      txn: 'trade-frozen-1',
      actors: ['a-desk-backend'],
    };
    await assert.rejects(decideGrant(a.f.ctx, request), (error: OAuthError) => error.error === 'invalid_grant');
    const denied = (await a.f.auditEvents('policy.denied')).at(-1)!;
    assert.deepEqual(denied.decision!.reasons, ['kyc-frozen']);
    assert.equal(denied.details!.frozen, `User::${JSON.stringify(person.userId)}`);
    assert.equal(denied.audience, bIssuer);
    assert.equal(denied.txn, 'trade-frozen-1');
    // Unfrozen, the same decision allows it.
    await changeKycByAdmin(a.f.ctx, { type: 'User', id: person.userId }, { status: 'verified' }, { actor: 'compliance-1', reason: 'cleared' });
    const decided = await decideGrant(a.f.ctx, { ...request, requestId: 'req-cleared' });
    assert.equal(decided.authorized.allows.length, 1);
  });

  test('a partner subject linked to a person: no grant without the person\'s consent, to the client holding the token, for the partner server and scopes', async (t) => {
    const { a, person } = await twoDomains(t);
    await a.f.apply({ resource_servers: [{ identifier: aOrdersApi, name: 'Order API', scopes: ['order:create', 'settlement:submit'], exchange_clients: ['a-desk-backend', 'a-other-backend'] }] });
    const p = await partnerOfA(a, { allowed_audiences: [aOrdersApi, bIssuer] });
    await linkToP(a, person.userId);
    const fromP = await tokenFromP(a, p);
    const claims = decodeJwt(fromP);
    assert.equal(claims.origin_person, person.userId, 'decided as Alice');
    assert.equal(claims.grant_id, undefined, 'no consent grant of hers rides on it');

    // Her consent for web-app to send her authority to B is no consent for a-gateway's token.
    const none = assertOAuthError(await grantAt(a, 'a-desk-backend', fromP), 400, 'invalid_target', 'no consent to a-gateway for B');
    assert.match(String(none.error_description), /did not consent to grants for this partner/);
    await consentTo(a, person.userId, 'a-gateway', aOrdersApi, ['order:create']);
    assertOAuthError(await grantAt(a, 'a-desk-backend', fromP), 400, 'invalid_target', 'consent to a-gateway for the order API only');
    await consentTo(a, person.userId, 'a-gateway', bIssuer, ['settlement:submit']);
    const scope = assertOAuthError(await grantAt(a, 'a-desk-backend', fromP), 400, 'invalid_scope', 'B consented, order:create not');
    assert.match(String(scope.error_description), /did not consent to order:create for this partner/);

    await consentTo(a, person.userId, 'a-gateway', bIssuer, ['order:create']);
    const granted = await grantAt(a, 'a-desk-backend', fromP);
    assert.equal(granted.statusCode, 200, granted.body);
    const grant = decodeJwt(granted.json().access_token as string);
    assert.equal(grant.sub, pairwiseSubject(pairwiseKey(a.f.ctx.identity.factorKeys.master), `partner:${bIssuer}`, person.userId), 'her pseudonym for B');
    const hop = (await a.f.auditEvents('token.exchanged')).at(-1)!;
    assert.equal(hop.details!.origin_iss, pIssuer);
  });

  test('under public subjects, a person\'s grant for a partner server registered in another region is refused; a client\'s, or a pseudonymous one, is not', async (t) => {
    const { a, b, orderToken } = await twoDomains(t, { chaining: { subject: 'public' }, aEnv: { CLEARANCE_REGION: 'emea' } });
    await a.f.apply({
      regions: [{ id: 'emea' }, { id: 'apac' }],
      legal_entities: [{ lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'emea', data_regions: ['apac'], roles: ['broker'], desks: [{ id: 'a-rates', name: 'Rates' }] }],
      resource_servers: [{ identifier: bIssuer, name: 'Domain B', scopes: ['order:create', 'settlement:submit'], region: 'apac' }],
    });
    const body = assertOAuthError(await grantAt(a, 'a-desk-backend', orderToken), 400, 'invalid_target', 'her local id would leave emea');
    assert.match(String(body.error_description), /in region apac, not this instance's \(emea\).*chaining\.subject public/);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const client = await grantAt(a, 'a-desk-backend', own);
    assert.equal(client.statusCode, 200, client.body);
    assert.equal(decodeJwt(client.json().access_token as string).sub, 'a-desk-backend', 'a client id is no personal data');
    await reapplyB(a, b, { subject: 'pairwise' });
    const pseudonymous = await grantAt(a, 'a-desk-backend', orderToken);
    assert.equal(pseudonymous.statusCode, 200, pseudonymous.body);
  });
});

describe('identity chaining: what A keeps of a partner\'s token', () => {
  test('a partner\'s token exchanged here is recorded by its jti as partner_jti, never as a parent of ours', async (t) => {
    const { a } = await twoDomains(t);
    const p = await partnerOfA(a);
    const exchange = async (subjectToken: string) => {
      const response = await a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: exchangeGrant, subject_token: subjectToken, subject_token_type: accessTokenType, resource: aOrdersApi } });
      assert.equal(response.statusCode, 200, response.body);
      return { token: decodeJwt(response.json().access_token as string), hop: (await a.f.auditEvents('token.exchanged')).at(-1)! };
    };
    const jti = randomUUID();
    const { token, hop } = await exchange(await p.accessToken({ jti }));
    assert.equal(token.origin_iss, pIssuer);
    assert.equal(hop.details!.partner_jti, jti);
    assert.equal(hop.details!.parent_jti, null);
    assert.equal(hop.details!.parent_issuer, pIssuer);

    // P naming the jti of a token of ours grafts nothing onto our chain.
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const ours = decodeJwt(own).jti as string;
    const grafted = await exchange(await p.accessToken({ jti: ours }));
    assert.equal(grafted.hop.details!.partner_jti, ours);
    assert.equal(grafted.hop.details!.parent_jti, null, 'a partner\'s jti is never a parent');
  });

  test('a partner\'s actor_token never becomes an actor of ours in a grant: refused, nothing signed or recorded as exchanged', async (t) => {
    const { a } = await twoDomains(t);
    const p = await partnerOfA(a);
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    // P says one of OUR clients acted: a grant would name it with our issuer, on a third domain's word.
    const actorToken = await p.accessToken({ sub: 'a-desk-backend' });
    const refused = assertOAuthError(await grantAt(a, 'a-desk-backend', own, { actor_token: actorToken, actor_token_type: accessTokenType }), 400, 'invalid_request');
    assert.match(String(refused.error_description), /partner's actor_token does not cross to another domain/);
    assert.equal((await a.f.auditEvents('token.exchanged')).length, 0);
    // Without it, the same exchange gets its grant.
    assert.equal((await grantAt(a, 'a-desk-backend', own)).statusCode, 200);
  });

  test('a partner\'s assertion or token naming an actor of another issuer is refused; its own actors are named with its issuer', async (t) => {
    const { a } = await twoDomains(t);
    const p = await partnerOfA(a);
    const foreign = { sub: 'q-desk', iss: 'https://as.q-bank.test' };
    const issuedBefore = (await a.f.auditEvents('token.issued')).length;
    for (const act of [foreign, { sub: 'p-desk-1', act: foreign }]) {
      const body = assertOAuthError(await jwtBearerAt(a, 'a-gateway', await p.assertion({ act }), aOrdersApi), 400, 'invalid_grant', 'JWT bearer: a foreign actor');
      assert.match(String(body.error_description), /actor of another issuer than the partner/);
      const exchanged = await a.f.post('/token', { auth: a.f.basic('a-desk-backend'), form: { grant_type: exchangeGrant, subject_token: await p.accessToken({ act }), subject_token_type: accessTokenType, resource: aOrdersApi } });
      const refused = assertOAuthError(exchanged, 400, 'invalid_request', 'token exchange: a foreign actor');
      assert.match(String(refused.error_description), /actor of another issuer than the partner/);
    }
    assert.equal((await a.f.auditEvents('token.issued')).length, issuedBefore, 'nothing issued');
    assert.equal((await a.f.auditEvents('token.exchanged')).length, 0);

    // P's own actors, with its issuer or without one, pass — each named with P's issuer.
    const issued = await jwtBearerAt(a, 'a-gateway', await p.assertion({ act: { sub: 'p-desk-1', act: { sub: 'p-algo', iss: pIssuer } } }), aOrdersApi);
    assert.equal(issued.statusCode, 200, issued.body);
    assert.deepEqual(decodeJwt(issued.json().access_token as string).act, { sub: 'a-gateway', act: { sub: 'p-desk-1', iss: pIssuer, act: { sub: 'p-algo', iss: pIssuer } } });
  });
});

describe("identity chaining from an agent's token: the grant is bounded by the agent's liveness when made, and by its lifetime after", () => {
  test("caps a grant made from an agent's token, or from a token exchanged from one, to 60 s whatever the profile allows, and records the agents it stands on", async (t) => {
    const g = await agentGateway(t);
    const exchanged = await g.toClearing(g.agentToken);
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    for (const subjectToken of [g.agentToken, exchanged.json().access_token as string]) {
      const response = await g.grantForPartner(subjectToken);
      assert.equal(response.statusCode, 200, response.body);
      const grant = decodeJwt(response.json().access_token as string);
      assert.ok(grant.exp! - grant.iat! <= 60, `the grant lives ${grant.exp! - grant.iat!} s: the partner redeems it past the agent's kill switch`);
      assert.ok((response.json().expires_in as number) <= 60);
      assert.equal(grant.agents, undefined, 'the partner is told nothing of our agents');
      const hop = (await g.auditEvents('token.exchanged')).at(-1)!;
      assert.equal(hop.details!.issued_token_type, jwtType);
      assert.deepEqual(hop.details!.agents, [{ id: 'algo-7', approval: g.approval }], 'the evidence names the agents the grant stood on');
    }
  });

  test('caps a grant an agent asks for itself, from a token of no agent, to 60 s: the grant stands on the agent as this hop\'s actor', async (t) => {
    const g = await agentGateway(t);
    const response = await g.grantForPartnerByAgent(g.gatewayToken);
    assert.equal(response.statusCode, 200, response.body);
    const grant = decodeJwt(response.json().access_token as string);
    assert.deepEqual(grant.act, { sub: 'algo-7', iss: g.ctx.config.issuer });
    assert.ok(grant.exp! - grant.iat! <= 60, `the grant lives ${grant.exp! - grant.iat!} s`);
    const hop = (await g.auditEvents('token.exchanged')).at(-1)!;
    assert.equal((hop.details!.agent as { id: string }).id, 'algo-7', 'the agent as the client, as for every issuance to one');
  });

  test("refuses a grant from an agent's token, or from a token exchanged from one, once the agent is disabled: nothing signed or recorded", async (t) => {
    const g = await agentGateway(t);
    const exchanged = await g.toClearing(g.agentToken);
    assert.equal(exchanged.statusCode, 200, exchanged.body);
    const recorded = (await g.auditEvents('token.exchanged')).length;
    g.clock.advance(2000);
    await applyDocumentAt(g.ctx, { agents: [{ ...algo7, status: 'disabled' }] });
    g.clock.advance(2000);
    for (const subjectToken of [g.agentToken, exchanged.json().access_token as string]) {
      assertOAuthError(await g.grantForPartner(subjectToken), 400, 'invalid_request');
    }
    assert.equal((await g.auditEvents('token.exchanged')).length, recorded);
  });

  test('a grant from a token of no agent keeps the profile\'s lifetime and records no agents', async (t) => {
    const { a } = await twoDomains(t, { chaining: { lifetime: 300 } });
    const own = await a.f.accessToken('a-desk-backend', { resource: aOrdersApi, scope: 'order:create' });
    const response = await grantAt(a, 'a-desk-backend', own);
    assert.equal(response.statusCode, 200, response.body);
    const grant = decodeJwt(response.json().access_token as string);
    assert.ok(grant.exp! - grant.iat! > 60, 'only a grant standing on an agent is capped');
    assert.equal('agents' in (await a.f.auditEvents('token.exchanged')).at(-1)!.details!, false);
  });
});
