import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { ssfAudience, ssfManageScope } from '../../resource-servers/builtins.ts';
import { supportedEventTypes } from '../../signals/ssf/event-types.ts';
import { poll, readPollRequest } from '../../signals/ssf/poll.ts';
import { pollMethod, pushMethod, readStreamConfig, StreamError, StreamStore, streamStatuses, streamView, type StreamStatus } from '../../signals/ssf/streams.ts';
import { queueVerification, verificationLimit } from '../../signals/ssf/transmitter.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * Clearance as a Shared Signals transmitter (OpenID SSF 1.0; docs/signals.md):
 *
 *   GET    /.well-known/ssf-configuration      transmitter metadata (§7.1), public
 *   POST   /ssf/streams                         create a stream (§8.1.1.1) → 201
 *   GET    /ssf/streams[?stream_id=]            read one, or all of the caller's (§8.1.1.2)
 *   PATCH  /ssf/streams {stream_id, ...}        update what is named (§8.1.1.3)
 *   PUT    /ssf/streams {stream_id, ...}        replace the configuration (§8.1.1.4)
 *   DELETE /ssf/streams?stream_id=              delete it, with what waits in it (§8.1.1.5) → 204
 *   GET    /ssf/status?stream_id=               its status (§8.1.2.1)
 *   POST   /ssf/status {stream_id, status, reason?}   enable, pause or disable it (§8.1.2.2)
 *   POST   /ssf/subjects/add {stream_id, subject}     receive events about a subject (§8.1.3.2)
 *   POST   /ssf/subjects/remove {stream_id, subject}  stop receiving them → 204 (§8.1.3.3)
 *   POST   /ssf/verify {stream_id, state?}      a verification SET is sent (§8.1.4.2) → 204; 429 past
 *                                               `verificationLimit` per stream
 *   POST   /ssf/poll/{stream_id}                RFC 8936 poll delivery
 *
 * Every call but the metadata needs a Clearance access token for `<issuer>/ssf` with `ssf:manage`
 * (Bearer or DPoP, through the one protected-resource check: binding, audience, liveness, scope;
 * 401 / 403 otherwise). The token's client is the receiver: it sees and changes only its own
 * streams — another's stream is 404, as one that does not exist. Bad input is 400 invalid_request
 * naming the member; too many streams 409; every answer JSON with Cache-Control: no-store.
 */
export const sharedSignals: Endpoint = {
  register(app, ctx) {
    const path = issuerPath(ctx.config.issuer);
    const base = `${path}/ssf`;
    const issuer = ctx.config.issuer;
    const streams = new StreamStore(ctx.storage.db, ctx.identity.factorKeys.master);
    const resource = { audience: ssfAudience(issuer), scope: ssfManageScope, name: 'the Shared Signals API' };
    const receiverOf = async (request: FastifyRequest, reply: FastifyReply): Promise<string> => {
      const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), resource);
      reply.headers(access.headers);
      return access.claims.client_id;
    };
    const streamOf = async (clientId: string, streamId: unknown) => {
      if (typeof streamId !== 'string' || streamId.length === 0) throw new OAuthError('invalid_request', 'stream_id is required');
      const stream = await streams.get(clientId, streamId);
      if (!stream) throw new OAuthError('not_found', 'no such stream');
      return stream;
    };

    // SSF 1.0 §7.1: /.well-known/ssf-configuration, with the issuer's path after it when it has one.
    app.get(`/.well-known/ssf-configuration${path}`, async (_request, reply) =>
      sendJson(reply, {
        spec_version: '1_0',
        issuer,
        jwks_uri: `${issuer}/jwks`,
        delivery_methods_supported: [pushMethod, pollMethod],
        configuration_endpoint: `${issuer}/ssf/streams`,
        status_endpoint: `${issuer}/ssf/status`,
        add_subject_endpoint: `${issuer}/ssf/subjects/add`,
        remove_subject_endpoint: `${issuer}/ssf/subjects/remove`,
        verification_endpoint: `${issuer}/ssf/verify`,
        critical_subject_members: [],
        default_subjects: ctx.config.ssfDefaultSubjects,
        authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6749' }, { spec_urn: 'urn:ietf:rfc:9449' }],
        events_supported: supportedEventTypes,
      }),
    );

    app.post(`${base}/streams`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const config = guarded(() => readStreamConfig(request.body, ctx.config, false));
      if ((request.body as Record<string, unknown>).stream_id !== undefined) throw new OAuthError('invalid_request', 'stream_id is given by Clearance; leave it out');
      const stream = await guardedAsync(() => streams.create(clientId, config, { defaultSubjects: ctx.config.ssfDefaultSubjects, now: ctx.clock.now() }));
      return sendJson(reply, streamView(stream, issuer), { status: 201 });
    });

    app.get<{ Querystring: { stream_id?: string } }>(`${base}/streams`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      if (request.query.stream_id === undefined) return sendJson(reply, (await streams.list(clientId)).map((s) => streamView(s, issuer)));
      return sendJson(reply, streamView(await streamOf(clientId, request.query.stream_id), issuer));
    });

    for (const method of ['PATCH', 'PUT'] as const) {
      app.route({
        method,
        url: `${base}/streams`,
        handler: async (request, reply) => {
          const clientId = await receiverOf(request, reply);
          const body = request.body as Record<string, unknown> | undefined;
          const stream = await streamOf(clientId, body?.stream_id);
          const config = guarded(() => readStreamConfig(body, ctx.config, method === 'PATCH'));
          // PUT replaces: what it leaves out goes back to its default.
          const changes = method === 'PUT' ? { ...config, description: config.description ?? '' } : config;
          const updated = await guardedAsync(() => streams.update(clientId, stream.streamId, changes, ctx.clock.now()));
          return sendJson(reply, streamView(updated, issuer));
        },
      });
    }

    app.delete<{ Querystring: { stream_id?: string } }>(`${base}/streams`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const stream = await streamOf(clientId, request.query.stream_id);
      await streams.delete(clientId, stream.streamId);
      return reply.code(204).headers({ 'cache-control': 'no-store' }).send();
    });

    app.get<{ Querystring: { stream_id?: string } }>(`${base}/status`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const stream = await streamOf(clientId, request.query.stream_id);
      return sendJson(reply, { stream_id: stream.streamId, status: stream.status, ...(stream.statusReason !== undefined ? { reason: stream.statusReason } : {}) });
    });

    app.post(`${base}/status`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const body = objectBody(request.body);
      const stream = await streamOf(clientId, body.stream_id);
      if (typeof body.status !== 'string' || !streamStatuses.includes(body.status as StreamStatus)) throw new OAuthError('invalid_request', `status is one of ${streamStatuses.join(', ')}`);
      if (body.reason !== undefined && (typeof body.reason !== 'string' || body.reason.length > 256)) throw new OAuthError('invalid_request', 'reason is at most 256 characters');
      const updated = await streams.setStatus(clientId, stream.streamId, body.status as StreamStatus, body.reason as string | undefined, ctx.clock.now());
      return sendJson(reply, { stream_id: updated.streamId, status: updated.status, ...(updated.statusReason !== undefined ? { reason: updated.statusReason } : {}) });
    });

    for (const [action, included] of [['add', true], ['remove', false]] as const) {
      app.post(`${base}/subjects/${action}`, async (request, reply) => {
        const clientId = await receiverOf(request, reply);
        const body = objectBody(request.body);
        const stream = await streamOf(clientId, body.stream_id);
        await guardedAsync(() => streams.setSubject(clientId, stream.streamId, body.subject, included, ctx.clock.now()));
        // §8.1.3.2: 200 for an added subject; §8.1.3.3: 204 for a removed one.
        return included ? sendJson(reply, {}) : reply.code(204).headers({ 'cache-control': 'no-store' }).send();
      });
    }

    app.post(`${base}/verify`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const body = objectBody(request.body);
      const stream = await streamOf(clientId, body.stream_id);
      if (body.state !== undefined && (typeof body.state !== 'string' || body.state.length > 256)) throw new OAuthError('invalid_request', 'state is at most 256 characters');
      if (stream.status === 'disabled') throw new OAuthError('invalid_request', 'the stream is disabled', { status: 409 });
      const verification = await queueVerification(ctx, stream, body.state as string | undefined);
      if (!verification.queued) throw verificationLimited(verification.retryAfterSeconds);
      return reply.code(204).headers({ 'cache-control': 'no-store' }).send();
    });

    app.post<{ Params: { id: string } }>(`${base}/poll/:id`, async (request, reply) => {
      const clientId = await receiverOf(request, reply);
      const stream = await streamOf(clientId, request.params.id);
      if (stream.method !== 'poll') throw new OAuthError('invalid_request', 'this stream is delivered by push, not polled');
      const answer = await poll(ctx, stream, guarded(() => readPollRequest(request.body ?? {})));
      return sendJson(reply, answer);
    });
  },
};

/**
 * SSF 1.0 §8.1.4.2: the transmitter MAY rate-limit verification requests. Answered as every rate
 * limit is (src/risk/limits/refusal.ts): 429 `temporarily_unavailable` (RFC 6585 §4), `Retry-After`
 * (RFC 9110 §10.2.3) and the RateLimit fields, the policy named `stream`.
 */
function verificationLimited(retryAfterSeconds: number): OAuthError {
  const { quota, windowSeconds } = verificationLimit;
  return new OAuthError('temporarily_unavailable', 'too many verification requests for this stream; retry later', {
    status: 429,
    headers: { 'retry-after': String(retryAfterSeconds), 'ratelimit-policy': `"stream";q=${quota};w=${windowSeconds}`, ratelimit: `"stream";r=0;t=${retryAfterSeconds}` },
    detail: `rate limit: stream verification (${quota} per ${windowSeconds} s)`,
  });
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new OAuthError('invalid_request', 'the body is a JSON object');
  return body as Record<string, unknown>;
}

function asOAuth(error: unknown): unknown {
  if (error instanceof StreamError) return new OAuthError(error.status === 404 ? 'not_found' : 'invalid_request', error.message, { status: error.status });
  return error;
}

function guarded<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    throw asOAuth(error);
  }
}

async function guardedAsync<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw asOAuth(error);
  }
}
