import type { FastifyRequest } from 'fastify';
import { adminOperation } from '../../admin/authorize.ts';
import { personCaller } from '../../admin/person-caller.ts';
import type { Context } from '../../context.ts';
import { objectBody, pathParams } from '../../http/api-operation.ts';
import { sendJson } from '../../http/json.ts';
import { acr } from '../../identity/acr.ts';
import { openRoleGrant, recordRoleGrantRefusal, RoleGrantError, RoleGrantRefused } from '../../identity/role-grants.ts';
import { guardedRoles, roleGrantRole } from '../../identity/roles.ts';
import { findUserByUsername, type User } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * An administrator asks for a guarded role to be given to a person (segregation of duties,
 * docs/approvals.md `role_grant`); PUT, PATCH and apply through the admin API never add one
 * (src/apply/index.ts `RoleGrantThroughApi`):
 *
 * POST /admin/users/{username}/role-grants  (scope `admin:write`)  { "role": "approver", "reason": "CHG-1234" }
 *
 * 1. an access token for `<issuer>/admin` with `admin:write` (requireAdmin), else 401/403; the
 *    body's shape, else 400;
 * 2. a person's own token — issued under their consent (`grant_id`), so a client's own token,
 *    which no person stands behind, never asks; not delegated (no `act`) — at a phishing-resistant
 *    level, of an active person holding `admin`; else 403 access_denied, recorded as
 *    `user.role_grant_refused` with the reason;
 * 3. the person named exists (exactly this username), else 404;
 * 4. openRoleGrant: a guarded role, an active person whose credentials are not on hold, a reason,
 *    roles `roleConflict` allows, else 400; a role held already or a grant of it waiting, 409;
 *    an administrator who set the person's password (`users.password_set_by`: they could sign in
 *    as them), 403 access_denied, recorded as `user.role_grant_refused` (`set_password`);
 * 5. 202 with the approval request's id: a second person holding `admin` decides it through the
 *    approvals API or page (`approval.requested` records the asking).
 */
export const adminRoleGrants: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/users`;
    app.post<{ Params: { username: string } }>(`${base}/:username/role-grants`, adminOperation(ctx, 'admin:write', {
      tag: 'users',
      summary: 'Ask for a guarded role to be given to a person; a second administrator approves',
      description:
        `By the own token of a person holding ${roleGrantRole}, at a phishing-resistant level. The role is one of ${guardedRoles.join(', ')}: ` +
        'PUT and PATCH /admin/users/{username} and POST /admin/apply never add one. Answers 202 with the approval request; approving gives the role.',
      params: pathParams({ username: 'the person receiving the role, by their stored (lowercase) username' }),
      body: objectBody(
        {
          role: { type: 'string', description: `one of ${guardedRoles.join(', ')}` },
          reason: { type: 'string', description: 'why (1 to 500 characters; shown to the approver and recorded, so no personal data)' },
        },
        ['role', 'reason'],
      ),
      success: { status: 202, description: 'The grant, waiting for a second administrator' },
    }), async (request, reply) => {
      const requester = await administratorOf(ctx, request);
      const subject = await findUserByUsername(ctx, request.params.username);
      if (!subject || subject.username !== request.params.username) throw new OAuthError('not_found', 'no such user');
      const body = request.body as { role?: unknown; reason?: unknown };
      let opened;
      try {
        opened = await openRoleGrant(ctx, { requester, subject, role: body.role, reason: body.reason, requestId: request.id });
      } catch (error) {
        if (error instanceof RoleGrantError) throw new OAuthError('invalid_request', error.message, { status: error.status });
        if (error instanceof RoleGrantRefused) {
          const claims = request.admin!;
          const role = typeof body.role === 'string' ? { role: body.role } : {};
          await recordRoleGrantRefusal(ctx, { actor: claims.sub, client: claims.client_id, subject: subject.id, ...role, reason: error.reason, via: 'role_grant', requestId: request.id });
          throw new OAuthError('access_denied', error.message);
        }
        throw error;
      }
      return sendJson(
        reply,
        { request_id: opened.id, status: opened.status, person: subject.username, role: body.role, required_approvals: opened.requiredApprovals, expires_at: new Date(opened.expiresAt).toISOString() },
        { status: 202 },
      );
    });
  },
};

/** Why rule 2 refuses a token, as `user.role_grant_refused` records it. */
type CallerRefusal = 'client_token' | 'delegated_token' | 'insufficient_authentication' | 'not_admin';

/** The administrator behind the request's token (rule 2); a refusal is recorded, then answered 403. */
async function administratorOf(ctx: Context, request: FastifyRequest<{ Params: { username: string } }>): Promise<User> {
  const claims = request.admin!;
  const refuse = async (reason: CallerRefusal, description: string): Promise<never> => {
    const subject = await findUserByUsername(ctx, request.params.username);
    const role = (request.body as { role?: unknown } | undefined)?.role;
    await recordRoleGrantRefusal(ctx, {
      actor: claims.sub,
      client: claims.client_id,
      ...(subject && subject.username === request.params.username ? { subject: subject.id } : {}),
      ...(typeof role === 'string' && (guardedRoles as readonly string[]).includes(role) ? { role } : {}),
      reason,
      via: 'role_grant',
      requestId: request.id,
      delegated: claims.act !== undefined,
    });
    throw new OAuthError('access_denied', description);
  };
  const caller = await personCaller(ctx, claims, { level: acr.phishingResistant, role: roleGrantRole });
  if (caller.ok) return caller.user;
  switch (caller.reason) {
    case 'client_token':
      return refuse('client_token', `a role is asked for by a person holding ${roleGrantRole}, not by a client on its own`);
    case 'delegated_token':
      return refuse('delegated_token', 'a delegated token cannot ask for a role: the administrator asks with their own');
    case 'insufficient_authentication':
      return refuse('insufficient_authentication', 'an administrator signs in phishing-resistantly (a passkey) to ask for a role');
    default:
      return refuse('not_admin', `only an active person holding ${roleGrantRole} asks for a role`);
  }
}
