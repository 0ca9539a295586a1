import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { cibaKind } from '../../src/approvals/kinds/ciba.ts';
import { decideApprovalRequest, listPendingApprovalRequests, type ApprovalRequest, type ApproverProof } from '../../src/approvals/requests.ts';
import type { Context } from '../../src/context.ts';
import { acr } from '../../src/identity/acr.ts';
import { registerPasskey, registrationOptions } from '../../src/identity/passkeys/registration.ts';
import { findUser, findUserByUsername } from '../../src/identity/users.ts';
import { approveRequestWithPasskey, startRequestApproval } from '../../src/approvals/request-ceremony.ts';
import { SoftwareAuthenticator } from '../helpers/authenticator.ts';
import { ordersApi, protocolFixture, type ProtocolFixture } from '../endpoints/fixture.ts';
import type { TestDialect } from '../helpers/storage.ts';

export const cibaGrant = 'urn:openid:params:grant-type:ciba';

/** A person's phishing-resistant proof as the approvals app would give it (the approver UI is another component's). */
export function tokenProof(clientId = 'approvals-app'): ApproverProof {
  return { method: 'token', acr: acr.phishingResistant, amr: ['hwk', 'user'], authTime: 0, jti: randomUUID(), clientId };
}

/** CIBA clients for a fixture: poll and ping with secrets, one that signs its requests, one under FAPI 2.0, a second poll client. */
export async function cibaClients(options: { notificationEndpoint?: string; jwk: Record<string, unknown> }): Promise<Record<string, unknown>[]> {
  const secret = (client_id: string, extra: Record<string, unknown> = {}) => ({
    client_id,
    client_name: `${client_id} app`,
    kind: 'app',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: [cibaGrant, 'refresh_token'],
    backchannel_token_delivery_mode: 'poll',
    scope: 'openid order:create',
    ...extra,
  });
  const keyed = (client_id: string, extra: Record<string, unknown>) => ({
    client_id,
    kind: 'app',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...options.jwk, kid: `${client_id}-1`, alg: 'ES256' }] },
    grant_types: [cibaGrant],
    backchannel_token_delivery_mode: 'poll',
    scope: 'openid order:create',
    ...extra,
  });
  return [
    secret('desk-ciba'),
    secret('other-ciba', { grant_types: [cibaGrant] }),
    ...(options.notificationEndpoint ? [secret('desk-ping', { backchannel_token_delivery_mode: 'ping', backchannel_client_notification_endpoint: options.notificationEndpoint })] : []),
    keyed('signing-ciba', { backchannel_authentication_request_signing_alg: 'ES256' }),
    keyed('fapi-ciba', { profile: 'fapi2' }),
  ];
}

export const people = [
  { username: 'trader', name: 'Tina Trader', desks: [], roles: ['trader'] },
  { username: 'idle', name: 'Ivan Idle', status: 'disabled' },
];

export interface CibaFixture extends ProtocolFixture {
  /** The key the keyed clients (signing-ciba, fapi-ciba) sign with. */
  clientKey: CryptoKey;
  traderId: string;
  /** POST /bc-authorize as a secret client. */
  bcAuthorize(form: Record<string, string | string[]>, clientId?: string): ReturnType<ProtocolFixture['post']>;
  /** POST /token with the CIBA grant as a secret client. */
  poll(authReqId: string, clientId?: string): ReturnType<ProtocolFixture['post']>;
  /** A signed authentication request of a keyed client. */
  signedRequest(clientId: string, claims: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** A client assertion of a keyed client. */
  assertionOf(clientId: string): Promise<string>;
  /** The pending approval request of the subject, the newest. */
  pending(): Promise<ApprovalRequest>;
}

/** A protocol fixture (fastify inject, manual clock) with CIBA clients and a person. */
export async function cibaFixture(t: Pick<TestContext, 'after'>, options: { dialect?: TestDialect; notificationEndpoint?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CibaFixture> {
  const f = await protocolFixture(t, { ...(options.dialect ? { dialect: options.dialect } : {}), ...(options.env ? { env: options.env } : {}) });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = (await exportJWK(publicKey)) as Record<string, unknown>;
  await f.apply({ users: people, clients: await cibaClients({ jwk, ...(options.notificationEndpoint ? { notificationEndpoint: options.notificationEndpoint } : {}) }) });
  const trader = await findUserByUsername(f.ctx, 'trader');
  const now = () => Math.floor(f.clock.now() / 1000);
  const fixture: CibaFixture = Object.assign(f, {
    clientKey: privateKey,
    traderId: trader!.id,
    bcAuthorize: (form: Record<string, string | string[]>, clientId = 'desk-ciba') => f.post('/bc-authorize', { auth: f.basic(clientId), form }),
    poll: (authReqId: string, clientId = 'desk-ciba') => f.token({ auth: f.basic(clientId), form: { grant_type: cibaGrant, auth_req_id: authReqId } }),
    signedRequest: (clientId: string, claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
      new SignJWT({ iss: clientId, aud: f.issuer, iat: now(), nbf: now(), exp: now() + 300, jti: randomUUID(), ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: `${clientId}-1`, ...header })
        .sign(privateKey),
    assertionOf: (clientId: string) =>
      new SignJWT({ iss: clientId, sub: clientId, aud: f.issuer, iat: now(), exp: now() + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', kid: `${clientId}-1` }).sign(privateKey),
    async pending() {
      const list = await listPendingApprovalRequests(f.ctx, { subject: trader!.id });
      assert.ok(list.length > 0, 'a pending approval request');
      return list.at(-1)!;
    },
  });
  return fixture;
}

const devices = new WeakMap<Context, Map<string, SoftwareAuthenticator>>();

/** The subject's own device: a passkey registered for them once per server (a software authenticator). */
export async function subjectDevice(ctx: Context, userId: string): Promise<SoftwareAuthenticator> {
  const known = devices.get(ctx) ?? new Map<string, SoftwareAuthenticator>();
  devices.set(ctx, known);
  const existing = known.get(userId);
  if (existing) return existing;
  const person = (await findUser(ctx, userId))!;
  const authenticator = new SoftwareAuthenticator({ origin: ctx.config.issuer });
  const options = await registrationOptions(ctx, person, `device-of-${userId}`);
  const registered = await registerPasskey(ctx, { person, name: 'Phone', credential: JSON.stringify(authenticator.register(options)), binding: `device-of-${userId}`, sourceAddress: '192.0.2.10' });
  assert.ok(registered.ok, registered.ok ? '' : registered.reason);
  known.set(userId, authenticator);
  return authenticator;
}

/**
 * The subject approves on their own device — a passkey over the request's digest, as on the
 * approvals page (the only way a CIBA subject approves) — or denies (a token proof may deny).
 */
export async function subjectDecides(ctx: Context, request: ApprovalRequest, decision: 'approve' | 'deny' = 'approve') {
  const person = (await findUser(ctx, request.subject))!;
  const approver = { userId: request.subject, username: person.username, roles: person.roles, desks: person.desks };
  if (decision === 'deny') {
    const outcome = await decideApprovalRequest(ctx, cibaKind, { requestId: request.id, approver, proof: tokenProof(), decision, reason: 'not me' });
    assert.ok(outcome.ok, JSON.stringify(outcome));
    return outcome;
  }
  const authenticator = await subjectDevice(ctx, request.subject);
  const options = await startRequestApproval(ctx, request, request.subject);
  assert.ok(options, 'the subject has a passkey');
  const outcome = await approveRequestWithPasskey(ctx, cibaKind, request, approver, JSON.stringify(authenticator.assert(options as never)));
  assert.ok(outcome.ok, JSON.stringify(outcome));
  return outcome;
}

export { ordersApi };
