import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { Validator, formatProblem } from '../../validation.ts';
import { readClientMetadata, type ClientMetadata } from '../metadata.ts';
import { InitialAccessTokens, newRegistrationToken, tokenDigest } from './initial-access-tokens.ts';

/** The registration response (RFC 7591 §3.2.1, RFC 7592 §3). */
export type RegistrationResponse = ClientMetadata & {
  client_id_issued_at?: number;
  client_secret?: string;
  client_secret_expires_at?: number;
  registration_access_token?: string;
  registration_client_uri: string;
};

/** RFC 7591 §3: registers a client with an initial access token; the server assigns the client_id. */
export async function registerClient(ctx: Context, initialAccessToken: string, body: unknown): Promise<RegistrationResponse> {
  const tokens = new InitialAccessTokens(ctx.storage.db);
  const allowedScopes = await tokens.peek(initialAccessToken, ctx.clock.now());
  if (!allowedScopes) throw invalidToken('the initial access token is invalid, expired or used up');
  const input = asObject(body);
  if ('client_id' in input) throw new OAuthError('invalid_client_metadata', 'client_id is assigned by the server');
  const clientId = `dyn-${randomBytes(12).toString('base64url')}`;
  // Validated before the token is used, so a mistake in the metadata does not spend a use.
  const metadata = await validate({ scope: allowedScopes.join(' '), ...input, client_id: clientId }, allowedScopes, ctx);
  const registrationToken = newRegistrationToken();
  const now = ctx.clock.now();
  const secret = await ctx.storage.db.transaction().execute(async (trx) => {
    if (!(await tokens.consume(trx, initialAccessToken, now))) return null;
    const { secret } = await ctx.clients.upsert(trx, metadata);
    await trx
      .insertInto('client_registrations')
      .values({ client_id: clientId, token_hash: tokenDigest(registrationToken), created_at: now })
      .execute();
    return secret ?? '';
  });
  if (secret === null) throw invalidToken('the initial access token is invalid, expired or used up');
  ctx.clients.invalidate();
  await ctx.audit.record({
    type: 'client.registered',
    actor: 'dynamic-registration',
    client: clientId,
    scopes: metadata.scope?.split(' ') ?? [],
    details: { via: 'rfc7591', auth_method: metadata.token_endpoint_auth_method },
  });
  return {
    ...metadata,
    client_id_issued_at: Math.floor(now / 1000),
    ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
    registration_access_token: registrationToken,
    registration_client_uri: registrationUri(ctx, clientId),
  };
}

/** RFC 7592 §2.1: reads a registration with its registration access token. */
export async function readRegistration(ctx: Context, clientId: string, token: string): Promise<RegistrationResponse> {
  await checkRegistrationToken(ctx, clientId, token);
  const client = await ctx.clients.get(clientId);
  if (!client) throw invalidToken('the registration access token is invalid');
  return { ...client.metadata, registration_client_uri: registrationUri(ctx, clientId) };
}

/** RFC 7592 §2.2: replaces a registration's metadata; scopes stay within what it was first allowed. */
export async function updateRegistration(ctx: Context, clientId: string, token: string, body: unknown): Promise<RegistrationResponse> {
  await checkRegistrationToken(ctx, clientId, token);
  const current = await ctx.clients.get(clientId);
  if (!current) throw invalidToken('the registration access token is invalid');
  const input = asObject(body);
  // RFC 7592 §2.2: the client_id MUST match; a client_secret, if sent, MUST match the current one.
  if (input.client_id !== clientId) throw new OAuthError('invalid_client_metadata', 'client_id must be the registered client_id');
  if ('client_secret' in input) throw new OAuthError('invalid_client_metadata', 'client_secret cannot be set or changed here');
  const allowed = current.metadata.scope?.split(' ') ?? [];
  const metadata = await validate(input, allowed, ctx);
  await ctx.storage.db.transaction().execute((trx) => ctx.clients.upsert(trx, metadata));
  ctx.clients.invalidate();
  return { ...metadata, registration_client_uri: registrationUri(ctx, clientId) };
}

/** RFC 7592 §2.3: deletes a registration; its credentials stop working at once. */
export async function deleteRegistration(ctx: Context, clientId: string, token: string): Promise<void> {
  await checkRegistrationToken(ctx, clientId, token);
  await ctx.storage.db.transaction().execute(async (trx) => {
    await ctx.clients.remove(trx, clientId);
    await trx.deleteFrom('client_registrations').where('client_id', '=', clientId).execute();
  });
  ctx.clients.invalidate();
}

async function validate(input: Record<string, unknown>, allowedScopes: string[], ctx: Context): Promise<ClientMetadata> {
  const v = new Validator();
  const metadata = readClientMetadata(v, '', input, { serverProfile: ctx.config.profile });
  if (!metadata) {
    const problem = v.problems[0]!;
    // RFC 7591 §3.2.2: redirect URI problems have their own code.
    const code = problem.path.startsWith('redirect_uris') ? 'invalid_redirect_uri' : 'invalid_client_metadata';
    throw new OAuthError(code, v.problems.map(formatProblem).join('; '));
  }
  const offered = new Set((await ctx.resourceServers.list()).flatMap((r) => r.scopes));
  for (const scope of metadata.scope?.split(' ') ?? []) {
    if (!allowedScopes.includes(scope)) throw new OAuthError('invalid_client_metadata', `scope ${scope} is not allowed for this registration`);
    if (!offered.has(scope) && scope !== 'openid' && scope !== 'offline_access') {
      throw new OAuthError('invalid_client_metadata', `scope ${scope} is not offered by any resource server`);
    }
  }
  return metadata;
}

async function checkRegistrationToken(ctx: Context, clientId: string, token: string): Promise<void> {
  const row = await ctx.storage.db
    .selectFrom('client_registrations')
    .select('token_hash')
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  const presented = Buffer.from(tokenDigest(token), 'hex');
  const stored = Buffer.from(row?.token_hash ?? '00'.repeat(32), 'hex');
  // RFC 7592 §2: an unknown client and a wrong token look the same (401), and compare in constant time.
  if (!row || !timingSafeEqual(presented, stored)) throw invalidToken('the registration access token is invalid');
}

function registrationUri(ctx: Context, clientId: string): string {
  return `${ctx.config.issuer}/register/${encodeURIComponent(clientId)}`;
}

function asObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new OAuthError('invalid_client_metadata', 'the body must be a JSON object of client metadata');
  }
  return body as Record<string, unknown>;
}

function invalidToken(description: string): OAuthError {
  return new OAuthError('invalid_token', description, {
    headers: { 'www-authenticate': `Bearer realm="clearance", error="invalid_token"` },
  });
}
