import type { FastifyRequest } from 'fastify';
import { OAuthError } from '../../oauth-error.ts';

/** The scheme the caller's token came with, for the challenge it is answered with. */
export function authScheme(request: FastifyRequest): 'Bearer' | 'DPoP' {
  return /^dpop\s/i.test(request.headers.authorization ?? '') ? 'DPoP' : 'Bearer';
}

/**
 * RFC 9470 §3: 401 insufficient_user_authentication, with what would meet the requirement in the
 * challenge and the body — for the admin API's actions a person must take at a higher level or
 * more freshly (approvals, address-book changes).
 */
export function stepUp(scheme: 'Bearer' | 'DPoP', description: string, ask: { acr_values?: string; max_age?: number }): OAuthError {
  const params = [
    'realm="clearance"',
    'error="insufficient_user_authentication"',
    `error_description="${description}"`,
    ...(ask.acr_values !== undefined ? [`acr_values="${ask.acr_values}"`] : []),
    ...(ask.max_age !== undefined ? [`max_age=${ask.max_age}`] : []),
  ];
  return new OAuthError('insufficient_user_authentication', description, {
    status: 401,
    headers: { 'www-authenticate': `${scheme} ${params.join(', ')}` },
    members: { ...ask },
  });
}
