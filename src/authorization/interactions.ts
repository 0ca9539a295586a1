import { createHash, randomBytes } from 'node:crypto';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { approveRequest, findActiveGrant, type Grant } from './consent.ts';
import type { Authentication, Interaction, NextStep } from './contract.ts';
import type { AuthorizationRequest } from './request.ts';
import { needs, toNextStep, type Need } from './steps.ts';

/**
 * Interactions: authorization requests waiting for a person (src/authorization/contract.ts). The
 * protocol side stores them; the people side (GET /interaction/{id}) asks `nextStep`, records a
 * login with `recordAuthentication` and the person's decision with `decideConsent`, then sends the
 * browser to /authorize/resume/{id}.
 */

/** How long a person has to log in and decide, in seconds. */
export const interactionTtlSeconds = 600;

/** An interaction with what only the protocol side needs. */
export interface StoredInteraction extends Interaction {
  request: AuthorizationRequest;
  browserHash: string;
  consent: ConsentDecision | null;
  grantId: string | null;
  completedAt: number | null;
}

/** The person's decision on the consent page, and who made it. */
export interface ConsentDecision {
  decision: 'approved' | 'denied';
  userId: string;
}

/** Digest of the browser-binding cookie value, as stored. */
export function browserDigest(browserId: string): string {
  return createHash('sha256').update(browserId, 'utf8').digest('base64url');
}

/** Creates an interaction for a validated request, bound to the browser that sent it. */
export async function createInteraction(ctx: Pick<Context, 'storage' | 'clock'>, request: AuthorizationRequest, browserId: string): Promise<StoredInteraction> {
  // 128 random bits: the id is in URLs, so it must not be guessable (FAPI 2.0 SP §5.4.1-4).
  const id = randomBytes(16).toString('base64url');
  const now = ctx.clock.now();
  const expiresAtMs = now + interactionTtlSeconds * 1000;
  const browserHash = browserDigest(browserId);
  await ctx.storage.db
    .insertInto('interactions')
    .values({
      id,
      client_id: request.clientId,
      request: JSON.stringify(request),
      browser_hash: browserHash,
      authentication: null,
      consent: null,
      grant_id: null,
      created_at: now,
      expires_at: expiresAtMs,
      completed_at: null,
    })
    .execute();
  return { id, clientId: request.clientId, expiresAt: Math.floor(expiresAtMs / 1000), request, browserHash, consent: null, grantId: null, completedAt: null };
}

/** The stored interaction, completed or not, unless unknown or expired. */
export async function loadStoredInteraction(ctx: Pick<Context, 'storage' | 'clock'>, id: string): Promise<StoredInteraction | undefined> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
  const row = await ctx.storage.db.selectFrom('interactions').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row || Number(row.expires_at) <= ctx.clock.now()) return undefined;
  return {
    id: row.id,
    clientId: row.client_id,
    expiresAt: Math.floor(Number(row.expires_at) / 1000),
    ...(row.authentication ? { authentication: JSON.parse(row.authentication) as Authentication } : {}),
    request: JSON.parse(row.request) as AuthorizationRequest,
    browserHash: row.browser_hash,
    consent: row.consent ? (JSON.parse(row.consent) as ConsentDecision) : null,
    grantId: row.grant_id,
    completedAt: row.completed_at === null ? null : Number(row.completed_at),
  };
}

/** Contract: the pending interaction; undefined when unknown, expired or already completed. */
export async function loadInteraction(ctx: Context, id: string): Promise<Interaction | undefined> {
  const stored = await loadStoredInteraction(ctx, id);
  if (!stored || stored.completedAt !== null) return undefined;
  return { id: stored.id, clientId: stored.clientId, expiresAt: stored.expiresAt, ...(stored.authentication ? { authentication: stored.authentication } : {}) };
}

/**
 * What the interaction needs now, for the person of `session` (or the one who logged in during the
 * interaction). Contract: login, consent (with the plain-language ConsentRequest), or done.
 */
export async function nextStep(ctx: Context, id: string, session: Authentication | undefined): Promise<NextStep> {
  const stored = await pending(ctx, id);
  const need = await evaluateInteraction(ctx, stored, session);
  return toNextStep(ctx, need.need, stored.request);
}

/** Contract: records a successful login during the interaction (the people side calls it after verifying the person). */
export async function recordAuthentication(ctx: Context, id: string, auth: Authentication): Promise<void> {
  await pending(ctx, id);
  const updated = await ctx.storage.db
    .updateTable('interactions')
    .set({ authentication: JSON.stringify(auth) })
    .where('id', '=', id)
    .where('completed_at', 'is', null)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== 1) throw unknownInteraction();
}

/**
 * Contract: records the person's decision on the consent page. Approval records or extends their
 * grant to the client (`consent.granted`); denial makes the resume redirect `access_denied`
 * (RFC 6749 §4.1.2.1). `auth` must be the person the interaction is for.
 */
export async function decideConsent(ctx: Context, id: string, auth: Authentication, approved: boolean): Promise<void> {
  const stored = await pending(ctx, id);
  if (stored.authentication && stored.authentication.userId !== auth.userId) {
    throw new OAuthError('invalid_request', 'the person deciding is not the person who logged in for this request');
  }
  const request = stored.request;
  let grant: Grant | undefined;
  if (approved) grant = await approveRequest(ctx, auth.userId, request);
  const decision: ConsentDecision = { decision: approved ? 'approved' : 'denied', userId: auth.userId };
  const updated = await ctx.storage.db
    .updateTable('interactions')
    .set({ consent: JSON.stringify(decision), grant_id: grant?.id ?? null })
    .where('id', '=', id)
    .where('completed_at', 'is', null)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== 1) throw unknownInteraction();
  await ctx.audit.record({
    type: approved ? 'consent.granted' : 'consent.denied',
    actor: auth.userId,
    subject: auth.userId,
    client: request.clientId,
    ...(request.resource ? { audience: request.resource } : {}),
    scopes: [...request.oidcScopes, ...request.scopes],
    decision: { allow: approved, reasons: [approved ? 'approved by the person' : 'denied by the person'] },
    details: {
      interaction_id: id,
      ...(grant ? { grant_id: grant.id } : {}),
      authorization_details: request.authorizationDetails,
    },
  });
}

/**
 * Evaluates a stored interaction for the person present: the interaction's own login first, else
 * the session's. Returns the need, the person, and their grant.
 */
export async function evaluateInteraction(
  ctx: Pick<Context, 'storage' | 'clock'>,
  stored: StoredInteraction,
  session: Authentication | undefined,
): Promise<{ need: Need; authentication: Authentication | undefined; grant: Grant | undefined }> {
  const authentication = stored.authentication ?? session;
  const grant = authentication ? await findActiveGrant(ctx, authentication.userId, stored.clientId) : undefined;
  const approvedHere =
    stored.consent?.decision === 'approved' && stored.consent.userId === authentication?.userId && grant !== undefined && grant.id === stored.grantId;
  const need = needs({
    request: stored.request,
    authentication,
    freshLogin: stored.authentication !== undefined,
    grant,
    approvedHere,
    now: epochSeconds(ctx.clock),
  });
  return { need, authentication, grant };
}

/**
 * Marks an interaction completed: one conditional update, so a resume that races another (two
 * tabs, a double click) completes it once. False when it was already completed.
 */
export async function completeInteraction(ctx: Pick<Context, 'storage' | 'clock'>, id: string): Promise<boolean> {
  const updated = await ctx.storage.db
    .updateTable('interactions')
    .set({ completed_at: ctx.clock.now() })
    .where('id', '=', id)
    .where('completed_at', 'is', null)
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/** Deletes interactions that expired before `now` (ms). */
export async function pruneInteractions(ctx: Pick<Context, 'storage'>, now: number): Promise<number> {
  const result = await ctx.storage.db.deleteFrom('interactions').where('expires_at', '<', now).executeTakeFirst();
  return Number(result.numDeletedRows);
}

async function pending(ctx: Context, id: string): Promise<StoredInteraction> {
  const stored = await loadStoredInteraction(ctx, id);
  if (!stored || stored.completedAt !== null) throw unknownInteraction();
  return stored;
}

function unknownInteraction(): OAuthError {
  return new OAuthError('invalid_request', 'the authorization request is unknown, expired or already completed');
}
