import { adminOperation } from '../../admin/authorize.ts';
import { pathParams, queryParams } from '../../http/api-operation.ts';
import { getGrant, grantView, listGrants, revokeGrant } from '../../authorization/consent.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * The consent store in the admin API (src/authorization/consent.ts), authorized like the rest of
 * /admin by Clearance's own tokens for `<issuer>/admin`:
 * - GET /admin/grants?user=<id>&client=<id> (admin:read): grants, newest first, revoked ones too;
 * - GET /admin/grants/{id} (admin:read);
 * - DELETE /admin/grants/{id}?reason=... (admin:write): revokes it — its refresh tokens fail and its
 *   access tokens are inactive at introspection from this moment; `consent.revoked` names the admin
 *   client. 204; 404 when unknown or already revoked.
 * A person revokes their own grants from their account page (people side) through `revokeGrant`.
 */
export const adminGrants: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/admin/grants`;
    const grant = pathParams({ id: "the grant's id" });

    app.get<{ Querystring: { user?: string; client?: string } }>(base, adminOperation(ctx, 'admin:read', {
      tag: 'grants',
      summary: "List a person's or a client's grants, newest first, revoked ones too",
      description: 'At least one of `user` and `client`.',
      querystring: queryParams({ user: "the person's user id", client: 'the client_id' }),
    }), async (request) => {
      const { user, client } = request.query;
      if (user === undefined && client === undefined) throw new OAuthError('invalid_request', 'give user or client');
      if ((user !== undefined && typeof user !== 'string') || (client !== undefined && typeof client !== 'string')) {
        throw new OAuthError('invalid_request', 'user and client are given once');
      }
      const grants = await listGrants(ctx, { ...(user !== undefined ? { userId: user } : {}), ...(client !== undefined ? { clientId: client } : {}) });
      return { grants: grants.map(grantView) };
    });
    app.get<{ Params: { id: string } }>(`${base}/:id`, adminOperation(ctx, 'admin:read', { tag: 'grants', summary: 'Read one grant', params: grant }), async (request) => {
      const grant = await getGrant(ctx, request.params.id);
      if (!grant) throw new OAuthError('not_found', 'no such grant');
      return grantView(grant);
    });
    app.delete<{ Params: { id: string }; Querystring: { reason?: string } }>(`${base}/:id`, adminOperation(ctx, 'admin:write', {
      tag: 'grants',
      summary: 'Revoke a grant',
      description: 'Its refresh tokens fail and its access tokens are inactive at introspection from this moment. 404 when unknown or already revoked.',
      params: grant,
      querystring: queryParams({ reason: 'why, for the audit log (its first 200 characters)' }),
      success: { status: 204, description: 'Revoked' },
    }), async (request, reply) => {
      const reason = typeof request.query.reason === 'string' ? request.query.reason.slice(0, 200) : 'revoked by an administrator';
      const revoked = await revokeGrant(ctx, request.params.id, { actor: request.admin!.client_id, reason, requestId: request.id });
      if (!revoked) throw new OAuthError('not_found', 'no such active grant');
      return reply.code(204).send();
    });
  },
};
