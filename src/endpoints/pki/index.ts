import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { resourceRequest } from '../../http/oauth-request.ts';
import { jsonObjectBody, sendJson } from '../../http/json.ts';
import { OAuthError } from '../../oauth-error.ts';
import { publishCrl } from '../../pki/crl.ts';
import { ocspAnswerTimes, respondOcsp } from '../../pki/ocsp/index.ts';
import { recordRefusal, requestCertificate, PkiRefusal, type IssuedCertificate, type PendingIssuance } from '../../pki/issuance.ts';
import { requireOwnToken, workloadHolder, type Asker } from '../../pki/holder.ts';
import { issueScope } from '../../pki/profiles.ts';
import { renewCertificate } from '../../pki/renewal.ts';
import { revokeCertificate, RevocationError } from '../../pki/revocation.ts';
import { pkiAudience, pkiRevokeScope } from '../../resource-servers/builtins.ts';
import { authorizeProtectedRequest } from '../../tokens/protected-resource.ts';
import { PkiError } from '../../pki/authority.ts';
import { issuerPath, type Endpoint } from '../endpoint.ts';

/**
 * Clearance's certificate authority over HTTP (docs/pki.md):
 *
 *   POST /pki/certificates {profile, csr, lifetime?, holder?}   a certificate for the client that asks,
 *        or the person whose own token it is (for a `device` profile: for the device the enrolling
 *        service names in `holder`), with the caller's own token (no `act`, no partner origin) for
 *        `<issuer>/pki` carrying `pki:issue:<profile>` → 201 {serial, certificate, chain,
 *        not_after}; 202 {status: pending_approval, request_id, approval_request} when the profile
 *        needs a second person's approval
 *   GET  /pki/requests/{id}                             a waiting issuance, for whoever asked (same scope)
 *   POST /pki/certificates/renew {csr, lifetime?}       over mTLS with the current certificate: a new one
 *        for the same holder and profile (no token: the certificate is the credential)
 *   GET  /pki/certificates/{serial}                     a certificate and its chain (public: what a
 *        verifier of a signature naming it as keyid fetches; its status is OCSP's)
 *   POST /pki/certificates/{serial}/revoke {reason}     with `pki:revoke`
 *   GET  /pki/crl/{authority}                           the issuing CA's CRL (DER, public)
 *   GET  /pki/ca/{authority}                            a CA certificate (DER, public; the AIA caIssuers URL)
 *
 * Refusals are JSON OAuth errors with Cache-Control: no-store: 400 invalid_request naming the
 * rule, 401/403 for the token, 404 for an unknown certificate or request, 409 for one revoked
 * already, 503 temporarily_unavailable before `clearance ca init`.
 */
export const pki: Endpoint = {
  register(app, ctx) {
    const base = `${issuerPath(ctx.config.issuer)}/pki`;
    const audience = pkiAudience(ctx.config.issuer);
    const tokenFor = async (request: FastifyRequest, reply: FastifyReply, scope: string) => {
      const access = await authorizeProtectedRequest(ctx, resourceRequest(request, ctx.config), { audience, scope, name: 'the CA API' });
      reply.headers(access.headers);
      return access.claims;
    };

    app.post(`${base}/certificates`, async (request, reply) => {
      const body = jsonObjectBody(request.body);
      const profile = typeof body.profile === 'string' && body.profile.length > 0 ? body.profile : undefined;
      if (!profile) throw new OAuthError('invalid_request', 'profile is required');
      const claims = await tokenFor(request, reply, issueScope(profile));
      const holder = await refusalsAsOAuth(() => holderOf(ctx, profile, body, claims, request.id));
      const outcome = await refusalsAsOAuth(() =>
        requestCertificate(ctx, {
          profile,
          csr: body.csr,
          holder,
          requestedBy: claims.client_id,
          requesterType: 'client',
          ...lifetimeOf(body),
          requestId: request.id,
          ...(typeof claims.txn === 'string' ? { txn: claims.txn } : {}),
        }),
      );
      return sendOutcome(reply, outcome);
    });

    app.get<{ Params: { id: string } }>(`${base}/requests/:id`, async (request, reply) => {
      const row = await ctx.storage.db.selectFrom('pki_requests').selectAll().where('id', '=', request.params.id).executeTakeFirst();
      if (!row) throw new OAuthError('not_found', 'no such certificate request');
      const claims = await tokenFor(request, reply, issueScope(row.profile));
      // Another client's request is as unknown as one that does not exist.
      if (row.requested_by !== claims.client_id) throw new OAuthError('not_found', 'no such certificate request');
      const view: Record<string, unknown> = { request_id: row.id, status: row.status, profile: row.profile, holder: row.holder };
      if (row.serial) {
        const issued = await ctx.storage.db.selectFrom('pki_certificates').select(['certificate', 'not_after']).where('serial', '=', row.serial).executeTakeFirstOrThrow();
        Object.assign(view, { serial: row.serial, certificate: issued.certificate, not_after: new Date(Number(issued.not_after)).toISOString() });
      }
      return sendJson(reply, view);
    });

    app.post(`${base}/certificates/renew`, async (request, reply) => {
      const body = jsonObjectBody(request.body);
      const presented = request.clientCertificate?.certificate;
      if (!presented) throw new OAuthError('invalid_request', 'renewal is made over mutual TLS with the current certificate', { status: 401 });
      const issued = await refusalsAsOAuth(() => renewCertificate(ctx, presented, { csr: body.csr, ...lifetimeOf(body), requestId: request.id }));
      return sendOutcome(reply, issued);
    });

    app.get<{ Params: { serial: string } }>(`${base}/certificates/:serial`, async (request, reply) => {
      const serial = request.params.serial.toLowerCase();
      if (!/^[0-9a-f]{2,40}$/.test(serial)) throw new OAuthError('not_found', 'no such certificate');
      const row = await ctx.storage.db.selectFrom('pki_certificates').select(['serial', 'profile', 'holder', 'certificate', 'authority_id', 'not_before', 'not_after']).where('serial', '=', serial).executeTakeFirst();
      const authority = row && (await ctx.pki.authorities.byId(row.authority_id));
      if (!row || !authority) throw new OAuthError('not_found', 'no such certificate');
      const chain = (await ctx.pki.authorities.chainOf(authority)).filter((a) => a.role !== 'root').map((a) => a.pem);
      return sendJson(reply, {
        serial: row.serial,
        profile: row.profile,
        holder: row.holder,
        not_before: new Date(Number(row.not_before)).toISOString(),
        not_after: new Date(Number(row.not_after)).toISOString(),
        certificate: row.certificate,
        chain: [row.certificate, ...chain].join(''),
      });
    });

    app.post<{ Params: { serial: string } }>(`${base}/certificates/:serial/revoke`, async (request, reply) => {
      const body = jsonObjectBody(request.body);
      const claims = await tokenFor(request, reply, pkiRevokeScope);
      if (!/^[0-9a-fA-F]{2,40}$/.test(request.params.serial)) throw new OAuthError('not_found', 'no such certificate');
      try {
        const revoked = await revokeCertificate(ctx, { serial: request.params.serial, reason: typeof body.reason === 'string' ? body.reason : '', actor: claims.sub ?? claims.client_id, requestId: request.id });
        return sendJson(reply, { serial: revoked.serial, status: 'revoked', reason: revoked.reason, revoked_at: new Date(revoked.revokedAt).toISOString() });
      } catch (error) {
        if (!(error instanceof RevocationError)) throw error;
        if (error.code === 'unknown_certificate') throw new OAuthError('not_found', error.message);
        if (error.code === 'already_revoked') throw new OAuthError('invalid_request', error.message, { status: 409 });
        throw new OAuthError('invalid_request', error.message);
      }
    });

    app.get<{ Params: { authority: string } }>(`${base}/crl/:authority`, async (request, reply) => {
      const authority = await ctx.pki.authorities.byId(request.params.authority);
      if (!authority || authority.role !== 'issuing') throw new OAuthError('not_found', 'no such issuing authority');
      const der = await publishCrl(ctx, authority.id);
      return reply.code(200).headers({ 'cache-control': 'no-cache' }).type('application/pkix-crl').send(der);
    });

    // RFC 6960 Appendix A: POST with the DER request as the body, or GET with its base64 in the path.
    app.addContentTypeParser('application/ocsp-request', { parseAs: 'buffer', bodyLimit: 8192 }, (_request, body, done) => done(null, body));
    app.post(`${base}/ocsp`, async (request, reply) => {
      if (!Buffer.isBuffer(request.body)) throw new OAuthError('invalid_request', 'an OCSP request is application/ocsp-request', { status: 415 });
      return sendOcsp(reply, await respondOcsp(ctx, request.body), { 'cache-control': 'no-cache' });
    });
    app.get<{ Params: { '*': string } }>(`${base}/ocsp/*`, async (request, reply) => {
      let encoded = request.params['*'];
      try {
        encoded = decodeURIComponent(encoded);
      } catch {
        // Not URL-encoded: read as it is (a malformed request is answered malformedRequest).
      }
      const answer = await respondOcsp(ctx, Buffer.from(encoded, 'base64'));
      return sendOcsp(reply, answer, cachingHeaders(answer));
    });

    app.get<{ Params: { authority: string } }>(`${base}/ca/:authority`, async (request, reply) => {
      const authority = await ctx.pki.authorities.byId(request.params.authority);
      if (!authority || authority.role === 'ocsp') throw new OAuthError('not_found', 'no such certificate authority');
      return reply.code(200).headers({ 'cache-control': 'public, max-age=3600' }).type('application/pkix-cert').send(Buffer.from(authority.certificate.rawData));
    });
  },
};

/**
 * Whom the certificate is for: for a workload profile the client itself, or the person whose own
 * token it is (src/pki/holder.ts); for a device profile, the device the enrolling service names
 * (src/pki/profiles.ts `kind`), on its own token. A token that may not ask is refused as an
 * issuance is, recorded as `pki.issuance_refused` (`holder`).
 */
async function holderOf(ctx: Context, profileName: string, body: Record<string, unknown>, claims: Asker, requestId: string): Promise<string> {
  const profile = (await ctx.pki.profiles()).get(profileName)?.profile;
  if (profile?.kind !== 'device' && body.holder !== undefined) throw new OAuthError('invalid_request', 'holder is named only for a device profile: a workload certificate is for the client that asks');
  if (profile?.kind === 'device' && (typeof body.holder !== 'string' || body.holder.length === 0)) throw new OAuthError('invalid_request', 'holder is required for a device profile: the device id');
  try {
    if (profile?.kind !== 'device') return workloadHolder(claims);
    requireOwnToken(claims);
    return body.holder as string;
  } catch (error) {
    if (error instanceof PkiRefusal) await recordRefusal(ctx, { profile: profileName, holder: claims.sub, requestedBy: claims.client_id, requestId }, error);
    throw error;
  }
}

function sendOcsp(reply: FastifyReply, der: Buffer, headers: Record<string, string>): FastifyReply {
  return reply.code(200).headers(headers).type('application/ocsp-response').send(der);
}

/**
 * RFC 5019 §6.2 (SHOULD): a GET answer tells HTTP caches what its own times say — cached for half
 * its validity (past thisUpdate, well before nextUpdate: max-age wins over Expires), Last-Modified
 * its thisUpdate, Expires its nextUpdate, and an ETag of the answer itself. An unsigned error
 * answer has no times and is not cached.
 */
function cachingHeaders(der: Buffer): Record<string, string> {
  const times = ocspAnswerTimes(der);
  if (!times) return { 'cache-control': 'no-cache' };
  const maxAge = Math.floor((times.nextUpdate.getTime() - times.thisUpdate.getTime()) / 2000);
  return {
    'cache-control': `max-age=${maxAge}, public, no-transform, must-revalidate`,
    'last-modified': times.thisUpdate.toUTCString(),
    expires: times.nextUpdate.toUTCString(),
    etag: `"${createHash('sha256').update(der).digest('base64url')}"`,
  };
}

function lifetimeOf(body: Record<string, unknown>): { lifetimeSeconds?: unknown } {
  if (body.lifetime === undefined) return {};
  return { lifetimeSeconds: body.lifetime };
}

async function refusalsAsOAuth<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof PkiRefusal) throw new OAuthError('invalid_request', error.message);
    if (error instanceof PkiError) throw new OAuthError('temporarily_unavailable', error.message, { status: 503 });
    throw error;
  }
}

function sendOutcome(reply: FastifyReply, outcome: IssuedCertificate | PendingIssuance): FastifyReply {
  if (outcome.status === 'pending_approval') {
    return sendJson(reply, { status: 'pending_approval', request_id: outcome.requestId, approval_request: outcome.approvalRequest, expires_at: new Date(outcome.expiresAt).toISOString() }, { status: 202 });
  }
  return sendJson(
    reply,
    { status: 'issued', serial: outcome.serial, profile: outcome.profile, holder: outcome.holder, not_after: new Date(outcome.notAfter).toISOString(), certificate: outcome.certificatePem, chain: outcome.chainPem },
    { status: 201 },
  );
}
