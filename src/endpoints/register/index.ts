import type { FastifyRequest } from 'fastify';
import { deleteRegistration, readRegistration, registerClient, updateRegistration } from '../../clients/registration/register.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';
import type { Context } from '../../context.ts';
import { isRecorded, reasonCode, recordRefusal, safeDescription } from '../../audit/refusals.ts';

/**
 * Dynamic client registration (RFC 7591) with an initial access token from an admin
 * (`clearance clients token`), and management of the registration (RFC 7592) with the
 * registration access token it returns. Bodies are JSON; responses are no-store. The rules, in
 * order, are numbered at `registerClient` and `updateRegistration`: metadata is self-asserted
 * (RFC 7591 §5), so the firm, kind, grant types and scopes come from the initial access token,
 * and an update cannot widen or move them.
 */
export const registration: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/register`;
    app.post(base, async (request, reply) => {
      const response = await refusalsRecorded(ctx, request, undefined, () => registerClient(ctx, bearer(request), jsonBody(request)));
      return sendJson(reply, response, { status: 201 });
    });
    app.get<{ Params: { id: string } }>(`${base}/:id`, async (request, reply) => sendJson(reply, await readRegistration(ctx, request.params.id, bearer(request))));
    app.put<{ Params: { id: string } }>(`${base}/:id`, async (request, reply) =>
      sendJson(reply, await refusalsRecorded(ctx, request, request.params.id, () => updateRegistration(ctx, request.params.id, bearer(request), jsonBody(request)))),
    );
    app.delete<{ Params: { id: string } }>(`${base}/:id`, async (request, reply) => {
      await deleteRegistration(ctx, request.params.id, bearer(request));
      return reply.code(204).send();
    });
  },
  metadata: (ctx) => ({ registration_endpoint: `${ctx.config.issuer}/register` }),
};

/**
 * RFC 7591 §3.1 / RFC 7592 §2.2: client metadata is sent as application/json. The app parses form
 * bodies for the OAuth endpoints; here one would otherwise read as empty metadata.
 */
function jsonBody(request: FastifyRequest): unknown {
  if (request.form) throw new OAuthError('invalid_request', 'client metadata must be sent as application/json', { status: 415 });
  return request.body;
}

/**
 * Every refused registration or update is `client.registration_refused` (docs/audit.md
 * "Refusals"), under the per-source limit: the address for a registration, the client for an
 * update (its id is only claimed until its token verifies). Never the token or the metadata.
 */
async function refusalsRecorded<T>(ctx: Context, request: FastifyRequest, clientId: string | undefined, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof OAuthError && error.status < 500 && !isRecorded(error)) {
      const description = safeDescription(error.description);
      await recordRefusal(ctx, {
        type: 'client.registration_refused',
        requestId: request.id,
        address: request.ip,
        error: error.error,
        reason: reasonCode(error),
        details: { via: clientId === undefined ? 'rfc7591' : 'rfc7592', ...(clientId !== undefined && /^[\x21-\x7e]{1,128}$/.test(clientId) ? { claimed_client: clientId } : {}), ...(description !== undefined ? { description } : {}) },
      });
    }
    throw error;
  }
}

function bearer(request: FastifyRequest): string {
  const match = request.headers.authorization?.match(/^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i);
  if (!match) {
    throw new OAuthError('invalid_token', 'a Bearer token is required', {
      headers: { 'www-authenticate': 'Bearer realm="clearance"' },
    });
  }
  return match[1]!;
}
