import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ClientAuthInput } from '../clients/authentication/types.ts';
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

/** The form body of an OAuth POST; anything else is `invalid_request` (RFC 6749 §3.2). */
export function requireForm(request: FastifyRequest): FormParameters {
  if (!request.form) {
    throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
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
    sourceAddress: request.ip,
    requestId: request.id,
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
