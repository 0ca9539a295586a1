import type { FastifyRequest } from 'fastify';
import { authScheme, stepUp } from './step-up.ts';
import { adminOperation } from '../../admin/authorize.ts';
import { personCaller } from '../../admin/person-caller.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams, queryParams } from '../../http/api-operation.ts';
import { jsonObjectBody, sendJson } from '../../http/json.ts';
import { acr } from '../../identity/acr.ts';
import { findUser } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import type { AccessTokenClaims } from '../../tokens/claims.ts';
import { entryView, findDestination, listBook, versionsOf } from '../../transfers/address-book.ts';
import {
  changeMaxAuthAgeSeconds,
  DestinationConflict,
  DestinationError,
  DestinationNotFound,
  removeDestination,
  requestDestinationChange,
  signInReview,
  type ChangeRequester,
} from '../../transfers/change-control.ts';
import { readDestination } from '../../transfers/destination-input.ts';
import { formatProblem, Validator } from '../../validation.ts';
import { leisOfDesks, wholeLogRoles } from '../../audit/scope.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The transfer address books through the admin API (docs/transfers.md "Destination control"),
 * tokens for `<issuer>/admin`:
 *
 * - GET /admin/transfer-destinations?lei=&account= (`admin:read`): `{ destinations: [view] }`, each
 *   destination with its state now (pending, held_for_review, cooling_down, usable, removed, …)
 *   and every version (who asked, who approved, when it becomes usable) — of the books the caller
 *   reads (`bookScope`): a query naming another legal entity lists nothing;
 * - GET /admin/transfer-destinations/{id} (`admin:read`): one destination of a book the caller
 *   reads, else 404 as for one that does not exist (its existence is not revealed);
 * - POST /admin/transfer-destinations (`admin:write`) `{ lei, account, destination, label? }`: asks
 *   for a destination to be added, or changed (a new label, BIC or name for the same key). Only a
 *   person with their own token (403 otherwise), signed in phishing-resistantly in the last five
 *   minutes — else 401 insufficient_user_authentication with acr_values and max_age (RFC 9470 §3)
 *   — who belongs to the legal entity (a desk of it; 403). 202 with the destination and its
 *   approval request, decided on the approvals page or POST /admin/approvals/{id}/decision by a
 *   holder of `approver` of the entity (and a `compliance` person when the change was asked from a
 *   new device: `held_for_review`). 400 for a bad destination or an account not the entity's, 409
 *   when a change already waits or nothing would change;
 * - DELETE /admin/transfer-destinations/{id} (`admin:write`): removes it at once (no approval: a
 *   removal only takes risk away); a person's token must be of the entity's people, a client's of
 *   the entity (`owner_lei`) or of none. 404 unknown — and 404 too, as for an unknown id, for a
 *   destination of a book the caller does not read (`bookScope`); 403 for one it reads but may not
 *   remove from (a whole-log reader not of the entity); both refusals are audited
 *   (`transfer_destination.refused`, not_of_legal_entity). 409 not in the book.
 * Every step is audited (`transfer_destination.*`, and `approval.*` for the decisions).
 */
export const adminTransferDestinations: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/transfer-destinations`;
    const params = pathParams({ id: "the destination's id (dst_…)" });

    app.get<{ Querystring: { lei?: string; account?: string } }>(base, adminOperation(ctx, 'admin:read', {
      tag: 'directory',
      summary: 'List the transfer address books (of a legal entity, or one account of it), each destination with its versions',
      querystring: queryParams({ lei: 'the legal entity (LEI)', account: 'one account of it' }),
    }), async (request, reply) => {
      const { lei, account } = request.query;
      const scope = await bookScope(ctx, request.admin!);
      const book = await listBook(ctx.storage.db, { ...(lei ? { lei } : {}), ...(account ? { account } : {}), ...(scope === 'all' ? {} : { within: scope }) });
      const now = ctx.clock.now();
      return sendJson(reply, { destinations: book.map(({ entry, versions }) => entryView(entry, versions, now)) });
    });

    app.get<{ Params: { id: string } }>(`${base}/:id`, adminOperation(ctx, 'admin:read', { tag: 'directory', summary: 'Read one destination of an address book, with its versions', params }), async (request, reply) => {
      const scope = await bookScope(ctx, request.admin!);
      const entry = await findDestination(ctx.storage.db, request.params.id);
      // Another entity's destination is answered as one that does not exist: its book is not the caller's to know of.
      if (!entry || (scope !== 'all' && !scope.has(entry.lei))) throw new OAuthError('not_found', 'no such destination');
      return sendJson(reply, { destination: entryView(entry, await versionsOf(ctx.storage.db, entry.id), ctx.clock.now()) });
    });

    app.post(base, adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: 'Ask for a destination to be added to an address book (or changed): approved by a second person, then cooled down',
      description:
        "By a person's own token, signed in phishing-resistantly in the last 5 minutes (else 401 insufficient_user_authentication), of the legal entity. " +
        'Decided through the approvals API or page by a holder of approver of the entity; from a new device, a compliance person approves too.',
      body: objectBody(
        {
          lei: { type: 'string', description: 'the legal entity whose book it is' },
          account: { type: 'string', description: 'the source account of the entity' },
          destination: { type: 'object', description: '{kind: internal, account} | {kind: iban, iban, bic?, name?} | {kind: blockchain, account (CAIP-10)}' },
          label: { type: 'string', maxLength: 140, description: 'a name for people (never a beneficiary name: that goes in destination.name)' },
        },
        ['lei', 'account', 'destination'],
      ),
      success: { status: 202, description: 'The destination, waiting for approval' },
    }), async (request, reply) => {
      const input = readChange(request.body);
      const { requester, reviewReason } = await personRequester(ctx, request, input.lei);
      const changed = await asOAuth(() =>
        requestDestinationChange(ctx, { ...input, requester, ...(reviewReason !== undefined ? { reviewReason } : {}), via: 'admin-api', requestId: request.id }),
      );
      const view = entryView(changed.entry, await versionsOf(ctx.storage.db, changed.entry.id), ctx.clock.now());
      return sendJson(
        reply,
        {
          destination: view,
          version: changed.version.version,
          status: changed.version.status,
          approval_request: changed.request.id,
          required_approvals: changed.request.requiredApprovals,
          expires_at: new Date(changed.request.expiresAt).toISOString(),
        },
        { status: 202 },
      );
    });

    app.delete<{ Params: { id: string } }>(`${base}/:id`, adminOperation(ctx, 'admin:write', {
      tag: 'directory',
      summary: 'Remove a destination from its address book, at once',
      description: 'No approval: a removal only takes risk away. A transfer to it is refused from now on, on every node.',
      params,
    }), async (request, reply) => {
      // Who may read no book at all is refused before the id is looked up (403 tells nothing of it).
      const scope = await bookScope(ctx, request.admin!);
      const entry = await findDestination(ctx.storage.db, request.params.id);
      if (!entry) throw new OAuthError('not_found', 'no such destination');
      if (scope !== 'all' && !scope.has(entry.lei)) {
        // Another entity's destination is answered as one that does not exist (as the GETs); the refusal is audited.
        await recordRemovalRefused(ctx, request, entry);
        throw new OAuthError('not_found', 'no such destination');
      }
      const actor = await removerOf(ctx, request, entry);
      await asOAuth(() => removeDestination(ctx, { id: entry.id, actor, requestId: request.id }));
      return sendJson(reply, { destination: entryView(entry, await versionsOf(ctx.storage.db, entry.id), ctx.clock.now()) });
    });
  },
};

/** `{lei, account, destination, label?}`, every problem named. */
function readChange(body: unknown): { lei: string; account: string; destination: NonNullable<ReturnType<typeof readDestination>>; label?: string } {
  const o = jsonObjectBody(body);
  const v = new Validator();
  v.knownKeys('', o, ['lei', 'account', 'destination', 'label']);
  const lei = v.string('lei', o.lei, { pattern: /^[0-9A-Z]{20}$/, patternMessage: 'must be a 20-character LEI' });
  const account = v.string('account', o.account, { maxLength: 64 });
  const destination = readDestination(v, 'destination', o.destination);
  const label = o.label === undefined ? undefined : v.string('label', o.label, { maxLength: 140, pattern: /^[^\p{Cc}]+$/u, patternMessage: 'must not contain control characters' });
  if (!v.ok) throw new OAuthError('invalid_request', v.problems.map(formatProblem).join('; '));
  return { lei: lei!, account: account!, destination: destination!, ...(label !== undefined ? { label } : {}) };
}

/**
 * Who asks (change control 1): a person with their own token (a consent grant, no delegation),
 * signed in at the phishing-resistant level in the last five minutes (src/admin/person-caller.ts,
 * whose order decides which fault of a token is named), active, of the legal entity; and whether
 * the sign-in behind the token came from a new device (held for review).
 */
async function personRequester(ctx: Context, request: FastifyRequest, lei: string): Promise<{ requester: ChangeRequester; reviewReason?: string }> {
  const claims = request.admin!;
  // The one rule (src/admin/person-caller.ts), level then age; a token naming no sign-in time is no person's sign-in here.
  const caller = claims.auth_time === undefined ? ({ ok: false, reason: 'client_token' } as const) : await personCaller(ctx, claims, { level: acr.phishingResistant, maxAgeSeconds: changeMaxAuthAgeSeconds });
  if (!caller.ok && (caller.reason === 'insufficient_authentication' || caller.reason === 'stale_authentication')) {
    await ctx.audit.record({
      type: 'transfer_destination.refused',
      actor: claims.sub,
      subject: claims.sub,
      client: claims.client_id,
      requestId: request.id,
      decision: { allow: false, reasons: ['insufficient_user_authentication'] },
      details: {
        lei,
        trigger: 'address_book_change',
        acr_values: acr.phishingResistant,
        max_age: changeMaxAuthAgeSeconds,
        acr_before: claims.acr ?? null,
        auth_time: claims.auth_time ?? null,
        outcome: 'challenged',
      },
    });
    // RFC 9470 §3: the challenge names both, since a new sign-in must meet both.
    const description = caller.reason === 'insufficient_authentication' ? 'an address-book change needs a phishing-resistant authentication (a passkey)' : 'an address-book change needs an authentication of the last 5 minutes: sign in again';
    throw stepUp(authScheme(request), description, { acr_values: acr.phishingResistant, max_age: changeMaxAuthAgeSeconds });
  }
  if (!caller.ok) {
    if (caller.reason === 'client_token') throw new OAuthError('access_denied', "a destination is asked for by a person with their own token, not a client's");
    if (caller.reason === 'delegated_token') throw new OAuthError('access_denied', 'a delegate never asks for a destination for someone');
    throw new OAuthError('access_denied', 'the person of this token may not change an address book');
  }
  const person = caller.user;
  if (!(await leisOfDesks(ctx, person.desks)).has(lei)) {
    await ctx.audit.record({
      type: 'transfer_destination.refused',
      actor: person.id,
      client: claims.client_id,
      requestId: request.id,
      decision: { allow: false, reasons: ['not_of_legal_entity'] },
      details: { lei },
    });
    throw new OAuthError('access_denied', `only a person of legal entity ${lei} changes its address book`);
  }
  const reviewReason = await signInReview(ctx, person.id, claims.auth_time!);
  return { requester: { type: 'user', id: person.id }, ...(reviewReason !== undefined ? { reviewReason } : {}) };
}

/**
 * Whose address books a caller reads (they name beneficiaries): as the audit reads scope a reader
 * (src/audit/scope.ts), by legal entity. A person holding a whole-log role (`admin`, `auditor`:
 * `wholeLogRoles`) reads every book; any other person the books of their desks' legal entities; a
 * client's own token its `owner_lei` entity's — or every book for a client of no legal entity (the
 * deployment's own, as auditScopeOf reads it and `removerOf` lets it remove). Refused (403,
 * fail closed): a delegated token, a person not active, a person of no legal entity without a
 * whole-log role, a token that is neither a person's own nor a client's own.
 */
async function bookScope(ctx: Context, claims: AccessTokenClaims): Promise<'all' | ReadonlySet<string>> {
  if (claims.act !== undefined) throw new OAuthError('access_denied', 'a delegated token reads no address book');
  if (claims.grant_id === undefined) {
    if (claims.sub !== undefined && claims.sub !== claims.client_id) throw new OAuthError('access_denied', 'this token is neither a person’s own nor a client’s own');
    const owner = (await ctx.clients.get(claims.client_id))?.metadata.owner_lei;
    return owner !== undefined ? new Set([owner]) : 'all';
  }
  const person = claims.sub !== undefined ? await findUser(ctx, claims.sub) : undefined;
  if (!person || person.status !== 'active') throw new OAuthError('access_denied', 'the person this token was issued to is not active');
  if (person.roles.some((role) => wholeLogRoles.includes(role))) return 'all';
  const leis = await leisOfDesks(ctx, person.desks);
  if (leis.size === 0) throw new OAuthError('access_denied', 'you read the address books of your legal entity, and your account has no desk of any legal entity');
  return leis;
}

/**
 * Who removes: a person of the entity (own token, no delegation), or a client of the entity or of
 * none. A refusal for the entity is audited (`transfer_destination.refused`).
 */
async function removerOf(ctx: Context, request: FastifyRequest, entry: { id: string; lei: string }): Promise<string> {
  const claims = request.admin!;
  const lei = entry.lei;
  if (claims.grant_id === undefined) {
    const owner = (await ctx.clients.get(claims.client_id))?.metadata.owner_lei;
    if (owner !== undefined && owner !== lei) {
      await recordRemovalRefused(ctx, request, entry);
      throw new OAuthError('access_denied', `client ${claims.client_id} belongs to another legal entity`);
    }
    return claims.client_id;
  }
  if (claims.act !== undefined) throw new OAuthError('access_denied', 'a delegate never removes a destination for someone');
  const person = await findUser(ctx, claims.sub);
  if (!person || person.status !== 'active') throw new OAuthError('access_denied', 'the person this token was issued to is not active');
  if (!(await leisOfDesks(ctx, person.desks)).has(lei)) {
    await recordRemovalRefused(ctx, request, entry);
    throw new OAuthError('access_denied', `only a person of legal entity ${lei} removes from its address book`);
  }
  return person.id;
}

/** A removal refused because the caller is not of the destination's legal entity. */
async function recordRemovalRefused(ctx: Context, request: FastifyRequest, entry: { id: string; lei: string }): Promise<void> {
  const claims = request.admin!;
  await ctx.audit.record({
    type: 'transfer_destination.refused',
    actor: claims.grant_id === undefined ? claims.client_id : claims.sub,
    client: claims.client_id,
    requestId: request.id,
    decision: { allow: false, reasons: ['not_of_legal_entity'] },
    details: { lei: entry.lei, destination: entry.id, operation: 'remove' },
  });
}

/** The book's refusals as the API's: 404, 409, else 400. */
async function asOAuth<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DestinationNotFound) throw new OAuthError('not_found', error.message);
    if (error instanceof DestinationConflict) throw new OAuthError('invalid_request', error.message, { status: 409 });
    if (error instanceof DestinationError) throw new OAuthError('invalid_request', error.message);
    throw error;
  }
}
