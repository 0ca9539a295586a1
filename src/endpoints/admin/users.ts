import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { ApplyRefusedError, PasswordSetThroughApi, RoleGrantThroughApi, executeApply, planApply } from '../../apply/index.ts';
import { recordPasswordSetRefusal, recordRoleGrantRefusal } from '../../identity/role-grants.ts';
import type { Context } from '../../context.ts';
import { deleteUser, signOutEverywhere } from '../../identity/lifecycle.ts';
import { mergePatchOf, nullableMembers, objectBody, pathParams } from '../../http/api-operation.ts';
import { findUserByUsername, listUsers, userStatuses, userView, writableUserMembers, type User } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import { recordPeopleRead } from '../../audit/reads.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import { linkIdentity, linksOf } from '../../federation/upstream/linking.ts';
import { findProvider } from '../../federation/upstream/providers.ts';
import { sendJson } from '../../http/json.ts';
import { acceptMergePatch, mergePatchType, patchBody, putBody, type Representation } from './representation.ts';
import { offboardPerson, offboardedView } from '../../lifecycle/leaver.ts';
import { readInstant } from '../../mandates/instant.ts';
import { Validator } from '../../validation.ts';
import { credentialsHeld, heldCredentialsProblem } from '../../lifecycle/credential-hold.ts';

/**
 * The admin API for people (`/admin/users`), authorized like the rest of the admin API
 * (admin:read to read, admin:write to change). Users are addressed by username. Writes go through
 * the same validation and transaction as the `users` section of `clearance apply`, under the
 * admin API's one write rule (./representation.ts): PUT replaces the whole person (every member
 * the person has: name, email, desks, attributes, status; 400 naming the missing ones), PATCH
 * changes only what a JSON Merge Patch names. No response ever holds a password or its hash:
 * `has_password` says whether there is one.
 *
 * - GET /admin/users, GET /admin/users/{username}
 * - PUT /admin/users/{username}: create, or replace; a `password` sets a new one (a password reset)
 * - PATCH /admin/users/{username} (application/merge-patch+json)
 * - POST /admin/users/{username}/sign-out: "sign out everywhere"
 * - POST /admin/users/{username}/offboard {reason?, reassignment_deadline?}: a leaver
 *   (src/lifecycle/leaver.ts): disabled, everything they hold ended in one transaction; answers
 *   what it ended; 404 for an unknown or already offboarded person
 * - DELETE /admin/users/{username}
 * - GET /admin/users/{username}/links: the upstream identities linked to the person (src/federation/upstream); audited as a read
 * - POST /admin/users/{username}/links {provider, subject}: links one (user.linked); 409 when that
 *   identity is already someone's
 * A password reset, `status: locked` or `disabled`, sign-out and deletion end the person's
 * sessions, refresh tokens and access tokens at once (src/identity/lifecycle.ts), audited.
 *
 * A leaver's credentials are on hold until an approved recovery (src/lifecycle/credential-hold.ts):
 * a PUT or PATCH that gives them a `password` or `password_hash` — re-activating them or not — and
 * a link of an upstream identity to them are refused, 400 invalid_request naming the recovery;
 * re-activating them (`status: active`) is not: they come back holding nothing.
 *
 * A PUT or PATCH that gives a person a guarded role (src/identity/roles.ts `guardedRoles`: created
 * holding it, or not holding it now) is refused whole, 403 access_denied naming POST
 * /admin/users/{username}/role-grants, where a second administrator approves it
 * (./role-grants.ts); recorded as `user.role_grant_refused`. Removing one, or keeping the roles a
 * person holds, passes.
 *
 * A PUT or PATCH that names a `password` (even the one they have), or a `password_hash` other than
 * theirs, for a person who holds a guarded role or for whom a grant of one waits is refused whole,
 * 403 access_denied, recorded as `user.password_reset_refused` (`guarded_role`,
 * `role_grant_waiting`): whoever set it could sign in as them; their credentials are reset through
 * a recovery (docs/recovery.md). A password a write sets is recorded as set by the token's subject
 * (`users.password_set_by`: src/identity/users.ts), who then neither asks for nor approves a
 * guarded role for that person.
 */
export const adminUsers: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/users`;
    acceptMergePatch(app);
    const params = pathParams({ username: 'the username, in its stored (lowercase) form' });

    app.get(base, adminOperation(ctx, 'admin:read', { tag: 'users', summary: 'List the people (never a password or its hash); each read is audited' }), async (request) => {
      const users = (await listUsers(ctx)).map(userView);
      // Names and emails are personal data: the read is on the record before the answer leaves.
      await recordPeopleRead(ctx, request.admin!, request.id, { people: users.length, via: 'users' });
      return { users };
    });

    app.get<{ Params: { username: string } }>(`${base}/:username`, adminOperation(ctx, 'admin:read', { tag: 'users', summary: 'Read one person; each read is audited', params }), async (request) => {
      const user = await findUser(ctx, request.params.username);
      if (!user) throw new OAuthError('not_found', 'no such user');
      await recordPeopleRead(ctx, request.admin!, request.id, { people: 1, via: 'users' }, user.id);
      return userView(user);
    });

    app.put<{ Params: { username: string } }>(`${base}/:username`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Create or replace a person',
      description:
        "Validated by the rules of apply's users section (docs/apply.md); replacing needs every writable member the person has. " +
        "A `password` sets a new one (a password reset); a reset, `status: locked` or `disabled` end the person's sessions and tokens.",
      params,
      body: nullableMembers(person),
    }), async (request) => {
      const fields = putBody(request, await representation(ctx, request.params.username));
      return writeUser(ctx, request, fields);
    });

    app.patch<{ Params: { username: string } }>(`${base}/:username`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Change members of a person (JSON Merge Patch, RFC 7396)',
      params,
      body: mergePatchOf(person),
      consumes: [mergePatchType],
    }), async (request) => {
      const fields = patchBody(request, await representation(ctx, request.params.username));
      // A status the patch does not name is not the administrator's statement: editing the email
      // of an automatically locked person must not turn the lockout into an administrator's lock
      // (which ends their tokens). Naming `status: locked` does.
      const patch = request.body as Record<string, unknown>;
      if (!Object.hasOwn(patch, 'status')) delete fields.status;
      return writeUser(ctx, request, fields);
    });

    app.post<{ Params: { username: string } }>(`${base}/:username/sign-out`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Sign a person out everywhere (their sessions, refresh tokens and access tokens end)',
      params,
      success: { status: 204, description: 'Signed out' },
    }), async (request, reply) => {
      if (!(await signOutEverywhere(ctx, request.params.username, { actor: request.admin!.client_id, requestId: request.id }))) {
        throw new OAuthError('not_found', 'no such user');
      }
      return reply.code(204).send();
    });

    app.post<{ Params: { username: string } }>(`${base}/:username/offboard`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Offboard a leaver: disabled; sessions, tokens, consent grants, factors and mandates granted to them end; mandates they granted are marked for reassignment; agents they own are flagged',
      description:
        'One transaction, audited as one user.offboarded event listing what it ended (ids and counts). Mandates the person granted stay in force until `reassignment_deadline` ' +
        '(default: now + CLEARANCE_OFFBOARD_REASSIGNMENT_DAYS) with a mandate.reassignment_required alert. 404 for an unknown or already offboarded person (docs/lifecycle.md).',
      params,
      body: objectBody({
        reason: { type: 'string', description: 'why (at most 200 characters; recorded in the audit event, so no personal data)' },
        reassignment_deadline: { type: 'string', description: 'an RFC 3339 date and time with an offset, in the future' },
      }, []),
      success: { status: 200, description: 'What was ended' },
    }), async (request) => {
      const body = (request.body ?? {}) as { reason?: unknown; reassignment_deadline?: unknown };
      const unknown = Object.keys(body).filter((k) => k !== 'reason' && k !== 'reassignment_deadline');
      if (unknown.length > 0) throw new OAuthError('invalid_request', `unknown member ${unknown[0]}`);
      if (body.reason !== undefined && (typeof body.reason !== 'string' || body.reason.length > 200 || /[\u0000-\u001f\u007f]/.test(body.reason))) {
        throw new OAuthError('invalid_request', 'reason must be a string of at most 200 characters without control characters');
      }
      let deadline: number | undefined;
      if (body.reassignment_deadline !== undefined) {
        const v = new Validator();
        deadline = readInstant(v, 'reassignment_deadline', body.reassignment_deadline);
        if (deadline === undefined) throw new OAuthError('invalid_request', v.problems.map(formatProblem).join('; '));
        if (deadline <= ctx.clock.now()) throw new OAuthError('invalid_request', 'reassignment_deadline must be in the future');
      }
      const user = await findUser(ctx, request.params.username);
      if (!user) throw new OAuthError('not_found', 'no such user');
      const done = await offboardPerson(ctx, user.username, {
        actor: request.admin!.sub ?? request.admin!.client_id,
        via: 'admin-api',
        requestId: request.id,
        ...(typeof body.reason === 'string' ? { reason: body.reason } : {}),
        ...(deadline !== undefined ? { reassignmentDeadline: deadline } : {}),
      });
      if (!done) throw new OAuthError('not_found', 'no such user, or already offboarded');
      return offboardedView(done);
    });

    app.get<{ Params: { username: string } }>(`${base}/:username/links`, adminOperation(ctx, 'admin:read', { tag: 'users', summary: "The upstream identities linked to a person (identity brokering)", params }), async (request) => {
      const user = await findUser(ctx, request.params.username);
      if (!user) throw new OAuthError('not_found', 'no such user');
      const links = await linksOf(ctx, user.id);
      // Who the person is at another provider is personal data: the read is on the record.
      await recordPeopleRead(ctx, request.admin!, request.id, { people: 1, via: 'users' }, user.id);
      return { links: links.map((l) => ({ provider: l.provider_id, issuer: l.issuer, subject: l.subject, linked_by: l.linked_by, created_at: new Date(Number(l.created_at)).toISOString() })) };
    });

    app.post<{ Params: { username: string } }>(`${base}/:username/links`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Link an upstream identity to this person (identity brokering)',
      description: 'Signing in through the provider as that subject is then signing in as this person; how a person whose email a first upstream sign-in found taken is joined (docs/identity-brokering.md). Audited as user.linked.',
      params,
      body: objectBody({ provider: { type: 'string', description: 'the identity provider id' }, subject: { type: 'string', description: 'the subject at that provider' } }, ['provider', 'subject']),
      success: { status: 201, description: 'Linked' },
    }), async (request, reply) => {
      const user = await findUser(ctx, request.params.username);
      if (!user) throw new OAuthError('not_found', 'no such user');
      // An upstream identity signs the person in: one administrator's link must not bring a leaver back.
      if (await credentialsHeld(ctx.storage.db, user.id)) throw new OAuthError('invalid_request', heldCredentialsProblem(user.username));
      const body = request.body as { provider?: unknown; subject?: unknown };
      if (typeof body.provider !== 'string' || typeof body.subject !== 'string' || body.subject.length === 0 || body.subject.length > 255) {
        throw new OAuthError('invalid_request', 'provider and subject must be strings (subject: 1 to 255 characters)');
      }
      const stored = await findProvider(ctx.storage.db, body.provider);
      if (!stored) throw new OAuthError('not_found', 'no such identity provider');
      const linked = await linkIdentity(ctx, { userId: user.id, provider: stored.provider, subject: body.subject, actor: request.admin!.sub ?? request.admin!.client_id });
      if (!linked.ok) throw new OAuthError('invalid_request', 'that upstream identity is already linked to a person', { status: 409 });
      return sendJson(reply, { provider: stored.provider.id, issuer: stored.provider.issuer, subject: body.subject }, { status: 201 });
    });

    app.delete<{ Params: { username: string } }>(`${base}/:username`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Delete a person (their sessions and tokens end)',
      params,
      success: { status: 204, description: 'Deleted' },
    }), async (request, reply) => {
      if (!(await deleteUser(ctx, request.params.username, { actor: request.admin!.client_id, requestId: request.id }))) {
        throw new OAuthError('not_found', 'no such user');
      }
      return reply.code(204).send();
    });
  },
};

/**
 * A person as GET shows them, with the members apply's users section reads (src/identity/users.ts
 * readUserEntry checks each). `status` is no enum: that check names every problem of the person at
 * once, where a schema would stop at the first.
 */
const person = objectBody(
  {
    username: { type: 'string', description: 'must equal the path' },
    name: { type: 'string' },
    email: { type: 'string' },
    desks: { type: 'array', items: { type: 'string' } },
    roles: { type: 'array', items: { type: 'string' } },
    attributes: { type: 'object', description: 'facts about the person, never secrets' },
    status: { type: 'string', description: `one of ${userStatuses.join(', ')}` },
    password: { type: 'string', writeOnly: true, description: 'a new password (a password reset); never shown' },
    password_hash: { type: 'string', writeOnly: true, description: 'an Argon2id PHC string, instead of a password' },
    kyc: { type: 'object', description: "the person's KYC record, as in apply's users section" },
    // Shown by GET; sent back unchanged they are ignored, changed they are refused.
    id: { type: 'string', readOnly: true },
    has_password: { type: 'boolean', readOnly: true },
    created_at: { type: 'string', readOnly: true },
    updated_at: { type: 'string', readOnly: true },
    last_login_at: { type: ['string', 'null'], readOnly: true },
    locked_at: { type: ['string', 'null'], readOnly: true },
    lock_reason: { type: ['string', 'null'], readOnly: true },
  },
  [],
  "A person as GET /admin/users/{username} shows them and apply's users section reads them (docs/apply.md)",
);

/** The user stored under exactly this username (the path names the stored, lowercase form). */
async function findUser(ctx: Context, username: string): Promise<User | undefined> {
  const user = await findUserByUsername(ctx, username);
  return user && user.username === username ? user : undefined;
}

async function representation(ctx: Context, username: string): Promise<Representation> {
  const user = await findUser(ctx, username);
  return { name: 'user', current: user && userView(user), writable: writableUserMembers, readOnly: readOnlyUserMembers };
}

/** What `userView` shows beside the username and the writable members. */
const readOnlyUserMembers = ['id', 'has_password', 'created_at', 'updated_at', 'last_login_at', 'locked_at', 'lock_reason'] as const;

async function writeUser(ctx: Context, request: FastifyRequest<{ Params: { username: string } }>, fields: Record<string, unknown>) {
  if (fields.username !== undefined && fields.username !== request.params.username) {
    throw new OAuthError('invalid_request', 'username in the body differs from the path');
  }
  const { plan, problems } = await planApply(ctx, { users: [{ ...fields, username: request.params.username }] });
  // A leaver's credentials on hold are among the plan's problems: no password from an
  // administrator (src/lifecycle/credential-hold.ts, checked by planApply).
  if (!plan) throw new OAuthError('invalid_request', problems.map(formatProblem).join('; '));
  const claims = request.admin!;
  // Who sets a password is who the token speaks for (src/endpoints/admin/apply.ts reads it alike):
  // the person behind it, else the client itself.
  const person = claims.sub !== claims.client_id || claims.grant_id !== undefined || claims.act !== undefined ? claims.sub : undefined;
  let result;
  try {
    result = await executeApply(ctx, plan, { actor: claims.client_id, via: 'admin-api', ...(person !== undefined ? { person } : {}) });
  } catch (error) {
    // A guarded role is given only with a second person's approval (POST …/role-grants): 403, on the record.
    if (error instanceof RoleGrantThroughApi) {
      await recordRoleGrantRefusal(ctx, { actor: claims.sub, client: claims.client_id, ...(error.userId ? { subject: error.userId } : {}), role: error.role, reason: 'not_through_admin_api', via: 'users', requestId: request.id });
      throw new OAuthError('access_denied', error.message);
    }
    // A guarded role's holder's password is reset through a recovery, by two people: 403, on the record.
    if (error instanceof PasswordSetThroughApi) {
      await recordPasswordSetRefusal(ctx, { actor: claims.sub, client: claims.client_id, subject: error.userId, role: error.role, reason: error.reason, via: 'users', requestId: request.id });
      throw new OAuthError('access_denied', error.message);
    }
    // The same rule, met in the write's transaction (a hold that landed since the check above).
    if (error instanceof ApplyRefusedError) throw new OAuthError('invalid_request', error.message);
    throw error;
  }
  const user = await findUserByUsername(ctx, request.params.username);
  return { ...userView(user!), outcome: result.changes[0]!.outcome };
}
