import { requireAdmin } from '../../admin/authorize.ts';
import { executeApply, planApply } from '../../apply/index.ts';
import { findUserByUsername, listUsers, userView } from '../../identity/users.ts';
import { OAuthError } from '../../oauth-error.ts';
import { formatProblem } from '../../validation.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The admin API for people (`/admin/users`), authorized like the rest of the admin API
 * (admin:read to read, admin:write to change). Users are addressed by username. A PUT goes
 * through the same validation and transaction as the `users` section of `clearance apply`. No
 * response ever holds a password or its hash: `has_password` says whether there is one.
 */
export const adminUsers: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/users`;
    const read = { preHandler: requireAdmin(ctx, 'admin:read') };
    const write = { preHandler: requireAdmin(ctx, 'admin:write') };

    app.get(base, read, async () => ({ users: (await listUsers(ctx)).map(userView) }));

    app.get<{ Params: { username: string } }>(`${base}/:username`, read, async (request) => {
      const user = await findUserByUsername(ctx, request.params.username);
      if (!user || user.username !== request.params.username) throw new OAuthError('not_found', 'no such user');
      return userView(user);
    });

    app.put<{ Params: { username: string } }>(`${base}/:username`, write, async (request) => {
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new OAuthError('invalid_request', 'the body must be a JSON object');
      }
      const fields = body as Record<string, unknown>;
      if (fields.username !== undefined && fields.username !== request.params.username) {
        throw new OAuthError('invalid_request', 'username in the body differs from the path');
      }
      const { plan, problems } = await planApply(ctx, { users: [{ ...fields, username: request.params.username }] });
      if (!plan) throw new OAuthError('invalid_request', problems.map(formatProblem).join('; '));
      const result = await executeApply(ctx, plan, { actor: request.admin!.client_id, via: 'admin-api' });
      const user = await findUserByUsername(ctx, request.params.username);
      return { ...userView(user!), outcome: result.changes[0]!.outcome };
    });
  },
};
