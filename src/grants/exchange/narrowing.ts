import { canonicalize } from '../../jose/canonical-json.ts';
import type { AuthorizationDetail } from '../../authorization/authorization-details.ts';
import { OAuthError } from '../../oauth-error.ts';

/**
 * The scopes of an exchanged token (RFC 8693 §2.1 `scope`; DESIGN §4: never wider). Requested:
 * each must be carried by the subject token and offered by the target; not requested: the subject
 * token's scopes the target offers. A scope of the subject token the target does not offer is
 * dropped, never added.
 */
export function narrowScopes(requested: string | undefined, carried: readonly string[], offered: readonly string[]): string[] {
  if (requested === undefined) {
    const scopes = carried.filter((s) => offered.includes(s));
    if (scopes.length === 0) throw new OAuthError('invalid_scope', 'the subject token carries no scope the target offers');
    return scopes;
  }
  const scopes = requested.split(' ');
  if (scopes.some((s) => s === '')) throw new OAuthError('invalid_scope', 'scope is malformed');
  for (const scope of scopes) {
    if (!carried.includes(scope)) throw new OAuthError('invalid_scope', `scope ${scope.slice(0, 60)} is wider than the subject token's`);
    if (!offered.includes(scope)) throw new OAuthError('invalid_scope', `scope ${scope.slice(0, 60)} is not offered by the target`);
  }
  return [...new Set(scopes)];
}

/**
 * The authorization_details of an exchanged token (RFC 9396 §6.2 for token exchange): by default
 * the subject token's; requested, a selection of them — each requested entry must equal one the
 * subject token carries (compared as canonical JSON), so no entry can grow a limit or change an
 * instrument on the way.
 */
export function narrowAuthorizationDetails(requested: string | undefined, carried: readonly AuthorizationDetail[]): AuthorizationDetail[] {
  if (requested === undefined) return [...carried];
  let parsed: unknown;
  try {
    parsed = JSON.parse(requested);
  } catch {
    throw new OAuthError('invalid_authorization_details', 'authorization_details is not JSON');
  }
  if (!Array.isArray(parsed) || parsed.length === 0) throw new OAuthError('invalid_authorization_details', 'authorization_details must be a non-empty JSON array');
  const held = new Set(carried.map((d) => canonicalize(d)));
  const seen = new Set<string>();
  parsed.forEach((entry, i) => {
    let text: string;
    try {
      text = canonicalize(entry);
    } catch {
      throw new OAuthError('invalid_authorization_details', `authorization_details[${i}] is not plain JSON`);
    }
    if (!held.has(text)) throw new OAuthError('invalid_authorization_details', `authorization_details[${i}] is not one the subject token carries (exchange only narrows)`);
    // Each entry once: a repeated entry would double what the subject token allows.
    if (seen.has(text)) throw new OAuthError('invalid_authorization_details', `authorization_details[${i}] repeats an entry`);
    seen.add(text);
  });
  return parsed as AuthorizationDetail[];
}
