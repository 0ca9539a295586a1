import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ClientAuthInput } from '../clients/authentication/types.ts';
import type { Config } from '../config.ts';
import type { DpopRequest } from '../tokens/dpop.ts';
import type { ResourceRequest } from '../tokens/resource-access.ts';
import { OAuthError } from '../oauth-error.ts';
import type { FormParameters } from '../parameters.ts';
import type { PresentedCertificate } from './client-certificate.ts';
import { sendError } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The client certificate of this request, when one was presented (set by the app). */
    clientCertificate?: PresentedCertificate | undefined;
  }
}

/**
 * The form body of an OAuth POST; anything else is `invalid_request` (RFC 6749 §3.2), and so is a
 * parameter with a control character (RFC 6749 Appendix A; the rule: src/parameters.ts).
 */
export function requireForm(request: FastifyRequest): FormParameters {
  if (!request.form) {
    throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  const problem = request.form.controlCharacters();
  if (problem) throw new OAuthError('invalid_request', problem);
  return request.form;
}

/** RFC 6749 §3.2: parameters MUST NOT be included more than once, except those named repeatable. */
export function rejectRepeated(params: FormParameters, repeatable: readonly string[] = []): void {
  const repeated = params.repeated().filter((name) => !repeatable.includes(name));
  if (repeated.length > 0) throw new OAuthError('invalid_request', `parameter sent more than once: ${repeated.join(', ')}`);
}

/** What a client presented to authenticate, taken from the request. */
export function clientAuthInput(request: FastifyRequest, form: FormParameters): ClientAuthInput {
  return {
    form,
    authorization: request.headers.authorization,
    certificate: request.clientCertificate?.certificate,
    certificateChainVerified: request.clientCertificate?.chainVerified ?? false,
    ...(request.clientCertificate?.chain ? { certificateChain: request.clientCertificate.chain } : {}),
    sourceAddress: request.ip,
    requestId: request.id,
  };
}

/**
 * What DPoP proof validation needs from a request (RFC 9449 §4.3): every DPoP header field value
 * (from the raw headers: Node would join repeats, and more than one must be refused), the method,
 * and the URLs the request may have been addressed to — the issuer's origin and, when configured,
 * the mTLS alias origin, with the request's path. The Host header is never trusted for this.
 */
export function dpopRequest(request: FastifyRequest, config: Pick<Config, 'issuer' | 'mtlsOrigin'>, accessToken?: string): DpopRequest {
  const proofs: string[] = [];
  const raw = request.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'dpop') proofs.push(raw[i + 1]!);
  }
  const path = request.url.split('?')[0]!.split('#')[0]!;
  const origins = originsOf(config);
  return {
    proofs,
    method: request.method,
    urls: origins.map((origin) => `${origin}${path}`),
    ...(accessToken !== undefined ? { accessToken } : {}),
  };
}

const origins = new WeakMap<object, string[]>();

/** The issuer's origin and the mTLS alias origin, parsed once per configuration (every token request asks). */
function originsOf(config: Pick<Config, 'issuer' | 'mtlsOrigin'>): string[] {
  let list = origins.get(config);
  if (!list) {
    list = [new URL(config.issuer).origin, ...(config.mtlsOrigin ? [config.mtlsOrigin] : [])];
    origins.set(config, list);
  }
  return list;
}

/** What a protected resource (admin API, userinfo) needs from a request to authenticate its token. */
export function resourceRequest(request: FastifyRequest, config: Pick<Config, 'issuer' | 'mtlsOrigin'>): ResourceRequest {
  const raw = request.clientCertificate?.certificate.raw;
  return {
    authorization: request.headers.authorization,
    target: request.url,
    dpop: dpopRequest(request, config),
    certificateThumbprint: raw && createHash('sha256').update(raw).digest('base64url'),
  };
}

/** Answers other methods on an OAuth POST endpoint with 405 and a registered error body. */
export function postOnly(app: FastifyInstance, path: string): void {
  app.route({
    method: ['GET', 'PUT', 'DELETE', 'PATCH'],
    url: path,
    handler: (_request, reply) =>
      sendError(reply, new OAuthError('invalid_request', 'use POST', { status: 405, headers: { allow: 'POST' } })),
  });
}
