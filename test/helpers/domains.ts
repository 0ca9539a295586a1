/**
 * Two Clearance instances as two trust domains (docs/federation.md "Identity chaining across
 * domains"), each on its own database — the pattern of ./regions.ts without regions: domain A's
 * backend asks A for a JWT authorization grant aimed at B's authorization server, and presents it
 * at B with the JWT bearer grant.
 *
 *   const { a, b, person, orderToken } = await twoDomains(t);
 *   const grant = await grantAt(a, 'a-desk-backend', orderToken);          // RFC 8693 at A
 *   const token = await jwtBearerAt(b, 'domain-a-desk', grant.json().access_token, bSettlementApi);
 *
 * A: its order API (exchange_clients: a-desk-backend, a-other-backend), B's (and C's) authorization
 * server registered as a resource server (people consent to it, the decision point decides on it),
 * and B as a partner with `chaining` for
 * a-desk-backend (pairwise subjects; act, txn, origin_lei). B: its settlement API, `domain-a-desk`
 * (A's backend as B's client, jwt-bearer) and A as a partner whose grants it accepts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { approveRequestIn } from '../../src/authorization/consent.ts';
import { epochSeconds } from '../../src/clock.ts';
import { acr } from '../../src/identity/acr.ts';
import { codeFlowFixture, pkce, type CodeFlowFixture, type Person } from '../authorization/fixture.ts';
import type { TestDialect } from './storage.ts';

export const aIssuer = 'https://a.clearance.test';
export const bIssuer = 'https://b.clearance.test';
/** A third domain A has a profile for (and B has none). */
export const cIssuer = 'https://c.clearance.test';
export const aOrdersApi = 'https://orders.a.example.com/api';
export const bSettlementApi = 'https://settlement.b.example.com/api';
export const brokerLei = '5493001KJTIIGC8Y1R12';

export const exchangeGrant = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const jwtBearerGrant = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const jwtType = 'urn:ietf:params:oauth:token-type:jwt';
export const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';

export interface Domain {
  issuer: string;
  f: CodeFlowFixture;
}

export interface TwoDomains {
  a: Domain;
  b: Domain;
  /** Alice, a trader at A (only in A's database), who consented to web-app for A's order API and for B. */
  person: Person;
  /** Alice's token for A's order API (web-app, code flow). */
  orderToken: string;
}

/** B's trust profile of domain A: A's keys, A's broker firm, accepted from domain-a-desk for B's settlement API (and `more`). */
export function aProfileAtB(aKeys: { keys: unknown[] }, more: Record<string, unknown> = {}) {
  return {
    id: 'clearance-a',
    issuer: aIssuer,
    jwks: { keys: aKeys.keys.map((k) => ({ ...(k as object) })) },
    algorithms: ['ES256'],
    max_assertion_lifetime: 300,
    allowed_audiences: [bSettlementApi],
    allowed_scopes: ['order:create', 'settlement:submit'],
    claim_mapping: { lei: 'origin_lei' },
    legal_entities: [brokerLei],
    clients: ['domain-a-desk'],
    ...more,
  };
}

/** The chaining section of A's profile for B; `chaining` overrides its fields. */
export function bProfileAtA(bKeys: { keys: unknown[] }, chaining: Record<string, unknown> = {}) {
  return {
    id: 'clearance-b',
    issuer: bIssuer,
    jwks: bKeys,
    algorithms: ['ES256'],
    // A only sends grants to B: it accepts nothing from it.
    allowed_audiences: [],
    allowed_scopes: [],
    chaining: { clients: ['a-desk-backend'], scopes: ['order:create'], claims: ['act', 'txn', 'origin_lei'], ...chaining },
  };
}

export async function twoDomains(t: TestContext, options: { dialect?: TestDialect; chaining?: Record<string, unknown>; /** More of A's environment (CLEARANCE_REGION, ...). */ aEnv?: NodeJS.ProcessEnv } = {}): Promise<TwoDomains> {
  const a: Domain = { issuer: aIssuer, f: await codeFlowFixture(t, { env: { CLEARANCE_ISSUER: aIssuer, ...options.aEnv }, risk: 'off', ...(options.dialect ? { dialect: options.dialect } : {}) }) };
  const b: Domain = { issuer: bIssuer, f: await codeFlowFixture(t, { env: { CLEARANCE_ISSUER: bIssuer }, risk: 'off', ...(options.dialect ? { dialect: options.dialect } : {}) }) };
  // One time for both (each clock started with its fixture; one set back would precede its own key).
  const now = Math.max(a.f.clock.now(), b.f.clock.now());
  a.f.clock.set(now);
  b.f.clock.set(now);
  const aKeys = await a.f.ctx.keys.jwks();
  const bKeys = await b.f.ctx.keys.jwks();

  const firm = { lei: brokerLei, name: 'Example Broker Ltd', jurisdiction: 'GB', home_region: 'emea', roles: ['broker'], desks: [{ id: 'a-rates', name: 'Rates' }] };
  await a.f.apply({
    regions: [{ id: 'emea' }],
    legal_entities: [firm],
    resource_servers: [
      { identifier: aOrdersApi, name: 'Order API', scopes: ['order:create', 'settlement:submit'], exchange_clients: ['a-desk-backend', 'a-other-backend'] },
      // B's (and C's) authorization server: what a person consents to their authority going to, and
      // the resource the decision point decides a grant for it on.
      { identifier: bIssuer, name: 'Domain B', scopes: ['order:create', 'settlement:submit'] },
      { identifier: cIssuer, name: 'Domain C', scopes: ['order:create', 'settlement:submit'] },
    ],
    clients: [
      { client_id: 'a-desk-backend', kind: 'service', owner_lei: brokerLei, grant_types: [exchangeGrant, 'client_credentials'], scope: 'order:create settlement:submit' },
      { client_id: 'a-other-backend', kind: 'service', owner_lei: brokerLei, grant_types: [exchangeGrant, 'client_credentials'], scope: 'order:create settlement:submit' },
    ],
    partners: [
      bProfileAtA({ keys: bKeys.keys.map((k) => ({ ...k })) }, options.chaining),
      { ...bProfileAtA({ keys: bKeys.keys.map((k) => ({ ...k })) }), id: 'clearance-c', issuer: cIssuer },
    ],
  });
  await b.f.apply({
    regions: [{ id: 'emea' }],
    legal_entities: [{ ...firm, desks: [] }],
    resource_servers: [{ identifier: bSettlementApi, name: 'Settlement API', scopes: ['order:create', 'settlement:submit'], introspection_clients: ['b-settlement-rs'] }],
    clients: [
      // A's backend as B registered it: a client of B, in B's namespace.
      { client_id: 'domain-a-desk', kind: 'service', grant_types: [jwtBearerGrant], scope: 'order:create settlement:submit' },
      { client_id: 'b-settlement-rs', kind: 'service', grant_types: ['client_credentials'] },
    ],
    partners: [aProfileAtB(aKeys)],
  });

  const person = await a.f.signIn('alice', { acr: acr.multiFactor, amr: ['pwd', 'otp', 'mfa'] });
  await a.f.ctx.storage.db.updateTable('users').set({ desks: JSON.stringify(['a-rates']) }).where('id', '=', person.userId).execute();
  const challenge = pkce();
  const { code } = await a.f.authorizeAndApprove({ person, pkce: challenge, query: { scope: 'order:create', resource: aOrdersApi } });
  // She consents to her authority going to domain B (the same consent grant of web-app's).
  await a.f.authorizeAndApprove({ person, query: { scope: 'order:create', resource: bIssuer } });
  const redeemed = await a.f.redeem('web-app', code, challenge.verifier);
  assert.equal(redeemed.statusCode, 200, redeemed.body);
  return { a, b, person, orderToken: redeemed.json().access_token as string };
}

/** RFC 8693 at `domain`: `subjectToken` exchanged by `clientId` for a JWT authorization grant aimed at `target` (B by default). */
export function grantAt(domain: Domain, clientId: string, subjectToken: string, form: Record<string, string> = {}) {
  return domain.f.post('/token', {
    auth: domain.f.basic(clientId),
    form: { grant_type: exchangeGrant, subject_token: subjectToken, subject_token_type: accessTokenType, requested_token_type: jwtType, audience: bIssuer, ...form },
  });
}

/** RFC 7523 §2.1 at `domain`: the grant presented by `clientId` for `resource`. */
export function jwtBearerAt(domain: Domain, clientId: string, assertion: string, resource: string, form: Record<string, string> = {}) {
  return domain.f.post('/token', { auth: domain.f.basic(clientId), form: { grant_type: jwtBearerGrant, assertion, resource, ...form } });
}

/**
 * A JWT authorization grant signed with A's own key, as A's grants are (`typ` JWT, `aud` B), with
 * `claims` over sensible ones: what a partner could send, whatever A's code would issue.
 */
export async function grantSignedBy(domain: Domain, claims: Record<string, unknown> = {}, audience = bIssuer): Promise<string> {
  const now = epochSeconds(domain.f.clock);
  return domain.f.ctx.keys.signJwt({ typ: 'JWT' }, { iss: domain.issuer, sub: 'a-desk-backend', aud: audience, iat: now, exp: now + 60, jti: randomUUID(), scope: 'order:create', ...claims });
}

/** The issuer of P, a partner of A's that is no Clearance: its key is the test's. */
export const pIssuer = 'https://as.p-bank.test';

/**
 * P as A's partner, and `a-gateway`, the client of A's that presents P's grants (RFC 7523 §2.1)
 * for A's order API: a token of A's that a chain started at P (`origin_iss`). `a-desk-backend` may
 * exchange P's tokens too. `profile` overrides P's profile; `profileOf` is it again, for a re-apply.
 */
export async function partnerOfA(a: Domain, profile: Record<string, unknown> = {}) {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'p-1', alg: 'ES256', use: 'sig' };
  const profileOf = (overrides: Record<string, unknown> = {}) => ({
    id: 'p-bank',
    issuer: pIssuer,
    jwks: { keys: [jwk] },
    algorithms: ['ES256'],
    max_assertion_lifetime: 300,
    allowed_audiences: [aOrdersApi],
    allowed_scopes: ['order:create'],
    clients: ['a-gateway', 'a-desk-backend'],
    ...profile,
    ...overrides,
  });
  await a.f.apply({ clients: [{ client_id: 'a-gateway', kind: 'service', grant_types: [jwtBearerGrant], scope: 'order:create settlement:submit' }], partners: [profileOf()] });
  const sign = (claims: Record<string, unknown>, typ?: string) => {
    const now = epochSeconds(a.f.clock);
    return new SignJWT({ sub: 'p-desk-4', scope: 'order:create', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'p-1', ...(typ ? { typ } : {}) })
      .setIssuer(pIssuer)
      .setAudience(aIssuer)
      .setIssuedAt(now)
      .setExpirationTime(now + 120)
      .setJti(typeof claims.jti === 'string' ? claims.jti : randomUUID())
      .sign(privateKey);
  };
  return {
    profileOf,
    /** P's JWT authorization grant for A. */
    assertion: (claims: Record<string, unknown> = {}) => sign(claims),
    /** P's access token for A, as a subject token of a token exchange. */
    accessToken: (claims: Record<string, unknown> = {}) => sign(claims, 'at+jwt'),
  };
}

/** A's token for its order API from P's grant, presented by a-gateway (a chain that started at P). */
export async function tokenFromP(a: Domain, p: Awaited<ReturnType<typeof partnerOfA>>, claims: Record<string, unknown> = {}): Promise<string> {
  const issued = await jwtBearerAt(a, 'a-gateway', await p.assertion(claims), aOrdersApi);
  assert.equal(issued.statusCode, 200, issued.body);
  return issued.json().access_token as string;
}

/** `userId` consents to `clientId` sending their authority to `resource` with `scopes` (as at /authorize). */
export async function consentTo(domain: Domain, userId: string, clientId: string, resource: string, scopes: string[]): Promise<void> {
  await domain.f.ctx.storage.db.transaction().execute((trx) => approveRequestIn(trx, domain.f.clock.now(), userId, { clientId, resource, scopes, oidcScopes: [], authorizationDetails: [] }));
}
