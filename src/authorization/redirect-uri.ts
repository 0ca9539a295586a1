/**
 * Redirect URI matching. The requested redirect_uri must be one the client registered, compared
 * as exact strings (RFC 9700 §2.1, §4.1.3; OAuth 2.1 §2.3.1): no normalization, no prefix or
 * pattern matching, a changed query is a different URI.
 *
 * One exception, RFC 8252 §7.3: for a native app's loopback redirect registered with an IP
 * literal (`http://127.0.0.1/...` or `http://[::1]/...`), the port may differ, because the app
 * listens on an ephemeral port. Everything else (scheme, host, path, query) stays exact, as
 * strings. `localhost` is not given this latitude (RFC 8252 §8.3: NOT RECOMMENDED; it can resolve
 * elsewhere), so a `http://localhost:…` URI must match exactly, port included.
 */
export function matchesRegisteredRedirectUri(registered: readonly string[], requested: string): boolean {
  if (registered.includes(requested)) return true;
  const loose = loopbackWithoutPort(requested);
  if (loose === undefined) return false;
  return registered.some((uri) => loopbackWithoutPort(uri) === loose);
}

// http, an IP-literal loopback host, an optional port, then anything without a fragment. Userinfo
// (`http://127.0.0.1@evil`) cannot match: the host must follow `//` directly and be followed by
// `:port`, `/`, `?` or the end.
const loopback = /^http:\/\/(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(?=[/?]|$)([^#]*)$/;

/** The URI with its port removed when it is an http loopback IP-literal URI; otherwise undefined. */
function loopbackWithoutPort(uri: string): string | undefined {
  const match = loopback.exec(uri);
  if (!match) return undefined;
  if (match[2] !== undefined && (Number(match[2]) < 1 || Number(match[2]) > 65535)) return undefined;
  return `http://${match[1]}${match[3]}`;
}
