/**
 * The one error type of the protocol layer. `error` is a registered OAuth error code
 * (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009, RFC 8693, RFC 8707, RFC 9126, RFC 9396, RFC 9449, ...).
 * `description` is public; `detail` is for logs only and never leaves the server.
 */
export class OAuthError extends Error {
  readonly error: string;
  readonly status: number;
  readonly description: string | undefined;
  readonly detail: string | undefined;
  readonly headers: Readonly<Record<string, string>>;
  /** Members the error's registration adds to the JSON body (RFC 9470 §3 `acr_values`, `max_age`). */
  readonly members: Readonly<Record<string, string | number>>;
  /**
   * The trade a refusal belongs to, once a grant knows it (a verified subject token's txn and
   * subject): its audit event is filed under it (docs/audit.md "Refusals"). Never sent to the client.
   */
  about: { txn?: string; subject?: string } | undefined;

  constructor(
    error: string,
    description?: string,
    options: { status?: number; detail?: string; headers?: Record<string, string>; members?: Record<string, string | number> } = {},
  ) {
    super(description ? `${error}: ${description}` : error);
    this.name = 'OAuthError';
    this.error = error;
    this.description = description;
    this.status = options.status ?? defaultStatus(error);
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.members = options.members ?? {};
    this.about = undefined;
  }

  /** The JSON body of RFC 6749 §5.2; `error_description` only when there is one; then the error's own members. */
  toJSON(): { error: string; error_description?: string; [member: string]: string | number | undefined } {
    const body = this.description === undefined ? { error: this.error } : { error: this.error, error_description: publicDescription(this.description) };
    return { ...this.members, ...body };
  }
}

/** Longest error_description sent; a description may quote what the caller sent, which can be huge. */
const maxDescriptionLength = 1000;

/**
 * RFC 6749 §5.2: error_description MUST NOT include characters outside %x20-21 / %x23-5B / %x5D-7E.
 * Descriptions that quote caller input (a scope, a grant_type, a path) are made to fit: `"` becomes
 * `'`, anything else outside the set `?`; and they are kept short.
 */
function publicDescription(text: string): string {
  const safe = text.replace(/"/g, "'").replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/gu, '?');
  return safe.length > maxDescriptionLength ? `${safe.slice(0, maxDescriptionLength - 3)}...` : safe;
}

const statusByError: Record<string, number> = {
  invalid_client: 401, // RFC 6749 §5.2
  invalid_token: 401, // RFC 6750 §3.1
  insufficient_scope: 403, // RFC 6750 §3.1
  access_denied: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_too_large: 413,
  unsupported_media_type: 415,
  slow_down: 400,
  too_many_requests: 429,
  server_error: 500,
  temporarily_unavailable: 503,
};

function defaultStatus(error: string): number {
  return statusByError[error] ?? 400;
}
