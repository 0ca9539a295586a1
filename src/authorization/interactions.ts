import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import { isPostgres } from '../audit/dialect.ts';
import { epochSeconds } from '../clock.ts';
import type { Context } from '../context.ts';
import { OAuthError } from '../oauth-error.ts';
import { Flight, refusedFor, rowsOf } from '../storage/flight.ts';
import { isUniqueViolation } from '../storage/faults.ts';
import type { Database } from '../storage/schema.ts';
import type { AuditEvent } from '../audit/events.ts';
import { tokenAuthorizationDetails } from './authorization-details.ts';
import { tokenFormKeys } from '../transfers/destination-input.ts';
import { acrSatisfies } from '../identity/acr.ts';
import {
  approveRequestIn,
  approveRequestInFlight,
  findActiveGrant,
  grantFromJoined,
  grantFromRow,
  joinedGrantColumns,
  retryingConcurrentGrant,
  type ConsentGrant,
} from './consent.ts';
import type { Authentication, ConsentRequest, Interaction, NextStep } from './contract.ts';
import { handleDigest } from './digest.ts';
import { isOwnRequestUri } from './pushed-requests.ts';
import type { AuthorizationRequest } from './request.ts';
import { needs, toNextStep, type Need } from './steps.ts';
import { authenticationDemands, requirementOf, type Demand, type Demands } from './requirements.ts';
import { factorFor, stepUpCompletedEvent, stepUpOf, type StepUpRecord } from './step-up.ts';
import type { ApprovalChallenge, ApprovalRecord } from '../approvals/records.ts';
import { approvalRefusedEvent, approvalSubject, checkApproval, recordApprovalIn, startApproval as startApprovalCeremony } from '../approvals/ceremony.ts';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { entriesToApprove } from '../jose/approval-digest.ts';
import { refusedBeforeAsking } from './kyc.ts';

/**
 * Interactions: authorization requests waiting for a person (src/authorization/contract.ts). The
 * protocol side stores them; the people side (GET /interaction/{id}) asks `nextStep`, records a
 * login with `recordAuthentication` and the person's decision with `decideConsent`, then sends the
 * browser to /authorize/resume/{id}.
 *
 * One read per request: `loadInteraction` reads the interaction once, with the grant of the
 * person who logged in during it; the people side passes the Interaction it got back to the
 * other calls of the same request, which use that record instead of reading it again (an
 * in-request cache: the record belongs to the object handed out, never to a later request).
 * Their writes are conditional updates, so what changed meanwhile still fails them.
 *
 * Round trips (docs/authorization.md): the reads take a flight to share one round trip with the
 * request's other reads (the session, the account), and each request's writes are one flight — one
 * transaction with their audit events, whose conditions the database checks (storage/flight.ts).
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
  /**
   * The active grant to the client of the person who logged in during this interaction, read with
   * the interaction (null: they have none); undefined when nobody logged in during it.
   */
  loginGrant?: ConsentGrant | null;
  /** The step-up the request waits for (step-up.ts), until it concludes. */
  stepUp: StepUpRecord | null;
  /** The approval ceremony the consent page started, until answered (src/approvals/ceremony.ts). */
  approvalChallenge: ApprovalChallenge | null;
  /** The person's verified approval of the request's order entries, once given. */
  approval: ApprovalRecord | null;
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

/**
 * Creates an interaction for a validated request, bound to the browser that sent it; with
 * `stepUp`, waiting for that step-up. With `flight`, the insertion is added to it (the caller
 * commits it, with the step-up's audit event).
 */
export async function createInteraction(
  ctx: Pick<Context, 'storage' | 'clock'>,
  request: AuthorizationRequest,
  browserId: string,
  options: { stepUp?: StepUpRecord; flight?: Flight } = {},
): Promise<StoredInteraction> {
  // 128 random bits: the id is in URLs, so it must not be guessable (FAPI 2.0 SP §5.4.1-4).
  const id = randomBytes(16).toString('base64url');
  const now = ctx.clock.now();
  const expiresAtMs = now + interactionTtlSeconds * 1000;
  const browserHash = browserDigest(browserId);
  const insert = ctx.storage.db.insertInto('interactions').values({
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
    step_up: options.stepUp ? JSON.stringify(options.stepUp) : null,
  });
  if (options.flight) void options.flight.run(insert);
  else await insert.execute();
  const stepUp = options.stepUp ?? null;
  return { id, clientId: request.clientId, expiresAt: Math.floor(expiresAtMs / 1000), request, browserHash, consent: null, grantId: null, completedAt: null, stepUp, approvalChallenge: null, approval: null };
}

/**
 * Creates an interaction straight from a pushed request (RFC 9126), in ONE statement that also
 * reads it: the row of `requestUri`, if it is `clientId`'s, unexpired and not consumed, is copied
 * into a new interaction bound to `browserId`, and the interaction returned. Undefined when there
 * is no such pushed request (resolveRequestUri then says why) or it was stored without its own id
 * (before the pushed request named it: then the caller takes the two-statement way).
 *
 * For a browser nobody is signed in to, which needs an interaction anyway: the request is
 * validated afterwards (its redirect_uri still registered, prompt=none), and an interaction made
 * for a request refused then stays behind unreachable — its id never leaves the server — until
 * it expires and is pruned.
 */
export async function createInteractionFromRequestUri(
  ctx: Pick<Context, 'storage' | 'clock'>,
  clientId: string,
  requestUri: string,
  browserId: string,
  flight?: Flight,
): Promise<StoredInteraction | undefined> {
  if (!isOwnRequestUri(requestUri)) return undefined;
  const db = ctx.storage.db;
  const id = randomBytes(16).toString('base64url');
  const now = ctx.clock.now();
  const expiresAtMs = now + interactionTtlSeconds * 1000;
  const browserHash = browserDigest(browserId);
  const insert = db
    .insertInto('interactions')
    .columns(['id', 'client_id', 'request', 'browser_hash', 'authentication', 'consent', 'grant_id', 'created_at', 'expires_at', 'completed_at'])
    .expression((eb) =>
      eb
        .selectFrom('pushed_requests')
        .select([
          eb.val(id).as('id'),
          'client_id',
          'request',
          eb.val(browserHash).as('browser_hash'),
          sql<null>`null`.as('authentication'),
          sql<null>`null`.as('consent'),
          sql<null>`null`.as('grant_id'),
          eb.val(now).as('created_at'),
          eb.val(expiresAtMs).as('expires_at'),
          sql<null>`null`.as('completed_at'),
        ])
        .where('uri_hash', '=', handleDigest(requestUri))
        // RFC 9126 §4: bound to the client that pushed it, unexpired, not used by a completed authorization.
        .where('client_id', '=', clientId)
        .where('expires_at', '>', now)
        .where('consumed_at', 'is', null),
    )
    .returning('request');
  const [row] = flight ? (await flight.run(insert)).rows : await insert.execute();
  if (!row) return undefined;
  const request = JSON.parse(row.request) as AuthorizationRequest;
  if (request.pushedRequestId === undefined) return undefined;
  return { id, clientId, expiresAt: Math.floor(expiresAtMs / 1000), request, browserHash, consent: null, grantId: null, completedAt: null, stepUp: null, approvalChallenge: null, approval: null };
}

/**
 * The stored interaction, completed or not, unless unknown or expired — with the active grant of
 * the person who logged in during it, in the same read (both tables are this component's). With
 * `flight`, read with the flight's other statements.
 */
export async function loadStoredInteraction(ctx: Pick<Context, 'storage' | 'clock'>, id: string, flight?: Flight): Promise<StoredInteraction | undefined> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) return undefined;
  const db = ctx.storage.db;
  const [row] = await rowsOf(
    db
      .selectFrom('interactions')
      .leftJoin('grants', (join) =>
        join.onRef('grants.client_id', '=', 'interactions.client_id').on('grants.user_id', '=', loginUserId(db)).on('grants.revoked_at', 'is', null),
      )
      .selectAll('interactions')
      .select(joinedGrantColumns)
      .where('interactions.id', '=', id),
    flight,
  );
  if (!row || Number(row.expires_at) <= ctx.clock.now()) return undefined;
  const loginGrant = grantFromJoined(row) ?? null;
  return {
    id: row.id,
    clientId: row.client_id,
    expiresAt: Math.floor(Number(row.expires_at) / 1000),
    ...(row.authentication ? { authentication: JSON.parse(row.authentication) as Authentication, loginGrant } : {}),
    request: JSON.parse(row.request) as AuthorizationRequest,
    browserHash: row.browser_hash,
    consent: row.consent ? (JSON.parse(row.consent) as ConsentDecision) : null,
    grantId: row.grant_id,
    completedAt: row.completed_at === null ? null : Number(row.completed_at),
    stepUp: row.step_up ? (JSON.parse(row.step_up) as StepUpRecord) : null,
    approvalChallenge: row.approval_challenge ? (JSON.parse(row.approval_challenge) as ApprovalChallenge) : null,
    approval: row.approval ? (JSON.parse(row.approval) as ApprovalRecord) : null,
  };
}

/** The userId of the interaction's recorded Authentication (JSON text), in SQL. */
function loginUserId(db: Kysely<Database>) {
  return isPostgres(db) ? sql<string>`(interactions.authentication::json ->> 'userId')` : sql<string>`json_extract(interactions.authentication, '$.userId')`;
}

/**
 * Forgets person `userId`'s sign-ins recorded in pending interactions (inside the caller's
 * transaction): when their access ends (src/identity/lifecycle.ts), a login made before — say by
 * whoever had the old password, waiting on the consent page — must not go on to a code. The
 * interaction stays; resuming it asks for a new sign-in. Returns how many were forgotten.
 */
export async function forgetSignInsOf(trx: Transaction<Database>, userId: string): Promise<number> {
  const result = await trx
    .updateTable('interactions')
    .set({ authentication: null, consent: null, grant_id: null })
    .where(loginUserId(trx), '=', userId)
    .where('completed_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** The stored records behind the Interactions handed to the people side (see the top of this file). */
const records = new WeakMap<Interaction, StoredInteraction>();

/**
 * Contract: the pending interaction; undefined when unknown, expired or already completed. With
 * `flight`, read with the flight's other statements (the people side's session or account).
 */
export async function loadInteraction(
  ctx: Pick<Context, 'storage' | 'clock'>,
  id: string,
  browser?: { id: string | undefined },
  flight?: Flight,
): Promise<Interaction | undefined> {
  const stored = await loadStoredInteraction(ctx, id, flight);
  if (!stored || stored.completedAt !== null) return undefined;
  // With `browser` (the sign-in and consent pages): the interaction belongs to the browser that
  // started it. A link to it opened in another browser — a victim lured into signing in on the
  // attacker's request — finds nothing, so no one can sign in or consent on someone else's request.
  if (browser && (browser.id === undefined || browserDigest(browser.id) !== stored.browserHash)) return undefined;
  const interaction: Interaction = {
    id: stored.id,
    clientId: stored.clientId,
    expiresAt: stored.expiresAt,
    ...(stored.authentication ? { authentication: stored.authentication } : {}),
    ...(stored.request.loginHint !== undefined || stored.request.idpHint !== undefined
      ? { hints: { ...(stored.request.loginHint !== undefined ? { login: stored.request.loginHint } : {}), ...(stored.request.idpHint !== undefined ? { idp: stored.request.idpHint } : {}) } }
      : {}),
    ...(stored.request.maxAge !== undefined || stored.request.prompt.includes('login')
      ? { freshness: { ...(stored.request.maxAge !== undefined ? { maxAge: stored.request.maxAge } : {}), ...(stored.request.prompt.includes('login') ? { login: true } : {}) } }
      : {}),
  };
  records.set(interaction, stored);
  return interaction;
}

/**
 * What the interaction needs now, for the person of `session` (or the one who logged in during the
 * interaction). Contract: login, consent (with the plain-language ConsentRequest), or done.
 * `interaction`: what loadInteraction returned in this request, or an id.
 */
export async function nextStep(ctx: Context, interaction: Interaction | string, session: Authentication | undefined): Promise<NextStep> {
  const stored = await pending(ctx, interaction);
  const evaluated = await evaluateInteraction(ctx, stored, session);
  // A request that cannot be met, or a step-up the person declined: the protocol side ends it at resume.
  if (evaluated.unmet || stored.stepUp?.declined) return { step: 'done' };
  // What the token endpoint would refuse whoever consents (./kyc.ts): nothing to ask the person;
  // resume answers the refusal and audits it.
  if (evaluated.authentication && (await refusedBeforeAsking(ctx, stored.request, evaluated.authentication.userId)) !== undefined) return { step: 'done' };
  return toNextStep(ctx, evaluated.need, stored.request);
}

/**
 * Contract: the person cannot reach the level the sign-in asks (they have no factor that reaches
 * it, and say so on the sign-in page). The request then ends with the error
 * `unmet_authentication_requirements` at /authorize/resume (OIDC Core §5.5.1.1: an unmet
 * essential acr is a failed authentication; OpenID Connect Core Error Code
 * unmet_authentication_requirements 1.0), and the step-up is audited as `declined`. One
 * conditional update: false when the interaction is unknown, expired or completed.
 */
export async function declineAuthentication(ctx: Context, interaction: Interaction | string, session: Authentication | undefined): Promise<boolean> {
  const stored = await pending(ctx, interaction);
  const { need, authentication, demands } = await evaluateInteraction(ctx, stored, session);
  const record: StepUpRecord = stored.stepUp ??
    stepUpOf(need, stored.request, authentication, demands, ctx.clock.now()) ?? {
      // Declined before anyone signed in: what asked the level (an essential acr claim).
      id: randomUUID(),
      triggers: [...new Set(demands.filter((d) => d.acr !== undefined && !acrSatisfies(authentication?.acr, d.acr)).map((d) => d.trigger))],
      ...(need.step === 'login' && need.acr !== undefined ? { acr: need.acr } : {}),
      factorOffered: factorFor(need.step === 'login' ? need.acr : undefined),
      acrBefore: authentication?.acr ?? 'none',
      requestedAt: ctx.clock.now(),
    };
  const updated = await ctx.storage.db
    .updateTable('interactions')
    .set({ step_up: JSON.stringify({ ...record, declined: true }) })
    .where('id', '=', stored.id)
    .where('completed_at', 'is', null)
    .where('expires_at', '>', ctx.clock.now())
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/**
 * Keeps the step-up an interaction now waits for (in `flight`, with its audit event when it is
 * new): conditional on the interaction being pending.
 */
export function recordStepUpIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, id: string, record: StepUpRecord): void {
  void flight.run(
    ctx.storage.db
      .updateTable('interactions')
      .set({ step_up: JSON.stringify(record) })
      .where('id', '=', id)
      .where('completed_at', 'is', null)
      .where('expires_at', '>', ctx.clock.now()),
    { rows: 1, otherwise: 'interaction_not_pending' },
  );
}

/**
 * Contract: records a successful login during the interaction (the people side calls it after
 * verifying the person). One conditional update: false when the interaction is unknown, expired or
 * completed (nothing recorded).
 *
 * `db`: the flight of the login's transaction, to which the update is added (the promise then
 * settles once the flight has landed), else a database handle. With a flight and the Interaction
 * of this request, the person's grant to the client is read in the same transaction, and the
 * record behind that Interaction becomes what the interaction now is, and the person's KYC record
 * is read ahead into the KYC cache: `nextStep` in the same request (the people side asks it where
 * to send the person next; it asks whether the person is frozen, ./kyc.ts) makes no round trip.
 */
export function recordAuthentication(
  ctx: Pick<Context, 'storage' | 'clock'> & { risk?: Context['risk'] },
  interaction: Interaction | string,
  auth: Authentication,
  db: Kysely<Database> | Flight = ctx.storage.db,
): Promise<boolean> {
  const id = typeof interaction === 'string' ? interaction : interaction.id;
  const update = ctx.storage.db
    .updateTable('interactions')
    .set({ authentication: JSON.stringify(auth) })
    .where('id', '=', id)
    .where('completed_at', 'is', null)
    .where('expires_at', '>', ctx.clock.now());
  if (!(db instanceof Flight)) return update.executeTakeFirst().then((updated) => Number(updated.numUpdatedRows) === 1);
  const updated = db.run(update);
  const stored = typeof interaction === 'string' ? undefined : records.get(interaction);
  const grant = stored ? db.run(activeGrantQuery(ctx, auth.userId, stored.clientId)) : undefined;
  if (stored) ctx.risk?.kyc.readAhead(db, sql<string>`cast(${auth.userId} as text)`);
  const recorded = (async () => {
    if (Number((await updated).numAffectedRows) !== 1) return false;
    if (stored && typeof interaction !== 'string') {
      const row = (await grant!).rows[0];
      stored.authentication = auth;
      stored.loginGrant = row ? grantFromRow(row) : null;
      interaction.authentication = auth;
    }
    return true;
  })();
  // Settled once the flight lands; a login refused in its transaction leaves it unread.
  recorded.catch(() => undefined);
  return recorded;
}

function activeGrantQuery(ctx: Pick<Context, 'storage'>, userId: string, clientId: string) {
  return ctx.storage.db.selectFrom('grants').selectAll().where('user_id', '=', userId).where('client_id', '=', clientId).where('revoked_at', 'is', null);
}

/**
 * Contract: records the person's decision on the consent page. Approval records or extends their
 * grant to the client (`consent.granted`); denial makes the resume redirect `access_denied`
 * (RFC 6749 §4.1.2.1). `auth` must be the person the interaction is for. The grant, the
 * interaction's record of the decision and the event are one transaction; the interaction's
 * update is conditional on it being pending and its login unchanged since it was read.
 *
 * One flight: the grant is extended as it was read with the interaction (read now when nobody
 * logged in during it), conditionally on it being unchanged. When it changed meanwhile — another
 * approval, a revocation, a first approval in another tab — the decision is taken again in a
 * transaction that locks the grant's row (`approveRequestIn`).
 */
export async function decideConsent(ctx: Context, interaction: Interaction | string, auth: Authentication, approved: boolean): Promise<void> {
  const stored = await pending(ctx, interaction);
  if (stored.authentication && stored.authentication.userId !== auth.userId) {
    throw new OAuthError('invalid_request', 'the person deciding is not the person who logged in for this request');
  }
  const request = stored.request;
  const decision: ConsentDecision = { decision: approved ? 'approved' : 'denied', userId: auth.userId };
  const loggedIn = stored.authentication ? JSON.stringify(stored.authentication) : null;
  const db = ctx.storage.db;
  const recordDecision = (on: Kysely<Database>, now: number, grant: ConsentGrant | undefined) =>
    on
      .updateTable('interactions')
      .set({ consent: JSON.stringify(decision), grant_id: grant?.id ?? null })
      .where('id', '=', stored.id)
      .where('completed_at', 'is', null)
      .where('expires_at', '>', now)
      // Nobody else logged in during the interaction since it was read (the check above holds).
      .where('authentication', loggedIn === null ? 'is' : '=', loggedIn);
  const events = (grant: ConsentGrant | undefined): AuditEvent[] => [
    {
      type: approved ? 'consent.granted' : 'consent.denied',
      actor: auth.userId,
      subject: auth.userId,
      client: request.clientId,
      ...(request.resource ? { audience: request.resource } : {}),
      scopes: [...request.oidcScopes, ...request.scopes],
      decision: { allow: approved, reasons: [approved ? 'approved by the person' : 'denied by the person'] },
      details: {
        interaction_id: stored.id,
        ...(grant ? { grant_id: grant.id } : {}),
        // Personal data (a transfer's travel-rule data) as its digest: the log holds none in clear.
        authorization_details: tokenAuthorizationDetails(request.authorizationDetails, tokenFormKeys(ctx.config)),
        // The mandate the person consented (or refused) to let the client act under.
        ...(request.mandate !== undefined ? { mandate: request.mandate } : {}),
      },
    },
  ];

  // The person's grant as the interaction's read found it (their login during it), else read now.
  const known = stored.authentication?.userId === auth.userId && stored.loginGrant !== undefined ? stored.loginGrant : undefined;
  const current = !approved ? null : known !== undefined ? known : ((await findActiveGrant(ctx, auth.userId, request.clientId)) ?? null);
  const flight = ctx.storage.flight();
  const now = ctx.clock.now();
  const grant = approved ? approveRequestInFlight(flight, db, now, auth.userId, request, current) : undefined;
  void flight.run(recordDecision(db, now, grant), { rows: 1, otherwise: 'interaction_not_pending' });
  try {
    await ctx.audit.commit(flight, events(grant));
    return;
  } catch (error) {
    if (refusedFor(error, 'interaction_not_pending')) throw unknownInteraction();
    if (!refusedFor(error, 'grant_changed') && !isUniqueViolation(error)) throw error;
  }
  // The grant changed since it was read: decide again on its locked row. A concurrent first
  // approval by the same person (another tab) makes this one extend that grant.
  await retryingConcurrentGrant(() =>
    ctx.audit.recordWith(async (trx) => {
      const now = ctx.clock.now();
      const grant = await approveRequestIn(trx, now, auth.userId, request);
      const updated = await recordDecision(trx, now, grant).executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) throw unknownInteraction();
      return { value: undefined, events: events(grant) };
    }),
  );
}

/**
 * Contract: starts the passkey approval of the request's order entries on the consent page
 * (src/approvals/ceremony.ts): the WebAuthn request options, or undefined when the interaction is
 * not pending, is another person's, or asks no approval of this person.
 */
export async function startApproval(ctx: Context, interaction: Interaction | string, auth: Authentication): Promise<PublicKeyCredentialRequestOptionsJSON | undefined> {
  const stored = await pending(ctx, interaction);
  if (stored.authentication && stored.authentication.userId !== auth.userId) return undefined;
  const need = approvalNeed(await authenticationDemands(ctx, stored.request, auth), stored.request, stored.approval);
  if (!need?.required || need.given) return undefined;
  return startApprovalCeremony(ctx, stored, auth.userId);
}

/**
 * Contract: the consent request, with its approval, when policy asks `auth`'s person to approve the
 * request's order entries with a passkey and they have not during this interaction (the consent
 * POST refuses an approval without the passkey then); else undefined. A request without order or
 * settlement_instruction entries is answered at once, without evaluating anything.
 */
export async function approvalAsked(ctx: Context, interaction: Interaction | string, auth: Authentication): Promise<ConsentRequest | undefined> {
  const stored = await pending(ctx, interaction);
  if (entriesToApprove(stored.request.authorizationDetails as Record<string, unknown>[]).length === 0) return undefined;
  const step = await nextStep(ctx, interaction, auth);
  return step.step === 'consent' && step.consent.approval ? step.consent : undefined;
}

/**
 * Contract: the person's passkey answer to the approval ceremony (the page's JSON text). A verified
 * approval is kept on the interaction with its `approval.given` event (the evidence), in one
 * transaction, before the consent decision; a failure is `approval.refused` and changes nothing.
 */
export async function approve(
  ctx: Context,
  interaction: Interaction | string,
  auth: Authentication,
  response: string,
  requestId?: string,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const stored = await pending(ctx, interaction);
  const who = { userId: auth.userId, clientId: stored.clientId, ...(requestId ? { requestId } : {}) };
  if (stored.authentication && stored.authentication.userId !== auth.userId) return { ok: false, reason: 'wrong_person' };
  const checked = await checkApproval(ctx, stored, auth.userId, response, requestId);
  if (!checked.ok) {
    await ctx.audit.record(approvalRefusedEvent(stored, who, checked));
    return { ok: false, reason: checked.reason };
  }
  const flight = ctx.storage.flight();
  const event = recordApprovalIn(ctx, flight, stored, checked, who);
  try {
    await ctx.audit.commit(flight, [event]);
  } catch (error) {
    // Another answer to the same ceremony won, or the passkey was used meanwhile: this one is void.
    if (!refusedFor(error, 'approval_answered') && !refusedFor(error, 'passkey_counter_changed')) throw error;
    await ctx.audit.record(approvalRefusedEvent(stored, who, { ok: false, reason: 'no_ceremony', credentialId: checked.record.credentialId }));
    return { ok: false, reason: 'answered' };
  }
  stored.approval = checked.record;
  stored.approvalChallenge = null;
  return { ok: true };
}

/**
 * Evaluates a stored interaction for the person present: the interaction's own login first, else
 * the session's. Returns the need, the person, and their grant.
 */
export async function evaluateInteraction(
  ctx: Context,
  stored: StoredInteraction,
  session: Authentication | undefined,
): Promise<{ need: Need; authentication: Authentication | undefined; grant: ConsentGrant | undefined; demands: Demand[]; unmet: boolean }> {
  const authentication = stored.authentication ?? session;
  // The grant of a login during the interaction was read with it; a session's person's is read now.
  const [grant, demanded] = await Promise.all([
    !authentication
      ? undefined
      : stored.authentication && stored.loginGrant !== undefined
        ? (stored.loginGrant ?? undefined)
        : findActiveGrant(ctx, authentication.userId, stored.clientId),
    authenticationDemands(ctx, stored.request, authentication),
  ]);
  const demands = demanded.ok ? demanded.demands : [];
  const approval = authentication ? approvalNeed(demanded, stored.request, stored.approval) : undefined;
  const approvedHere =
    stored.consent?.decision === 'approved' && stored.consent.userId === authentication?.userId && grant !== undefined && grant.id === stored.grantId;
  const need = needs({
    request: stored.request,
    authentication,
    freshLogin: stored.authentication !== undefined,
    required: requirementOf(demands),
    grant,
    approvedHere,
    ...(approval ? { approval } : {}),
    now: epochSeconds(ctx.clock),
  });
  return { need, authentication, grant, demands, unmet: !demanded.ok };
}

/**
 * Whether policy asks the person to approve the request's order and settlement_instruction entries
 * with a passkey before a code is issued (`demanded.approval`, requirements.ts), and whether they
 * did during this interaction — an approval of exactly these entries. Undefined for a request
 * with no such entries, or for no resource server.
 */
export function approvalNeed(demanded: Demands, request: AuthorizationRequest, given: ApprovalRecord | null): { required: boolean; given: boolean } | undefined {
  if (request.resource === undefined || entriesToApprove(request.authorizationDetails as Record<string, unknown>[]).length === 0) return undefined;
  return { required: demanded.ok && demanded.approval !== undefined, given: given !== null && given.digest === approvalSubject({ request }).digest };
}

/**
 * Marks an interaction completed: one conditional update, so a resume that races another (two
 * tabs, a double click) completes it once. False when it was already completed. `db`: the
 * transaction of the authorization response it completes with.
 */
export async function completeInteraction(ctx: Pick<Context, 'storage' | 'clock'>, id: string, db: Kysely<Database> = ctx.storage.db): Promise<boolean> {
  const updated = await completion(ctx, id, db).executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

/**
 * `completeInteraction` in the transaction of a flight (the authorization response's): unless it
 * is this one that completes the interaction, the whole transaction is refused
 * (`interaction_completed`) and writes nothing — a double resume issues one code.
 */
export function completeInteractionIn(flight: Flight, ctx: Pick<Context, 'storage' | 'clock'>, id: string): void {
  void flight.run(completion(ctx, id, ctx.storage.db), { rows: 1, otherwise: 'interaction_completed' });
}

function completion(ctx: Pick<Context, 'clock'>, id: string, db: Kysely<Database>) {
  return db.updateTable('interactions').set({ completed_at: ctx.clock.now() }).where('id', '=', id).where('completed_at', 'is', null);
}

/**
 * Deletes interactions that expired before `now` (ms). One that was waiting for a step-up is
 * deleted in a transaction with the step-up's `step_up.completed` event, outcome `abandoned`
 * (step-up.ts): whichever process deletes it records it, once.
 */
export async function pruneInteractions(ctx: Pick<Context, 'storage' | 'audit'>, now: number): Promise<number> {
  const abandoned = await ctx.audit.recordWith(async (trx) => {
    const rows = await trx
      .deleteFrom('interactions')
      .where('expires_at', '<', now)
      .where('step_up', 'is not', null)
      .where('completed_at', 'is', null)
      .returning(['id', 'client_id', 'authentication', 'step_up'])
      .execute();
    const events = rows.map((row) => {
      const login = row.authentication ? (JSON.parse(row.authentication) as Authentication) : undefined;
      const record = JSON.parse(row.step_up!) as StepUpRecord;
      return stepUpCompletedEvent(record, 'abandoned', { clientId: row.client_id, userId: login?.userId, interactionId: row.id });
    });
    return { value: rows.length, events };
  });
  const result = await ctx.storage.db.deleteFrom('interactions').where('expires_at', '<', now).executeTakeFirst();
  return abandoned + Number(result.numDeletedRows);
}

/** The record of a pending interaction: the one read with `interaction` in this request, else read now. */
async function pending(ctx: Context, interaction: Interaction | string): Promise<StoredInteraction> {
  const stored =
    typeof interaction === 'string' ? await loadStoredInteraction(ctx, interaction) : (records.get(interaction) ?? (await loadStoredInteraction(ctx, interaction.id)));
  if (!stored || stored.completedAt !== null || stored.expiresAt * 1000 <= ctx.clock.now()) throw unknownInteraction();
  return stored;
}

function unknownInteraction(): OAuthError {
  return new OAuthError('invalid_request', 'the authorization request is unknown, expired or already completed');
}
