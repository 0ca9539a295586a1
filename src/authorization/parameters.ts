import { OAuthError } from '../oauth-error.ts';
import { parameterTextProblem, type FormParameters } from '../parameters.ts';

/**
 * The parameters of an authorization request, from whichever place they came: the query or form
 * of /authorize, the form of /par, or the claims of a request object (RFC 9101). Values from a form
 * are strings; values from a request object may be JSON (numbers, arrays, objects).
 */
export class AuthorizationParameters {
  readonly #values: Map<string, unknown[]>;
  /** Where they came from, for messages. */
  readonly source: 'query' | 'form' | 'request object';

  /** A parameter that breaks the rule on control characters (src/parameters.ts), refused at the first read. */
  readonly #problem: string | undefined;

  private constructor(values: Map<string, unknown[]>, source: AuthorizationParameters['source'], problem?: string) {
    this.#values = values;
    this.source = source;
    this.#problem = problem;
  }

  /**
   * Issue 20 item 4: a request with a control character in a parameter is refused as a whole,
   * whichever parameter is read first (client_id is: the error is a page, never a redirect).
   */
  #usable(): Map<string, unknown[]> {
    if (this.#problem) throw new OAuthError(this.source === 'request object' ? 'invalid_request_object' : 'invalid_request', this.#problem);
    return this.#values;
  }

  /** From a query string or form body (RFC 6749 §3.1: an empty value counts as absent). */
  static fromForm(form: FormParameters, source: 'query' | 'form'): AuthorizationParameters {
    const values = new Map<string, unknown[]>();
    for (const name of form.names()) {
      const present = form.all(name).filter((v) => v !== '');
      if (present.length > 0) values.set(name, present);
    }
    return new AuthorizationParameters(values, source, form.controlCharacters());
  }

  /**
   * From the verified claims of a request object (RFC 9101 §4). `resource` may be an array
   * (RFC 8707 allows several); every other claim is one value.
   */
  static fromClaims(claims: Record<string, unknown>): AuthorizationParameters {
    const values = new Map<string, unknown[]>();
    let problem: string | undefined;
    for (const [name, value] of Object.entries(claims)) {
      if (value === undefined || value === null || value === '') continue;
      const list = name === 'resource' && Array.isArray(value) ? value : [value];
      values.set(name, list);
      // Claims whose values are strings follow the rule of the parameters they stand for.
      for (const item of list) if (typeof item === 'string') problem ??= parameterTextProblem(name, item);
    }
    return new AuthorizationParameters(values, 'request object', problem);
  }

  has(name: string): boolean {
    return this.#usable().has(name);
  }

  names(): string[] {
    return [...this.#usable().keys()];
  }

  /** Every value of a parameter that may repeat (RFC 8707 `resource`). */
  all(name: string): unknown[] {
    return this.#usable().get(name) ?? [];
  }

  /**
   * The one value of a parameter, as a string (RFC 6749 §3.1: parameters MUST NOT be included more
   * than once). Numbers from a request object (max_age) are given as their decimal text.
   */
  string(name: string): string | undefined {
    const values = this.#usable().get(name);
    if (!values) return undefined;
    // RFC 6749 §3.1: request parameters MUST NOT be included more than once.
    if (values.length > 1) throw new OAuthError('invalid_request', `${name} was sent more than once`);
    const value = values[0];
    if (typeof value === 'string') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    throw new OAuthError(this.source === 'request object' ? 'invalid_request_object' : 'invalid_request', `${name} must be a string`);
  }

  /** The one raw value (for JSON-valued parameters such as authorization_details). */
  one(name: string): unknown {
    const values = this.#usable().get(name);
    if (!values) return undefined;
    if (values.length > 1) throw new OAuthError('invalid_request', `${name} was sent more than once`);
    return values[0];
  }
}
