import type { OAuthError } from '../oauth-error.ts';

/**
 * The authorization response as a redirect to the client (RFC 6749 §4.1.2, §4.1.2.1), in the query
 * (response_mode=query). Every response, success or error, carries `iss` (RFC 9207 §2; RFC 9700
 * §4.4.2 mix-up defence) and the request's `state`. The parameters are appended to the registered
 * URI, whose own query is kept exactly as registered (RFC 6749 §3.1.2).
 */
export function authorizationResponseLocation(
  redirectUri: string,
  issuer: string,
  state: string | undefined,
  result: { code: string } | { error: OAuthError },
): string {
  const params = new URLSearchParams();
  if ('code' in result) {
    params.set('code', result.code);
  } else {
    const body = result.error.toJSON();
    params.set('error', body.error);
    if (body.error_description !== undefined) params.set('error_description', body.error_description);
  }
  if (state !== undefined) params.set('state', state);
  // RFC 9207 §2: the iss parameter, the issuer identifier, in every authorization response.
  params.set('iss', issuer);
  const separator = redirectUri.includes('?') ? '&' : '?';
  return `${redirectUri}${separator}${params.toString()}`;
}
