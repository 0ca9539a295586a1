import { randomBytes, timingSafeEqual } from 'node:crypto';
import { recorded } from '../../audit/refusals.ts';
import { emergencyClientProblems, findBreakGlassAccount } from '../../approvals/break-glass/accounts.ts';
import type { Context } from '../../context.ts';
import { OAuthError } from '../../oauth-error.ts';
import { Validator, formatProblem } from '../../validation.ts';
import { readClientMetadata, type ClientMetadata } from '../metadata.ts';
import { anchorProblem } from '../trust-anchors/plan.ts';
import { clientCaBundle } from '../trust-anchors/resolve.ts';
import { checkSectorIdentifier } from '../sector-identifier.ts';
import { InitialAccessTokens, newRegistrationToken, tokenDigest, type RegistrationAllowance } from './initial-access-tokens.ts';

/** The registration response (RFC 7591 §3.2.1, RFC 7592 §3). */
export type RegistrationResponse = ClientMetadata & {
  client_id_issued_at?: number;
  client_secret?: string;
  client_secret_expires_at?: number;
  registration_access_token?: string;
  registration_client_uri: string;
};

/**
 * RFC 7591 §3: registers a client with an initial access token; the server assigns the client_id.
 * The rules, in order:
 * 1. the initial access token is usable (known, unexpired, uses left) — else 401 invalid_token;
 * 2. the body is a JSON object of metadata without a client_id (the server assigns it);
 * 3. the metadata validates as in `apply` (redirect URI problems are invalid_redirect_uri);
 * 4. authority comes from the token, never from the registrant (RFC 7591 §5, `checkAuthority`):
 *    the client belongs to the token's firm (`owner_lei` sent and different → refused; a token
 *    without a firm registers clients without one); its kind, grant types and scopes lie within
 *    the token's allowance — else invalid_client_metadata, audited as client.registration_refused;
 *    nothing is spent on a refusal;
 * 5. the token is used once in the transaction that stores the client (parallel registrations
 *    never exceed its uses); client.registered names the firm and who issued the token.
 */
export async function registerClient(ctx: Context, initialAccessToken: string, body: unknown): Promise<RegistrationResponse> {
  const tokens = new InitialAccessTokens(ctx.storage.db);
  const allowance = await tokens.peek(initialAccessToken, ctx.clock.now());
  if (!allowance) throw invalidToken('the initial access token is invalid, expired or used up');
  const input = asObject(body);
  if ('client_id' in input) throw new OAuthError('invalid_client_metadata', 'client_id is assigned by the server');
  const clientId = `dyn-${randomBytes(12).toString('base64url')}`;
  // Validated before the token is used, so a mistake in the metadata does not spend a use.
  // The firm comes from the token (checkAuthority); named here too, so the institutional profile's
  // owner_lei rule sees the client's firm whether or not the registrant repeated it.
  const defaults = { scope: allowance.scopes.join(' '), ...defaultKind(allowance), ...(allowance.ownerLei ? { owner_lei: allowance.ownerLei } : {}) };
  const parsed = await validate(ctx, { ...defaults, ...input, client_id: clientId });
  const metadata = await checkAuthority(ctx, parsed, allowance, { via: 'rfc7591', source: 'the initial access token', clientId });
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
    details: {
      via: 'rfc7591',
      auth_method: metadata.token_endpoint_auth_method,
      kind: metadata.kind,
      grant_types: metadata.grant_types,
      owner_lei: metadata.owner_lei ?? null,
      // The administrator whose initial access token vouched for this registration.
      authorized_by: allowance.createdBy,
    },
  });
  return {
    ...metadata,
    client_id_issued_at: Math.floor(now / 1000),
    // RFC 7591 §3.2.1: client_secret_expires_at is REQUIRED with a secret; 0 means it never expires.
    ...(secret ? { client_secret: secret, client_secret_expires_at: await secretExpiresAt(ctx, clientId) } : {}),
    registration_access_token: registrationToken,
    registration_client_uri: registrationUri(ctx, clientId),
  };
}

/** RFC 7592 §2.1: reads a registration with its registration access token. */
export async function readRegistration(ctx: Context, clientId: string, token: string): Promise<RegistrationResponse> {
  await checkRegistrationToken(ctx, clientId, token);
  const client = await ctx.clients.get(clientId);
  if (!client) throw invalidToken('the registration access token is invalid');
  return { ...client.metadata, ...(client.secretHash ? { client_secret_expires_at: await secretExpiresAt(ctx, clientId) } : {}), registration_client_uri: registrationUri(ctx, clientId) };
}

/** RFC 7591 §3.2.1: the secret's expiry in seconds since the epoch, 0 when it never expires. */
async function secretExpiresAt(ctx: Context, clientId: string): Promise<number> {
  const record = await ctx.clients.secretRecord(clientId);
  return record?.expiresAt ? Math.floor(record.expiresAt / 1000) : 0;
}

/**
 * Members an update leaves as registered when it omits them (RFC 7592 §2.2 lets the server ignore
 * an omitted value): the authority-bearing ones, and `profile`, which a client may add but not drop.
 */
const keptWhenOmitted = ['owner_lei', 'kind', 'scope', 'grant_types', 'profile'] as const;

/**
 * RFC 7592 §2.2: replaces a registration's metadata. The rules, in order:
 * 1. the registration access token is this client's — else 401 invalid_token;
 * 2. the body is a JSON object; client_id is the registered one; a client_secret cannot be set
 *    (invalid_client_metadata);
 * 3. the metadata validates as in `apply`, the authority-bearing members it omits (`owner_lei`,
 *    `kind`, `scope`, `grant_types`, `profile`) kept as registered;
 * 4. the authority the registration has cannot grow or move (RFC 7591 §5, `checkAuthority`
 *    against the current values): `owner_lei` and `kind` stay as registered (a different value is
 *    refused); `scope` and `grant_types` may only narrow; `profile: fapi2` once set stays (kept
 *    when omitted, step 3). Only an administrator changes them (admin API, `apply`);
 * 5. a client that is an emergency account (docs/recovery.md "Break-glass") stays within its
 *    account: client_credentials only, no scope the account does not list (invalid_client_metadata);
 * 6. the registration is stored; the change is audited as client.registration_updated.
 */
export async function updateRegistration(ctx: Context, clientId: string, token: string, body: unknown): Promise<RegistrationResponse> {
  await checkRegistrationToken(ctx, clientId, token);
  const current = await ctx.clients.get(clientId);
  if (!current) throw invalidToken('the registration access token is invalid');
  const input = asObject(body);
  // RFC 7592 §2.2: the client_id MUST match; a client_secret, if sent, MUST match the current one.
  if (input.client_id !== clientId) throw new OAuthError('invalid_client_metadata', 'client_id must be the registered client_id');
  if ('client_secret' in input) throw new OAuthError('invalid_client_metadata', 'client_secret cannot be set or changed here');
  const registered = current.metadata;
  const kept = Object.fromEntries(keptWhenOmitted.filter((m) => input[m] === undefined && registered[m] !== undefined).map((m) => [m, registered[m]]));
  const parsed = await validate(ctx, { ...input, ...kept });
  const allowance: RegistrationAllowance = {
    ...(registered.owner_lei ? { ownerLei: registered.owner_lei } : {}),
    scopes: registered.scope?.split(' ') ?? [],
    grantTypes: registered.grant_types,
    kinds: [registered.kind],
  };
  const metadata = await checkAuthority(ctx, parsed, allowance, { via: 'rfc7592', source: 'the registration (only an administrator changes it)', clientId });
  // An emergency account's client never does more than its account, whoever writes it.
  const account = await findBreakGlassAccount(ctx.storage.db, clientId);
  const beyond = account ? emergencyClientProblems(metadata, account) : [];
  if (beyond.length > 0) throw new OAuthError('invalid_client_metadata', beyond.map((p) => p.message).join('; '));
  const { secret } = await ctx.storage.db.transaction().execute((trx) => ctx.clients.upsert(trx, metadata));
  ctx.clients.invalidate();
  await ctx.audit.record({
    type: 'client.registration_updated',
    actor: clientId,
    client: clientId,
    scopes: metadata.scope?.split(' ') ?? [],
    details: { via: 'rfc7592', auth_method: metadata.token_endpoint_auth_method, grant_types: metadata.grant_types },
  });
  // RFC 7592 §2.2: the response is that of a read (§2.1): with the secret's expiry, and a secret
  // made now (a change to a client_secret_* method) returned once.
  const hasSecret = secret !== undefined || (await ctx.clients.get(clientId))?.secretHash;
  return {
    ...metadata,
    ...(secret ? { client_secret: secret } : {}),
    ...(hasSecret ? { client_secret_expires_at: await secretExpiresAt(ctx, clientId) } : {}),
    registration_client_uri: registrationUri(ctx, clientId),
  };
}

/** RFC 7592 §2.3: deletes a registration; its credentials stop working at once. */
export async function deleteRegistration(ctx: Context, clientId: string, token: string): Promise<void> {
  await checkRegistrationToken(ctx, clientId, token);
  await ctx.storage.db.transaction().execute(async (trx) => {
    await ctx.clients.remove(trx, clientId);
    await trx.deleteFrom('client_registrations').where('client_id', '=', clientId).execute();
  });
  ctx.clients.invalidate();
  await ctx.audit.record({ type: 'client.registration_deleted', actor: clientId, client: clientId, details: { via: 'rfc7592' } });
}

/** Metadata validated as `apply` validates it; redirect URI problems have their own code (RFC 7591 §3.2.2). */
async function validate(ctx: Context, input: Record<string, unknown>): Promise<ClientMetadata> {
  const v = new Validator();
  const metadata = readClientMetadata(v, '', input, { serverProfile: ctx.config.profile, mode: ctx.config.mode, institutional: ctx.config.institutional });
  if (!metadata) {
    const problem = v.problems[0]!;
    const code = problem.path.startsWith('redirect_uris') ? 'invalid_redirect_uri' : 'invalid_client_metadata';
    throw new OAuthError(code, v.problems.map(formatProblem).join('; '));
  }
  // A trust anchor names a partner's anchor or a CA that exists (src/clients/trust-anchors/plan.ts).
  const anchor = anchorProblem(metadata, { partners: await ctx.partners.list(), bundle: clientCaBundle(ctx.config.tls?.clientCaFile) }, ctx.clock.now());
  if (anchor !== undefined) throw new OAuthError('invalid_client_metadata', `tls_client_auth_trust_anchor ${anchor}`);
  // OIDC Registration §5: the sector identifier document lists every redirect_uri (RFC 7591 §3.2.2).
  const sector = await checkSectorIdentifier(ctx, metadata);
  if (sector !== undefined) throw new OAuthError('invalid_client_metadata', `sector_identifier_uri ${sector}`);
  return metadata;
}

/**
 * The kind a registration gets when it names none: `service` (the default kind) when the token
 * allows it, else the token's one kind; with several and no `service` the registrant must choose.
 */
function defaultKind(allowance: RegistrationAllowance): { kind?: string } {
  if (allowance.kinds.includes('service')) return { kind: 'service' };
  return allowance.kinds.length === 1 ? { kind: allowance.kinds[0]! } : {};
}

/**
 * RFC 7591 §5: client metadata is self-asserted and confers no authority. Every member that policy,
 * mandates, data residency or the grants trust comes from the allowance (the administrator's
 * initial access token, or at an update the registration as it stands) — never from the body:
 * - `owner_lei`: the allowance's firm; a different one sent is refused, none sent gets it;
 * - `kind` (Client or Agent to policy), `grant_types` and `scope`: within the allowance;
 *   every scope offered by some resource server.
 * A refusal is invalid_client_metadata (RFC 7591 §3.2.2) and a client.registration_refused event.
 */
async function checkAuthority(
  ctx: Context,
  metadata: ClientMetadata,
  allowance: RegistrationAllowance,
  at: { via: 'rfc7591' | 'rfc7592'; source: string; clientId: string },
): Promise<ClientMetadata> {
  const refuse = async (member: string, description: string): Promise<never> => {
    await ctx.audit.record({
      type: 'client.registration_refused',
      actor: at.via === 'rfc7591' ? 'dynamic-registration' : at.clientId,
      ...(at.via === 'rfc7592' ? { client: at.clientId } : {}),
      details: { via: at.via, member, reason: description },
    });
    throw recorded(new OAuthError('invalid_client_metadata', description));
  };
  if (metadata.owner_lei !== undefined && metadata.owner_lei !== allowance.ownerLei) {
    await refuse(
      'owner_lei',
      allowance.ownerLei
        ? `owner_lei must be ${allowance.ownerLei}, the firm set by ${at.source}, or omitted (RFC 7591 §5: metadata confers no authority)`
        : `owner_lei cannot be set by the registrant: ${at.source} names no firm (RFC 7591 §5: metadata confers no authority)`,
    );
  }
  if (!allowance.kinds.includes(metadata.kind)) {
    await refuse('kind', `kind ${metadata.kind} is not allowed by ${at.source} (allowed: ${allowance.kinds.join(', ')})`);
  }
  const grantTypes = metadata.grant_types.filter((g) => !allowance.grantTypes.includes(g));
  if (grantTypes.length > 0) {
    await refuse('grant_types', `grant type ${grantTypes.join(', ')} is not allowed by ${at.source} (allowed: ${allowance.grantTypes.join(', ') || 'none'})`);
  }
  const offered = new Set((await ctx.resourceServers.list()).flatMap((r) => r.scopes));
  for (const scope of metadata.scope?.split(' ') ?? []) {
    if (!allowance.scopes.includes(scope)) await refuse('scope', `scope ${scope} is not allowed by ${at.source}`);
    if (!offered.has(scope) && scope !== 'openid' && scope !== 'offline_access') {
      throw new OAuthError('invalid_client_metadata', `scope ${scope} is not offered by any resource server`);
    }
  }
  const { owner_lei: _sent, ...rest } = metadata;
  return { ...rest, ...(allowance.ownerLei ? { owner_lei: allowance.ownerLei } : {}) };
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
