import { OAuthError } from '../../oauth-error.ts';

/**
 * The public description of a failed credential check. It is the same for an unknown client, a
 * wrong secret, a bad signature or a method the client is not registered for, so a response never
 * tells a caller which of these it was; the `detail` (logs and audit only) does.
 */
export const authenticationFailed = 'client authentication failed';

/**
 * An `invalid_client` error (RFC 6749 §5.2, 401). `detail` says exactly what failed, for the log
 * and the `client.auth_failed` audit event; it must never contain a secret or a whole assertion.
 */
export function invalidClient(detail: string, description: string = authenticationFailed, status = 401): OAuthError {
  return new OAuthError('invalid_client', description, { status, detail });
}

/** Shortens a caller-supplied value for a log detail. */
export function quote(value: unknown, max = 80): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}
