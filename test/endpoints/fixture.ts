/**
 * Shared setup for the protocol tests (DESIGN §8 layer 3): a full Context in temp storage with a
 * ManualClock, the fastify app built on it (driven with `inject`, no port), and a configuration
 * of resource servers and clients applied the way `clearance apply` does it.
 *
 *   const f = await protocolFixture(t);
 *   const response = await f.token({ auth: f.basic('broker-1'), form: { grant_type: 'client_credentials', resource: ordersApi } });
 *   assertOAuthError(response, 400, 'invalid_target');
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { randomUUID } from 'node:crypto';
import { executeApply, planApply } from '../../src/apply/index.ts';
import type { AuditEventType, StoredAuditEvent } from '../../src/audit/events.ts';
import { decryptEventsUnaudited } from '../../src/audit/subject-keys.ts';
import { resolveMasterKey } from '../../src/keys/master-key.ts';
import type { ManualClock } from '../../src/clock.ts';
import { InitialAccessTokens } from '../../src/clients/registration/initial-access-tokens.ts';
import type { Context } from '../../src/context.ts';
import { buildApp } from '../../src/http/app.ts';
import { formatProblem } from '../../src/validation.ts';
import { testContext, type TestDialect } from '../helpers/storage.ts';

/** Order entry: short-lived tokens; its gateway may introspect other clients' tokens. */
export const ordersApi = 'https://orders.example.com/api';
/** Clearing: longer-lived tokens; offers market:read like the reporting API. */
export const clearingApi = 'https://clearing.example.com';
/** Reporting: offers market:read too, so a bare market:read request is ambiguous. */
export const reportingApi = 'https://reporting.example.com';
/** Execution venue: only sender-constrained tokens. */
export const venueApi = 'https://venue.example.com/fix';

export const ordersTtl = 120;
export const clearingTtl = 600;

export const resourceServers = [
  {
    identifier: ordersApi,
    name: 'Order API',
    scopes: ['order:create', 'order:cancel', 'order:amend'],
    access_token_ttl: ordersTtl,
    introspection_clients: ['orders-gateway'],
  },
  { identifier: clearingApi, scopes: ['settlement:submit', 'position:view', 'market:read'], access_token_ttl: clearingTtl },
  { identifier: reportingApi, scopes: ['report:view', 'market:read'] },
  { identifier: venueApi, scopes: ['trade:execute'], require_sender_constraint: true },
];

/** A client_credentials service client with a generated secret. */
export const secretClient = (client_id: string, scope: string, extra: Record<string, unknown> = {}) => ({
  client_id,
  kind: 'service',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope,
  ...extra,
});

/** Clients of the fixture; the secret ones get generated secrets, the JWT one a jose ES256 key. */
export function clients(jwk: Record<string, unknown>): Record<string, unknown>[] {
  return [
    secretClient('broker-1', 'order:create order:cancel settlement:submit market:read trade:execute'),
    secretClient('broker-2', 'order:create', { token_endpoint_auth_method: 'client_secret_post' }),
    secretClient('broker-3', 'order:create'),
    secretClient('orders-gateway', 'position:view'),
    secretClient('admin-ops', 'admin:read admin:write'),
    secretClient('admin-viewer', 'admin:read'),
    {
      client_id: 'oms-service',
      kind: 'service',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [{ ...jwk, kid: 'oms-1', alg: 'ES256' }] },
      grant_types: ['client_credentials'],
      scope: 'order:create order:amend',
    },
    {
      client_id: 'trading-ui',
      kind: 'app',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code'],
      redirect_uris: ['https://ui.example.com/callback'],
      scope: 'order:create',
    },
  ];
}

export interface ProtocolFixture {
  ctx: Context;
  clock: ManualClock;
  app: FastifyInstance;
  issuer: string;
  /** Generated secrets by client_id. */
  secrets: Record<string, string>;
  /** The private key of `oms-service` (private_key_jwt, kid oms-1). */
  omsKey: CryptoKey;
  /** Plans and executes an apply document; fails the test on problems; collects new secrets. */
  apply(document: Record<string, unknown>): Promise<void>;
  /** `Authorization: Basic` for a fixture client (its generated secret unless `secret` is given). */
  basic(clientId: string, secret?: string): string;
  /** A fresh private_key_jwt assertion for `oms-service`. */
  assertion(claims?: Record<string, unknown>): Promise<string>;
  /** POST a form to an endpoint path (`/token`, `/introspect`, `/revoke`). */
  post(path: string, options: { auth?: string; form?: Record<string, string | string[]> | string; headers?: Record<string, string>; remoteAddress?: string }): Promise<LightMyRequestResponse>;
  token(options: { auth?: string; form?: Record<string, string | string[]> | string; headers?: Record<string, string>; remoteAddress?: string }): Promise<LightMyRequestResponse>;
  /** A client_credentials access token for a fixture secret client; fails the test if refused. */
  accessToken(clientId: string, form?: Record<string, string>): Promise<string>;
  /** Stored audit events of a type, oldest first, as the recorder wrote them. */
  auditEvents(type?: AuditEventType): Promise<StoredAuditEvent[]>;
  /** Every stored audit row as text (the canonical event JSON), to search for leaked values. */
  auditText(): Promise<string>;
  /** An initial access token for dynamic registration, with the allowance an administrator gives it. */
  initialAccessToken(options?: { scope?: string; uses?: number; ttlSeconds?: number; ownerLei?: string; grantTypes?: string[]; kinds?: ('service' | 'agent' | 'app')[] }): Promise<string>;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
}

/** Encodes a form body; arrays repeat the parameter. */
export function formBody(form: Record<string, string | string[]>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) {
    for (const v of Array.isArray(value) ? value : [value]) params.append(name, v);
  }
  return params.toString();
}

/** RFC 6749 §2.3.1: both parts form-encoded, then base64. */
export function basicAuthorization(clientId: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
}

export async function protocolFixture(
  t: Pick<TestContext, 'after'>,
  options: { env?: NodeJS.ProcessEnv; dialect?: TestDialect; /** testContext's: `off` for a test of sign-ins or admin changes that is not about risk. */ risk?: 'on' | 'off' } = {},
): Promise<ProtocolFixture> {
  const { ctx, clock } = await testContext({ t, ...(options.env ? { env: options.env } : {}), ...(options.dialect ? { dialect: options.dialect } : {}), ...(options.risk ? { risk: options.risk } : {}) });
  const app = buildApp(ctx);
  t.after(() => app.close());
  await app.ready();
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const secrets: Record<string, string> = {};
  const issuer = ctx.config.issuer;

  const fixture: ProtocolFixture = {
    ctx,
    clock,
    app,
    issuer,
    secrets,
    omsKey: privateKey,
    async apply(document) {
      const { plan, problems } = await planApply(ctx, document);
      if (!plan) assert.fail(problems.map(formatProblem).join('\n'));
      const result = await executeApply(ctx, plan, { actor: 'test', via: 'cli' });
      Object.assign(secrets, result.secrets);
    },
    basic(clientId, secret) {
      return basicAuthorization(clientId, secret ?? secrets[clientId] ?? assert.fail(`no secret for ${clientId}`));
    },
    async assertion(claims = {}) {
      const now = Math.floor(clock.now() / 1000);
      const payload = { iss: 'oms-service', sub: 'oms-service', aud: issuer, iat: now, exp: now + 60, jti: randomUUID(), ...claims };
      return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'oms-1' }).sign(privateKey);
    },
    post(path, { auth, form = {}, headers = {}, remoteAddress }) {
      return app.inject({
        method: 'POST',
        url: path,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(auth ? { authorization: auth } : {}),
          ...headers,
        },
        payload: typeof form === 'string' ? form : formBody(form),
        ...(remoteAddress ? { remoteAddress } : {}),
      });
    },
    token(options) {
      return fixture.post('/token', options);
    },
    async accessToken(clientId, form = {}) {
      const response = await fixture.token({ auth: fixture.basic(clientId), form: { grant_type: 'client_credentials', ...form } });
      assert.equal(response.statusCode, 200, response.body);
      return (response.json() as { access_token: string }).access_token;
    },
    async auditEvents(type) {
      let query = ctx.storage.db.selectFrom('audit_events').select(['event', 'seq']).orderBy('seq');
      if (type) query = query.where('type', '=', type);
      const rows = await query.execute();
      // Personal fields are stored encrypted (docs/privacy.md): read them back through the decrypting reader.
      return decryptEventsUnaudited(ctx.storage.db, resolveMasterKey(ctx.config).key, rows.map((r) => JSON.parse(r.event) as StoredAuditEvent));
    },
    async auditText() {
      const rows = await ctx.storage.db.selectFrom('audit_events').selectAll().execute();
      return rows.map((r) => `${r.event}\n${r.client ?? ''}\n${r.subject ?? ''}\n${r.txn ?? ''}`).join('\n');
    },
    initialAccessToken({ scope = 'order:create order:cancel', uses = 1, ttlSeconds = 3600, ...allowance } = {}) {
      return new InitialAccessTokens(ctx.storage.db).issue({ allowedScope: scope, uses, ttlSeconds, createdBy: 'test', now: clock.now(), ...allowance });
    },
    inject(injectOptions) {
      return app.inject(injectOptions);
    },
  };

  await fixture.apply({ resource_servers: resourceServers, clients: clients((await exportJWK(publicKey)) as Record<string, unknown>) });
  return fixture;
}

/**
 * An error response as RFC 6749 §5.2 registers it: the status, the `error` code, JSON, and never
 * cached (DESIGN §7). Returns the body.
 */
export function assertOAuthError(response: LightMyRequestResponse, status: number, error: string, what = ''): Record<string, unknown> {
  const label = `${what} ${response.statusCode}: ${response.body}`;
  assert.ok(response.statusCode < 500, `never a 5xx: ${label}`);
  assert.equal(response.statusCode, status, label);
  assertErrorShape(response, label);
  const body = response.json() as Record<string, unknown>;
  assert.equal(body.error, error, label);
  return body;
}

/** Any 4xx: JSON, no-store, a string `error` (the property test uses this for whatever it hits). */
export function assertErrorShape(response: LightMyRequestResponse, label = ''): void {
  assert.match(String(response.headers['content-type']), /^application\/json/, `JSON error: ${label}`);
  assert.equal(response.headers['cache-control'], 'no-store', `no-store error: ${label}`);
  const body = response.json() as Record<string, unknown>;
  assert.equal(typeof body.error, 'string', `an error code: ${label}`);
  // RFC 6749 §5.2: error and error_description are limited to these characters.
  assert.match(body.error as string, /^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/, `error charset: ${label}`);
  if (body.error_description !== undefined) {
    assert.match(String(body.error_description), /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/, `error_description charset: ${label}`);
  }
}

/** Decodes a JWT's header and payload without verifying (the tests verify separately). */
export function decodeJwt(jwt: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>,
  };
}
